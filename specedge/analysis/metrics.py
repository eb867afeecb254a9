"""Per-run metrics from the JSONL records (schemas in :mod:`specedge.base.records`).

Every baseline's records are first brought to one table of *rounds* (one draft-verify round, or
one decoding step, of one request) and one table of *server steps* (one target forward, or one
batched step of the server-side loop). The metrics keep the upstream metric scripts' meaning:

- latency per round (``draft``, ``target``, ``overall``) for prefill, non-prefill and proactive
  rounds. ``target`` is what the request waited for verification: the batched forward for the
  server-side baselines, the whole Validate round trip (network, queue, verify) for SpecEdge.
- inter-token latency: ms per token of each non-prefill round, averaged over rounds.
- server time, two ways: ``busy`` (the sum of the server's step times) and ``wall`` (first to
  last server record, idle included). Upstream charges SpecEdge by wall time and the
  server-side baselines by busy time; that is the default (:data:`DEFAULT_ACCOUNTING`), and
  either can be chosen for every baseline.
- cost: server time at the server's $/hour plus the edges' busy time (drafting, proactive
  drafting included) at the edge's $/hour; throughput is tokens per server second, cost
  efficiency thousand tokens per dollar.

``python -m specedge.analysis.metrics RUN_DIR [--hardware a100_80] [--accounting busy|wall]``
prints the table; runs write the same numbers to ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from specedge.analysis.pricing import DEFAULT_ACCOUNTING, Accounting, Prices, hardware_prices
from specedge.analysis.run_records import MetricsError, RunRecords, load_records
from specedge.base.config.baseline import BaselineName
from specedge.base.config.checks import ConfigError
from specedge.base.config.run import load_run_config
from specedge.base.records import (
    LOST_FILE,
    RUN_CONFIG_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    run_dtype,
)


def _ms(series: pd.Series) -> dict[str, float]:
    """Mean and std in ms (std 0 for a single round, nan for none)."""
    if series.empty:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(series.mean() * 1e3), "std": float(series.std(ddof=0) * 1e3)}


def itl_ms(rounds: pd.DataFrame) -> pd.Series:
    """Inter-token latency of each non-prefill round that produced tokens, in ms per token."""
    later = rounds[~rounds["prefill"] & (rounds["new_tokens"] > 0)]
    return later["latency_s"] / later["new_tokens"] * 1e3


def _latencies(rounds: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    kinds = {"prefill": rounds[rounds["prefill"]], "non_prefill": rounds[~rounds["prefill"]],
             "proactive": rounds[rounds["from_proactive"].astype(bool)]}
    return {kind: {"draft_ms": _ms(r["draft_s"]), "target_ms": _ms(r["target_s"]),
                   "overall_ms": _ms(r["latency_s"])} for kind, r in kinds.items()}


UPSTREAM_DEFINITIONS = {
    "itl_ms": "sum of non-prefill rounds' latency / sum of their tokens (a ratio of sums; "
              "ours: the mean of each round's latency / tokens)",
    "edge_cost_usd": "each edge billed for its whole round time, waiting for the server "
                     "included (ours: only its drafting and proactive drafting)",
    "throughput_tok_s": "server-only: tokens / server time of the steps without a prefill "
                        "(ours: all steps); the other baselines as ours",
}


def _upstream(baseline: str, rounds: pd.DataFrame, tokens: int, server_cost: float,
              prices: Prices, throughput: float) -> dict[str, Any]:
    """The upstream metric scripts' definitions of the numbers that differ from ours."""
    later = rounds[~rounds["prefill"]]
    later_tokens = float(later["new_tokens"].sum())
    itl = float(later["latency_s"].sum()) / later_tokens * 1e3 if later_tokens else math.nan
    edge_s = float(rounds["latency_s"].sum()) if baseline == "specedge" else 0.0
    edge_cost = prices.edges_usd(edge_s)
    if baseline == "server_only":  # rounds of one step share its start
        steps = rounds.groupby("t_start").agg(prefill=("prefill", "any"),
                                              tokens=("new_tokens", "sum"),
                                              t_end=("t_end", "first"))
        plain = steps[~steps["prefill"]]
        seconds = float((plain["t_end"] - plain.index.to_series()).sum())
        throughput = float(plain["tokens"].sum()) / seconds if seconds > 0 else math.nan
    cost = server_cost + edge_cost
    return {"itl_ms": itl, "edge_cost_usd": edge_cost, "cost_usd": cost,
            "usd_per_mtok": cost / tokens * 1e6 if tokens else math.nan,
            "throughput_tok_s": throughput, "definitions": UPSTREAM_DEFINITIONS}


def _per_category(rounds: pd.DataFrame) -> dict[str, dict[str, float]]:
    itl = itl_ms(rounds)
    out = {}
    for category, r in rounds.groupby("category"):
        cat_itl = itl.loc[itl.index.intersection(r.index)]
        out[str(category)] = {
            "rounds": len(r), "tokens": int(r["new_tokens"].sum()),
            "accepted_per_round": float(r["accepted"].mean()),
            "tokens_per_round": float(r["new_tokens"].mean()),
            "itl_ms": float(cat_itl.mean()) if len(cat_itl) else math.nan}
    return out


def summarize(rec: RunRecords, prices: Prices, accounting: Accounting | None = None,
              meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every number of the run, as a JSON-ready dict (the content of ``summary.json``)."""
    accounting = accounting or DEFAULT_ACCOUNTING[rec.baseline]
    rounds, server = rec.rounds, rec.server
    # Served tokens: those of requests that finished (a lost edge's unfinished request
    # produced tokens nobody received); a run without outputs.jsonl counts every round.
    served = rounds["request_id"].isin(set(rec.outputs["request_id"])) \
        if rec.outputs is not None else pd.Series(True, index=rounds.index)
    tokens = int(rounds.loc[served, "new_tokens"].sum())
    busy_s = float(server["busy_s"].sum())
    wall_s = float(server["t_end"].max() - server["t_start"].min())
    server_s = busy_s if accounting is Accounting.busy else wall_s
    edge_busy_s = float((rounds["draft_s"] + rounds["proactive_s"]).sum()) \
        if rec.baseline == "specedge" else 0.0
    server_cost = prices.server_usd(server_s)
    edge_cost = prices.edges_usd(edge_busy_s)
    cost = server_cost + edge_cost
    return {
        **(meta or {}),
        "baseline": rec.baseline,
        "run_dir": str(rec.run_dir),
        **_requests(rec),
        "server_peak_rss_mib": _server_peak_rss(rec.run_dir),
        "tokens": tokens,
        # produced for requests that never finished
        "unfinished_tokens": int(rounds.loc[~served, "new_tokens"].sum()),
        "rounds": len(rounds),
        "server_steps": len(server),
        "accounting": accounting.value,
        "server_busy_s": busy_s,
        "server_wall_s": wall_s,
        "server_time_s": server_s,
        "server_utilization": busy_s / wall_s if wall_s > 0 else math.nan,
        "mean_batch_size": float(server["batch_size"].mean()),
        "edge_busy_s": edge_busy_s,
        "prices": asdict(prices),
        "server_cost_usd": server_cost,
        "edge_cost_usd": edge_cost,
        "cost_usd": cost,
        "throughput_tok_s": tokens / server_s if server_s > 0 else math.nan,
        "cost_efficiency_ktok_per_usd": tokens / 1e3 / cost if cost > 0 else math.nan,
        "usd_per_mtok": cost / tokens * 1e6 if tokens else math.nan,
        **_round_figures(rounds),
        **_categories(rounds, rec.outputs),
        # the same quantities as upstream's metric scripts define them, where they differ
        "upstream": _upstream(rec.baseline, rounds, tokens, server_cost, prices,
                              tokens / server_s if server_s > 0 else math.nan),
        "problems": rec.problems,
    }


def _requests(rec: RunRecords) -> dict[str, Any]:
    """Which requests the run started and did not finish, and the edges it lost."""
    started = set(rec.rounds["request_id"])
    finished = set(rec.outputs["request_id"]) if rec.outputs is not None else set()
    lost_path = rec.run_dir / LOST_FILE
    lost = json.loads(lost_path.read_text()) if lost_path.exists() else {}
    started |= set(lost.get("unfinished_requests", []))
    return {"partial": bool(started - finished),
            "unfinished_requests": sorted(int(i) for i in started - finished),
            "requests": len(started), "lost_edges": lost.get("lost_edges", {})}


def _round_figures(rounds: pd.DataFrame) -> dict[str, Any]:
    """Latency, acceptance, proactive drafting and bytes, over the rounds."""
    itl = itl_ms(rounds)
    later = rounds[~rounds["prefill"]]
    return {
        "itl_ms": {"mean": float(itl.mean()), "std": float(itl.std(ddof=0)),
                   "p50": float(itl.quantile(0.5)), "p90": float(itl.quantile(0.9))}
        if len(itl) else {"mean": math.nan, "std": math.nan, "p50": math.nan, "p90": math.nan},
        "latency": _latencies(rounds),
        "accepted_per_round": float(later["accepted"].mean()) if len(later) else math.nan,
        "tokens_per_round": float(later["new_tokens"].mean()) if len(later) else math.nan,
        "proactive_ratio": float(later["from_proactive"].mean()) if len(later) else math.nan,
        "proactive_hit_rate": float(rounds.loc[rounds["proactive_drafted"].astype(bool),
                                               "proactive_hit"].mean())
        if rounds["proactive_drafted"].any() else math.nan,
        # what the outcome model expected that rate to be (its calibration)
        "proactive_expected_hit_rate": float(rounds.loc[
            rounds["proactive_drafted"].astype(bool), "proactive_guessed_p"].mean())
        if rounds["proactive_drafted"].any() else math.nan,
        "tree_size_mean": float(later["tree_size"].mean()) if len(later) else math.nan,
        # nodes the server verified, root included (fewer than tree_size for SpecEdge's rounds
        # under server.verify_budget=goodput; server-side steps' tree_size is those verified)
        "verified_size_mean": float(later["verified_size"].mean()) if len(later) else math.nan,
        "tree_depth_mean": float(later["tree_depth"].mean()) if len(later) else math.nan,
        "bytes_per_round": float(rounds["bytes"].mean()),
        # tree rounds only: a prefill round also carries the prompt, which is no tree node
        "bytes_per_node": float(later["bytes"].sum() / later["tree_size"].sum())
        if len(later) else math.nan,
        "breakdown_s": {part: float(rounds[f"{part}_s"].sum())
                        for part in ("draft", "network", "queue", "verify", "late", "other")},
    }


def _categories(rounds: pd.DataFrame, outputs: pd.DataFrame | None) -> dict[str, Any]:
    """Figures per category (a Spec-Bench subset) and, where the dataset file's own labels
    differ from the categories, per label (``by_subcategory``)."""
    out: dict[str, Any] = {"by_category": _per_category(rounds)}
    if outputs is not None:
        label_of = {r: str(s) for r, s in zip(outputs["request_id"], outputs["subcategory"],
                                              strict=True) if s}
        sub = rounds["request_id"].map(label_of).fillna(rounds["category"]).astype(str)
        if not sub.equals(rounds["category"].astype(str)):
            out["by_subcategory"] = _per_category(rounds.assign(category=sub))
    return out


def _server_peak_rss(run_dir: Path) -> float | None:
    """The SpecEdge server's own peak RSS (it writes server_stats.json when it stops)."""
    path = run_dir / STATS_FILE
    return float(json.loads(path.read_text())["peak_rss_mib"]) if path.exists() else None


def run_meta(run_dir: Path) -> dict[str, Any]:
    """What the report needs to know about the run's configuration."""
    if not (run_dir / RUN_CONFIG_FILE).exists():
        return {}
    cfg = load_run_config(run_dir)
    return {"exp_name": cfg.exp_name, "model": cfg.model.name, "target": cfg.model.target,
            "draft": cfg.model.draft, "dtype": run_dtype(run_dir, cfg.model.dtype.value),
            "weights": cfg.model.weights.value,  # random: timing only, acceptance means nothing
            "dataset": cfg.dataset.name.value, "hardware": cfg.hardware.name,
            "edges": cfg.server.num_clients if cfg.baseline.name == BaselineName.specedge
            else 0,
            "scheduler": cfg.server.scheduler_policy,
            "tree": {"max_n_beams": cfg.edge.max_n_beams, "max_beam_len": cfg.edge.max_beam_len,
                     "max_branch_width": cfg.edge.max_branch_width,
                     "max_budget": cfg.edge.max_budget},
            "proactive": cfg.edge.proactive.type.value,
            "tree_policy": cfg.edge.tree_policy.value,
            "max_new_tokens": cfg.generation.max_new_tokens,
            "temperature": cfg.generation.temperature}


def run_summary(run_dir: Path, prices: Prices | None = None,
                accounting: Accounting | None = None) -> dict[str, Any]:
    """Summary of a run priced at its own hardware's prices unless ``prices`` says otherwise."""
    run_dir = Path(run_dir)
    rec = load_records(run_dir)
    if prices is None:
        if not (run_dir / RUN_CONFIG_FILE).exists():
            raise MetricsError(f"{run_dir}: no {RUN_CONFIG_FILE} to take prices from; "
                               "name them with --hardware")
        prices = Prices.of(load_run_config(run_dir).hardware)
    return summarize(rec, prices, accounting, run_meta(run_dir))


def write_summary(run_dir: Path) -> dict[str, Any]:
    summary = run_summary(run_dir)
    (Path(run_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if isinstance(value, float) and math.isnan(value) else f"{value:,.{digits}f}"


def print_summary(s: dict[str, Any], console: Console) -> None:
    p = s["prices"]
    title = (f"{s['baseline']} — {s['tokens']} tokens, {s['requests']} requests"
             + (" (PARTIAL: unfinished " + str(s["unfinished_requests"]) + ")"
                if s["partial"] else ""))
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("server time (s), " + s["accounting"] + " accounting", _fmt(s["server_time_s"])),
        ("server busy / wall (s)", f"{_fmt(s['server_busy_s'])} / {_fmt(s['server_wall_s'])}"),
        ("mean server batch size", _fmt(s["mean_batch_size"])),
        ("throughput (tokens / server s)", _fmt(s["throughput_tok_s"])),
        ("inter-token latency (ms/token)",
         f"{_fmt(s['itl_ms']['mean'])} ± {_fmt(s['itl_ms']['std'])}"),
        ("accepted tokens / round", _fmt(s["accepted_per_round"])),
        ("proactive ratio / hit rate",
         f"{_fmt(s['proactive_ratio'], 3)} / {_fmt(s['proactive_hit_rate'], 3)}"),
        ("bytes / round (per node)",
         f"{_fmt(s['bytes_per_round'], 0)} ({_fmt(s['bytes_per_node'])})"),
        (f"server cost ({p['server_gpu']}, ${p['server_per_hour']}/h)",
         f"${s['server_cost_usd']:.6f}"),
        (f"edge cost ({p['edge_gpu']}, ${p['edge_per_hour']}/h; {_fmt(s['edge_busy_s'])} busy s)",
         f"${s['edge_cost_usd']:.6f}"),
        ("cost efficiency (k tokens / $)", _fmt(s["cost_efficiency_ktok_per_usd"])),
        ("$ / million tokens", _fmt(s["usd_per_mtok"], 3)),
    ]
    for kind, lat in s["latency"].items():
        rows.append((f"{kind} round: draft / target / overall (ms)",
                     " / ".join(_fmt(lat[k]["mean"]) for k in ("draft_ms", "target_ms",
                                                                "overall_ms"))))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    cats = Table(title="by category")
    for col in ("category", "rounds", "tokens", "accepted/round", "ITL (ms)"):
        cats.add_column(col, justify="left" if col == "category" else "right")
    for cat, c in s["by_category"].items():
        cats.add_row(cat, str(c["rounds"]), str(c["tokens"]), _fmt(c["accepted_per_round"]),
                     _fmt(c["itl_ms"]))
    console.print(cats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specedge.analysis.metrics",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory (python -m specedge.run)")
    parser.add_argument("--hardware", help="price with this conf/hardware option "
                        "(default: the run's own hardware)")
    parser.add_argument("--accounting", choices=[a.value for a in Accounting],
                        help="server time: busy (sum of steps) or wall (first to last step); "
                        "default: wall for specedge, busy for the server-side baselines")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    err = Console(stderr=True)
    try:
        prices = hardware_prices(args.hardware) if args.hardware else None
        summary = run_summary(args.run_dir, prices,
                              Accounting(args.accounting) if args.accounting else None)
    except (MetricsError, ConfigError) as exc:
        err.print(f"specedge.analysis.metrics: error: {exc}", markup=False, highlight=False)
        return 2
    for problem in summary["problems"]:
        err.print(f"warning: {problem}", markup=False, highlight=False)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
