"""Tree policies: the shape each round drafts (``edge.tree_policy``).

``fixed`` drafts the configured shape every round. ``adaptive`` chooses each round's depth,
and a budget in proportion, to maximise the expected tokens per second of the round:

    tokens(L) = 1 + a + a^2 + ... + a^L   (the bonus token, then each level accepted with a)
    seconds(L) = L * draft step + wait for the verdict (verification, queue, link)

with ``a`` the live per-level acceptance of this drafter's recent rounds (a Beta(1, 1) prior,
older rounds forgotten geometrically) and the costs its rounds measured. A round whose tree was
accepted to its full depth counts every level as accepted (censored: it might have gone
deeper); one that stopped short counts one rejection. The shape never exceeds the configured
one, so static KV shapes and work columns still hold: a long wait or easy text grows trees to
the maximum, costly drafting on hard text shrinks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from specedge.algorithm.drafting import TreeShape
from specedge.base.config.edge import TreePolicy

FORGET = 0.8  # weight of the previous rounds' evidence after each round (about 5 rounds)


@dataclass
class RoundCosts:
    """A drafter's measured costs, as moving averages over its rounds (None: not measured)."""

    step_s: float | None = None  # one drafting step (a draft model forward and its bookkeeping)
    wait_s: float | None = None  # from sending a tree to its verdict

    def observe(self, draft_s: float, forwards: int, wait_s: float) -> None:
        if forwards > 0:
            self.step_s = _average(self.step_s, draft_s / forwards)
        self.wait_s = _average(self.wait_s, wait_s)


def _average(old: float | None, new: float) -> float:
    return new if old is None else FORGET * old + (1 - FORGET) * new


@dataclass
class Acceptance:
    """Per-level acceptance, from (depth drafted, tokens accepted) of recent rounds."""

    accepted: float = 0.0  # levels accepted, discounted
    rejected: float = 0.0  # rounds that stopped short of their depth, discounted

    def observe(self, depth: int, accepted: int) -> None:
        self.accepted = FORGET * self.accepted + accepted
        self.rejected = FORGET * self.rejected + (1.0 if accepted < depth else 0.0)

    @property
    def rate(self) -> float:
        return (self.accepted + 1) / (self.accepted + self.rejected + 2)


def expected_tokens(rate: float, depth: int) -> float:
    return sum(rate ** k for k in range(depth + 1))


class TreePlanner:
    """Chooses each round's :class:`TreeShape` under ``policy``, never above ``maximum``."""

    def __init__(self, maximum: TreeShape, policy: TreePolicy = TreePolicy.fixed) -> None:
        self.maximum, self.policy = maximum, policy
        self.costs = RoundCosts()
        self.acceptance = Acceptance()

    def shape(self) -> TreeShape:
        step, wait, top = self.costs.step_s, self.costs.wait_s, self.maximum
        if self.policy == TreePolicy.fixed or step is None or wait is None:
            return top
        rate = self.acceptance.rate
        depth = max(range(1, top.max_beam_len + 1),
                    key=lambda d: (expected_tokens(rate, d) / (d * step + wait), -d))
        budget = max(depth, math.ceil(top.max_budget * depth / top.max_beam_len))
        return TreeShape(max_n_beams=min(top.max_n_beams, budget + 1), max_beam_len=depth,
                         max_branch_width=top.max_branch_width,
                         max_budget=min(top.max_budget, budget))

    def observe(self, depth: int, accepted: int, draft_s: float, forwards: int,
                wait_s: float) -> None:
        """One round: the tree's depth, the drafted tokens accepted, its drafting time and
        forwards (proactive ones excluded), and the wait for its verdict."""
        self.acceptance.observe(depth, accepted)
        self.costs.observe(draft_s, forwards, wait_s)
