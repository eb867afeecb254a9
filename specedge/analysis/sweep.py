"""The sweep-level index of a Hydra multirun (``python -m specedge.run -m ...``).

After every job of a multirun, :class:`SweepIndex` (a Hydra callback, registered in
``conf/config.yaml``) rewrites ``<sweep dir>/index.json``: one entry per job directory with its
overrides, the parameters that vary across the sweep, its status and its ``summary.json``. It
is rebuilt from the directories on disk, so it stays right when a job fails, when the sweep is
cut short, and when jobs run elsewhere (a cluster launcher) and only share the file system.
The report step reads this index (:mod:`specedge.analysis.report`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from specedge.base.records import SUMMARY_FILE

INDEX_FILE = "index.json"
STATUS_FILE = "job_status.json"


def _params(overrides: list[str]) -> dict[str, Any]:
    parsed = OverridesParser.create().parse_overrides(overrides)
    return {o.key_or_group: o.value() for o in parsed}


def build_index(sweep_dir: Path) -> dict[str, Any]:
    """Every job directory of the sweep (those with ``.hydra/overrides.yaml``), in job order."""
    jobs = []
    for overrides_file in sorted((Path(sweep_dir)).glob("*/.hydra/overrides.yaml")):
        job_dir = overrides_file.parent.parent
        overrides = [str(o) for o in OmegaConf.load(overrides_file)]
        entry: dict[str, Any] = {"dir": job_dir.name, "overrides": overrides,
                                 "params": _params(overrides)}
        status_file = job_dir / STATUS_FILE
        status = json.loads(status_file.read_text()) if status_file.exists() else {}
        summary_file = job_dir / SUMMARY_FILE
        if summary_file.exists():
            entry["status"] = status.get("status", "completed")
            entry["summary"] = json.loads(summary_file.read_text())
        else:
            entry["status"] = status.get("status", "running or killed")
            entry["error"] = status.get("error")
        jobs.append(entry)
    jobs.sort(key=lambda e: (not e["dir"].isdigit(), int(e["dir"]) if e["dir"].isdigit() else 0,
                             e["dir"]))
    keys = sorted({k for e in jobs for k in e["params"]})
    swept = [k for k in keys if len({json.dumps(e["params"].get(k)) for e in jobs}) > 1]
    return {"sweep_dir": str(sweep_dir), "swept": swept, "jobs": jobs}


def write_index(sweep_dir: Path) -> Path:
    path = Path(sweep_dir) / INDEX_FILE
    path.write_text(json.dumps(build_index(sweep_dir), indent=2) + "\n")
    return path


class SweepIndex(Callback):
    """Keeps ``index.json`` of a multirun current after each job."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra = config.hydra
        if hydra.mode != RunMode.MULTIRUN:
            return
        job_dir = Path(hydra.runtime.output_dir)
        failed = job_return.status == JobStatus.FAILED
        error = repr(job_return._return_value) if failed else None
        (job_dir / STATUS_FILE).write_text(json.dumps(
            {"status": "failed" if failed else "completed", "error": error}) + "\n")
        write_index(Path(hydra.sweep.dir))
