"""``edge``: the SpecExec tree an edge drafts, proactive drafting and the tree policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from specedge.base.config.checks import check_tree, require


class ProactiveType(StrEnum):
    disabled = "disabled"
    excluded = "excluded"  # proactive depth is extra, on top of max_beam_len
    included = "included"  # proactive depth counts toward max_beam_len
    # the speculation cache: sub-trees for the max_guesses likeliest verification outcomes, inner
    # nodes included (specedge.algorithm.outcomes); an adopted sub-tree grows on as with excluded
    cache = "cache"




class TreePolicy(StrEnum):
    fixed = "fixed"  # every round drafts the configured shape
    adaptive = "adaptive"  # depth and budget per round from live acceptance and costs




@dataclass
class ProactiveConfig:
    """Proactive edge drafting: grow the next tree while the server verifies this one."""

    type: ProactiveType = ProactiveType.excluded
    max_n_beams: int = 4
    max_beam_len: int = 4
    max_branch_width: int = 4
    max_budget: int = 16  # with type=cache: the nodes of all guesses' sub-trees together
    max_guesses: int = 8  # type=cache: verification outcomes drafted for at most

    def __post_init__(self) -> None:
        check_tree(
            "edge.proactive", self.max_n_beams, self.max_beam_len, self.max_branch_width,
            self.max_budget,
        )
        require(self.max_guesses >= 1, "edge.proactive.max_guesses", self.max_guesses,
                 "an integer >= 1")


@dataclass
class EdgeConfig:
    """SpecExec tree shape drawn by each edge (upstream names kept), and how often a dead edge
    is restarted. These are the defaults (conf/edge/default.yaml only names the schema)."""

    max_n_beams: int = 8
    max_beam_len: int = 5
    max_branch_width: int = 3
    max_budget: int = 16
    proactive: ProactiveConfig = field(default_factory=ProactiveConfig)
    # fixed: every round drafts the shape above; adaptive: each round's depth and budget (never
    # above it) maximise expected tokens per second (specedge.algorithm.tree_policy). Server-only
    # too.
    tree_policy: TreePolicy = TreePolicy.fixed
    # The launcher restarts an edge that died this many times; the restarted edge resumes its
    # unfinished requests from their committed tokens (0: a dead edge's requests stay undone).
    max_restarts: int = 2

    def __post_init__(self) -> None:
        check_tree("edge", self.max_n_beams, self.max_beam_len, self.max_branch_width,
                    self.max_budget)
        require(self.max_restarts >= 0, "edge.max_restarts", self.max_restarts,
                 "a number of restarts >= 0")

    def work_columns(self) -> int:
        """KV columns a round may need beyond the committed prefix (an upper bound), on the
        edge or the server: the nodes a tree forwards (the root, then up to max_n_beams a
        step), or the tree verified; with proactive drafting also the leaves forwarded once,
        the sub-tree, an adopted sub-tree kept while it grows, and the next guess's sub-tree."""
        forwarded = 1 + self.max_n_beams * max(0, self.max_beam_len - 1)
        need = forwarded + max(self.max_budget, self.proactive.max_budget) + 1
        if self.proactive.type != ProactiveType.disabled:
            sub = self.proactive.max_n_beams * self.proactive.max_beam_len
            need += 2 * sub + self.max_budget + self.max_n_beams
        return need




def max_tree_nodes(edge: EdgeConfig) -> int:
    """The largest tree an honest edge sends: its budget, or an adopted proactive tree's."""
    budget = edge.max_budget
    if edge.proactive.type != ProactiveType.disabled:
        budget = max(budget, edge.proactive.max_budget)
    return budget + 1
