"""The token tree: ancestry mask, budget pruning, wire round trip."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from specedge.algorithm.drafting import best_nodes
from specedge.algorithm.tree import TokenTree


def _tree() -> TokenTree:
    #      0
    #    1   2
    #   3 4   5
    #         6
    t = TokenTree.rooted(100)
    for parent, token, score in [(0, 11, -1.0), (0, 12, -2.0), (1, 13, -1.5), (1, 14, -3.0),
                                 (2, 15, -2.5), (5, 16, -4.0)]:
        t.add_child(parent, token, score)
    return t


def test_ancestry_is_self_and_ancestors() -> None:
    anc = _tree().ancestry()
    assert anc[6].nonzero().flatten().tolist() == [0, 2, 5, 6]
    assert anc[4].nonzero().flatten().tolist() == [0, 1, 4]
    assert anc[0].nonzero().flatten().tolist() == [0]
    assert not anc[3, 4] and not anc[1, 3]


def _keep_top(t: TokenTree, budget: int) -> list[int]:
    best = best_nodes([t.scores], [0.0], budget)
    if best is not None:
        t.keep_nodes(best[0])
    return list(range(len(t))) if best is None else best[0]


def test_the_budget_drops_the_lowest_and_reindexes() -> None:
    t = _tree()
    kept = _keep_top(t, 4)
    assert kept == [0, 1, 2, 3, 5]
    assert t.tokens == [100, 11, 12, 13, 15]
    assert t.parents == [-1, 0, 0, 1, 2]
    assert t.path_to(4) == [0, 2, 4]


def test_the_budget_keeps_a_tree_within_it() -> None:
    t = _tree()
    assert best_nodes([t.scores], [0.0], 10) is None
    assert _keep_top(t, 10) == list(range(7)) and len(t) == 7


def test_a_forest_shares_one_budget_by_base_plus_score() -> None:
    """Two trees, the second's base 1.4 lower: its best node (-1.0 - 1.4) ranks below the
    first tree's -2.0 but above its -2.5."""
    assert best_nodes([_tree().scores, _tree().scores], [0.0, -1.4], 4) == [
        [0, 1, 2, 3], [0, 1]]


def test_wire_round_trip_and_depths() -> None:
    t = _tree()
    back = TokenTree.from_wire(t.tokens, t.parents)
    assert back.depths == t.depths == [0, 1, 1, 2, 2, 2, 3]
    assert torch.equal(back.ancestry(), t.ancestry())


@pytest.mark.parametrize(("tokens", "parents", "message"), [
    ([1, 2], [-1], "as many parents as tokens"),
    ([], [], "at least the root"),
    ([1, 2], [0, 0], "must have parent -1"),
    ([1, 2, 3], [-1, 2, 0], "parents must be earlier nodes"),
    ([1, 2], [-1, -1], "parents must be earlier nodes"),
])
def test_wire_rejects_non_trees(tokens: list[int], parents: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenTree.from_wire(tokens, parents)


def test_snapshot_lists_every_node() -> None:
    snap = _tree().snapshot()
    assert [n["parent"] for n in snap] == [-1, 0, 0, 1, 1, 2, 5]
    assert snap[6] == {"index": 6, "token": 16, "parent": 5, "depth": 3, "score": -4.0,
                       "status": "drafted"}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.floats(0.01, 5)), min_size=1, max_size=40),
       st.integers(1, 20))
def test_pruned_tree_stays_a_tree(children: list[tuple[int, float]], budget: int) -> None:
    t = TokenTree.rooted(0)
    for i, (pick, cost) in enumerate(children):
        parent = pick % (i + 1)
        t.add_child(parent, i + 1, t.scores[parent] - cost)
    best = sorted(t.scores[1:], reverse=True)[:budget]
    _keep_top(t, budget)
    assert len(t) - 1 == min(budget, len(children))
    assert sorted(t.scores[1:], reverse=True) == best
    TokenTree.from_wire(t.tokens, t.parents)  # parents still precede children
