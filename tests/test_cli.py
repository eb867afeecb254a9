"""``specedge COMMAND``: one entry point for every tool, the ``python -m specedge.X`` forms kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from specedge import PROJECT_ROOT
from specedge.__main__ import COMMANDS


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=300)


@pytest.mark.slow
def test_the_console_script_composes_a_run_as_python_m_does() -> None:
    """The installed script and both module forms reach the same Hydra app, overrides and
    all."""
    script = Path(sys.executable).parent / "specedge"
    assert script.is_file(), "pip install -e . declares the specedge console script"
    forms = [[str(script), "run"], [sys.executable, "-m", "specedge", "run"],
             [sys.executable, "-m", "specedge.run"]]
    outputs = []
    for form in forms:
        done = _run(*form, "--cfg", "job", "baseline=server_only", "edge.max_budget=24")
        assert done.returncode == 0, done.stderr
        assert "name: server_only" in done.stdout and "max_budget: 24" in done.stdout
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] == outputs[2]


def test_an_unknown_command_names_the_accepted_ones() -> None:
    done = _run(sys.executable, "-m", "specedge", "simulat")
    assert done.returncode == 2
    assert "unknown command 'simulat'" in done.stderr
    assert all(name in done.stderr for name in COMMANDS)
    help_ = _run(sys.executable, "-m", "specedge", "--help")
    assert help_.returncode == 0 and "long-prompts" in help_.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_a_module_with_an_entry_point(command: str) -> None:
    """Each target exists and runs as ``__main__`` (checked by source, without running it):
    a module, or a package's ``__main__``."""
    module = COMMANDS[command][0]
    path = PROJECT_ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = PROJECT_ROOT / module.replace(".", "/") / "__main__.py"
    assert path.is_file(), module
    assert 'if __name__ == "__main__":' in path.read_text(), module
