"""Hydra multirun sweeps: one directory per job and a sweep index, failed jobs included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from specedge import PROJECT_ROOT

pytestmark = pytest.mark.slow  # end to end: real processes, pipelines or builds


def test_multirun_writes_one_run_per_job_and_an_index(tmp_path: Path, micro_pair: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "specedge.run", "-m", "model=tiny",
         f"model.target={micro_pair / 'target'}",
         f"model.draft={micro_pair / 'draft'}", f"hydra.sweep.dir={sweep_dir}",
         "baseline=server_only", "generation.max_new_tokens=8", "edge.max_n_beams=3",
         "edge.max_budget=2,6",
         "dataset.max_requests=3,0"],  # 0 is refused: two of the four jobs fail
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0  # Hydra reports the failed jobs at the end ...
    assert "dataset.max_requests = 0 is not accepted" in done.stderr
    index = json.loads((sweep_dir / "index.json").read_text())  # ... after running them all
    assert index["swept"] == ["dataset.max_requests", "edge.max_budget"]
    jobs = {(j["params"]["edge.max_budget"], j["params"]["dataset.max_requests"]): j
            for j in index["jobs"]}
    assert set(jobs) == {(2, 3), (2, 0), (6, 3), (6, 0)}
    for budget in (2, 6):
        ok, bad = jobs[(budget, 3)], jobs[(budget, 0)]
        assert ok["status"] == "completed" and bad["status"] == "failed"
        assert "max_requests" in bad["error"]
        summary = ok["summary"]
        assert summary["requests"] == 3 and summary["tree"]["max_budget"] == budget
        assert (sweep_dir / ok["dir"] / "outputs.jsonl").exists()
    # greedy output does not depend on the tree budget: the sweep changed speed, not text
    outputs = [(sweep_dir / jobs[(b, 3)]["dir"] / "outputs.jsonl").read_text() for b in (2, 6)]
    assert [json.loads(x)["output_ids"] for x in outputs[0].splitlines()] == \
        [json.loads(x)["output_ids"] for x in outputs[1].splitlines()]


def test_sweep_jobs_run_out_of_process_with_the_submitit_launcher(tmp_path: Path,
                                                                   micro_pair: Path) -> None:
    # submitit_local is submitit_slurm's local twin: each job is its own process, so the
    # index must come from the job directories, not from the launching process's memory
    sweep_dir = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, "-m", "specedge.run", "-m", "hydra/launcher=submitit_local",
         "model=tiny", f"model.target={micro_pair / 'target'}",
         f"model.draft={micro_pair / 'draft'}",
         f"hydra.sweep.dir={sweep_dir}", "baseline=server_only", "dataset.max_requests=2",
         "generation.max_new_tokens=8", "edge.max_budget=8,12"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    index = json.loads((sweep_dir / "index.json").read_text())
    assert [(j["params"]["edge.max_budget"], j["status"]) for j in index["jobs"]] == \
        [(8, "completed"), (12, "completed")]
    assert all(j["summary"]["requests"] == 2 for j in index["jobs"])
    assert list(sweep_dir.glob(".submitit/*"))  # the jobs really went through submitit
