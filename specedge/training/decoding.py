"""The one batched decoder of model building: every prompt at once through a KV pool, each row
attending to its own prefix (no padding), greedy or sampled, optionally keeping the top-k
log-probabilities along the way (a distillation's targets)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from specedge.base.config.model import CompileMode
from specedge.engine.kv_pool import KVPool
from specedge.engine.query_plan import causal_query


@dataclass
class Example:
    """A prompt, the target's greedy reply, and its top-k at each reply position."""

    prompt: list[int]
    reply: list[int]
    top_ids: torch.Tensor  # [len(reply), k]
    top_logp: torch.Tensor  # [len(reply), k]


@torch.inference_mode()
def decode(model: PreTrainedModel, prompts: list[list[int]], max_new: int, eos: int | None,
           temperature: float = 0.0, gen: torch.Generator | None = None,
           top_k: int = 0) -> list[Example]:
    """Decode every prompt at once through a KV pool (no padding: each row attends to its
    own prefix); greedy unless ``temperature`` > 0. A reply stops after ``eos`` (None: never)."""
    longest = max(len(p) for p in prompts)
    pool = KVPool(model, len(prompts), longest + max_new + 1, longest, CompileMode.eager)
    rows = [pool.acquire() for _ in prompts]
    logits = pool.forward([causal_query(r, p, 0) for r, p in zip(rows, prompts, strict=True)])
    last = torch.stack([logits[i, len(p) - 1] for i, p in enumerate(prompts)])
    pool.keep([(r, list(range(len(p)))) for r, p in zip(rows, prompts, strict=True)])
    replies: list[list[int]] = [[] for _ in prompts]
    tops: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in prompts]
    active = list(range(len(prompts)))
    for _ in range(max_new):
        scores = last.float()
        if temperature > 0:
            probs = torch.softmax(scores / temperature, dim=-1)
            chosen = torch.multinomial(probs, 1, generator=gen)[:, 0].tolist()
        else:
            chosen = scores.argmax(-1).tolist()
        if top_k:
            values, ids = torch.log_softmax(scores, dim=-1).topk(top_k, dim=-1)
        going = []
        for j, i in enumerate(active):
            replies[i].append(chosen[j])
            if top_k:
                tops[i].append((ids[j], values[j]))
            if chosen[j] != eos:
                going.append(j)
        active = [active[j] for j in going]
        if not active:
            break
        logits = pool.forward([causal_query(rows[i], [replies[i][-1]], rows[i].length)
                               for i in active])
        pool.keep([(rows[i], [rows[i].length]) for i in active])
        last = logits[: len(active), 0]
    return [Example(p, r, torch.stack([a for a, _ in t]) if t else torch.empty(0, 0),
                    torch.stack([b for _, b in t]) if t else torch.empty(0, 0))
            for p, r, t in zip(prompts, replies, tops, strict=True)]
