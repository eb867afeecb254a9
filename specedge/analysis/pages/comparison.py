"""The comparison report: runs side by side (cost-normalized throughput, ITL, acceptance,
where a round's time goes, the server timeline), their replies and the benchmark."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from specedge.analysis.metrics import UPSTREAM_DEFINITIONS, itl_ms, run_summary
from specedge.analysis.pages.page import (
    LABELS,
    ORDER,
    PALETTE,
    Plot,
    ReportError,
    Section,
    generated,
    html_table,
    png,
    render,
)
from specedge.analysis.pages.replies import replies_section
from specedge.analysis.run_records import RunRecords, load_records
from specedge.base.records import RUN_CONFIG_FILE, SUMMARY_FILE

TIMELINE_STEPS = 40  # server steps shown in the timeline's zoom




@dataclass
class Run:
    summary: dict[str, Any]
    records: RunRecords

    @property
    def label(self) -> str:
        return LABELS.get(self.summary["baseline"], self.summary["baseline"])

    @property
    def pair(self) -> str:
        s = self.summary
        return f"{s.get('model', '?')} ({Path(str(s.get('target', '?'))).name} / " \
               f"{Path(str(s.get('draft', '?'))).name})"


def load_run(run_dir: Path) -> Run:
    """A run's summary (recomputed from its records when summary.json is missing)."""
    run_dir = Path(run_dir)
    path = run_dir / SUMMARY_FILE
    summary = json.loads(path.read_text()) if path.exists() else run_summary(run_dir)
    return Run(summary, load_records(run_dir))


def comparison_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run; ratios against the server-only run of the same pair, as in the paper."""
    rows = []
    for run in runs:
        s = run.summary
        rows.append({
            "pair": run.pair, "baseline": run.label, "accounting": s["accounting"],
            "tokens": s["tokens"], "server s": s["server_time_s"],
            "throughput tok/s": s["throughput_tok_s"], "ITL ms/token": s["itl_ms"]["mean"],
            "k tokens / $": s["cost_efficiency_ktok_per_usd"], "$ / M tokens": s["usd_per_mtok"],
            **_upstream_columns(s),
            "accepted / round": s["accepted_per_round"], "batch": s["mean_batch_size"],
            "server busy %": 100 * s["server_utilization"],
            "proactive ratio": s["proactive_ratio"], "bytes / node": s["bytes_per_node"]})
    df = pd.DataFrame(rows)
    for col, name in (("throughput tok/s", "throughput ×"), ("ITL ms/token", "ITL ×"),
                      ("k tokens / $", "cost eff. ×")):
        ref = df[df["baseline"] == LABELS["server_only"]].set_index("pair")[col]
        df[name] = [v / ref[p] if p in ref.index else math.nan
                    for p, v in zip(df["pair"], df[col], strict=True)]
    order = {LABELS[b]: i for i, b in enumerate(ORDER)}
    return df.sort_values(["pair", "baseline"], key=lambda c: c.map(order) if
                          c.name == "baseline" else c, ignore_index=True)


def _upstream_columns(s: dict[str, Any]) -> dict[str, float]:
    """Upstream's definitions beside ours (summaries written before they existed: none)."""
    up = s.get("upstream")
    if up is None:
        return {}
    return {"ITL ms (upstream)": up["itl_ms"], "$ / M (upstream)": up["usd_per_mtok"],
            "tok/s (upstream)": up["throughput_tok_s"]}


def _bars(df: pd.DataFrame, y: str, ax: Any, title: str) -> None:
    sns.barplot(df, x="pair", y=y, hue="baseline", palette=PALETTE, ax=ax,
                hue_order=[b for b in PALETTE if b in set(df["baseline"])])
    ax.set_title(title)
    ax.set_xlabel("")
    for container in ax.containers:
        ax.bar_label(container, fmt="%.3g", fontsize=8)


def fig_headline(df: pd.DataFrame) -> Plot:
    fig, ax = plt.subplots(figsize=(7, 4))
    _bars(df, "$ / M tokens", ax, "Dollars per million tokens (lower is better)")
    ax.set_ylabel("$ per million tokens")
    return png(fig, "Cost per million generated tokens for each target/draft pair: server "
                     "time at the server's price plus edge busy time at the edge's price.")


def fig_throughput_cost(df: pd.DataFrame) -> Plot:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _bars(df, "throughput tok/s", axes[0], "Server throughput (tokens / server s)")
    _bars(df, "k tokens / $", axes[1], "Cost efficiency (thousand tokens / $)")
    for ax in axes[1:]:
        ax.get_legend().remove()
    return png(fig, "Throughput per second of charged server time, and tokens per dollar.")


def _rounds(runs: list[Run]) -> pd.DataFrame:
    frames = []
    for run in runs:
        r = run.records.rounds.copy()
        r["baseline"], r["pair"] = run.label, run.pair
        r["itl_ms"] = itl_ms(r)
        frames.append(r)
    return pd.concat(frames, ignore_index=True)


def fig_itl(rounds: pd.DataFrame) -> Plot:
    later = rounds.dropna(subset=["itl_ms"])
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.boxplot(later, x="baseline", y="itl_ms", hue="baseline", palette=PALETTE, ax=ax,
                order=[b for b in PALETTE if b in set(later["baseline"])], showfliers=False)
    sns.stripplot(later.sample(min(len(later), 3000), random_state=0), x="baseline", y="itl_ms",
                  color="black", alpha=0.15, size=2, ax=ax,
                  order=[b for b in PALETTE if b in set(later["baseline"])])
    ax.set_ylabel("ms per token")
    ax.set_xlabel("")
    ax.set_title("Inter-token latency of non-prefill rounds")
    return png(fig, "Each point is one round of one request: its latency divided by the "
                     "tokens it produced (box: quartiles; whiskers: 1.5 IQR).")


def fig_accepted(rounds: pd.DataFrame) -> Plot:
    later = rounds[~rounds["prefill"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.histplot(later, x="accepted", hue="baseline", palette=PALETTE, discrete=True,
                 stat="probability", common_norm=False, multiple="dodge", shrink=0.8, ax=ax)
    ax.set_xlabel("drafted tokens accepted per round (bonus token not counted)")
    ax.set_title("Accepted tokens per round")
    return png(fig, "Share of rounds by number of accepted draft tokens; auto-batch drafts "
                     "nothing, so all its rounds accept 0.")


def fig_breakdown(rounds: pd.DataFrame) -> Plot:
    parts = ["draft", "network", "queue", "verify", "late", "other"]
    mean = rounds.groupby("baseline")[[f"{p}_s" for p in parts]].mean() * 1e3
    mean.columns = parts
    mean = mean.reindex([b for b in PALETTE if b in mean.index])
    fig, ax = plt.subplots(figsize=(8, 4))
    mean.plot.barh(stacked=True, ax=ax, color=sns.color_palette("Set2", len(parts)))
    ax.set_xlabel("mean ms per round")
    ax.set_ylabel("")
    ax.set_title("Where a round's time goes")
    ax.invert_yaxis()
    return png(fig, "Per-round time: drafting, network (SpecEdge: the round trip minus the "
                     "server's queue and verify times, which it sends back in each reply), "
                     "queueing at the server, the batched target forward, late (the reply had "
                     "arrived but the edge was still drafting proactively), and the rest "
                     "(server-side baselines: the other requests' drafting in the same step).")


def fig_categories(rounds: pd.DataFrame) -> Plot:
    per = (rounds.dropna(subset=["itl_ms"]).groupby(["category", "baseline"])
           .agg(itl_ms=("itl_ms", "mean"), accepted=("accepted", "mean")).reset_index())
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    hue_order = [b for b in PALETTE if b in set(per["baseline"])]
    sns.barplot(per, x="category", y="itl_ms", hue="baseline", palette=PALETTE, ax=axes[0],
                hue_order=hue_order)
    sns.barplot(per, x="category", y="accepted", hue="baseline", palette=PALETTE, ax=axes[1],
                hue_order=hue_order)
    axes[0].set_ylabel("ITL (ms per token)")
    axes[1].set_ylabel("accepted tokens per round")
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes:  # one legend above both panels, clear of the bars
        ax.get_legend().remove()
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=30)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False,
               bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return png(fig, "By dataset category: inter-token latency and accepted tokens per round.")


def fig_timeline(run: Run) -> Plot:
    """Gantt chart of one SpecEdge run: server forwards and each edge's phases, one time axis."""
    server, rounds = run.records.server, run.records.rounds
    t0 = float(server["t_start"].min())
    end = float(server["t_end"].iloc[min(TIMELINE_STEPS, len(server)) - 1])
    rounds = rounds[(rounds["t_start"] < end)]
    clients = sorted(rounds["client_id"].unique())
    lanes = ["server", *[f"edge {c}" for c in clients]]
    fig, ax = plt.subplots(figsize=(12, 1.0 + 0.45 * len(lanes)))
    colors = {"verify": "#4c72b0", "draft": "#55a868", "proactive": "#c44e52", "wait": "#dddddd"}

    def bars(lane: int, spans: pd.DataFrame, color: str, height: float = 0.7) -> None:
        ax.broken_barh(list(zip(spans["a"] - t0, spans["b"] - spans["a"], strict=True)),
                       (lane - height / 2, height), color=color)

    shown = server[server["t_start"] < end]
    bars(0, pd.DataFrame({"a": shown["t_end"] - shown["busy_s"], "b": shown["t_end"]}),
         colors["verify"])
    for lane, c in enumerate(clients, start=1):
        r = rounds[rounds["client_id"] == c]
        bars(lane, pd.DataFrame({"a": r["t_sent"], "b": r["t_end"]}), colors["wait"])
        bars(lane, pd.DataFrame({"a": r["t_start"], "b": r["t_sent"]}), colors["draft"])
        pro = r[r["proactive_s"] > 0]
        bars(lane, pd.DataFrame({"a": pro["t_sent"], "b": pro["t_sent"] + pro["proactive_s"]}),
             colors["proactive"], 0.35)
    ax.set_yticks(range(len(lanes)), lanes)
    ax.invert_yaxis()
    ax.set_xlim(0, end - t0)
    ax.set_xlabel("seconds since the first server step")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax.legend(handles, ["server verify", "edge draft", "proactive draft", "edge waits"],
              ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title(f"SpecEdge timeline, first {len(shown)} server steps", pad=24)
    scheduler = run.summary.get("scheduler")  # absent from summaries of older runs
    how = {"pipeline": "Pipeline-aware scheduling: the server alternates between groups of "
                       "edges, so while one group waits the other drafts.",
           None: ""}.get(scheduler, f"Scheduler: {scheduler} batching.")
    return png(fig, "Server forwards (blue) and each edge's drafting (green), proactive "
                     "drafting while it waits (red, thin) and waiting for the reply (grey). "
                     + how)


def fig_budget(run: Run) -> Plot | None:
    """A goodput-budget run: the drafted nodes each step kept against its batch size, and
    whether the server would have idled anyway (the next pipeline group not back); the
    tokens the budget expected against those the step emitted. None for other runs."""
    steps = run.records.server
    steps = steps[steps["expected_tokens"] > 0]
    if steps.empty:
        return None
    steps = steps.assign(load=steps["free_s"].map(
        lambda f: "server would idle (free)" if f > 0 else "server is the bottleneck"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.stripplot(steps, x="batch_size", y="verified", hue="load", dodge=True, alpha=0.5,
                  ax=axes[0])
    sns.pointplot(steps, x="batch_size", y="sent", color="black", markers="_", linestyles="",
                  errorbar=None, ax=axes[0])
    axes[0].set_xlabel("batch size (trees in the step)")
    axes[0].set_ylabel("drafted nodes verified (K)")
    axes[0].set_title("The budget's K per step (black: nodes sent)")
    axes[1].scatter(steps["expected_tokens"], steps["emitted_tokens"], s=8, alpha=0.5)
    top = float(max(steps["expected_tokens"].max(), steps["emitted_tokens"].max()))
    axes[1].plot([0, top], [0, top], color="gray", linewidth=1)
    axes[1].set_xlabel("tokens the budget expected")
    axes[1].set_ylabel("tokens the step emitted")
    axes[1].set_title("Expected against realised, per step")
    kept = steps["verified"].sum() / max(1, steps["sent"].sum())
    ratio = steps["emitted_tokens"].sum() / steps["expected_tokens"].sum()
    return png(fig, f"The server's goodput budget ({run.pair}, {run.label}): it verified "
                    f"{kept:.0%} of the drafted nodes sent; its steps emitted {ratio:.2f}x the "
                    "tokens it expected (above 1: the edges' survivals underestimate "
                    "acceptance, so the budget keeps fewer nodes than it would with exact ones).")


def _prices(runs: list[Run]) -> pd.DataFrame:
    rows = {json.dumps(r.summary["prices"], sort_keys=True): r.summary["prices"] for r in runs}
    return pd.DataFrame([{"hardware": p["hardware"], "server GPU": p["server_gpu"],
                          "server $/h": p["server_per_hour"], "edge GPU": p["edge_gpu"],
                          "edge $/h": p["edge_per_hour"]} for p in rows.values()])


def _notes(runs: list[Run]) -> list[str]:
    notes = []
    for run in runs:
        s = run.summary
        if s["partial"]:
            notes.append(f"{run.label} ({s['run_dir']}) is PARTIAL: requests "
                         f"{s['unfinished_requests']} did not finish; its numbers cover "
                         "what was recorded.")
        notes.extend(f"{run.label}: {p}" for p in s["problems"])
    return notes


def _config_details(runs: list[Run]) -> list[tuple[str, str]]:
    out = []
    for run in runs:
        path = Path(run.summary["run_dir"]) / RUN_CONFIG_FILE
        body = path.read_text() if path.exists() else "(no run_config.yaml in the run directory)"
        out.append((f"{run.label}: {run.summary['run_dir']}", body))
    return out


def comparison_report(run_dirs: list[Path], out: Path, title: str,
                      bench: Path | None = None) -> Path:
    if not run_dirs:
        raise ReportError("no run directories given")
    runs = [load_run(d) for d in run_dirs]
    df = comparison_table(runs)
    rounds = _rounds(runs)
    accounting = ", ".join(f"{r.label}: {r.summary['accounting']}" for r in runs)
    sections = [
        Section("Cost per million tokens", figures=[fig_headline(df)], text=[
            "Server time is charged by the accounting named per run (wall: first to last "
            f"server step, idle included; busy: sum of step times). Used here: {accounting}."]),
        Section("SpecEdge vs server-only vs auto-batch", tables=[html_table(df)], text=[
            "Ratios (×) are normalized to the server-only run of the same target/draft pair. "
            "Throughput is tokens per second of charged server time; ITL is the mean over "
            "non-prefill rounds of round latency / tokens produced.",
            "Columns marked (upstream) follow upstream's metric scripts where they differ: "
            + "; ".join(f"{k}: {v}" for k, v in UPSTREAM_DEFINITIONS.items()) + "."]),
        Section("Throughput and cost efficiency", figures=[fig_throughput_cost(df)]),
        Section("Inter-token latency", figures=[fig_itl(rounds)]),
        Section("Accepted tokens", figures=[fig_accepted(rounds)]),
        Section("Time breakdown", figures=[fig_breakdown(rounds)]),
        Section("By dataset category", figures=[fig_categories(rounds)]),
    ]
    specedge = [r for r in runs if r.summary["baseline"] == "specedge"]
    if specedge:
        sections.append(Section("Timeline of a SpecEdge run", figures=[fig_timeline(specedge[0])],
                                text=[f"Run: {specedge[0].summary['run_dir']}"]))
    if (replies := replies_section(runs)) is not None:
        sections.append(replies)
    if bench is not None:
        sections.append(bench_section(bench))
    budgets = [p for p in (fig_budget(r) for r in runs) if p is not None]
    if budgets:
        sections.append(Section("The goodput budget: K against batch and load", figures=budgets,
                                text=["server.verify_budget=goodput: each step keeps the batch's "
                                      "roots and the K drafted nodes likeliest to be accepted, "
                                      "K maximising expected tokens per second of the step."]))
    sections.append(Section("Hardware prices", tables=[html_table(_prices(runs))]))
    sections.append(Section("Run configurations", details=_config_details(runs)))
    s0 = runs[0].summary
    subtitle = (f"{len(runs)} runs · dataset {s0.get('dataset', '?')} · hardware "
                f"{s0.get('hardware', '?')} · {generated()}")
    notes = _notes(runs)
    if all(not str(r.summary.get("hardware", "")).startswith(("a100", "rtx", "h200"))
           for r in runs):
        notes.insert(0, ONE_MACHINE)
    return render(out, title, subtitle, sections, notes)


ONE_MACHINE = (
    "Measured on one machine: the edges are no extra hardware (they share the server's cores) "
    "yet are billed at the edge price, so these costs and speeds show how the system behaves, "
    "not what SpecEdge costs on GPUs. For GPUs see the projection (simulated).")


def bench_section(path: Path) -> Section:
    data = json.loads(Path(path).read_text())
    df = pd.DataFrame(data["results"])
    if "ms_per_token" in df:  # tables written before the time split lack it
        split = pd.DataFrame(df.pop("ms_per_token").tolist()).add_prefix("ms/token ")
        df = pd.concat([df, split], axis=1)
    base = df.loc[df["method"] == "target greedy", "wall_s"].iloc[0]
    df["speed-up vs greedy"] = base / df["wall_s"]
    return Section("Speculative decoding benchmark (batch 1)", tables=[html_table(df)], text=[
        f"python -m specedge.bench spec on {data['model']} ({data['device']}, {data['dtype']}), "
        f"tree {data['shape']}: target forwards and wall time per method, same prompts."])
