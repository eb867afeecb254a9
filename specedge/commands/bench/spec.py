"""``bench spec``: speculative decoding methods side by side on one pair, one request at a
time, each checked token for token against Hugging Face ``generate``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from specedge import CONF_DIR
from specedge.algorithm.drafting import TreeShape
from specedge.algorithm.sequence import make_sequences
from specedge.algorithm.verification import Chooser, greedy_reference
from specedge.base.config.preflight import checked_run_config
from specedge.base.config.run import RunConfig
from specedge.engine.datasets import load_requests
from specedge.engine.kv_pool import pool_for
from specedge.engine.models import load_member, load_run_tokenizer, with_resolved_dtype
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


def compose_config(overrides: list[str]) -> RunConfig:
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
