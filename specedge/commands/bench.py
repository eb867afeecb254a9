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
import dataclasses
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from specedge import CONF_DIR
from specedge.algorithm.drafting import TreeShape
from specedge.algorithm.sequence import Sequence, make_sequences
from specedge.algorithm.verification import Chooser, greedy_reference
from specedge.analysis.metrics import run_summary
from specedge.base.config.edge import ProactiveType
from specedge.base.config.model import CompileMode, DType, resolve_compile
from specedge.base.config.preflight import checked_run_config
from specedge.base.config.run import RunConfig
from specedge.base.records import (
    OUTPUTS_FILE,
    SERVER_FILE,
    STEPS_FILE,
    OutputRecord,
    ServerStepRecord,
    StepRecord,
    read_jsonl,
)
from specedge.engine.attention import text_config
from specedge.engine.datasets import Request, load_requests
from specedge.engine.kv_pool import pool_for
from specedge.engine.models import device_name, load_member, load_run_tokenizer, with_resolved_dtype
from specedge.engine.runners import TimedRunner
from specedge.serving.baselines import serve


@dataclass
class MethodResult:
    method: str
    tokens: int
    target_forwards: int
    wall_s: float
    exact: bool
    draft_forwards: int = 0
    matching: int = 0  # requests whose output equals the reference's (median repeat)
    requests: int = 0
    target_s: float = 0.0  # inside the target's forward calls
    draft_s: float = 0.0  # inside the draft's forward calls

    @property
    def tokens_per_forward(self) -> float:
        return self.tokens / self.target_forwards

    def ms_per_token(self) -> dict[str, float]:
        """Where a generated token's wall time goes: target, draft, everything else."""
        per = 1e3 / self.tokens
        return {"target": self.target_s * per, "draft": self.draft_s * per,
                "other": (self.wall_s - self.target_s - self.draft_s) * per}


class ForwardCounter:
    """Counts, and times, calls of a module's forward (whoever calls it)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self.seconds = 0.0
        self._t0 = 0.0
        self._handles = [module.register_forward_pre_hook(self._start),
                         module.register_forward_hook(self._stop)]

    def _start(self, *_: object) -> None:
        self._t0 = time.perf_counter()

    def _stop(self, module: torch.nn.Module, *_: object) -> None:
        if next(module.parameters()).is_cuda:
            torch.cuda.synchronize()
        self.calls += 1
        self.seconds += time.perf_counter() - self._t0

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _compose(overrides: list[str]) -> RunConfig:
    """The run's config with ``model.dtype=auto`` resolved for the server's device, so the
    tables name the dtype that ran and exactness is required where it is fp32."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = checked_run_config(compose(config_name="config", overrides=overrides))
    return with_resolved_dtype(cfg)


def bench_spec(cfg: RunConfig, repeats: int) -> list[MethodResult]:
    tok = load_run_tokenizer(cfg.model)
    device = cfg.hardware.server_device
    target = load_member(cfg.model, "target", device)
    draft = load_member(cfg.model, "draft", device)
    target_pool = pool_for(target, 1, cfg.model, cfg.edge, device)
    draft_pool = pool_for(draft, 1, cfg.model, cfg.edge, device)
    requests = load_requests(cfg.dataset, tok)
    max_new = cfg.generation.max_new_tokens
    shape = TreeShape.of(cfg.edge)
    prompts = [s.prompt_ids for s in make_sequences(requests, tok, cfg.dataset.chat_template,
                                                    max_new)]

    def hf(assistant: torch.nn.Module | None) -> Callable[[], list[list[int]]]:
        def run() -> list[list[int]]:
            return [greedy_reference(target, ids, max_new, tok.pad_token_id, assistant)
                    for ids in prompts]
        return run

    def ours(speculate: bool) -> Callable[[], list[list[int]]]:
        def run() -> list[list[int]]:
            seqs = make_sequences(requests, tok, cfg.dataset.chat_template, max_new)
            for seq in seqs:
                serve(baseline="server_only" if speculate else "auto_batch", sequences=[seq],
                      capacity=1, target=target_pool, draft=draft_pool if speculate else None,
                      shape=shape if speculate else None, choose=Chooser(),
                      policy=cfg.edge.tree_policy)
            return [s.generated for s in seqs]
        return run

    # "target greedy" is plain decoding on our forward path (model.compile), the baseline of
    # every ratio; HF generate (eager) is the reference every output must equal.
    methods = {"HF generate": hf(None), "target greedy": ours(False),
               "HF assisted": hf(draft), "SpecExec (ours)": ours(True)}

    def counters(name: str) -> tuple[ForwardCounter | TimedRunner, ForwardCounter | TimedRunner]:
        if name in {"target greedy", "SpecExec (ours)"}:  # ours: count our pools' forwards
            return TimedRunner(target_pool), TimedRunner(draft_pool)
        return ForwardCounter(target), ForwardCounter(draft)

    return _medians(_timed(methods, counters, repeats), reference="HF generate")


Outputs = list[list[int]]


def _timed(methods: dict[str, Callable[[], Outputs]],
           counters: Callable[[str], tuple[ForwardCounter | TimedRunner,
                                           ForwardCounter | TimedRunner]],
           repeats: int) -> dict[str, list[tuple[MethodResult, Outputs]]]:
    """Each method's timed repeats, the methods alternating so drift hits all alike."""
    results: dict[str, list[tuple[MethodResult, Outputs]]] = {m: [] for m in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            # Warm up right before timing: lazy initialisation (CUDA graph captures), and the
            # allocator state the previous method left behind, would otherwise be charged to
            # this one.
            fn()
            on_target, on_draft = counters(name)
            t0 = time.perf_counter()
            outs = fn()
            wall = time.perf_counter() - t0
            on_target.close()
            on_draft.close()
            results[name].append((MethodResult(
                method=name, tokens=sum(len(o) for o in outs), target_forwards=on_target.calls,
                wall_s=wall, exact=True, draft_forwards=on_draft.calls,
                target_s=on_target.seconds, draft_s=on_draft.seconds), outs))
    return results


def _medians(results: dict[str, list[tuple[MethodResult, Outputs]]],
             reference: str) -> list[MethodResult]:
    """The repeat with the median wall time stands for each method (its split included);
    a method is exact when every repeat's outputs equal the ``reference`` method's."""
    expected = results[reference][0][1]
    table = []
    for runs in results.values():
        ranked = sorted(runs, key=lambda r: r[0].wall_s)
        median = ranked[len(ranked) // 2][0]
        median.exact = all(outs == expected for _, outs in runs)
        outs = ranked[len(ranked) // 2][1]
        median.requests = len(expected)
        median.matching = sum(a == b for a, b in zip(outs, expected, strict=True))
        table.append(median)
    return table


def print_spec(table: list[MethodResult], cfg: RunConfig, console: Console) -> None:
    base = next(r for r in table if r.method == "target greedy")
    hf_assist = next(r for r in table if r.method == "HF assisted")
    t = Table(title=f"Speculative decoding on {cfg.model.name} ({cfg.hardware.server_device}, "
                    f"{cfg.model.dtype.value}, greedy, batch 1, SpecExec with "
                    f"{cfg.edge.tree_policy.value} trees)")
    for col in ("method", "tokens", "target fwd", "tokens/fwd", "vs HF assisted", "wall s",
                "speed-up vs greedy", "exact"):
        t.add_column(col, justify="right" if col != "method" else "left")
    split = Table(title="Where a generated token's time goes (ms per token)")
    for col in ("method", "target forwards", "draft forwards", "other", "draft fwd / target fwd"):
        split.add_column(col, justify="right" if col != "method" else "left")
    for r in table:
        t.add_row(r.method, str(r.tokens), str(r.target_forwards), f"{r.tokens_per_forward:.2f}",
                  f"{r.tokens_per_forward / hf_assist.tokens_per_forward:.2f}x",
                  f"{r.wall_s:.2f}", f"{base.wall_s / r.wall_s:.2f}x",
                  "yes" if r.exact else f"NO ({r.matching}/{r.requests} same)")
        ms = r.ms_per_token()
        split.add_row(r.method, f"{ms['target']:.2f}", f"{ms['draft']:.2f}", f"{ms['other']:.2f}",
                      f"{r.draft_forwards / r.target_forwards:.1f}")
    console.print(t)
    console.print(split)
    ours = next(r for r in table if r.method == "SpecExec (ours)")
    step_ms = 1e3 * base.target_s / base.target_forwards
    verify_ms = 1e3 * ours.target_s / ours.target_forwards
    draft_ms = 1e3 * ours.draft_s / ours.target_forwards
    per_round = ours.draft_forwards / ours.target_forwards
    console.print(
        f"Per round, SpecExec spends {draft_ms:.1f} ms in {per_round:.1f} draft forwards and "
        f"{verify_ms:.1f} ms in one tree verification "
        f"({verify_ms / step_ms:.2f}x a greedy step's {step_ms:.1f} ms) for "
        f"{ours.tokens_per_forward:.2f} tokens; it beats greedy on wall time only when that sum "
        f"is under {ours.tokens_per_forward:.2f} x {step_ms:.1f} = "
        f"{ours.tokens_per_forward * step_ms:.1f} ms (plus per-round overhead).")


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
    cfg = _compose(["baseline=specedge", *overrides])
    variants = [("SpecEdge", ["baseline=specedge"])]
    if proactive_run and cfg.edge.proactive.type != ProactiveType.disabled:
        variants.append(("SpecEdge, no proactive",
                         ["baseline=specedge", "edge.proactive.type=disabled"]))
    return [*variants, ("server-only", ["baseline=server_only"])]


def _run_name(variant: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", variant.lower()).strip("-")


def _real_runs(variants: list[tuple[str, list[str]]], overrides: list[str],
               out_dir: Path) -> list[dict[str, Any]]:
    """Each variant as a real run (its own processes), same prompts: its summary, outputs and
    run folder."""
    results = []
    for name, extra in variants:
        run_dir = out_dir / _run_name(name)
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


PATH_PROMPTS = (17, 100, 300, 600)  # prompt lengths of bench paths: one to several chunks


def bench_paths(cfg: RunConfig) -> dict[str, Any]:
    """Eager against ``model.compile``'s path on the same weights and prompts: per method,
    each request's first differing token (None: identical)."""
    device = cfg.hardware.server_device
    path = resolve_compile(cfg.model.compile, device)
    if path == CompileMode.eager:
        raise SystemExit("bench paths compares eager with model.compile's path: set "
                         "model.compile to static or graphs (auto is eager on a CPU)")
    longest = max(PATH_PROMPTS) + cfg.generation.max_new_tokens
    if longest > cfg.model.max_len:
        raise SystemExit(f"bench paths needs model.max_len >= {longest} (its longest prompt, "
                         f"{max(PATH_PROMPTS)} tokens, plus generation.max_new_tokens)")
    target = load_member(cfg.model, "target", device)
    draft = load_member(cfg.model, "draft", device)
    gen = torch.Generator().manual_seed(cfg.seed)
    vocab = int(text_config(target).vocab_size)
    prompts = [torch.randint(vocab, (n,), generator=gen).tolist() for n in PATH_PROMPTS]
    rows, shape = len(prompts), TreeShape.of(cfg.edge)
    outputs: dict[str, dict[str, list[list[int]]]] = {}
    for mode in (CompileMode.eager, path):
        mcfg = dataclasses.replace(cfg.model, compile=mode)
        t_pool = pool_for(target, rows, mcfg, cfg.edge, device)
        d_pool = pool_for(draft, rows, mcfg, cfg.edge, device)
        for method in ("auto_batch", "server_only"):
            seqs = [Sequence(request=Request(i, "random", ""), prompt_ids=list(p),
                             max_new_tokens=cfg.generation.max_new_tokens, eos_token_id=None)
                    for i, p in enumerate(prompts)]
            speculate = method == "server_only"
            serve(baseline=method, sequences=seqs, capacity=rows, target=t_pool,
                  draft=d_pool if speculate else None, shape=shape if speculate else None,
                  choose=Chooser())
            outputs.setdefault(method, {})[mode.value] = [s.generated for s in seqs]
        del t_pool, d_pool
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()

    def first_difference(a: list[int], b: list[int]) -> int | None:
        return next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), None)

    methods = {method: [first_difference(e, o) for e, o in zip(
        by_mode[CompileMode.eager.value], by_mode[path.value], strict=True)]
        for method, by_mode in outputs.items()}
    return {"model": cfg.model.name, "device": device, "device_name": device_name(device),
            "path": path.value, "dtype": cfg.model.dtype.value, "weights": cfg.model.weights.value,
            "prompt_tokens": list(PATH_PROMPTS), "new_tokens": cfg.generation.max_new_tokens,
            "first_difference": methods}


def print_paths(result: dict[str, Any], console: Console) -> None:
    t = Table(title=f"eager vs {result['path']} on {result['device_name']} ({result['dtype']}, "
                    f"{result['weights']} weights, {result['new_tokens']} new tokens)")
    t.add_column("method")
    for n in result["prompt_tokens"]:
        t.add_column(f"{n}-token prompt", justify="right")
    for method, diffs in result["first_difference"].items():
        t.add_row(method, *("identical" if d is None else f"differs at token {d}"
                            for d in diffs))
    console.print(t)


GPU_BAR = (  # (what, measured as, at most / at least, limit)
    ("one-token step, batch 1 / its bandwidth floor", "floor", "<=", 1.5),
    ("64-node verification / one-token step (batch 1)", "verify", "<=", 1.2),
    ("8 trees of 16 nodes / one-token step (batch 1)", "batched", "<=", 1.5),
    ("SpecExec wall speed-up over plain greedy (bench spec's pair)", "spec", ">=", 2.0),
)


def summary(out_dir: Path) -> tuple[Table, list[str]]:
    """The GPU check's results in one table, and its bar, line by line."""
    by_path: dict[str, dict[tuple[str, int, int, int], dict[str, Any]]] = {}
    gpu = "unknown device"
    for f in sorted(out_dir.glob("profile-*.json")):
        prof = json.loads(f.read_text())
        gpu = prof["device_name"]
        for r in prof["rows"]:
            key = (r["name"], r["batch"], r["nodes"], r["prefix"])
            by_path.setdefault(r["forward_path"], {})[key] = r
    if not any(out_dir.glob("*.json")):
        raise SystemExit(f"{out_dir}: none of gpu_check.sh's JSON files (profile-*.json, "
                         "paths*.json, spec*.json) to sum up")
    if not by_path:  # a run of other steps only: the lines below, under an empty table
        by_path["eager"] = {}
    for f in sorted(out_dir.glob("spec*.json")):
        gpu = json.loads(f.read_text()).get("device_name", gpu)
    # graphs, else the other non-eager path profiled (static on a CPU), else eager alone
    fast = max(by_path, key=lambda m: (m == "graphs", m != "eager", len(by_path[m])))
    eager = by_path.get("eager", {})
    t = Table(title=f"GPU check on {gpu}: forward ms, eager vs {fast} vs the bandwidth floor")
    for col in ("model", "batch", "nodes", "prefix", "eager ms", f"{fast} ms", "floor ms",
                f"{fast} / floor", f"eager / {fast}"):
        t.add_column(col, justify="left" if col == "model" else "right")
    points = by_path[fast]
    for key, r in sorted(points.items()):
        e = eager.get(key)
        floor = r["floor_ms"]
        t.add_row(key[0], *map(str, key[1:]), "-" if e is None else f"{e['ms_median']:.2f}",
                  f"{r['ms_median']:.2f}", "-" if floor is None else f"{floor:.2f}",
                  "-" if floor is None else f"{r['ms_median'] / floor:.2f}x",
                  "-" if e is None else f"{e['ms_median'] / r['ms_median']:.2f}x")
    targets = {k: r for k, r in points.items() if r["model"] == "target"}

    def step(batch: int, nodes: int) -> dict[str, Any] | None:
        return next((r for (_, b, n, _), r in sorted(targets.items())
                     if b == batch and n == nodes), None)

    one = step(1, 1)
    measured: dict[str, float | None] = {"floor": None, "verify": None, "batched": None,
                                         "spec": None}
    if one is not None:
        if one["floor_ms"]:
            measured["floor"] = one["ms_median"] / one["floor_ms"]
        for name, (batch, nodes) in (("verify", (1, 64)), ("batched", (8, 16))):
            if (r := step(batch, nodes)) is not None:
                measured[name] = r["ms_median"] / one["ms_median"]
    specs = {f: json.loads(f.read_text()) for f in sorted(out_dir.glob("spec*.json"))}
    if specs:  # the bar on the most requests measured (spec-8.json over spec-4.json)
        spec = max(specs.values(), key=lambda s: s["results"][0]["requests"])
        walls = {r["method"]: r["wall_s"] for r in spec["results"]}
        measured["spec"] = walls["target greedy"] / walls["SpecExec (ours)"]
    lines = []
    for what, name, sense, limit in GPU_BAR:
        value = measured[name]
        if value is None:
            lines.append(f"{what}: not measured")
            continue
        ok = value <= limit if sense == "<=" else value >= limit
        lines.append(f"{what}: {value:.2f}x ({'meets' if ok else 'misses'} {sense} {limit}x)")
    for paths in sorted(out_dir.glob("paths*.json")):
        p = json.loads(paths.read_text())
        for method, diffs in p["first_difference"].items():
            same = sum(d is None for d in diffs)
            first = [d for d in diffs if d is not None]
            lines.append(f"eager vs {p['path']}, {p['model']} {method} ({p['dtype']}): "
                         f"{same}/{len(diffs)} requests identical"
                         + (f", first difference at token {min(first)}" if first else ""))
    for spec in specs.values():
        lines.append(f"bench spec, {spec['model']} ({spec['dtype']}, {spec['forward_path']}), "
                     f"{spec['results'][0]['requests']} requests: " + ", ".join(
                         f"{r['method']} {r['matching']}/{r['requests']} exact"
                         for r in spec["results"]))
    for edge in sorted(out_dir.glob("edge-*/edge.json")):
        lines.append(f"bench edge, {edge.parent.name}: " + ", ".join(
            f"{r['variant']} {r['requests_as_server_only']}/{r['requests']} as server-only"
            for r in json.loads(edge.read_text())))
    for log_file in sorted(out_dir.glob("*.log")):  # start-up capture: graphs, time, memory
        lines += [f"{log_file.stem}: {line.split('] ')[-1].strip()}"
                  for line in log_file.read_text(errors="replace").splitlines()
                  if "at start-up in" in line]
    return t, [f"on {gpu}: {line}" for line in lines]


def _runs_dir(out: Path | None, which: str) -> Path:
    """Where a bench's real runs go: beside ``--out``, else under results/bench/."""
    return (out.parent if out else Path("results/bench")) / f"{which}-runs"


def _write_json(out: Path | None, data: Any) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n")


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
        # Half precision: batches of different make-up may round a near-tie differently, so
        # there the count of equal outputs is measured (the table's last column), not failed.
        fp32 = _compose(args.overrides).model.dtype == DType.fp32
        return 0 if not fp32 or all(r["identical_to_server_only"] for r in results) else 1
    if args.which == "budget":
        out_dir = _runs_dir(args.out, "budget")
        variants = budget_variants(args.edges)
        results = bench_edge(["dataset.max_requests=16", *args.overrides], out_dir,
                             variants=variants)
        for r, (name, _) in zip(results, variants, strict=True):
            r["budget_steps"] = budget_steps(out_dir / _run_name(name))
        print_budget(results, Console(width=200))
        _write_json(args.out, results)
        fp32 = _compose(args.overrides).model.dtype == DType.fp32
        return 0 if not fp32 or all(r["identical_to_server_only"] for r in results) else 1
    if args.which == "drafting":
        out_dir = _runs_dir(args.out, "drafting")
        results = bench_drafting(["dataset.max_requests=16", *args.overrides], out_dir)
        print_drafting(results, Console(width=160))
        _write_json(args.out, results)
        fp32 = _compose(args.overrides).model.dtype == DType.fp32
        return 0 if not fp32 or all(r["same_outputs_as_batched"] == r["requests"]
                                    for r in results) else 1
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
        cfg = _compose(["generation.max_new_tokens=32", *args.overrides])
        paths = bench_paths(cfg)
        print_paths(paths, Console(width=132))
        _write_json(args.out, paths)
        same = all(d is None for diffs in paths["first_difference"].values() for d in diffs)
        return 0 if same or cfg.model.dtype != DType.fp32 else 1
    defaults = ["dataset.max_requests=12", "generation.max_new_tokens=64"]
    cfg = _compose(defaults + args.overrides)
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


if __name__ == "__main__":
    sys.exit(main())
