"""The error every bad setting raises, and the checks the schemas share: what was wrong,
under which key, and what is accepted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from specedge import PROJECT_ROOT


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent; the message names the key."""


def require(ok: bool, key: str, value: Any, accepted: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r} is not accepted: {accepted}")


_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_device(key: str, value: str) -> None:
    require(bool(_DEVICE_RE.match(value)), key, value, "'cpu', 'cuda' or 'cuda:N'")


def project_file(path: str) -> Path:
    """A file path as given (relative to the working directory), or else relative to the
    project, where shipped data lives (``specedge/data/profiles/a100_80-graphs-derived.json``
    works from anywhere)."""
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute():
        return given
    return PROJECT_ROOT / given


def check_profile(key: str, value: str | None) -> None:
    require(value is None or project_file(value).is_file(), key, value,
             "null or an existing profile JSON (python -m specedge.profile writes one; "
             "specedge/data/profiles/ holds the shipped ones)")




def check_tree(prefix: str, n_beams: int, beam_len: int, width: int, budget: int) -> None:
    for name, value in (
        ("max_n_beams", n_beams),
        ("max_beam_len", beam_len),
        ("max_branch_width", width),
        ("max_budget", budget),
    ):
        require(value >= 1, f"{prefix}.{name}", value, "an integer >= 1")
    # A step forwards at most every node of the tree plus its root: more beams can never be used.
    require(
        n_beams <= budget + 1,
        f"{prefix}.max_n_beams",
        n_beams,
        f"at most {prefix}.max_budget + 1 = {budget + 1} (no more nodes can exist to forward)",
    )
