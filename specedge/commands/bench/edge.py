"""``bench edge``, ``ablation``, ``budget`` and ``drafting``: real runs of SpecEdge and
server-only (server and edge processes) on the same prompts, side by side."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from specedge.analysis.metrics import run_summary
from specedge.base.config.edge import ProactiveType
from specedge.base.records import (
    OUTPUTS_FILE,
    SERVER_FILE,
    STEPS_FILE,
    OutputRecord,
    ServerStepRecord,
    StepRecord,
    read_jsonl,
)
from specedge.commands.bench.spec import compose_config

ABLATION = [
    ("no proactive", ["edge.proactive.type=disabled"]),
    ("upstream (excluded)", ["edge.proactive.type=excluded"]),
    ("cache", ["edge.proactive.type=cache"]),
    ("no proactive, adaptive", ["edge.proactive.type=disabled", "edge.tree_policy=adaptive"]),
    ("cache, adaptive", ["edge.proactive.type=cache", "edge.tree_policy=adaptive"]),
]


def edge_variants(overrides: list[str], ablation: bool = False,
                  proactive_run: bool = True) -> list[tuple[str, list[str]]]:
    """The runs to compare: SpecEdge as configured, without proactive drafting when that is on
    (so its effect shows), and server-only. ``ablation``: SpecEdge without proactive drafting,
    with upstream's rule and with the speculation cache, fixed and adaptive trees, then
    server-only with fixed and adaptive trees (the first of each is the reference)."""
    if ablation:
        return [*((f"SpecEdge, {name}", ["baseline=specedge", *extra]) for name, extra in ABLATION),
                ("server-only, adaptive", ["baseline=server_only", "edge.tree_policy=adaptive"]),
                ("server-only", ["baseline=server_only", "edge.tree_policy=fixed"])]
    cfg = compose_config(["baseline=specedge", *overrides])
    variants = [("SpecEdge", ["baseline=specedge"])]
    if proactive_run and cfg.edge.proactive.type != ProactiveType.disabled:
        variants.append(("SpecEdge, no proactive",
                         ["baseline=specedge", "edge.proactive.type=disabled"]))
    return [*variants, ("server-only", ["baseline=server_only"])]


def run_name(variant: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", variant.lower()).strip("-")


def _real_runs(variants: list[tuple[str, list[str]]], overrides: list[str],
               out_dir: Path) -> list[dict[str, Any]]:
    """Each variant as a real run (its own processes), same prompts: its summary, outputs and
    run folder."""
    results = []
    for name, extra in variants:
        run_dir = out_dir / run_name(name)
        cmd = [sys.executable, "-m", "specedge.run", *overrides, *extra,  # the variant wins
               f"hydra.run.dir={run_dir}"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
        results.append({"variant": name, **run_summary(run_dir),
                        "outputs": _output_ids(run_dir), "run_dir": str(run_dir)})
    return results


BUDGET_EDGES = (4, 8)
BUDGET_KINDS = {  # the first is the others' reference
    "fixed": ["server.verify_budget=fixed", "server.pipeline_groups=split"],
    "goodput": ["server.verify_budget=goodput", "server.pipeline_groups=split"],
    "goodput, groups by goodput": ["server.verify_budget=goodput",
                                   "server.pipeline_groups=goodput"],
}


def budget_variants(edge_counts: tuple[int, ...] = BUDGET_EDGES) -> list[tuple[str, list[str]]]:
    """SpecEdge with each count of edges: in two pipeline groups every tree verified whole,
    then under the server's goodput budget, then with the group count by the same objective;
    last server-only verifying whole trees (the outputs' reference)."""
    variants = []
    for n in edge_counts:
        nodes = ",".join("{device:cpu}" for _ in range(n))
        edges = ["baseline=specedge", f"server.num_clients={n}",
                 f"hardware.nodes={{localhost:[{nodes}]}}", f"server.max_batch_size={n // 2}",
                 "server.scheduler=pipeline"]
        variants += [(f"SpecEdge, {n} edges, {kind}", [*edges, *overrides])
                     for kind, overrides in BUDGET_KINDS.items()]
    return [*variants, ("server-only", ["baseline=server_only", "server.verify_budget=fixed"])]


def bench_edge(overrides: list[str], out_dir: Path, ablation: bool = False,
               proactive_run: bool = True,
               variants: list[tuple[str, list[str]]] | None = None) -> list[dict[str, Any]]:
    """SpecEdge's variants and server-only (the last) as real runs, each against server-only's
    outputs."""
    variants = variants or edge_variants(overrides, ablation, proactive_run)
    results = _real_runs(variants, overrides, out_dir)
    reference = results[-1]["outputs"]
    for r in results:
        outputs = r.pop("outputs")
        r["identical_to_server_only"] = outputs == reference
        r["requests_as_server_only"] = sum(outputs.get(k) == v for k, v in reference.items())
        r["requests"] = len(reference)
    return results


DRAFTING_BATCHES = (4, 8)


def bench_drafting(overrides: list[str], out_dir: Path) -> list[dict[str, Any]]:
    """Server-only at batch 4 and 8, drafting its batch in one forward per level against one
    request after the other (real runs, same prompts): draft forwards per step, busy
    throughput, and whether the outputs are the same."""
    variants = [(f"batch {b}, {'batched' if batched else 'in turn'}",
                 ["baseline=server_only", f"baseline.max_batch_size={b}",
                  f"baseline.batch_drafting={str(batched).lower()}"])
                for b in DRAFTING_BATCHES for batched in (True, False)]
    results = _real_runs(variants, overrides, out_dir)
    for r, (b, batched) in zip(results, [(b, x) for b in DRAFTING_BATCHES for x in (True, False)],
                               strict=True):
        r["batch"], r["batch_drafting"] = b, batched
        problems: list[str] = []
        steps = pd.DataFrame(read_jsonl(Path(r.pop("run_dir")) / STEPS_FILE, StepRecord,
                                        problems))
        per_step = steps.groupby("step")["draft_forwards"]
        # batched: a step's forwards are its deepest tree's; in turn: every tree's, summed
        r["draft_forwards_per_step"] = float((per_step.max() if batched else per_step.sum())
                                             .mean())
    for r in results:
        same_batch = next(x for x in results if x["batch"] == r["batch"])
        r["same_outputs_as_batched"] = sum(
            r["outputs"].get(k) == v for k, v in same_batch["outputs"].items())
    for r in results:
        r["requests"] = len(r.pop("outputs"))
    return results


def print_drafting(results: list[dict[str, Any]], console: Console) -> None:
    t = Table(title="server-only: the batch's trees drafted together vs one after the other "
                    "(busy = sum of step times)")
    for col in ("run", "tokens", "busy s", "tok/s busy", "draft forwards / step",
                "tokens/round", "same output as batched"):
        t.add_column(col, justify="left" if col == "run" else "right")
    for r in results:
        t.add_row(r["variant"], str(r["tokens"]), f"{r['server_busy_s']:.2f}",
                  f"{r['tokens'] / r['server_busy_s']:.1f}", f"{r['draft_forwards_per_step']:.2f}",
                  f"{r['tokens_per_round']:.2f}",
                  f"{r['same_outputs_as_batched']}/{r['requests']}")
    def tput(r: dict[str, Any]) -> float:
        return float(r["tokens"] / r["server_busy_s"])

    for batched, in_turn in zip(results[::2], results[1::2], strict=True):
        fewer = batched["draft_forwards_per_step"] / in_turn["draft_forwards_per_step"]
        t.add_row(f"{batched['variant']} / in turn", "", "",
                  f"{tput(batched) / tput(in_turn):.2f}x", f"{fewer:.2f}x", "", "")
    console.print(t)


def _output_ids(run_dir: Path) -> dict[int, list[int]]:
    problems: list[str] = []
    records = read_jsonl(run_dir / OUTPUTS_FILE, OutputRecord, problems)
    return {rec["request_id"]: rec["output_ids"] for rec in records}


def print_edge(results: list[dict[str, Any]], console: Console) -> None:
    """Wide: piped output would otherwise fold every cell into 80 columns."""
    so = results[-1]
    t = Table(title="SpecEdge vs server-only (server time: busy = sum of server steps, "
                    "wall = first to last server record)")
    for col in ("run", "tokens", "busy s", "wall s", "tok/s busy", "tok/s wall",
                "ITL ms", "tokens/round", "tree size", "proactive hits (expected)",
                "same output as server-only"):
        t.add_column(col, justify="left" if col == "run" else "right")

    def tput(r: dict[str, Any], key: str) -> float:
        return float(r["tokens"] / r[key])

    for r in results:
        hits, expected = r["proactive_hit_rate"], r["proactive_expected_hit_rate"]
        t.add_row(r["variant"], str(r["tokens"]), f"{r['server_busy_s']:.2f}",
                  f"{r['server_wall_s']:.2f}", f"{tput(r, 'server_busy_s'):.1f}",
                  f"{tput(r, 'server_wall_s'):.1f}", f"{r['itl_ms']['mean']:.1f}",
                  f"{r['tokens_per_round']:.2f}", f"{r['tree_size_mean']:.1f}",
                  f"{hits:.1%} ({expected:.1%})" if hits == hits else "-",
                  f"{r['requests_as_server_only']}/{r['requests']}")
    # Against server-only; and the SpecEdge variants against the first (an ablation's
    # "no proactive" run).
    pairs = [(se, so) for se in results[:-1]]
    pairs += [(se, results[0]) for se in results[1:-1] if se["variant"].startswith("SpecEdge")]
    for se, base in pairs:
        t.add_row(f"{se['variant']} / {base['variant']}", "", "", "",
                  f"{tput(se, 'server_busy_s') / tput(base, 'server_busy_s'):.2f}x",
                  f"{tput(se, 'server_wall_s') / tput(base, 'server_wall_s'):.2f}x",
                  f"{se['itl_ms']['mean'] / base['itl_ms']['mean']:.2f}x",
                  f"{se['tokens_per_round'] / base['tokens_per_round']:.2f}x", "", "", "")
    console.print(t)


def budget_steps(run_dir: Path) -> list[dict[str, Any]]:
    """A goodput server's steps by batch size: drafted nodes it kept per step, and the tokens
    it expected against those it emitted (empty for a fixed-budget run or a baseline)."""
    problems: list[str] = []
    rows = read_jsonl(Path(run_dir) / SERVER_FILE, ServerStepRecord, problems, missing_ok=True)
    if not rows:  # a server-side baseline
        return []
    steps = pd.DataFrame(rows)
    steps = steps[steps["expected_tokens"] > 0]  # recorded under the goodput budget only
    if steps.empty:
        return []
    steps = steps.assign(kept=steps["tree_nodes"] - steps["batch_size"],
                         sent=steps["sent_nodes"] - steps["batch_size"])
    by = steps.groupby("batch_size")
    return [{"batch": int(b), "steps": len(g), "kept_per_step": float(g["kept"].mean()),
             "sent_per_step": float(g["sent"].mean()),
             "expected_tokens": float(g["expected_tokens"].sum()),
             "emitted_tokens": int(g["emitted_tokens"].sum())} for b, g in by]


def print_budget(results: list[dict[str, Any]], console: Console) -> None:
    so = results[-1]
    t = Table(title="SpecEdge: every tree verified (fixed) vs the server's goodput budget "
                    "(busy = sum of server steps)")
    for col in ("run", "tokens", "tok/s busy", "ITL ms", "tokens/round", "nodes sent/round",
                "nodes verified/round", "edge drafting ms/round", "bytes/round",
                "same output as server-only"):
        t.add_column(col, justify="left" if col == "run" else "right")

    def row(r: dict[str, Any]) -> list[float]:
        return [r["tokens"] / r["server_busy_s"], r["itl_ms"]["mean"], r["tokens_per_round"],
                r["tree_size_mean"], r["verified_size_mean"],
                1e3 * r["edge_busy_s"] / r["rounds"], r["bytes_per_round"]]

    for r in results:
        t.add_row(r["variant"], str(r["tokens"]), *(f"{v:.1f}" if i != 2 else f"{v:.2f}"
                                                   for i, v in enumerate(row(r))),
                  f"{r['requests_as_server_only']}/{r['requests']}")
    per_count = len(results[:-1]) // len(BUDGET_KINDS)
    for i in range(per_count):  # each edge count: fixed, then its budgeted variants
        fixed, *budgeted = results[i * len(BUDGET_KINDS):(i + 1) * len(BUDGET_KINDS)]
        for r in budgeted:
            t.add_row(f"{r['variant']} / fixed", "",
                      *(f"{b / f:.2f}x" if f else "-"
                        for b, f in zip(row(r), row(fixed), strict=True)), "")
    console.print(t)
    k = Table(title="the goodput budget's choice: drafted nodes kept per step, by batch size")
    for col in ("run", "batch", "steps", "nodes sent/step", "nodes kept/step",
                "tokens expected", "tokens emitted"):
        k.add_column(col, justify="left" if col == "run" else "right")
    for r in results:
        for b in r.get("budget_steps", []):
            k.add_row(r["variant"], str(b["batch"]), str(b["steps"]), f"{b['sent_per_step']:.1f}",
                      f"{b['kept_per_step']:.1f}", f"{b['expected_tokens']:.0f}",
                      str(b["emitted_tokens"]))
    console.print(k)
    console.print(f"server-only: {so['tokens'] / so['server_busy_s']:.1f} tok/s busy, "
                  f"ITL {so['itl_ms']['mean']:.1f} ms")
