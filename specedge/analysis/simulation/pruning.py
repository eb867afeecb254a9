"""The goodput budget replayed on recorded trees: the server's own selection
(:mod:`specedge.algorithm.goodput`) applied to a traced round's survivals, parents and
accepted path, so a simulated budget keeps and accepts what the real server would."""

from __future__ import annotations

from dataclasses import dataclass

from specedge.algorithm.goodput import kept_nodes, replayed_survivals
from specedge.analysis.simulation.latency import SimulationError
from specedge.analysis.simulation.traces import TraceRound


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
