"""`python -m specedge.run` end to end on the micro pair: real processes, real files."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from specedge import CONF_DIR, PROJECT_ROOT
from specedge.base.config.run import to_run_config
from specedge.base.records import DTYPE_FILE, OUTPUTS_FILE, STEPS_FILE, StepRecord
from specedge.commands.run import execute
from tests.serving import assert_outputs_exact, read_records, run_command
from tests.test_models import fake_cpu

pytestmark = pytest.mark.slow  # end to end: real processes, pipelines or builds


def _run(run_dir: Path, pair: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        run_command(run_dir, pair, "dataset.max_requests=5", "generation.max_new_tokens=12",
                    *overrides),
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize(("baseline", "path"), [("server_only", "auto"), ("auto_batch", "auto"),
                                              ("server_only", "static"),
                                              ("auto_batch", "static")])
def test_run_writes_exact_outputs_and_step_records(tmp_path: Path, micro_pair: Path,
                                                   baseline: str, path: str) -> None:
    run_dir = tmp_path / baseline
    result = _run(run_dir, micro_pair, f"baseline={baseline}", f"model.compile={path}",
                  "model.token_buckets=[1,2,4,8,16,32]")
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = read_records(run_dir / OUTPUTS_FILE)
    assert sorted(o["request_id"] for o in outputs) == [0, 1, 2, 3, 4]
    assert_outputs_exact(outputs, micro_pair, 12)
    for out in outputs:
        assert out["prompt"].startswith("<|user|>\n") and out["category"] == "mt_bench"
    steps = [json.loads(x) for x in (run_dir / STEPS_FILE).read_text().splitlines()]
    assert set(steps[0]) == set(StepRecord.__dataclass_fields__)
    assert {s["baseline"] for s in steps} == {baseline}
    assert sum(s["new_tokens"] for s in steps) == sum(len(o["output_ids"]) for o in outputs)
    assert sum(s["prefill"] for s in steps) == 5
    assert (run_dir / ".hydra" / "config.yaml").exists()
    expected = "eager" if path == "auto" else path  # auto is eager on a CPU
    assert f"forward path: {expected}" in (run_dir / "run.log").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["baseline"] == baseline and summary["accounting"] == "busy"
    assert summary["tokens"] == sum(len(o["output_ids"]) for o in outputs)
    assert summary["requests"] == 5 and not summary["partial"]
    assert summary["prices"]["hardware"] == "cpu" and summary["usd_per_mtok"] > 0
    if baseline == "auto_batch":
        assert all(s["tree_size"] == 1 and s["accepted"] == 0 for s in steps)


def test_prompt_longer_than_kv_capacity_is_refused(tmp_path: Path, micro_pair: Path) -> None:
    result = _run(tmp_path / "long", micro_pair, "baseline=auto_batch", "model.max_len=30")
    assert result.returncode == 2
    assert "model.max_len = 30 is too small for request" in result.stderr


@pytest.mark.parametrize(("overrides", "message"), [
    (["baseline=specedge", "model.max_len=30"], "model.max_len = 30 is too small for request"),
    (["baseline=server_only", "model.max_len=30"], "tree depth 5 + 1"),
    (["baseline=specedge", "model.draft=/nonexistent/draft"],
     "model.draft = '/nonexistent/draft': the model folder does not exist"),
    (["baseline=auto_batch", "model=tiny", "model.target=/nonexistent/target"],
     "model.target = '/nonexistent/target': the model folder does not exist"),
], ids=["specedge-too-long", "server-only-too-long", "missing-draft", "missing-target"])
def test_dry_run_finds_what_would_fail_later(tmp_path: Path, micro_pair: Path,
                                             overrides: list[str], message: str) -> None:
    """Checked before any model loads, by every baseline, in a dry run too."""
    result = _run(tmp_path / "dry", micro_pair, "dry_run=true", *overrides)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not (tmp_path / "dry" / "run_config.yaml").exists()  # nothing started


@pytest.mark.parametrize(("capability", "expected"), [("AVX2", "fp32"), ("AMX", "bf16")])
def test_auto_dtype_reaches_the_runs_records(tmp_path: Path, micro_pair: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture,
                                             capability: str, expected: str) -> None:
    """In-process (the capability is faked in this interpreter): auto-batch on the micro pair
    with model.dtype=auto, then dtype.json, summary.json and the log name what ran."""
    fake_cpu(monkeypatch, capability)
    run_dir = tmp_path / capability
    run_dir.mkdir()
    overrides = run_command(run_dir, micro_pair, "baseline=auto_batch", "model.dtype=auto",
                            "dataset.max_requests=2", "generation.max_new_tokens=6")[3:]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = compose(config_name="config", overrides=overrides)
    with caplog.at_level(logging.INFO):
        execute(to_run_config(composed), run_dir, composed)
    assert json.loads((run_dir / DTYPE_FILE).read_text())["dtype"] == expected
    assert json.loads((run_dir / "summary.json").read_text())["dtype"] == expected
    assert f"model.dtype=auto -> {expected} on cpu" in caplog.text and capability in caplog.text
