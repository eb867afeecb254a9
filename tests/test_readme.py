"""README's "Running experiments" commands, as written, on the SmolLM2 pair the main job
builds (here the tests' quick build of it, named by path): each must pass its checks with
``dry_run=true``, and one runs for real."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from specedge import PROJECT_ROOT
from specedge.base.records import OUTPUTS_FILE

pytestmark = pytest.mark.slow  # end to end: real processes, pipelines or builds


def readme_commands() -> list[list[str]]:
    """The `python -m specedge.run` lines of the section's first bash block."""
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text[text.index("## Running experiments"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words[:3] == [".venv/bin/python", "-m", "specedge.run"]:
            commands.append([sys.executable, *words[1:]])
    return commands


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)


def test_every_running_experiments_command_runs_as_written(tmp_path: Path,
                                                           smollm2: Path) -> None:
    commands = readme_commands()
    assert len(commands) >= 7 and all("model=tiny" not in c for c in commands)
    # models/smollm2, as the main job leaves it; question.jsonl, as upstream's Spec-Bench file
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "smollm2").symlink_to(smollm2)
    (tmp_path / "question.jsonl").write_text(json.dumps(
        {"question_id": 1, "category": "qa", "turns": ["What is the capital of Peru?"]}) + "\n")
    for i, cmd in enumerate(commands):
        extra = [] if "--cfg" in cmd else ["dry_run=true"]
        where = "hydra.sweep.dir" if "-m" in cmd[3:] else "hydra.run.dir"
        done = _run([*cmd, *extra, f"{where}={tmp_path / f'run-{i}'}"], tmp_path)
        assert done.returncode == 0, f"{shlex.join(cmd)}:\n{done.stderr[-3000:]}"
    # one for real: server-only on the pair, two requests
    real = next(c for c in commands if "baseline=server_only" in c and "-m" not in c[3:])
    run_dir = tmp_path / "real"
    done = _run([*real, "dataset.max_requests=2", "generation.max_new_tokens=8",
                 f"hydra.run.dir={run_dir}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"] == "smollm2" and summary["requests"] == 2
    assert len((run_dir / OUTPUTS_FILE).read_text().splitlines()) == 2


def test_a_missing_pair_names_the_target_that_builds_it(tmp_path: Path) -> None:
    done = _run([sys.executable, "-m", "specedge.run", f"hydra.run.dir={tmp_path / 'r'}"],
                tmp_path)
    assert done.returncode == 2
    assert "Build the SmolLM2 pair first: `snakemake --cores 1 models/smollm2/draft/card.json`" \
        in done.stderr
