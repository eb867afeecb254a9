"""Validation of the performance model: real runs re-simulated from their own config,
forwards and rounds, measured beside simulated."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from specedge.analysis.metrics import write_summary
from specedge.analysis.simulation.events import simulate
from specedge.analysis.simulation.plan import plan_of_run
from specedge.base.config.baseline import BaselineName
from specedge.base.records import SUMMARY_FILE


def compare(measured: dict[str, Any], simulated: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Measured and simulated values of the validated metrics."""
    def values(s: dict[str, Any]) -> dict[str, float]:
        return {"throughput wall tok/s": s["tokens"] / s["server_wall_s"],
                "throughput busy tok/s": s["tokens"] / s["server_busy_s"],
                "ITL ms": s["itl_ms"]["mean"]}
    m, s = values(measured), values(simulated)
    return {k: (m[k], s[k]) for k in m}


def validate(run_dirs: list[Path], out_root: Path, seed: int = 0) -> list[dict[str, Any]]:
    """Measured vs simulated for every run, and for each SpecEdge run its ratios to the
    server-only run among them (the comparison a reader draws from the reports)."""
    rows, values = [], {}
    for run_dir in run_dirs:
        measured = json.loads((run_dir / SUMMARY_FILE).read_text()) \
            if (run_dir / SUMMARY_FILE).exists() else write_summary(run_dir)
        simulated = simulate(plan_of_run(run_dir, seed), out_root / run_dir.name)
        values[run_dir] = (measured["baseline"], compare(measured, simulated))
        for metric, (m, s) in values[run_dir][1].items():
            rows.append(_row(run_dir, measured["baseline"], metric, m, s))
    reference = [metrics for baseline, metrics in values.values()
                 if baseline == BaselineName.server_only.value]
    for run_dir, (baseline, metrics) in values.items():
        if baseline != BaselineName.specedge.value or len(reference) != 1:
            continue
        for metric, (m, s) in metrics.items():
            ref_m, ref_s = reference[0][metric]
            rows.append(_row(run_dir, baseline, f"{metric} / server-only", m / ref_m,
                             s / ref_s))
    return rows


def _row(run_dir: Path, baseline: str, metric: str, m: float, s: float) -> dict[str, Any]:
    return {"run": str(run_dir), "baseline": baseline, "metric": metric, "measured": m,
            "simulated": s, "error": (s - m) / m if m and not math.isnan(m) else math.nan}
