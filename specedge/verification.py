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
from transformers import PreTrainedModel

from specedge.kv_cache import RequestCache, Rows, forward_rows
from specedge.tree import TokenTree


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

    def __call__(self, logits: torch.Tensor) -> list[int]:
        logits = logits.float()
        if self.temperature == 0:
            return logits.argmax(dim=-1).tolist()
        probs = top_p_filter(logits / self.temperature, self.top_p).softmax(dim=-1)
        gen = self.generator
        if gen is not None and gen.device != probs.device:
            probs = probs.cpu()
        return torch.multinomial(probs, 1, generator=gen).squeeze(-1).tolist()


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


def tree_rows(pending: list[int], tree: TokenTree, base: int) -> Rows:
    """Catch-up tokens (causal) followed by the tree (each node sees its ancestors)."""
    n_pend = len(pending)
    visible = [list(range(i + 1)) for i in range(n_pend)]
    for i in range(len(tree)):
        visible.append([*range(n_pend), *(n_pend + a for a in tree.path_to(i))])
    root_pos = base + n_pend
    return Rows(tokens=[*pending, *tree.tokens],
                positions=[*range(base, root_pos), *(root_pos + d for d in tree.depths)],
                visible=visible)


@torch.inference_mode()
def verify_trees(model: PreTrainedModel, caches: list[RequestCache], pendings: list[list[int]],
                 trees: list[TokenTree], choose: Chooser) -> list[Verdict]:
    """Verify many requests' trees in one target forward and keep only accepted KV."""
    rows = [tree_rows(p, t, len(c)) for p, t, c in zip(pendings, trees, caches, strict=True)]
    logits, batch, start = forward_rows(model, caches, rows)
    verdicts = []
    for b, (pending, tree, cache) in enumerate(zip(pendings, trees, caches, strict=True)):
        n_pend = len(pending)
        choices = choose(logits[b, n_pend : n_pend + len(tree)])
        path, bonus = accept(tree, choices)
        cache.keep(batch, b, start, [*range(n_pend), *(n_pend + n for n in path)])
        verdicts.append(Verdict(path=path, bonus=bonus))
    return verdicts
