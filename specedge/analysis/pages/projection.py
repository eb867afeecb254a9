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
    ORDER,
    Plot,
    ReportError,
    Section,
    generated,
    html_table,
    png,
    render,
)
from specedge.analysis.sweep import INDEX_FILE
from specedge.base.config.checks import project_file
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


def _source(latency: dict[str, Any] | str) -> str:
    return latency if isinstance(latency, str) else str(latency.get("source", latency))


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
            f"target latency: {_source(model['target'])}; edge drafting: "
            f"{_source(model['draft_edge'])}. "
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
           for key, name in (("specedge", "fixed"), ("specedge_budgeted", "budgeted"))}})
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
              "the cheaper baseline costs (empty: dearer even with free edges). The third sets "
              "upstream's batch-1 figure beside ours.", _efficiencies(proto["points"])])


def _efficiencies(points: list[dict[str, Any]]) -> str:
    """The roofline efficiencies behind the protocol's latencies, with their sources (read
    from the profiles the simulations name)."""
    seen: dict[Path, str] = {}
    for p in points:
        for role in ("target", "draft_edge"):
            source = _source(p["latency_model"][role])
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
                sorted({_source(p["latency_model"]["target"]) for p in points}))


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
