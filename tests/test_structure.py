"""Structure the code base promises: the analysis side stays light, run files have one home."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from specedge import PROJECT_ROOT
from specedge.base.records import JsonlWriter, OutputRecord, RecordsError, read_jsonl

HEAVY = ("torch", "transformers", "grpc", "fabric")


def test_the_analysis_side_imports_no_torch_grpc_or_fabric() -> None:
    """Reports, metrics, sweeps and the simulator run where no model or network stack is
    installed (and start in a fraction of the time)."""
    code = ("import sys\nimport specedge.analysis.report, specedge.analysis.metrics, "
            "specedge.analysis.sweep, specedge.analysis.simulate\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_one_jsonl_reader_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "outputs.jsonl"
    good = {"request_id": 1, "category": "c", "prompt": "p", "prompt_ids": [1],
            "output_ids": [2], "text": "t", "subcategory": "s"}
    path.write_text(json.dumps(good) + "\n{cut short\n" + json.dumps({"request_id": 2}) + "\n")
    problems: list[str] = []
    assert read_jsonl(path, OutputRecord, problems) == [good]
    assert problems[0].startswith(f"{path}:2: skipped, not valid JSON")
    assert problems[1].startswith(f"{path}:3: skipped, not a OutputRecord")
    assert read_jsonl(tmp_path / "none.jsonl", OutputRecord, [], missing_ok=True) == []
    with pytest.raises(RecordsError, match=r"none\.jsonl: missing"):
        read_jsonl(tmp_path / "none.jsonl", OutputRecord, [])


def test_a_writer_appending_to_a_cut_file_keeps_the_cut_line_apart(tmp_path: Path) -> None:
    """A restarted edge appends to the file its killed predecessor left mid-line."""
    path = tmp_path / "outputs.jsonl"
    good = OutputRecord(request_id=1, category="c", prompt="p", prompt_ids=[1], output_ids=[2],
                        text="t", subcategory="s")
    path.write_text('{"request_id": 0, "cat')
    with JsonlWriter(path) as out:
        out.write(good)
    problems: list[str] = []
    assert read_jsonl(path, OutputRecord, problems) == [asdict(good)]
    assert len(problems) == 1 and problems[0].startswith(f"{path}:1:")


@pytest.mark.xdist_group("guard")
def test_grouped_tests_share_one_worker(request: pytest.FixtureRequest) -> None:
    """The SLURM tests (one cluster owns /etc/slurm) and the tests that read one pair of runs
    rely on `--dist loadgroup` sending a group to one worker; pytest 9.2 with xdist 3.8 stopped
    it without a word (a group split, a SLURM test skipped): a pytest that breaks it again is
    caught here."""
    if getattr(request.config.option, "loadgroup", False):  # under `-n 0` there are no groups
        assert request.node.nodeid.endswith("@guard"), request.node.nodeid
