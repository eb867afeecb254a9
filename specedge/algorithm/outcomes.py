"""The verification outcome model: where the server will stop in a drafted tree, and what bonus
token it will emit, estimated by the draft before the server answers.

Verification walks from the root while the target's choice at a node is one of its drafted
children, so a round ends in exactly one *outcome* ``(v, t)``: the path to node ``v`` is
accepted and the target's choice at ``v`` is a token ``t`` that is not a drafted child of
``v``. With the draft's own probabilities ``q`` standing in for the target's,

    P(path to v accepted) = prod of q(child | parent) along the path       (1 at the root)
    P(v, t)              = P(path to v accepted) * q(t | v),  t not a child of v

and the outcomes of a tree whose every node was forwarded sum to one (each node's accepted mass
splits between its children and its outcomes). When the draft samples like the target (the
same model at the same temperature) these are the true probabilities. Otherwise, and above all
under greedy verification (the target takes its argmax, which agrees with a token the draft
gives 0.3 far more often than 30 % of the time when the pair is close), ``q`` is first mapped
through a :class:`Calibration` learned from the verdicts seen so far: how often the target chose a
token the draft had given probability q. The proactive speculation cache
(:mod:`specedge.algorithm.proactive`) drafts ahead for the likeliest outcomes; a run's records show
the hit rate beside the one the model expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from specedge.algorithm.tree import TokenTree

Dists = dict[int, tuple[list[int], list[float]]]  # node -> (next tokens, log-probabilities)


class Calibration:
    """P(the target chooses a token | the draft gave it probability q at rank r there), by q's
    decile and r (1st, 2nd, 3rd, later), from the verdicts observed: each node on an accepted
    path tells, for every next token the draft remembered there, whether the target chose it.
    The rank matters where the draft is flat: a 0.09 that is the draft's first choice is taken
    by a greedy target far more often than a 0.09 in fifth place. Starts (and, with few
    observations, stays near) the identity."""

    BINS = 10
    RANKS = 4
    PRIOR = 4.0  # pseudo-observations at the identity in each cell

    def __init__(self) -> None:
        self.chosen = [[0.0] * self.BINS for _ in range(self.RANKS)]
        self.seen = [[0.0] * self.BINS for _ in range(self.RANKS)]

    def _cell(self, q: float, rank: int) -> tuple[int, int]:
        return min(rank, self.RANKS - 1), min(int(q * self.BINS), self.BINS - 1)

    def __call__(self, q: float, rank: int) -> float:
        r, b = self._cell(q, rank)
        return (self.chosen[r][b] + self.PRIOR * q) / (self.seen[r][b] + self.PRIOR)

    def observe(self, tree: TokenTree, dists: Dists, path: list[int], bonus: int) -> None:
        """A verdict: the accepted ``path`` (root first) and the ``bonus`` token after it."""
        for k, node in enumerate(path):
            if node not in dists:
                continue
            target = tree.tokens[path[k + 1]] if k + 1 < len(path) else bonus
            for rank, (tok, lp) in enumerate(zip(*dists[node], strict=True)):
                r, b = self._cell(math.exp(lp), rank)
                self.seen[r][b] += 1
                self.chosen[r][b] += tok == target


def _identity(q: float, rank: int) -> float:
    return q


@dataclass(frozen=True)
class Outcome:
    node: int  # the deepest accepted node
    token: int  # the bonus token emitted after it
    probability: float  # the draft's estimate


def next_token_probabilities(dists: Dists, calibration: Callable[[float, int], float] = _identity
                             ) -> dict[int, dict[int, float]]:
    """Each forwarded node's P(the target chooses t), over its remembered next tokens:
    calibrated, and scaled down where they would sum past one."""
    out = {}
    for node, (toks, lps) in dists.items():
        probs = [calibration(math.exp(lp), rank) for rank, lp in enumerate(lps)]
        total = sum(probs)
        scale = 1.0 / total if total > 1.0 else 1.0
        out[node] = {t: p * scale for t, p in zip(toks, probs, strict=True)}
    return out


def accepted_probabilities(tree: TokenTree, dists: Dists,
                           calibration: Callable[[float, int], float] = _identity) -> list[float]:
    """P(the path to each node is accepted), by the draft. A node whose parent's next tokens
    were not remembered (only possible below ``top_k``) gets 0: it cannot be ranked."""
    nexts = next_token_probabilities(dists, calibration)
    prob = [1.0] * len(tree)
    for i in range(1, len(tree)):
        parent = tree.parents[i]
        prob[i] = prob[parent] * nexts.get(parent, {}).get(tree.tokens[i], 0.0)
    return prob


def outcomes(tree: TokenTree, dists: Dists, limit: int | None = None,
             calibration: Callable[[float, int], float] = _identity) -> list[Outcome]:
    """The tree's verification outcomes among the remembered next tokens, likeliest first
    (ties: shallower node, then lower node index, then token order), at most ``limit``."""
    accepted = accepted_probabilities(tree, dists, calibration)
    nexts = next_token_probabilities(dists, calibration)
    kids: dict[int, set[int]] = {}
    for i in range(1, len(tree)):
        kids.setdefault(tree.parents[i], set()).add(tree.tokens[i])
    found = []
    for node, probs in nexts.items():
        if node >= len(tree) or accepted[node] == 0.0:
            continue
        drafted = kids.get(node, set())
        for rank, (tok, p) in enumerate(probs.items()):
            if tok not in drafted:
                found.append((accepted[node] * p, tree.depths[node], node, rank, tok))
    found.sort(key=lambda f: (-f[0], f[1], f[2], f[3]))
    return [Outcome(node, tok, p) for p, _, node, _, tok in found[:limit]]


def unforwarded_mass(tree: TokenTree, dists: Dists) -> float:
    """Probability that verification stops at a node the draft never forwarded (its bonus
    token cannot be guessed)."""
    accepted = accepted_probabilities(tree, dists)
    return sum(accepted[i] for i in range(len(tree)) if i not in dists)
