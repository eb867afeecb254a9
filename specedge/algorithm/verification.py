"""Tree verification by the target (the server's job), and the lossless acceptance rule.

The target runs every tree node in one forward. At each node it *chooses* the next token as
plain decoding would: the argmax at temperature 0, otherwise a sample from its own
temperature/top-p distribution. Walking from the root, a child is accepted while its token
equals the target's choice at its parent; the choice at the last accepted node is the bonus
token. Every emitted token is therefore the target's own choice given the tokens before it, so
the output is exactly (greedy) or in distribution (sampling) what the target alone produces.

**Position-keyed sampling.** A sampled choice is the inverse CDF of the target's distribution at
one uniform number drawn from (run seed, request, position of the token chosen), not from a
stream that each verified node advances. Nodes at one depth share their position's number,
which is harmless (at most one of them is on the accepted path) and makes what is sampled
independent of the tree: a request's sampled output is the same whatever was drafted, however
many nodes a goodput budget kept, whichever requests shared its batches, and equal token for
token to the target's own sampled decode under the same seed (auto-batch's).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from specedge.algorithm.tree import TokenTree
from specedge.engine.kv_pool import KVPool, prefill
from specedge.engine.query_plan import KVRow, Query


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p``; -inf the rest.

    (Upstream's filter removed the most likely tokens instead: the mask must drop the tail.)
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of strictly more likely tokens
    drop_sorted = mass_before >= top_p  # the top token always has mass_before 0 and stays
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def position_uniform(seed: int, key: int, position: int) -> float:
    """The uniform number in [0, 1) of request ``key``'s token at ``position`` under ``seed``
    (53 bits of a BLAKE2b digest: the same on every machine and in every process)."""
    digest = hashlib.blake2b(f"{seed}:{key}:{position}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / float(1 << 53)


def inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Per row of ``probs``, the token whose cumulative mass first exceeds the row's uniform
    (scaled to the row's total): a token of zero probability is never chosen."""
    cdf = probs.cumsum(dim=-1)
    target = uniforms.to(cdf.device, cdf.dtype).unsqueeze(-1) * cdf[..., -1:]
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


@dataclass(frozen=True)
class Chooser:
    """The target's per-node choice: argmax at temperature 0, else a top-p sample keyed by
    (``seed``, request, position) (see the module's note on position-keyed sampling)."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __call__(self, logits: torch.Tensor, key: int | None = None,
                 positions: list[int] | None = None) -> list[int]:
        """Choices at ``logits[n]``, for the tokens at ``positions[n]`` of request ``key``."""
        logits = logits.float()
        if self.temperature == 0:
            return logits.argmax(dim=-1).tolist()
        if key is None or positions is None or len(positions) != logits.shape[0]:
            raise ValueError("a sampled choice needs its request's key and one position per "
                             f"row of logits (got key={key!r}, {logits.shape[0]} rows, "
                             f"positions={positions!r})")
        probs = top_p_filter(logits / self.temperature, self.top_p).softmax(dim=-1)
        uniforms = torch.tensor([position_uniform(self.seed, key, p) for p in positions],
                                dtype=torch.float64)
        return inverse_cdf(probs.double(), uniforms).tolist()

    def spans(self, logits: torch.Tensor, spans: list[tuple[int, int]],
              keys: list[int] | None = None,
              positions: list[list[int]] | None = None) -> list[list[int]]:
        """Choices at ``logits[b, lo:hi]`` for each ``(lo, hi)``, sampled for request
        ``keys[b]`` at ``positions[b]``; greedy takes one device-to-host copy for the whole
        batch."""
        if self.temperature == 0:
            best = logits.argmax(dim=-1).cpu().tolist()
            return [best[b][lo:hi] for b, (lo, hi) in enumerate(spans)]
        if keys is None or positions is None:
            raise ValueError("sampled verification needs each row's request key and positions")
        return [self(logits[b, lo:hi], keys[b], positions[b]) for b, (lo, hi) in enumerate(spans)]


def accept(tree: TokenTree, choices: list[int]) -> tuple[list[int], int]:
    """Walk from the root along children that match the target's choices.

    Returns the accepted path (node indices, root first) and the bonus token.
    """
    kids: dict[int, dict[int, int]] = {}
    for i in range(1, len(tree)):
        kids.setdefault(tree.parents[i], {}).setdefault(tree.tokens[i], i)
    path = [0]
    while (nxt := kids.get(path[-1], {}).get(choices[path[-1]])) is not None:
        path.append(nxt)
    return path, choices[path[-1]]


@dataclass
class Verdict:
    path: list[int]  # accepted node indices, root first
    bonus: int  # the target's choice after the last accepted node

    def new_tokens(self, tree: TokenTree) -> list[int]:
        return [tree.tokens[n] for n in self.path[1:]] + [self.bonus]


def tree_query(row: KVRow, pending: list[int], tree: TokenTree) -> Query:
    """Catch-up tokens (causal) followed by the tree (each node sees its ancestors)."""
    n_pend = len(pending)
    start = row.used
    visible = [list(range(start, start + i + 1)) for i in range(n_pend)]
    for i in range(len(tree)):
        visible.append([*range(start, start + n_pend),
                        *(start + n_pend + a for a in tree.path_to(i))])
    root_pos = row.length + n_pend
    return Query(row=row, tokens=[*pending, *tree.tokens],
                 positions=[*range(row.length, root_pos), *(root_pos + d for d in tree.depths)],
                 visible=visible)


@torch.inference_mode()
def verify_trees(pool: KVPool, rows: list[KVRow], pendings: list[list[int]],
                 trees: list[TokenTree], choose: Chooser,
                 keys: list[int] | None = None) -> list[Verdict]:
    """Verify many requests' trees in one target forward and keep only accepted KV.
    ``keys``: each row's request, for sampling (position-keyed; unused when greedy)."""
    for row in rows:
        pool.drop_work(row)
    pendings = list(pendings)
    for b, (row, tree) in enumerate(zip(rows, trees, strict=True)):
        excess = len(pendings[b]) + len(tree) - pool.max_tokens
        if excess > 0:  # a long prompt: commit it in chunks first, the tree's round after
            prefill(pool, row, pendings[b][:excess])
            pendings[b] = pendings[b][excess:]
    queries = [tree_query(r, p, t) for r, p, t in zip(rows, pendings, trees, strict=True)]
    starts = [r.used for r in rows]
    logits = pool.forward(queries)
    spans = [(len(p), len(p) + len(t)) for p, t in zip(pendings, trees, strict=True)]
    # A node's choice is the token at the position after its own.
    positions = [[pos + 1 for pos in q.positions[lo:hi]] for q, (lo, hi) in
                 zip(queries, spans, strict=True)]
    choices = choose.spans(logits, spans, keys, positions)
    verdicts, kept = [], []
    for row, pending, tree, start, chosen in zip(rows, pendings, trees, starts, choices,
                                                 strict=True):
        n_pend = len(pending)
        path, bonus = accept(tree, chosen)
        kept.append((row, [*range(start, start + n_pend), *(start + n_pend + n for n in path)]))
        verdicts.append(Verdict(path=path, bonus=bonus))
    pool.keep(kept)
    return verdicts


@torch.inference_mode()
def greedy_reference(target: torch.nn.Module, prompt_ids: list[int], max_new_tokens: int,
                     pad_token_id: int = 0,
                     assistant: torch.nn.Module | None = None) -> list[int]:
    """What the target alone decodes greedily (Hugging Face ``generate``, its stop rules):
    the output every method here must equal token for token. ``assistant``: HF's own
    assisted generation, which must equal it too."""
    ids = torch.tensor([prompt_ids], device=target.device)
    out = target.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          max_new_tokens=max_new_tokens, pad_token_id=pad_token_id,
                          assistant_model=assistant)
    return out[0, len(prompt_ids):].tolist()
