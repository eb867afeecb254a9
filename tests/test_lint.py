"""The code base stays ruff clean (CI runs only the test command, so the linter runs here)."""

from __future__ import annotations

import subprocess
import sys

from specedge import PROJECT_ROOT


def test_ruff_check_passes() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
