"""Tree verification by the target (the server's job), and the lossless acceptance rule.

The target runs every tree node in one forward. At each node it *chooses* the next token as
plain decoding would: the argmax at temperature 0, otherwise a sample from its own
temperature/top-p distribution. Walking from the root, a child is accepted while its token
equals the target's choice at its parent; the choice at the last accepted node is the bonus
token. Every emitted token is therefore the target's own choice given the tokens before it, so
the output is exactly (greedy) or in distribution (sampling) what the target alone produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specedge.algorithm.tree import TokenTree
from specedge.engine.kv_cache import KVPool, KVRow, Query, prefill


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


@dataclass
class Chooser:
    """The target's per-node choice: argmax at temperature 0, else a top-p sample."""

    temperature: float = 0.0
    top_p: float = 1.0
    generator: torch.Generator | None = None

    @classmethod
    def seeded(cls, temperature: float, top_p: float, seed: int) -> Chooser:
        """The run's sampler: one stream from ``seed`` (the server-side loops, whose batches
        are the same in every run)."""
        return cls(temperature, top_p, torch.Generator().manual_seed(seed))

    def __call__(self, logits: torch.Tensor,
                 generator: torch.Generator | None = None) -> list[int]:
        logits = logits.float()
        if self.temperature == 0:
            return logits.argmax(dim=-1).tolist()
        probs = top_p_filter(logits / self.temperature, self.top_p).softmax(dim=-1)
        gen = generator or self.generator
        if gen is not None and gen.device != probs.device:
            probs = probs.cpu()
        return torch.multinomial(probs, 1, generator=gen).squeeze(-1).tolist()

    def spans(self, logits: torch.Tensor, spans: list[tuple[int, int]],
              generators: list[torch.Generator | None] | None = None) -> list[list[int]]:
        """Choices at ``logits[b, lo:hi]`` for each ``(lo, hi)`` (sampled from
        ``generators[b]`` where given); greedy takes one device-to-host copy for the whole
        batch."""
        if self.temperature == 0:
            best = logits.argmax(dim=-1).cpu().tolist()
            return [best[b][lo:hi] for b, (lo, hi) in enumerate(spans)]
        gens = generators or [None] * len(spans)
        return [self(logits[b, lo:hi], gens[b]) for b, (lo, hi) in enumerate(spans)]


def request_generator(seed: int, request_id: int) -> torch.Generator:
    """A request's own sample stream: what it draws does not depend on which other requests
    share its batches, so a SpecEdge run (whose batches depend on timing) is reproducible."""
    return torch.Generator().manual_seed(seed * 1_000_003 + request_id)


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
                 generators: list[torch.Generator | None] | None = None) -> list[Verdict]:
    """Verify many requests' trees in one target forward and keep only accepted KV."""
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
    choices = choose.spans(logits, [(len(p), len(p) + len(t))
                                    for p, t in zip(pendings, trees, strict=True)], generators)
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
