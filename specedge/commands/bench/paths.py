"""``bench paths``: the eager forward path against ``model.compile``'s, token for token."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from specedge.algorithm.drafting import TreeShape
from specedge.algorithm.sequence import Sequence
from specedge.algorithm.verification import Chooser
from specedge.base.config.model import CompileMode, resolve_compile
from specedge.base.config.run import RunConfig
from specedge.engine.attention import text_config
from specedge.engine.datasets import Request
from specedge.engine.kv_pool import pool_for
from specedge.engine.models import device_name, load_member
from specedge.serving.baselines import serve

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
