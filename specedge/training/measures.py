"""What a built pair's card says about it: the draft's agreement with the target along the
target's own greedy path, both models' forward times on the forward every method makes, and
SpecExec's tokens per target forward. Measured on the pair as saved and loaded anew."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict

import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge.algorithm.drafting import TreeShape
from specedge.algorithm.sequence import make_sequences
from specedge.algorithm.verification import Chooser
from specedge.base.config.edge import EdgeConfig
from specedge.base.config.model import CompileMode
from specedge.engine.datasets import Request
from specedge.engine.kv_pool import KVPool, prefill
from specedge.engine.query_plan import causal_query
from specedge.engine.runners import timed
from specedge.serving.baselines import serve
from specedge.training.decoding import decode


@torch.inference_mode()
def agreement(target: PreTrainedModel, draft: PreTrainedModel, prompts: list[list[int]],
              categories: list[str], new_tokens: int, eos: int | None) -> dict[str, object]:
    """Draft top-1/top-4 agreement with the target along the target's own greedy path
    (``new_tokens`` a prompt, ended early by ``eos``; None: never), over all prompts and per
    category."""
    counts: dict[str, list[int]] = {}  # category: [top-1, top-4, positions]
    for ex, category in zip(decode(target, prompts, new_tokens, eos), categories, strict=True):
        logits = draft(input_ids=torch.tensor([ex.prompt + ex.reply[:-1]])).logits
        best = logits[0, len(ex.prompt) - 1 :].topk(4, dim=-1).indices
        chosen = torch.tensor(ex.reply).unsqueeze(-1)
        row = counts.setdefault(category, [0, 0, 0])
        row[0] += int((best[:, :1] == chosen).sum())
        row[1] += int((best == chosen).any(-1).sum())
        row[2] += len(ex.reply)
    top1, top4, total = (sum(c[i] for c in counts.values()) for i in range(3))
    return {"top1": top1 / total, "top4": top4 / total, "positions": total,
            "by_category": {k: {"top1": round(a / n, 4), "top4": round(b / n, 4),
                                "positions": n} for k, (a, b, n) in counts.items()}}


@torch.inference_mode()
def forward_ms(target: PreTrainedModel, draft: PreTrainedModel, tokens: list[int],
               repeats: int, prefix_len: int = 64, blocks: int = 3) -> dict[str, float]:
    """Median single-token forward time of each model on a cached prefix of ``tokens``.

    Each model runs in its own warm block (as on its own device in a deployment); blocks of the
    two models alternate so that machine drift hits both alike."""
    prefix, nxt = tokens[:prefix_len], tokens[prefix_len : prefix_len + 1]
    times: dict[str, list[float]] = {"target": [], "draft": []}
    pools = {"target": KVPool(target, 1, prefix_len + 1, 1, CompileMode.eager),
             "draft": KVPool(draft, 1, prefix_len + 1, 1, CompileMode.eager)}
    for _ in range(blocks):
        for name, pool in pools.items():
            row = pool.acquire()
            prefill(pool, row, prefix)
            for i in range(repeats + 10):
                t0 = time.perf_counter()
                pool.forward([causal_query(row, nxt, prefix_len)])
                elapsed = time.perf_counter() - t0
                pool.drop_work(row)
                if i >= 10:  # warm-up
                    times[name].append(elapsed)
            pool.release(row)
    t_ms = statistics.median(times["target"]) * 1e3
    d_ms = statistics.median(times["draft"]) * 1e3
    return {"target_ms": t_ms, "draft_ms": d_ms, "ratio": t_ms / d_ms}


def speculation(target: PreTrainedModel, draft: PreTrainedModel, tok: PreTrainedTokenizerBase,
                requests: list[Request], new_tokens: int) -> dict[str, object]:
    """SpecExec (server-only, one request at a time) at the edge's default tree: tokens per
    target forward, and how many replies equal plain greedy decoding on the same path."""
    edge = EdgeConfig()
    shape = TreeShape.of(edge)
    n = len(requests)
    pools = {m: KVPool(m, 1, 1024, edge.work_columns(), CompileMode.eager)
             for m in (target, draft)}
    outputs: dict[str, list[list[int]]] = {}
    forwards = 0
    for name, speculate in (("greedy", False), ("specexec", True)):
        seqs = make_sequences(requests, tok, True, new_tokens)
        with timed(pools[target]) as timer:
            for seq in seqs:
                serve(baseline="server_only" if speculate else "auto_batch", sequences=[seq],
                      capacity=1, target=pools[target],
                      draft=pools[draft] if speculate else None,
                      shape=shape if speculate else None, choose=Chooser())
        if speculate:
            forwards = timer.calls
        outputs[name] = [s.generated for s in seqs]
    tokens = sum(len(o) for o in outputs["specexec"])
    same = sum(a == b for a, b in zip(outputs["greedy"], outputs["specexec"], strict=True))
    return {"tree": asdict(shape), "requests": n, "tokens": tokens, "target_forwards": forwards,
            "tokens_per_target_forward": tokens / forwards,
            "same_as_greedy": f"{same}/{n}"}
