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
same model at the same temperature) these are the true probabilities; otherwise they are the
draft's estimate, and a run's records show how well it is calibrated. The proactive
speculation cache (:mod:`specedge.proactive`) drafts ahead for the likeliest outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from specedge.tree import TokenTree

Dists = dict[int, tuple[list[int], list[float]]]  # node -> (next tokens, log-probabilities)


@dataclass(frozen=True)
class Outcome:
    node: int  # the deepest accepted node
    token: int  # the bonus token emitted after it
    probability: float  # the draft's estimate


def accepted_probabilities(tree: TokenTree, dists: Dists) -> list[float]:
    """P(the path to each node is accepted), by the draft. A node whose parent's next tokens
    were not remembered (only possible below ``top_k``) gets 0: it cannot be ranked."""
    prob = [1.0] * len(tree)
    for i in range(1, len(tree)):
        parent = tree.parents[i]
        toks, lps = dists.get(parent, ([], []))
        lp = dict(zip(toks, lps, strict=True)).get(tree.tokens[i])
        prob[i] = prob[parent] * math.exp(lp) if lp is not None else 0.0
    return prob


def outcomes(tree: TokenTree, dists: Dists, limit: int | None = None) -> list[Outcome]:
    """The tree's verification outcomes among the remembered next tokens, likeliest first
    (ties: shallower node, then lower node index, then token order), at most ``limit``."""
    accepted = accepted_probabilities(tree, dists)
    kids: dict[int, set[int]] = {}
    for i in range(1, len(tree)):
        kids.setdefault(tree.parents[i], set()).add(tree.tokens[i])
    found = []
    for node, (toks, lps) in dists.items():
        if node >= len(tree) or accepted[node] == 0.0:
            continue
        drafted = kids.get(node, set())
        for rank, (tok, lp) in enumerate(zip(toks, lps, strict=True)):
            if tok not in drafted:
                found.append((accepted[node] * math.exp(lp), tree.depths[node], node, rank, tok))
    found.sort(key=lambda f: (-f[0], f[1], f[2], f[3]))
    return [Outcome(node, tok, p) for p, _, node, _, tok in found[:limit]]


def unforwarded_mass(tree: TokenTree, dists: Dists) -> float:
    """Probability that verification stops at a node the draft never forwarded (its bonus
    token cannot be guessed)."""
    accepted = accepted_probabilities(tree, dists)
    return sum(accepted[i] for i in range(len(tree)) if i not in dists)
