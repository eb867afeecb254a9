"""The projection report's simulated sections from ``specedge projection``'s output: the
paper's protocol, the sensitivity table, the maps of where SpecEdge pays and the acceptance
scenarios."""

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

from specedge.analysis.pages.page import (
    LABELS,
    ORDER,
    Plot,
    ReportError,
    Section,
    html_table,
    png,
)
from specedge.base.config.checks import project_file


def latency_source(latency: dict[str, Any] | str) -> str:
    return latency if isinstance(latency, str) else str(latency.get("source", latency))


def read_projection(directory: Path) -> dict[str, Any]:
    data = {}
    for name in ("scenarios", "protocol", "sensitivity", "maps"):
        path = Path(directory) / f"{name}.json"
        if not path.exists():
            raise ReportError(f"{path}: missing; run python -m specedge.analysis.projection "
                              f"out_dir={directory}")
        data[name] = json.loads(path.read_text())
    if not all(data[k]["simulated"] for k in ("protocol", "sensitivity", "maps")):
        raise ReportError(f"{directory}: not simulated projection results")
    return data


def _x(value: float) -> str:
    return f"{value:.2f}x"


# The projection's systems: the measured pages' three, and SpecEdge under the server's goodput
# budget (server.verify_budget=goodput) beside its fixed trees.
PROJECTED = [*ORDER, "specedge_budgeted"]
PROJECTED_LABELS = {**LABELS, "specedge": "SpecEdge (fixed trees)",
                    "specedge_budgeted": "SpecEdge (goodput budget)"}
PROJECTED_PALETTE = dict(zip(PROJECTED, sns.color_palette("colorblind", 4), strict=True))


def protocol_section(data: dict[str, Any]) -> Section:
    """The paper's protocol per scenario, upstream's definitions, the paper's figures beside."""
    proto = data["protocol"]
    paper = proto["paper"]
    t = pd.DataFrame(proto["table"])
    labels = {s["name"]: s["label"] for s in data["scenarios"]}
    table = pd.DataFrame({
        "acceptance (scenario)": t["scenario"].map(labels), "batch B": t["batch"],
        "SpecEdge edges": t["edges"],
        "autoregressive $/M": t["auto_batch_usd_per_mtok"],
        "server-only $/M": t["server_only_usd_per_mtok"],
        "SpecEdge $/M": t["specedge_usd_per_mtok"],
        "SpecEdge budgeted $/M": t["specedge_budgeted_usd_per_mtok"],
        "server busy %": 100 * t["server_utilization"],
        "cost efficiency x (paper 1.91)": t["cost_efficiency_x"],
        "throughput x (paper 2.22)": t["throughput_x"],
        "ITL lower % (paper 11.2)": 100 * t["itl_reduction"]})
    table.columns = [c.replace("1.91", f"{paper['cost_efficiency_x']:g}")
                     .replace("2.22", f"{paper['throughput_x']:g}")
                     .replace("11.2", f"{100 * paper['itl_reduction']:.1f}")
                     for c in table.columns]
    for key, short in (("cost_efficiency_x", "cost"), ("throughput_x", "throughput"),
                       ("itl_reduction", "ITL")):
        scale = 100 if key == "itl_reduction" else 1
        table[f"{short} gap to paper{' (points)' if scale == 100 else ''}"] = (
            scale * t[f"{key}_gap"])
    budget = pd.DataFrame({
        "acceptance (scenario)": t["scenario"].map(labels), "batch B": t["batch"],
        "budgeted: nodes verified a round": t["budgeted_verified_size"],
        "fixed: server tok/s over autoregressive": t["specedge_busy_vs_auto_batch"],
        "budgeted: server tok/s over autoregressive": t["specedge_budgeted_busy_vs_auto_batch"],
        "budgeted: cost efficiency x": t["budgeted_cost_efficiency_x"],
        **{f"{name}: break-even edge $/h ({acc})": t[f"{key}_break_even_usd_h_{acc}"]
           for acc in ("upstream", "ours")
           for key, name in (("specedge", "fixed"), ("specedge_budgeted", "budgeted"))},
        **{f"budgeted against fixed break-even ({acc})": t[f"budgeted_break_even_{acc}"]
           for acc in ("upstream", "ours")}})
    gaps = []
    for _, r in t[t["batch"] == 1].iterrows():
        gaps.append({"acceptance (scenario)": labels[r["scenario"]], **{
            f"{LABELS[s]} $/M (paper / simulated)":
                f"{paper['usd_per_mtok_batch1'][s]:g} / {r[f'{s}_usd_per_mtok']:.2f}"
            for s in ORDER}})
    fig, axes = plt.subplots(1, t["scenario"].nunique(), figsize=(4.2 * t["scenario"].nunique(),
                                                                   3.6), squeeze=False)
    for ax, (scenario, g) in zip(axes[0], t.groupby("scenario", sort=False), strict=True):
        for system in PROJECTED:
            ax.plot(g["batch"], g[f"{system}_usd_per_mtok"], marker="o",
                    label=PROJECTED_LABELS[system], color=PROJECTED_PALETTE[system])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{scenario} (simulated)", fontsize=10)
        ax.set_xlabel("batch size B")
        ax.set_ylabel("$ per 1M tokens")
    axes[0][0].legend()
    fig.tight_layout()
    return Section(
        "Headline: the paper's protocol (SIMULATED)", anchor="headline",
        tables=[html_table(table), html_table(budget), html_table(pd.DataFrame(gaps))],
        figures=[png(fig, "SIMULATED: $ per 1M tokens over batch size, upstream's metric "
                           "definitions, one panel per acceptance scenario. SpecEdge pays "
                           "where its line lies below the others.")],
        text=[f"The paper's protocol, simulated: at batch size B, server-only and "
              f"autoregressive batch B requests; SpecEdge serves {proto['edges_per_batch']} x B "
              f"edges in pipeline groups of B. Setup: {', '.join(proto['setup'])}. Figures use "
              "upstream's metric definitions (ITL a ratio of sums; edges billed for their "
              "whole rounds; server-only throughput without prefill steps). The paper's "
              f"figures: {paper['source']}. The second table sets SpecEdge with every tree "
              "verified whole (fixed) beside SpecEdge under the server's goodput budget "
              "(server.verify_budget=goodput: one budget of nodes per step, shared by the "
              "batch's trees by their survival, the edges drafting about their share; the "
              "pipeline's group count by the same objective, server.pipeline_groups=goodput: "
              "two groups of B, or one of every edge when that is the shorter cycle): server "
              "throughput as tokens per busy server second over autoregressive batching's, "
              "and the break-even edge price, the $/h of an edge at which SpecEdge costs what "
              "the cheaper baseline costs (empty: dearer even with free edges), at the "
              "protocol's seed; budgeted against fixed compares the two over paired draws "
              "(the same seeds, priced against the first seed's baselines): higher or lower "
              "only where every draw agrees, equal where every draw is, a tie where the "
              "draws disagree (the difference is inside their noise). The third sets "
              "upstream's batch-1 figure beside ours.", _efficiencies(proto["points"])])


def _efficiencies(points: list[dict[str, Any]]) -> str:
    """The roofline efficiencies behind the protocol's latencies, with their sources (read
    from the profiles the simulations name)."""
    seen: dict[Path, str] = {}
    for p in points:
        for role in ("target", "draft_edge"):
            source = latency_source(p["latency_model"][role])
            path = project_file(source.split(" (")[0])
            if path in seen or not path.is_file():
                continue
            profile = json.loads(path.read_text())
            e = profile.get("parameters", {})
            seen[path] = (f"{profile.get('device_name', path)}: bandwidth "
                          f"{e.get('eff_bw', math.nan):.3g}, compute "
                          f"{e.get('eff_compute', math.nan):.3g} of the datasheet peaks "
                          f"({profile.get('sources', {}).get('efficiencies', 'no source')})")
    return ("Latencies: derived roofline profiles, not measured. Efficiencies: "
            + "; ".join(seen.values()) + ".") if seen else "Latencies: " + "; ".join(
                sorted({latency_source(p["latency_model"]["target"]) for p in points}))


def sensitivity_section(data: dict[str, Any]) -> Section:
    sens = data["sensitivity"]
    paper = data["protocol"]["paper"]
    rows = pd.DataFrame(sens["rows"])
    table = pd.DataFrame({
        "assumption": rows["assumption"], "value": rows["value"],
        "cost efficiency x": rows["cost_efficiency_x"],
        "throughput x": rows["throughput_x"], "ITL lower %": 100 * rows["itl_reduction"]})
    paper_row = pd.DataFrame([{"assumption": "the paper", "value": "measured (NeurIPS 2025)",
                               "cost efficiency x": paper["cost_efficiency_x"],
                               "throughput x": paper["throughput_x"],
                               "ITL lower %": 100 * paper["itl_reduction"]}])
    return Section(
        "Sensitivity: what moves the headline (SIMULATED)", anchor="sensitivity",
        tables=[html_table(pd.concat([paper_row, table], ignore_index=True))],
        text=[f"SpecEdge against server-only at batch {sens['headline_batch']}, first under "
              "the baseline assumptions, then with one assumption changed at a time: the "
              "acceptance (each scenario), the efficiency (the single value once fitted on "
              "host-bound data, for bandwidth and compute alike), the edges per batch, and the "
              "accounting ('ours': SpecEdge billed for wall time, the baselines for busy time; "
              "'wall'/'busy': every system alike; the baseline row uses upstream's "
              "definitions).", *sens["verdict"]])


def _break_even(ax: Any, ratios: Any) -> None:
    """Black lines between neighbouring cells on either side of 1: the break-even line."""
    rows, cols = ratios.shape
    for i in range(rows):
        for j in range(cols):
            if j + 1 < cols and (ratios[i, j] < 1) != (ratios[i, j + 1] < 1):
                ax.plot([j + 1, j + 1], [i, i + 1], color="black", linewidth=2.5)
            if i + 1 < rows and (ratios[i, j] < 1) != (ratios[i + 1, j] < 1):
                ax.plot([j, j + 1], [i + 1, i + 1], color="black", linewidth=2.5)


def _map_figure(cells: pd.DataFrame, hardware: str, point: dict[str, Any],
                point_tokens: float, prefix: str = "") -> Plot:
    """``prefix`` "budgeted_": SpecEdge under the goodput budget; "": with fixed trees."""
    rtts = sorted(cells["rtt_ms"].unique())
    system = "goodput budget" if prefix else "fixed trees"
    fig, axes = plt.subplots(2, len(rtts), figsize=(4.0 * len(rtts), 6.6), squeeze=False)
    for row, (key, name) in enumerate(((f"{prefix}vs_server_only", "server-only"),
                                       (f"{prefix}vs_auto_batch", "autoregressive"))):
        for ax, rtt in zip(axes[row], rtts, strict=True):
            g = cells[cells["rtt_ms"] == rtt].pivot_table(
                index="tokens_per_round", columns="concurrency", values=key)
            # Colour by log2 of the ratio (blue cheaper, red dearer), labelled by the ratio.
            sns.heatmap(g.map(math.log2), ax=ax, annot=g.values, fmt=".2f", cmap="RdBu_r",
                        center=0, vmin=-3, vmax=3, cbar=False, annot_kws={"fontsize": 7})
            _break_even(ax, g.values)
            if hardware == point["hardware"] and rtt == point["rtt_ms"] and \
                    point["concurrency"] in g.columns:
                x = list(g.columns).index(point["concurrency"]) + 0.5
                ys = list(g.index)
                y = min(range(len(ys)), key=lambda i: abs(ys[i] - point_tokens))
                ax.add_patch(matplotlib.patches.Rectangle((x - 0.5, y), 1, 1, fill=False,
                                                          edgecolor="gold", linewidth=3))
            ax.invert_yaxis()
            ax.set_title(f"SpecEdge ({system}) / {name} cost, RTT {rtt:g} ms", fontsize=9)
            ax.set_xlabel("concurrency (users)")
            ax.set_ylabel("tokens per round")
    fig.suptitle(f"{hardware}, SpecEdge with {system} (SIMULATED)")
    fig.tight_layout()
    h = cells.rename(columns={f"{prefix}vs_server_only": "so", f"{prefix}vs_auto_batch": "ab"})
    cheaper_so = int((h["so"] < 1).sum())
    cheaper_ab = int((h["ab"] < 1).sum())
    best = h.loc[h["ab"].idxmin()]
    sentence = (f"SIMULATED, {hardware}: the cost per token of SpecEdge with {system} over "
                f"server-only's (top) "
                f"and autoregressive batching's (bottom) at the same concurrency; blue cells "
                f"(< 1) are where SpecEdge is cheaper; the black break-even line separates "
                f"them from the red. It is "
                f"cheaper than server-only in {cheaper_so} of {len(h)} cells and than "
                f"autoregressive in {cheaper_ab}; its best against autoregressive is "
                f"{best['ab']:.2f} at concurrency {int(best['concurrency'])}, "
                f"{best['tokens_per_round']:g} tokens a round, RTT {best['rtt_ms']:g} ms.")
    if hardware == point["hardware"]:
        sentence += (f" The gold box marks the paper's operating point (concurrency "
                     f"{point['concurrency']}, RTT {point['rtt_ms']:g} ms) at the main "
                     f"scenario's {point_tokens:.2f} tokens a round.")
    return png(fig, sentence)


def maps_section(data: dict[str, Any]) -> Section:
    m = data["maps"]
    cells = pd.DataFrame(m["cells"])
    main = next(r for r in data["protocol"]["table"] if r["scenario"] == m["scenario"])
    point_tokens = float(next(p["tokens_per_round"] for p in data["protocol"]["points"]
                              if p["scenario"] == m["scenario"] and p["system"] == "specedge"
                              and p["batch"] == main["batch"]))
    figures = [_map_figure(cells[cells["hardware"] == hw], hw, m["paper_point"], point_tokens,
                           prefix)
               for hw in m["grid"]["hardware"] for prefix in ("", "budgeted_")]
    return Section(
        "Where SpecEdge pays: maps (SIMULATED)", anchor="maps", figures=figures, text=[
            "Each cell is one pair of point simulations (its overrides are in maps.json): "
            "SpecEdge with C edges in two pipeline groups (budgeted: two, or one when that "
            "is the shorter cycle) against the baseline batching all C users, upstream's "
            "metric definitions. Tokens per round set the acceptance "
            "(the two nearest accepted counts, the main scenario's trees and output lengths "
            f"kept: {m['scenario']}); the round-trip time is twice the one-way link delay. "
            "Server-only does not depend on the link, autoregressive on neither axis."])


def scenarios_section(data: dict[str, Any]) -> Section:
    points = pd.DataFrame(data["protocol"]["points"])
    measured = points[points["system"] == "specedge"].groupby("scenario")[
        "tokens_per_round"].mean()
    table = pd.DataFrame([{"scenario": s["name"], "what": s["label"], "source": s["source"],
                           "tokens / round (simulated)": measured.get(s["name"], math.nan)}
                          for s in data["scenarios"]])
    return Section("Acceptance scenarios", anchor="scenarios", tables=[html_table(table)], text=[
        "Every scenario is labelled: traces are rounds measured here (on a CPU, with this "
        "project's pairs); published ones are chain acceptance reported elsewhere, turned into "
        "a distribution by a constant per-token acceptance rate, applied to the Qwen3-14B "
        "setup's latencies."])
