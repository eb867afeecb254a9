"""The goodput budget replayed on recorded trees: the server's own selection
(:mod:`specedge.algorithm.goodput`) applied to a traced round's survivals, parents and
accepted path, so a simulated budget keeps and accepts what the real server would."""

from __future__ import annotations

from dataclasses import dataclass, replace

from specedge.algorithm.goodput import (
    STEP_CONTEXT,
    Budget,
    OnlineStepCost,
    StepTable,
    choose_budget,
    kept_nodes,
    replayed_survivals,
    step_knots,
)
from specedge.analysis.simulation.latency import SimulationError
from specedge.analysis.simulation.plan import Plan
from specedge.analysis.simulation.traces import TraceRound
from specedge.base.config.edge import max_tree_nodes
from specedge.base.config.server import VerifyBudget


@dataclass(frozen=True)
class ReplayTree:
    """A drafted tree as the budget sees it. ``accepted`` holds while the whole ``path`` is
    kept (a published acceptance may accept beyond the tree's likeliest chain)."""

    survivals: list[float]
    parents: list[int]
    path: list[int]  # accepted nodes, root excluded, parents first
    accepted: int

    @classmethod
    def of(cls, r: TraceRound, source: str) -> ReplayTree:
        if not r.survival or len(r.parents) != len(r.survival) // 2:
            raise SimulationError(
                f"{source}: its rounds carry no per-node survivals (recorded since the goodput "
                "budget; a trace's rounds need them for server.verify_budget=goodput): "
                "re-run the trace's run, or simulate server.verify_budget=fixed")
        return cls(replayed_survivals(r.survival, r.parents), list(r.parents), list(r.path),
                   r.accepted)

    @property
    def size(self) -> int:
        return len(self.parents)

    @property
    def depth(self) -> int:
        depths = [0] * self.size
        for i in range(1, self.size):
            depths[i] = depths[self.parents[i]] + 1
        return max(depths)

    def cut(self, count: int) -> ReplayTree:
        """The root and the ``count`` likeliest other nodes (as the server keeps them, and as
        an edge drafting a share of ``count`` grows them), renumbered in order."""
        keep = kept_nodes(self.survivals, count)
        if len(keep) == self.size:
            return self
        index = {old: new for new, old in enumerate(keep)}
        path = [index[n] for n in self.path if n in index]  # a prefix: keep is prefix-closed
        return ReplayTree([self.survivals[i] for i in keep],
                          [-1] + [index[self.parents[i]] for i in keep[1:]], path,
                          self.accepted if len(path) == len(self.path) else len(path))


def is_budgeted(plan: Plan) -> bool:
    return plan.cfg.server.verify_budget == VerifyBudget.goodput


def drafted_round(plan: Plan, r: TraceRound,
                  share: int | None) -> tuple[TraceRound, ReplayTree]:
    """A drafted round under the goodput budget: an edge that was last kept a share drafts
    about that many nodes (its likeliest), in as many forwards as the cut tree is deep, its
    drafting time and request bytes scaled to match."""
    tree = ReplayTree.of(r, plan.trace.source)
    if share is None or tree.size - 1 <= share:
        return r, tree
    cut = tree.cut(share)
    forwards = min(r.draft_forwards, cut.depth)
    request = r.bytes // 2
    return replace(
        r, tree_size=cut.size, draft_forwards=forwards, accepted=cut.accepted,
        new_tokens=cut.accepted + 1,
        draft_s=r.draft_s * forwards / r.draft_forwards if r.draft_forwards else r.draft_s,
        bytes=r.bytes - request + round(request * cut.size / tree.size)), cut


def step_cost(plan: Plan, batches: tuple[int, ...]) -> OnlineStepCost:
    """The simulated server's step cost as the real one keeps it: a start-up table at its
    sizes (read off the latency model, as the real server times its own), then refitted on
    its forwards."""
    knots = step_knots(batches, max_tree_nodes(plan.cfg.edge), plan.cfg.model.token_buckets)
    table = StepTable(tuple(t for t, _ in knots),
                      tuple(plan.target.seconds(t, rows, rows * STEP_CONTEXT)
                            for t, rows in knots)).non_decreasing()
    return OnlineStepCost(table, plan.cfg.server.cost_window)


def budget_cut(cost: OnlineStepCost, trees: list[ReplayTree], extra: int, fixed_s: float = 0.0,
            free_s: float = 0.0) -> tuple[Budget, list[ReplayTree]]:
    """The server's goodput budget over the batch's trees (its own selection), the step's
    cost the server's estimate (``extra``: new tokens beyond the trees, ``fixed_s``: time the
    step costs whatever is kept, ``free_s``: the server would idle that long anyway), and
    each tree as verified."""
    budget = choose_budget([t.survivals for t in trees],
                           lambda tokens: max(free_s, fixed_s + cost(tokens + extra)))
    return budget, [t.cut(k) for t, k in zip(trees, budget.kept, strict=True)]
