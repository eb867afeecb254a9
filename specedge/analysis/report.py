"""Cost-normalized HTML reports: one self-contained file per comparison or sweep, and an index.

Figures are seaborn/matplotlib PNGs embedded as data URIs and the CSS is inline, so a report
opens anywhere without a network. Numbers come from :mod:`specedge.analysis.metrics` (the runs'
``summary.json``) and, for distributions and the timeline, from the runs' JSONL records.

    python -m specedge.report comparison RUN_DIR... --out reports/comparison.html
    python -m specedge.report sweep SWEEP_DIR --out reports/sweep-budget.html
    python -m specedge.report projection SIM_RUN... --sweep DIR... --validation JSON
        [--ablation RUN... --ablation-setup SIM_RUN...] [--scenarios DIR] --out ...
    python -m specedge.report index reports/comparison.html ... [--scenarios DIR] --out ...
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.patches

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure

from specedge.analysis.metrics import (
    UPSTREAM_DEFINITIONS,
    MetricsError,
    RunRecords,
    itl_ms,
    load_records,
    run_summary,
)
from specedge.analysis.sweep import INDEX_FILE
from specedge.base.config import project_file
from specedge.base.records import RUN_CONFIG_FILE, SUMMARY_FILE

LABELS = {"auto_batch": "Autoregressive", "server_only": "Server-only", "specedge": "SpecEdge"}
ORDER = ["auto_batch", "server_only", "specedge"]
PALETTE = dict(zip([LABELS[b] for b in ORDER], sns.color_palette("colorblind", 3), strict=True))
TIMELINE_STEPS = 40  # server steps shown in the timeline's zoom


class ReportError(ValueError):
    """Nothing to report on, or an input that is not what the report reads."""


@dataclass
class Plot:
    uri: str
    caption: str


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    figures: list[Plot] = field(default_factory=list)
    details: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str, str]] = field(default_factory=list)
    anchor: str = ""  # the section's id, for links into the page


def _png(fig: Figure, caption: str) -> Plot:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Plot("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(), caption)


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, na_rep="-", escape=True,
                      float_format=lambda v: f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}")


def render(path: Path, title: str, subtitle: str, sections: list[Section],
           notes: list[str] | None = None) -> Path:
    env = Environment(loader=PackageLoader("specedge", "templates"),
                      autoescape=select_autoescape(default=True))
    html = env.get_template("page.html.j2").render(title=title, subtitle=subtitle,
                                                   sections=sections, notes=notes or [])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def _generated() -> str:
    return datetime.now(UTC).strftime("generated %Y-%m-%d %H:%M UTC")


# -- loading ---------------------------------------------------------------------------------


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


# -- comparison ------------------------------------------------------------------------------


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
    return _png(fig, "Cost per million generated tokens for each target/draft pair: server "
                     "time at the server's price plus edge busy time at the edge's price.")


def fig_throughput_cost(df: pd.DataFrame) -> Plot:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _bars(df, "throughput tok/s", axes[0], "Server throughput (tokens / server s)")
    _bars(df, "k tokens / $", axes[1], "Cost efficiency (thousand tokens / $)")
    for ax in axes[1:]:
        ax.get_legend().remove()
    return _png(fig, "Throughput per second of charged server time, and tokens per dollar.")


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
    return _png(fig, "Each point is one round of one request: its latency divided by the "
                     "tokens it produced (box: quartiles; whiskers: 1.5 IQR).")


def fig_accepted(rounds: pd.DataFrame) -> Plot:
    later = rounds[~rounds["prefill"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.histplot(later, x="accepted", hue="baseline", palette=PALETTE, discrete=True,
                 stat="probability", common_norm=False, multiple="dodge", shrink=0.8, ax=ax)
    ax.set_xlabel("drafted tokens accepted per round (bonus token not counted)")
    ax.set_title("Accepted tokens per round")
    return _png(fig, "Share of rounds by number of accepted draft tokens; auto-batch drafts "
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
    return _png(fig, "Per-round time: drafting, network (SpecEdge: the round trip minus the "
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
    return _png(fig, "By dataset category: inter-token latency and accepted tokens per round.")


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
    return _png(fig, "Server forwards (blue) and each edge's drafting (green), proactive "
                     "drafting while it waits (red, thin) and waiting for the reply (grey). "
                     + how)


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
        Section("SpecEdge vs server-only vs auto-batch", tables=[_table(df)], text=[
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
    sections.append(Section("Hardware prices", tables=[_table(_prices(runs))]))
    sections.append(Section("Run configurations", details=_config_details(runs)))
    s0 = runs[0].summary
    subtitle = (f"{len(runs)} runs · dataset {s0.get('dataset', '?')} · hardware "
                f"{s0.get('hardware', '?')} · {_generated()}")
    notes = _notes(runs)
    if all(not str(r.summary.get("hardware", "")).startswith(("a100", "rtx", "h200"))
           for r in runs):
        notes.insert(0, ONE_MACHINE)
    return render(out, title, subtitle, sections, notes)


ONE_MACHINE = (
    "Measured on one machine: the edges are no extra hardware (they share the server's cores) "
    "yet are billed at the edge price, so these costs and speeds show how the system behaves, "
    "not what SpecEdge costs on GPUs. For GPUs see the projection (simulated).")


def _output_ids(run: Run) -> dict[int, list[int]]:
    out = run.records.outputs
    return {int(r): list(ids) for r, ids in zip(out["request_id"], out["output_ids"],
                                               strict=True)}


def replies_section(runs: list[Run], examples: int = 3) -> Section | None:
    """What the pair actually wrote, and how often each run wrote exactly what plain greedy
    decoding of the target (the auto-batch run) wrote."""
    with_outputs = [r for r in runs if r.records.outputs is not None and len(r.records.outputs)]
    if not with_outputs:
        return None
    text, tables = [], []
    reference = next((r for r in with_outputs if r.summary["baseline"] == "auto_batch"), None)
    if reference is not None:
        greedy = _output_ids(reference)
        rows = []
        for run in with_outputs:
            ids = _output_ids(run)
            same = sum(greedy.get(k) == v for k, v in ids.items())
            rows.append({"baseline": run.label, "dtype": run.summary.get("dtype", "?"),
                         "requests": len(ids), "same as greedy": same,
                         "match rate": same / len(ids)})
        tables.append(_table(pd.DataFrame(rows)))
        text.append(
            "Auto-batch is the target's own greedy decoding. In fp32 every run equals it token "
            "for token (the tests check this). In bf16 or fp16, a 16-token verification and a "
            "1-token decode can round a near-tie differently; a speculative run can then take "
            "the other token, and from there it follows the target's greedy continuation of "
            "what it has written. The match rate counts such requests.")
    first = with_outputs[0].records.outputs.sort_values("request_id").head(examples)
    details = []
    for rid, prompt in zip(first["request_id"], first["prompt"], strict=True):
        replies = [f"--- {run.label} reply\n{_reply_text(run, int(rid))}"
                   for run in with_outputs]
        details.append((f"request {rid}", "--- prompt\n" + str(prompt) + "\n" +
                        "\n".join(replies)))
    return Section("Prompts and replies", text=text, tables=tables, details=details)


def _reply_text(run: Run, request_id: int) -> str:
    out = run.records.outputs
    rows = out[out["request_id"] == request_id]
    return str(rows["text"].iloc[0]) if len(rows) else "(this run has no such request)"


def bench_section(path: Path) -> Section:
    data = json.loads(Path(path).read_text())
    df = pd.DataFrame(data["results"])
    if "ms_per_token" in df:  # tables written before the time split lack it
        split = pd.DataFrame(df.pop("ms_per_token").tolist()).add_prefix("ms/token ")
        df = pd.concat([df, split], axis=1)
    base = df.loc[df["method"] == "target greedy", "wall_s"].iloc[0]
    df["speed-up vs greedy"] = base / df["wall_s"]
    return Section("Speculative decoding benchmark (batch 1)", tables=[_table(df)], text=[
        f"python -m specedge.bench spec on {data['model']} ({data['device']}, {data['dtype']}), "
        f"tree {data['shape']}: target forwards and wall time per method, same prompts."])


# -- sweeps ----------------------------------------------------------------------------------


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
    return _png(fig, f"Metrics over {param}; one point per completed sweep job.")


def sweep_report(sweep_dir: Path, out: Path, title: str) -> Path:
    path = Path(sweep_dir) / INDEX_FILE
    if not path.exists():
        raise ReportError(f"{path}: missing; run the sweep with python -m specedge.run -m ...")
    index = json.loads(path.read_text())
    if not any("summary" in j for j in index["jobs"]):
        raise ReportError(f"{path}: no job of the sweep completed")
    df = sweep_table(index)
    params = [k for k in index["swept"] if k != "baseline"]
    sections = [Section("Jobs", tables=[_table(df)], text=[
        f"Sweep directory {index['sweep_dir']}; swept: {', '.join(index['swept'])}."])]
    numeric = [p for p in params if pd.api.types.is_numeric_dtype(df[p])]
    for param in numeric or params[:1]:
        sections.append(Section(f"Over {param}", figures=[fig_sweep(df, param)]))
    notes = [f"job {j['dir']} ({', '.join(j['overrides'])}): {j['status']}"
             + (f": {j['error']}" if j.get("error") else "")
             for j in index["jobs"] if "summary" not in j]
    subtitle = f"{len(index['jobs'])} jobs · {_generated()}"
    return render(out, title, subtitle, sections, notes)


# -- projection (specedge.analysis.simulate) ------------------------------------------------


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
    return _png(fig, "SIMULATED: SpecEdge with 1 to 256 edges per server, proactive drafting "
                     "'disabled', upstream's rule ('excluded') and the speculation cache "
                     "('cache'); one point per simulation.")


def projection_report(setup_dirs: list[Path], sweep_dirs: list[Path], validation: Path,
                      out: Path, title: str, ablation: list[Path] | None = None,
                      ablation_setups: list[Path] | None = None,
                      scenarios: Path | None = None) -> Path:
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
        Section("Validation: measured vs simulated on this machine", tables=[_table(val)], text=[
            "Real runs of the embedded default re-simulated from their own config, forwards "
            "(latency fitted on the run's own server records) and rounds "
            "(python -m specedge.simulate --validate). Largest error: "
            f"{worst['error %']:+.1f} % ({worst['run']}, {worst['metric']})."]),
        Section("The paper's setup (SIMULATED)", tables=[_table(setup_table(summaries))], text=[
            f"Simulated, not measured. Hardware {s0['hardware']} (prices: server "
            f"${s0['prices']['server_per_hour']}/h, edge ${s0['prices']['edge_per_hour']}/h); "
            f"target latency: {_source(model['target'])}; edge drafting: "
            f"{_source(model['draft_edge'])}. "
            f"Acceptance assumed: {_acceptance(s0)}."]),
        Section("Edges per server (SIMULATED)", figures=[fig_edges(edges)],
                tables=[_table(edges)], text=[
                    "Where the server saturates (busy near 100 %) throughput stops growing and "
                    "ITL grows with the queue; where proactive drafting pays, its ITL is below "
                    "the 'disabled' line. Each rule's rounds and hit rate come from its own "
                    "real run (trace hit rate)."]),
    ]
    if ablation:
        sections.insert(1, Section(
            "Ablation: proactive drafting and tree policy", tables=[_table(ablation_table(
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
    if scenarios is not None:
        data = _read_projection(scenarios)
        sections[:0] = [protocol_section(data), sensitivity_section(data), maps_section(data),
                        scenarios_section(data)]
    subtitle = f"simulated · {len(summaries)} systems · {len(edges)} sweep points · {_generated()}"
    notes = ["Every figure and table except the validation and the ablation's measured columns "
             "is SIMULATED (specedge.analysis.simulate), never measured on a GPU: latencies come "
             "from "
             "derived profiles (specedge.base.roofline: datasheet peaks at bandwidth and compute "
             "efficiencies taken from named measured sources, see each profile's 'sources'), "
             "acceptance from the labelled scenarios."]
    return render(out, title, subtitle, sections, notes)


# -- scenarios, protocol, maps, sensitivity (specedge.analysis.projection) ------------------


def _read_projection(directory: Path) -> dict[str, Any]:
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
    gaps = []
    for _, r in t[t["batch"] == 1].iterrows():
        gaps.append({"acceptance (scenario)": labels[r["scenario"]], **{
            f"{LABELS[s]} $/M (paper / simulated)":
                f"{paper['usd_per_mtok_batch1'][s]:g} / {r[f'{s}_usd_per_mtok']:.2f}"
            for s in ORDER}})
    fig, axes = plt.subplots(1, t["scenario"].nunique(), figsize=(4.2 * t["scenario"].nunique(),
                                                                   3.6), squeeze=False)
    for ax, (scenario, g) in zip(axes[0], t.groupby("scenario", sort=False), strict=True):
        for system in ORDER:
            ax.plot(g["batch"], g[f"{system}_usd_per_mtok"], marker="o", label=LABELS[system],
                    color=PALETTE[LABELS[system]])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{scenario} (simulated)", fontsize=10)
        ax.set_xlabel("batch size B")
        ax.set_ylabel("$ per 1M tokens")
    axes[0][0].legend()
    fig.tight_layout()
    return Section(
        "Headline: the paper's protocol (SIMULATED)", anchor="headline",
        tables=[_table(table), _table(pd.DataFrame(gaps))],
        figures=[_png(fig, "SIMULATED: $ per 1M tokens over batch size, upstream's metric "
                           "definitions, one panel per acceptance scenario. SpecEdge pays "
                           "where its line lies below the others.")],
        text=[f"The paper's protocol, simulated: at batch size B, server-only and "
              f"autoregressive batch B requests; SpecEdge serves {proto['edges_per_batch']} x B "
              f"edges in pipeline groups of B. Setup: {', '.join(proto['setup'])}. Figures use "
              "upstream's metric definitions (ITL a ratio of sums; edges billed for their "
              "whole rounds; server-only throughput without prefill steps). The paper's "
              f"figures: {paper['source']}. The second table sets upstream's batch-1 figure "
              "beside ours.", _efficiencies(proto["points"])])


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
        tables=[_table(pd.concat([paper_row, table], ignore_index=True))],
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
                point_tokens: float) -> Plot:
    rtts = sorted(cells["rtt_ms"].unique())
    fig, axes = plt.subplots(2, len(rtts), figsize=(4.0 * len(rtts), 6.6), squeeze=False)
    for row, (key, name) in enumerate((("vs_server_only", "server-only"),
                                       ("vs_auto_batch", "autoregressive"))):
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
            ax.set_title(f"SpecEdge / {name} cost, RTT {rtt:g} ms", fontsize=9)
            ax.set_xlabel("concurrency (users)")
            ax.set_ylabel("tokens per round")
    fig.suptitle(f"{hardware} (SIMULATED)")
    fig.tight_layout()
    h = cells
    cheaper_so = int((h["vs_server_only"] < 1).sum())
    cheaper_ab = int((h["vs_auto_batch"] < 1).sum())
    best = h.loc[h["vs_auto_batch"].idxmin()]
    sentence = (f"SIMULATED, {hardware}: SpecEdge's cost per token over server-only's (top) "
                f"and autoregressive batching's (bottom) at the same concurrency; blue cells "
                f"(< 1) are where SpecEdge is cheaper; the black break-even line separates "
                f"them from the red. It is "
                f"cheaper than server-only in {cheaper_so} of {len(h)} cells and than "
                f"autoregressive in {cheaper_ab}; its best against autoregressive is "
                f"{best['vs_auto_batch']:.2f} at concurrency {int(best['concurrency'])}, "
                f"{best['tokens_per_round']:g} tokens a round, RTT {best['rtt_ms']:g} ms.")
    if hardware == point["hardware"]:
        sentence += (f" The gold box marks the paper's operating point (concurrency "
                     f"{point['concurrency']}, RTT {point['rtt_ms']:g} ms) at the main "
                     f"scenario's {point_tokens:.2f} tokens a round.")
    return _png(fig, sentence)


def maps_section(data: dict[str, Any]) -> Section:
    m = data["maps"]
    cells = pd.DataFrame(m["cells"])
    main = next(r for r in data["protocol"]["table"] if r["scenario"] == m["scenario"])
    point_tokens = float(next(p["tokens_per_round"] for p in data["protocol"]["points"]
                              if p["scenario"] == m["scenario"] and p["system"] == "specedge"
                              and p["batch"] == main["batch"]))
    figures = [_map_figure(cells[cells["hardware"] == hw], hw, m["paper_point"], point_tokens)
               for hw in m["grid"]["hardware"]]
    return Section(
        "Where SpecEdge pays: maps (SIMULATED)", anchor="maps", figures=figures, text=[
            "Each cell is one pair of point simulations (its overrides are in maps.json): "
            "SpecEdge with C edges in two pipeline groups against the baseline batching all "
            "C users, upstream's metric definitions. Tokens per round set the acceptance "
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
    return Section("Acceptance scenarios", anchor="scenarios", tables=[_table(table)], text=[
        "Every scenario is labelled: traces are rounds measured here (on a CPU, with this "
        "project's pairs); published ones are chain acceptance reported elsewhere, turned into "
        "a distribution by a constant per-token acceptance rate, applied to the Qwen3-14B "
        "setup's latencies."])


# -- index -----------------------------------------------------------------------------------


class _TitleParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.title, self._in = "", False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in = False


CAN_AND_CANNOT = (
    "What this run can show: that SpecEdge's output equals the target's own greedy decode, how "
    "the serving system behaves (rounds, batching, proactive drafting, failures) with real "
    "processes and real gRPC, and, on the validation runs, that the performance model "
    "reproduces what was measured. What it cannot show: SpecEdge's economics. On one CPU the "
    "edges are no extra hardware (they share the server's cores), so the comparison report's "
    "costs and speeds say nothing about GPUs; every figure for GPUs (the projection) is "
    "simulated, from derived latency profiles and labelled acceptance scenarios.")


def index_page(reports: list[Path], out: Path, scenarios: Path | None = None) -> Path:
    links = []
    for report in reports:
        parser = _TitleParser()
        parser.feed(Path(report).read_text(encoding="utf-8"))
        href = os.path.relpath(Path(report).resolve(), out.parent.resolve())
        links.append((href, parser.title or report.name, report.name))
    section = Section("Reports", links=links, text=[
        "Each report is one self-contained HTML file (figures embedded)."])
    first = Section("What this run can and cannot show", text=[CAN_AND_CANNOT])
    if scenarios is not None:
        sens = _read_projection(scenarios)["sensitivity"]
        projection = next((href for href, _, name in links if name == "projection.html"), None)
        if projection is None:
            raise ReportError("--scenarios needs projection.html among the reports (its "
                              "headline is linked)")
        first.text.append(f"The projection's headline (SIMULATED, batch "
                          f"{sens['headline_batch']}): " + " ".join(sens["verdict"]))
        first.links.append((f"{projection}#headline", "The projection's headline",
                            "the paper's protocol, simulated, beside the paper's figures"))
    return render(out, "SpecEdge experiment reports", _generated(), [first, section])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specedge.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    comp = sub.add_parser("comparison", help="compare runs (SpecEdge, server-only, auto-batch)")
    comp.add_argument("run_dirs", nargs="+", type=Path)
    comp.add_argument("--bench", type=Path, help="results of python -m specedge.bench spec")
    sweep = sub.add_parser("sweep", help="one Hydra multirun sweep")
    sweep.add_argument("sweep_dir", type=Path)
    proj = sub.add_parser("projection", help="the performance model: validation, paper setup")
    proj.add_argument("setup_dirs", nargs="+", type=Path,
                      help="simulated runs of the paper's setup (one per baseline)")
    proj.add_argument("--sweep", type=Path, nargs="+", required=True,
                      help="the edges-per-server multiruns (one per proactive rule)")
    proj.add_argument("--ablation", type=Path, nargs="*", default=[],
                      help="real runs to compare side by side (proactive rule, tree policy)")
    proj.add_argument("--ablation-setup", type=Path, nargs="*", default=[],
                      help="the paper's setup simulated from each --ablation run, same order")
    proj.add_argument("--validation", type=Path, required=True,
                      help="validation.json of python -m specedge.simulate --validate")
    idx = sub.add_parser("index", help="the page linking the reports")
    idx.add_argument("reports", nargs="+", type=Path)
    for p in (proj, idx):
        p.add_argument("--scenarios", type=Path, default=None,
                       help="python -m specedge.analysis.projection's out_dir: the protocol, "
                            "maps and sensitivity")
    for p in (comp, sweep, proj, idx):
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        if args.what == "comparison":
            comparison_report(args.run_dirs, args.out,
                              args.title or "SpecEdge vs server-only vs auto-batch", args.bench)
        elif args.what == "sweep":
            sweep_report(args.sweep_dir, args.out, args.title or f"Sweep {args.sweep_dir.name}")
        elif args.what == "projection":
            projection_report(args.setup_dirs, args.sweep, args.validation, args.out,
                              args.title or "Performance model: validation and projection",
                              args.ablation, args.ablation_setup, args.scenarios)
        else:
            index_page(args.reports, args.out, args.scenarios)
    except (ReportError, MetricsError, OSError) as exc:
        print(f"specedge.analysis.report: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
