"""Benchmarks that print ratios against a baseline measured in the same run.

``python -m specedge.bench spec [HYDRA_OVERRIDES...]`` runs, one request at a time, greedy, on
the configured pair and prompts: (a) Hugging Face ``generate`` (eager), (b) plain target
greedy on our forward path (``model.compile``), (c) Hugging Face assisted generation with the
draft, (d) our server-only SpecExec on our forward path. It reports tokens per target forward
and wall time against (b), checks that every method reproduces (a) token for token, and writes
the table as JSON with ``--out FILE`` (with the device's name).

``python -m specedge.bench edge [HYDRA_OVERRIDES...]`` runs SpecEdge (server and edge processes,
pinned to ``hardware.server_cores`` / ``hardware.edge_cores``) and server-only (pinned to the
server's cores) on the same prompts and prints server throughput under busy and wall
accounting, inter-token latency, bytes per round and the proactive hit rate; when proactive
drafting is on, SpecEdge also runs without it, so its effect is measured, not assumed. Every
run's output must equal server-only's token for token.

``python -m specedge.bench paths [HYDRA_OVERRIDES...]`` decodes seeded random prompts with the
configured pair on the eager path and on ``model.compile``'s (graphs on a GPU, static where it
is asked for), batched greedy and server-only SpecExec, and gives each request's first token
where the two paths differ (none in fp32; half precision may round a near-tie differently).
It needs no tokenizer, so it runs with ``model.weights=random``.

``python -m specedge.bench summary DIR`` prints, from what ``workflow/scripts/gpu_check.sh``
wrote to DIR (``profile-*.json``, ``paths.json``, ``spec.json``), one table: each profiled
point on the eager and graphs paths beside its bandwidth floor, then the GPU path's bar (one
step within 1.5x its floor, a 64-node verification within 1.2x a step, a batch of 8 trees of
16 nodes within 1.5x, SpecExec's wall >= 2x plain greedy) and eager-vs-graphs exactness.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console

from specedge.algorithm.drafting import TreeShape
from specedge.base.config.model import DType, resolve_compile
from specedge.commands.bench.edge import (
    BUDGET_EDGES,
    bench_drafting,
    bench_edge,
    budget_steps,
    budget_variants,
    print_budget,
    print_drafting,
    print_edge,
    run_name,
)
from specedge.commands.bench.paths import bench_paths, print_paths
from specedge.commands.bench.spec import bench_spec, compose_config, print_spec
from specedge.commands.bench.summary import summary
from specedge.engine.models import device_name

__all__ = ["main", "summary"]


def _runs_dir(out: Path | None, which: str) -> Path:
    """Where a bench's real runs go: beside ``--out``, else under results/bench/."""
    return (out.parent if out else Path("results/bench")) / f"{which}-runs"


def _write_json(out: Path | None, data: Any) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n")


def _status(overrides: list[str], exact: bool) -> int:
    """The exit status of a bench of real runs: 1 when an fp32 run's outputs differ. In half
    precision batches of different make-up may round a near-tie differently, so there the
    count of equal outputs is measured (the table's last column), not failed."""
    return 0 if exact or compose_config(overrides).model.dtype != DType.fp32 else 1


def _edge_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(x) for x in text.split(","))
    except ValueError:
        counts = ()
    if not counts or any(n < 2 or n % 2 for n in counts):
        raise argparse.ArgumentTypeError(f"{text!r} is not accepted: even edge counts >= 2, "
                                         "comma-separated (two pipeline groups each)")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specedge bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["spec", "edge", "ablation", "budget", "drafting",
                                          "paths", "summary"],
                        help="spec: speculative decoding methods side by side; edge: SpecEdge "
                        "vs server-only runs; budget: SpecEdge with 4 and 8 edges, fixed trees "
                        "vs the server's goodput budget; ablation: proactive drafting (off / "
                        "upstream's "
                        "rule / speculation cache) and tree policy (fixed / adaptive); drafting: "
                        "server-only at batch 4 and 8, its trees drafted in one batched forward "
                        "per level vs one request after the other; paths: "
                        "eager vs model.compile's forward path, token for token; summary "
                        "DIR: the GPU check's table from gpu_check.sh's output folder")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. edge.max_budget=64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    parser.add_argument("--no-proactive-run", dest="proactive_run", action="store_false",
                        help="edge: leave out the run without proactive drafting (one process "
                        "set fewer where start-up dominates, as on the GPU check)")
    parser.add_argument("--edges", type=_edge_counts, default=BUDGET_EDGES,
                        help="budget: the edge counts to compare at, e.g. 4,8 (even, >= 2: two "
                        "pipeline groups)")
    parser.add_argument("--log", action="store_true",
                        help="log loads and start-up capture (graphs, seconds, device memory)")
    args = parser.parse_args(argv)
    if args.log:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    if args.which in ("edge", "ablation"):
        out_dir = _runs_dir(args.out, args.which)
        results = bench_edge(["dataset.max_requests=32", *args.overrides], out_dir,
                             ablation=args.which == "ablation", proactive_run=args.proactive_run)
        print_edge(results, Console(width=200))
        _write_json(args.out, results)
        return _status(args.overrides, all(r["identical_to_server_only"] for r in results))
    if args.which == "budget":
        out_dir = _runs_dir(args.out, "budget")
        variants = budget_variants(args.edges)
        results = bench_edge(["dataset.max_requests=16", *args.overrides], out_dir,
                             variants=variants)
        for r, (name, _) in zip(results, variants, strict=True):
            r["budget_steps"] = budget_steps(out_dir / run_name(name))
        print_budget(results, Console(width=200))
        _write_json(args.out, results)
        return _status(args.overrides, all(r["identical_to_server_only"] for r in results))
    if args.which == "drafting":
        out_dir = _runs_dir(args.out, "drafting")
        results = bench_drafting(["dataset.max_requests=16", *args.overrides], out_dir)
        print_drafting(results, Console(width=160))
        _write_json(args.out, results)
        return _status(args.overrides, all(r["same_outputs_as_batched"] == r["requests"]
                                           for r in results))
    if args.which == "summary":
        if len(args.overrides) != 1:
            parser.error("summary takes one argument: the folder gpu_check.sh wrote")
        table, lines = summary(Path(args.overrides[0]))
        console = Console(width=160)
        console.print(table)
        for line in lines:
            console.print(line)
        return 0
    if args.which == "paths":
        cfg = compose_config(["generation.max_new_tokens=32", *args.overrides])
        paths = bench_paths(cfg)
        print_paths(paths, Console(width=132))
        _write_json(args.out, paths)
        same = all(d is None for diffs in paths["first_difference"].values() for d in diffs)
        return 0 if same or cfg.model.dtype != DType.fp32 else 1
    defaults = ["dataset.max_requests=12", "generation.max_new_tokens=64"]
    cfg = compose_config(defaults + args.overrides)
    table = bench_spec(cfg, args.repeats)
    print_spec(table, cfg, Console(width=132))
    if cfg.model.dtype != DType.fp32:
        # A 16-token verification and a 1-token decode may round a near-tie differently in
        # half precision: there a difference is measured (the match rate), not a failure.
        print(f"{cfg.model.dtype.value}: requests equal to HF generate's greedy decode: " +
              ", ".join(f"{r.method} {r.matching}/{r.requests}" for r in table))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shape = TreeShape.of(cfg.edge)
        rows = [asdict(r) | {"tokens_per_forward": r.tokens_per_forward,
                             "ms_per_token": r.ms_per_token()} for r in table]
        args.out.write_text(json.dumps({"model": cfg.model.name,
                                        "device": cfg.hardware.server_device,
                                        "device_name": device_name(cfg.hardware.server_device),
                                        "forward_path": resolve_compile(
                                            cfg.model.compile,
                                            cfg.hardware.server_device).value,
                                        "weights": cfg.model.weights.value,
                                        "dtype": cfg.model.dtype.value, "shape": asdict(shape),
                                        "tree_policy": cfg.edge.tree_policy.value,
                                        "results": rows}, indent=2) + "\n")
    return 0 if cfg.model.dtype != DType.fp32 or all(r.exact for r in table) else 1

