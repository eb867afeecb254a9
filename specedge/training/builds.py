"""A build's folder and card: everything is written into ``<out>.partial`` and renamed into
place only when complete (nothing half-built looks finished), and the pair is measured in a
fresh interpreter (training leaves allocator and thread-pool state behind that slows small
forwards by about 40 %, which no run, loading the pair anew, would see)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from specedge import PROJECT_ROOT

CARD_FILE = "card.json"


def in_project(path: str) -> str:
    """``path`` relative to the project root where it lies inside it (a card names no
    machine's folders)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(PROJECT_ROOT)) if resolved.is_relative_to(PROJECT_ROOT) \
        else path


def card_sha(folder: str) -> str | None:
    """The weights' sha256 on the card of a built model folder (None: it has no card)."""
    card = Path(folder) / CARD_FILE
    return json.loads(card.read_text())["weights_sha256"] if card.is_file() else None


def start_build(out_dir: str, threads: int) -> tuple[Path, Path]:
    """The output folder and the empty ``.partial`` folder a build writes into; torch's
    threads set (0: every core this process may use)."""
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    out = Path(out_dir)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return out, partial


def finish(partial: Path, out: Path, card: dict[str, Any]) -> None:
    """Write the card, then put the complete folder in the output's place."""
    (partial / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)


def in_fresh_process(function: str, job: dict[str, Any]) -> dict[str, Any]:
    """``module:function`` called with ``job`` (JSON) in a new interpreter; its JSON result.
    (A plain subprocess: multiprocessing's spawn would re-run the caller's module as
    ``__mp_main__``.)"""
    code = f"from specedge.training.builds import _child; _child({function!r})"
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(job),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{function} in a fresh process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _child(function: str) -> None:
    module, name = function.split(":")
    result = getattr(importlib.import_module(module), name)(json.loads(sys.stdin.read()))
    print(json.dumps(result))
