"""A request's draft -> verify -> commit round, written once.

:class:`Drafter` holds what drafting carries from one round to the next on a request's draft KV
row: the proactive sub-tree adopted after a hit, the growth steps it may still take, and the
tree planner (:mod:`specedge.algorithm.tree_policy`) with the costs and acceptance it has
measured. The edge (:mod:`specedge.serving.edge`), server-only
(:mod:`specedge.serving.baselines`) and the tests drive the same object:

    d = drafter.draft(seq.pending_for(drafter.row), seq.root)
    guesses = drafter.draft_proactively(d, reply_is_in)   # while the target verifies
    verdict = ...                                         # the target's, over gRPC or in-process
    hit = drafter.commit(d, verdict, guesses)
    drafter.observe(draft_s, wait_s)                      # what the round cost
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from specedge.algorithm.drafting import (
    Draft,
    TreeShape,
    commit_draft,
    draft_trees,
    resume_draft,
)
from specedge.algorithm.goodput import next_share
from specedge.algorithm.outcomes import Calibration, accepted_probabilities
from specedge.algorithm.proactive import (
    Guess,
    adopt,
    draft_proactively,
    hit_of,
    next_tokens_kept,
    remaining_steps,
)
from specedge.algorithm.tree_policy import TreePlanner
from specedge.algorithm.verification import Verdict
from specedge.base.config.edge import ProactiveConfig, ProactiveType, TreePolicy
from specedge.engine.kv_pool import KVPool
from specedge.engine.query_plan import KVRow


@dataclass(frozen=True)
class RoundStats:
    """What a round's records say about its tree and its proactive guesses."""

    budget: int = 0  # the node budget the round's shape allowed
    depth: int = 0  # the depth it allowed
    guesses: int = 0  # proactive sub-trees drafted while it was verified
    hit_rank: int = -1  # which of them the server's outcome was (-1: none)
    hit_p: float = 0.0  # that outcome's estimated probability (0: no hit)
    guessed_p: float = 0.0  # estimated probability that some guess hits (their sum)
    proactive_forwards: int = 0  # of the tree's draft forwards: while it was being verified


class Drafter:
    """Drafting for one request at a time on one draft KV row."""

    def __init__(self, pool: KVPool, row: KVRow, shape: TreeShape,
                 proactive: ProactiveConfig | None = None,
                 policy: TreePolicy = TreePolicy.fixed) -> None:
        self.pool, self.row, self.shape = pool, row, shape
        enabled = proactive is not None and proactive.type != ProactiveType.disabled
        self.proactive = proactive if enabled else None
        self.top_k = 0 if self.proactive is None else next_tokens_kept(
            self.proactive, shape.max_branch_width)
        self.planner = TreePlanner(shape, policy)
        self.calibration = Calibration()  # the outcome model's, learned from the verdicts
        self.adopted: Draft | None = None  # the sub-tree a proactive hit handed over
        self.steps_left = shape.max_beam_len
        self.round_shape = shape
        self.budget_share: int | None = None  # a goodput server's last share, with headroom
        self.stats = RoundStats()
        self._forwards = 0  # this round's drafting forwards, proactive ones excluded
        self._verdict_depth = (0, 0)  # the last committed tree's depth, and tokens accepted

    def reset(self) -> None:
        """A new request: nothing cached, nothing adopted (the planner keeps what it knows)."""
        self.pool.reset(self.row)
        self.adopted, self.steps_left = None, self.shape.max_beam_len

    @property
    def from_proactive(self) -> bool:
        """The next :meth:`draft` grows an adopted proactive sub-tree."""
        return self.adopted is not None

    def draft(self, pending: list[int], root: int) -> Draft:
        """This round's tree, in the planner's shape: the adopted sub-tree grown on, or a new
        one from ``root`` after catching up on ``pending`` committed tokens."""
        return Drafter.draft_batch([self], [pending], [root])[0]

    @staticmethod
    def draft_batch(drafters: list[Drafter], pendings: list[list[int]],
                    roots: list[int]) -> list[Draft]:
        """Every drafter's :meth:`draft` for this round (``pendings``: each one's committed
        tokens not yet in its row; ``roots``: its root), the new trees with one batched draft
        forward per level for them all (server-only's drafting), each the tree it gets alone.
        The drafters share one draft pool."""
        if len({id(d.pool) for d in drafters}) > 1:
            raise ValueError("draft_batch needs drafters on one draft pool")
        drafts: list[Draft | None] = [None] * len(drafters)
        for i, drafter in enumerate(drafters):
            shape = drafter.planner.shape()
            if drafter.budget_share is not None:
                shape = replace(shape, max_budget=min(shape.max_budget, drafter.budget_share))
            drafter.round_shape = shape
            if drafter.adopted is not None:
                steps = min(drafter.steps_left, shape.max_beam_len)
                drafts[i] = resume_draft(drafter.pool, drafter.adopted, shape, steps)
        fresh = [i for i, d in enumerate(drafts) if d is None]
        if fresh:
            grown = draft_trees(drafters[0].pool, [drafters[i].row for i in fresh],
                                [pendings[i] for i in fresh], [roots[i] for i in fresh],
                                [drafters[i].round_shape for i in fresh],
                                max(drafters[i].top_k for i in fresh))
            for i, d in zip(fresh, grown, strict=True):
                drafts[i] = d
        for drafter, d in zip(drafters, drafts, strict=True):
            assert d is not None
            drafter._forwards = d.forwards
        return [d for d in drafts if d is not None]

    def draft_proactively(self, draft: Draft,
                          stop: Callable[[], bool] | None = None) -> list[Guess]:
        """Grow next trees from the likeliest verification outcomes while the target verifies
        ``draft`` (``stop``: the verdict is in); none when proactive drafting is off. The cache
        also stops before a forward that would end after the verdict is expected."""
        if self.proactive is None:
            return []
        if self.proactive.type == ProactiveType.cache:
            stop = _expected_by(stop, self.planner.costs.wait_s, self.planner.costs.step_s)
        return draft_proactively(self.pool, draft, self.proactive, stop, self.calibration)

    def commit(self, draft: Draft, verdict: Verdict, guesses: list[Guess] | None = None) -> bool:
        """Keep the accepted path's KV; on a proactive hit also keep the guessed sub-tree as
        the next round's tree. Returns whether a guess hit."""
        guesses = guesses or []
        self.adopted = None
        rank = hit_of(guesses, verdict)
        if rank is not None and self.proactive is not None:
            hit = guesses[rank]
            self.adopted = adopt(self.pool, draft, verdict, hit)
            self.steps_left = remaining_steps(self.proactive, self.shape.max_beam_len, hit)
        else:
            commit_draft(self.pool, draft, verdict.path)
        self.stats = RoundStats(
            budget=self.round_shape.max_budget, depth=self.round_shape.max_beam_len,
            guesses=len(guesses), hit_rank=-1 if rank is None else rank,
            hit_p=0.0 if rank is None else guesses[rank].probability,
            guessed_p=sum(g.probability for g in guesses),
            proactive_forwards=draft.forwards - self._forwards)
        self._verdict_depth = (max(draft.tree.depths), len(verdict.path) - 1)
        self.calibration.observe(draft.tree, draft.dists, verdict.path, verdict.bonus)
        return rank is not None

    def follow(self, kept: int, sent: int) -> None:
        """A goodput server verified ``kept`` of the ``sent`` non-root nodes of this round's
        tree: draft about that many next round, with headroom (its share moves with the batch
        and the load), so edge time and link bytes follow the server's budget where it binds."""
        self.budget_share = next_share(kept, sent, self.budget_share)

    def survival(self, draft: Draft) -> list[float]:
        """Each node's chance that the target accepts the path to it, by the draft calibrated
        on the verdicts so far: what a goodput-budget server ranks nodes by."""
        return accepted_probabilities(draft.tree, draft.dists, self.calibration)

    def observe(self, draft_s: float, wait_s: float) -> None:
        """What the last committed round cost: its drafting time (proactive drafting excluded)
        and the wait for its verdict; the adaptive policy plans the next rounds from them."""
        depth, accepted = self._verdict_depth
        self.planner.observe(depth, accepted, draft_s, self._forwards, wait_s)


def _expected_by(stop: Callable[[], bool] | None, wait_s: float | None,
                 step_s: float | None) -> Callable[[], bool] | None:
    """``stop``, or: another step of ``step_s`` would end after the expected verdict."""
    if wait_s is None or step_s is None:
        return stop
    deadline = time.perf_counter() + wait_s

    def expired() -> bool:
        return (stop is not None and stop()) or time.perf_counter() + step_s > deadline

    return expired
