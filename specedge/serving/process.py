"""The start of a server or edge process that the launcher spawned on a run directory."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import torch

from specedge.base.config.checks import ConfigError
from specedge.base.config.preflight import preflight
from specedge.base.config.run import RunConfig, load_run_config


def start(run_dir: Path) -> RunConfig | None:
    """Logging, torch's threads on every core this process may use (its pinning), and the
    run's saved config, checked against this machine; None, the reason printed, where a file
    it names is missing here."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    cfg = load_run_config(run_dir)
    try:
        preflight(cfg)
    except ConfigError as exc:
        print(f"specedge: error: {exc}", file=sys.stderr)
        return None
    return cfg
