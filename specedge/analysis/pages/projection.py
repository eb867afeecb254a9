"""The projection report: the performance model's validation, simulated set-ups, sweeps and
the ablation, then the paper's protocol, sensitivity, maps and acceptance scenarios."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.patches

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from specedge.analysis.pages.comparison import load_run
from specedge.analysis.pages.page import (
    LABELS,
    Plot,
    ReportError,
    Section,
    generated,
    html_table,
    png,
    render,
)
from specedge.analysis.pages.scenarios import (
    latency_source,
    maps_section,
    protocol_section,
    read_projection,
    scenarios_section,
    sensitivity_section,
)
from specedge.analysis.sweep import INDEX_FILE
from specedge.base.config.run import load_run_config
from specedge.base.records import SUMMARY_FILE


def validation_table(path: Path) -> pd.DataFrame:
    rows = json.loads(Path(path).read_text())
    if not rows:
        raise ReportError(f"{path}: no validated runs")
    df = pd.DataFrame(rows)
    df["run"] = df["run"].map(lambda r: Path(r).name)
    df["error %"] = 100 * df.pop("error")
    return df


def _acceptance(summary: dict[str, Any]) -> str:
    return (f"{summary['accepted_per_round']:.2f} accepted / {summary['tokens_per_round']:.2f} "
            f"tokens a round, from {summary['trace']}")



def setup_table(summaries: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame([{
        "baseline": LABELS.get(s["baseline"], s["baseline"]), "hardware": s["hardware"],
        "target": s["target"], "draft": s["draft"] if s["baseline"] != "auto_batch" else "-",
        "concurrency": s["mean_batch_size"] if s["baseline"] != "specedge" else s["edges"],
        "throughput tok/s": s["throughput_tok_s"], "ITL ms/token": s["itl_ms"]["mean"],
        "$ / M tokens": s["usd_per_mtok"], "k tokens / $": s["cost_efficiency_ktok_per_usd"],
        "accepted / round": s["accepted_per_round"], "accounting": s["accounting"]}
        for s in summaries])
    ref = df.loc[df["baseline"] == LABELS["server_only"], "$ / M tokens"]
    if len(ref) == 1:
        df["cost vs server-only ×"] = df["$ / M tokens"] / ref.iloc[0]
    return df


def edges_table(indexes: list[dict[str, Any]]) -> pd.DataFrame:
    """The edges-per-server sweeps (one per proactive rule, each from its own trace)."""
    rows = []
    for index in indexes:
        for job in index["jobs"]:
            s = job.get("summary")
            if s is None:
                continue
            rows.append({"edges": s["edges"],
                         "proactive": job["params"].get("edge.proactive.type", "?"),
                         "throughput tok/s": s["throughput_tok_s"],
                         "ITL ms/token": s["itl_ms"]["mean"], "$ / M tokens": s["usd_per_mtok"],
                         "server busy %": 100 * s["server_utilization"],
                         "batch": s["mean_batch_size"],
                         "trace hit rate": s.get("proactive_hit_rate", math.nan)})
    if not rows:
        raise ReportError(f"{', '.join(i['sweep_dir'] for i in indexes)}: no job of the edges "
                          "sweep completed")
    return pd.DataFrame(rows).sort_values(["proactive", "edges"], ignore_index=True)


def ablation_table(measured: list[Path], setups: list[Path],
                   validation: pd.DataFrame) -> pd.DataFrame:
    """Proactive drafting and tree policy side by side: each real run (measured here, and
    re-simulated from its own records) beside the paper's setup simulated from its rounds."""
    if len(measured) != len(setups):
        raise ReportError(f"{len(measured)} ablation runs but {len(setups)} simulated setups: "
                          "give one setup per run, in the same order")
    rows = []
    for run_dir, setup_dir in zip(measured, setups, strict=True):
        m = load_run(run_dir).summary
        p = json.loads((Path(setup_dir) / SUMMARY_FILE).read_text())
        if not p.get("simulated"):
            raise ReportError(f"{setup_dir}: not a simulated run (python -m specedge.simulate)")
        name = Path(run_dir).name
        sim = validation[(validation["run"] == name)
                         & (validation["metric"] == "throughput wall tok/s")]["simulated"]
        hits, expected = m.get("proactive_hit_rate", math.nan), m.get(
            "proactive_expected_hit_rate", math.nan)
        rows.append({
            "run": name, "system": LABELS.get(m["baseline"], m["baseline"]),
            "proactive": m.get("proactive", "-") if m["baseline"] == "specedge" else "-",
            "tree": m.get("tree_policy", "fixed"),
            "tok/s (wall)": m["tokens"] / m["server_wall_s"],
            "simulated here": float(sim.iloc[0]) if len(sim) else math.nan,
            "ITL ms": m["itl_ms"]["mean"], "tokens / round": m["tokens_per_round"],
            "tree size": m.get("tree_size_mean", math.nan),
            "hit rate": hits, "expected hit rate": expected,
            "paper setup tok/s (SIMULATED)": p["throughput_tok_s"],
            "paper setup ITL ms (SIMULATED)": p["itl_ms"]["mean"],
            "paper setup $ / M tokens (SIMULATED)": p["usd_per_mtok"]})
    return pd.DataFrame(rows)


def fig_edges(df: pd.DataFrame) -> Plot:
    metrics = ["throughput tok/s", "ITL ms/token", "$ / M tokens", "server busy %"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6))
    for ax, metric in zip(axes, metrics, strict=True):
        sns.lineplot(df, x="edges", y=metric, hue="proactive", marker="o", ax=ax)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{metric} (simulated)")
        ax.set_ylabel("")
        if ax is not axes[0] and ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout()
    return png(fig, "SIMULATED: SpecEdge with 1 to 256 edges per server, proactive drafting "
                     "'disabled', upstream's rule ('excluded') and the speculation cache "
                     "('cache'); one point per simulation.")


HELDOUT_BOUND = 0.10  # issue: every held-out figure within 10 %


def heldout_tables(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every held-out draw's configuration (read from its SpecEdge run, as it ran) and every
    validated figure of every draw."""
    frames, configs = [], []
    for path in paths:
        rows = json.loads(Path(path).read_text())
        if not rows:
            raise ReportError(f"{path}: no validated runs")
        df = pd.DataFrame(rows)
        spec = df.loc[df["baseline"] == "specedge", "run"]
        if spec.empty:
            raise ReportError(f"{path}: no SpecEdge run (a held-out draw validates a SpecEdge "
                              "run and its server-only twin)")
        run_dir = Path(spec.iloc[0])
        cfg = load_run_config(run_dir)
        link = cfg.hardware.link
        df["draw"] = run_dir.name
        frames.append(df)
        configs.append({
            "draw": run_dir.name, "edges": cfg.server.num_clients,
            "dataset": cfg.dataset.path or cfg.dataset.name.value,
            "requests": cfg.dataset.max_requests, "proactive": cfg.edge.proactive.type.value,
            "tree policy": cfg.edge.tree_policy.value, "budget": cfg.edge.max_budget,
            "batch": cfg.server.max_batch_size,
            "link": f"{link.delay_ms:g}±{link.jitter_ms:g} ms, "
                    f"{f'{link.bandwidth_mbps:g} Mb/s' if link.bandwidth_mbps else 'unlimited'}, "
                    f"loss {link.loss:g}",
            "worst |error| %": 100 * df["error"].abs().max()})
    figures = pd.concat(frames, ignore_index=True)
    figures["run"] = figures["run"].map(lambda r: Path(r).name)
    figures["error %"] = 100 * figures.pop("error")
    return pd.DataFrame(configs), figures[["draw", "run", "baseline", "metric", "measured",
                                           "simulated", "error %"]]


def heldout_section(paths: list[Path]) -> Section:
    configs, figures = heldout_tables(paths)
    within = int((figures["error %"].abs() <= 100 * HELDOUT_BOUND).sum())
    worst = figures.loc[figures["error %"].abs().idxmax()]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    sns.stripplot(figures, x="error %", y="metric", hue="draw", ax=ax, size=6, jitter=0.15)
    for x in (-100 * HELDOUT_BOUND, 100 * HELDOUT_BOUND):
        ax.axvline(x, color="grey", linestyle="--", linewidth=1)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_ylabel("")
    fig.tight_layout()
    return Section("Held-out configurations: measured vs simulated", tables=[
        html_table(configs), html_table(figures)], figures=[png(
            fig, "Every figure of every held-out run: simulated error against measured (the "
                 "dashed lines: +-10 %).")], text=[
        f"{len(configs)} configurations drawn at random (seeded) from validation.heldout's "
        "space, never used to fit or tune the model; each ran for real beside a server-only "
        "run of the same prompts at the same concurrency, and both were re-simulated from "
        f"their own records. {within} of {len(figures)} figures within "
        f"{100 * HELDOUT_BOUND:.0f} %; largest error {worst['error %']:+.1f} % "
        f"({worst['run']}, {worst['metric']})."])


def projection_report(setup_dirs: list[Path], sweep_dirs: list[Path], validation: Path,
                      out: Path, title: str, ablation: list[Path] | None = None,
                      ablation_setups: list[Path] | None = None,
                      scenarios: Path | None = None,
                      heldout: list[Path] | None = None) -> Path:
    summaries = [json.loads((Path(d) / SUMMARY_FILE).read_text()) for d in setup_dirs]
    if not all(s.get("simulated") for s in summaries):
        raise ReportError("the setup runs must be simulated ones (python -m specedge.simulate)")
    indexes = []
    for sweep_dir in sweep_dirs:
        index_path = Path(sweep_dir) / INDEX_FILE
        if not index_path.exists():
            raise ReportError(f"{index_path}: missing; run python -m specedge.simulate -m ...")
        indexes.append(json.loads(index_path.read_text()))
    edges = edges_table(indexes)
    val = validation_table(validation)
    worst = val.loc[val["error %"].abs().idxmax()]
    s0 = next((s for s in summaries if s["baseline"] == "specedge"), summaries[0])
    model = s0["latency_model"]
    sections = [
        Section("Validation: measured vs simulated on this machine", tables=[html_table(val)],
                text=[
                    "Real runs of the embedded default re-simulated from their own config, "
                    "forwards (latency fitted on the run's own server records) and rounds "
                    "(python -m specedge.simulate --validate). Largest error: "
                    f"{worst['error %']:+.1f} % ({worst['run']}, {worst['metric']})."]),
        Section("The paper's setup (SIMULATED)", tables=[html_table(setup_table(summaries))], text=[
            f"Simulated, not measured. Hardware {s0['hardware']} (prices: server "
            f"${s0['prices']['server_per_hour']}/h, edge ${s0['prices']['edge_per_hour']}/h); "
            f"target latency: {latency_source(model['target'])}; edge drafting: "
            f"{latency_source(model['draft_edge'])}. "
            f"Acceptance assumed: {_acceptance(s0)}."]),
        Section("Edges per server (SIMULATED)", figures=[fig_edges(edges)],
                tables=[html_table(edges)], text=[
                    "Where the server saturates (busy near 100 %) throughput stops growing and "
                    "ITL grows with the queue; where proactive drafting pays, its ITL is below "
                    "the 'disabled' line. Each rule's rounds and hit rate come from its own "
                    "real run (trace hit rate)."]),
    ]
    if ablation:
        sections.insert(1, Section(
            "Ablation: proactive drafting and tree policy", tables=[html_table(ablation_table(
                ablation, ablation_setups or [], val))], text=[
                "Real runs side by side on this machine (the same prompts; SpecEdge with the "
                "validation's edges): proactive drafting off, upstream's rule ('excluded') and "
                "the speculation cache ('cache'); trees fixed or adaptive. 'simulated here' "
                "re-simulates each run from its own records; the paper-setup columns are "
                "SIMULATED from its rounds and hits. 'expected hit rate' is what the outcome "
                "model predicted (the sum of its guesses' probabilities), beside the hit rate "
                "measured. On this CPU the edges share the server's cores, so drafting ahead "
                "takes cycles from verification; the simulated setup gives each edge its own "
                "device."]))
    sections[2].title = "The paper's setup at equal concurrency (SIMULATED)"
    if heldout:
        sections.insert(1, heldout_section(heldout))
    if scenarios is not None:
        data = read_projection(scenarios)
        sections[:0] = [protocol_section(data), sensitivity_section(data), maps_section(data),
                        scenarios_section(data)]
    subtitle = f"simulated · {len(summaries)} systems · {len(edges)} sweep points · {generated()}"
    notes = ["Every figure and table except the validation and the ablation's measured columns "
             "is SIMULATED (specedge.analysis.simulate), never measured on a GPU: latencies come "
             "from "
             "derived profiles (specedge.base.roofline: datasheet peaks at bandwidth and compute "
             "efficiencies taken from named measured sources, see each profile's 'sources'), "
             "acceptance from the labelled scenarios."]
    return render(out, title, subtitle, sections, notes)
