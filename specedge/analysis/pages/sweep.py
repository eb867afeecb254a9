"""The sweep report: one row and one point per run of a Hydra multirun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from specedge.analysis.pages.page import (
    LABELS,
    PALETTE,
    Plot,
    ReportError,
    Section,
    generated,
    html_table,
    png,
    render,
)
from specedge.analysis.sweep import INDEX_FILE


def sweep_table(index: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for job in index["jobs"]:
        row: dict[str, Any] = {k: job["params"].get(k) for k in index["swept"]}
        row["status"] = job["status"]
        s = job.get("summary")
        if s is not None:
            row |= {"baseline": LABELS.get(s["baseline"], s["baseline"]),
                    "throughput tok/s": s["throughput_tok_s"], "ITL ms/token": s["itl_ms"]["mean"],
                    "k tokens / $": s["cost_efficiency_ktok_per_usd"],
                    "$ / M tokens": s["usd_per_mtok"],
                    "accepted / round": s["accepted_per_round"], "accounting": s["accounting"]}
        rows.append(row)
    return pd.DataFrame(rows)


def fig_sweep(df: pd.DataFrame, param: str) -> Plot:
    metrics = ["throughput tok/s", "ITL ms/token", "k tokens / $", "accepted / round"]
    ok = df.dropna(subset=["throughput tok/s"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6))
    for ax, metric in zip(axes, metrics, strict=True):
        sns.lineplot(ok, x=param, y=metric, hue="baseline", palette=PALETTE, marker="o", ax=ax,
                     hue_order=[b for b in PALETTE if b in set(ok["baseline"])])
        ax.set_title(metric)
        ax.set_ylabel("")
        if ax is not axes[0] and ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout()
    return png(fig, f"Metrics over {param}; one point per completed sweep job.")


def sweep_report(sweep_dir: Path, out: Path, title: str) -> Path:
    path = Path(sweep_dir) / INDEX_FILE
    if not path.exists():
        raise ReportError(f"{path}: missing; run the sweep with python -m specedge.run -m ...")
    index = json.loads(path.read_text())
    if not any("summary" in j for j in index["jobs"]):
        raise ReportError(f"{path}: no job of the sweep completed")
    df = sweep_table(index)
    params = [k for k in index["swept"] if k != "baseline"]
    sections = [Section("Jobs", tables=[html_table(df)], text=[
        f"Sweep directory {index['sweep_dir']}; swept: {', '.join(index['swept'])}."])]
    numeric = [p for p in params if pd.api.types.is_numeric_dtype(df[p])]
    for param in numeric or params[:1]:
        sections.append(Section(f"Over {param}", figures=[fig_sweep(df, param)]))
    notes = [f"job {j['dir']} ({', '.join(j['overrides'])}): {j['status']}"
             + (f": {j['error']}" if j.get("error") else "")
             for j in index["jobs"] if "summary" not in j]
    subtitle = f"{len(index['jobs'])} jobs · {generated()}"
    return render(out, title, subtitle, sections, notes)
