"""The verification outcome model on hand-built trees, in closed form."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specedge.algorithm.outcomes import (
    Calibration,
    Outcome,
    accepted_probabilities,
    outcomes,
    unforwarded_mass,
)
from specedge.algorithm.tree import TokenTree


def _dist(pairs: dict[int, float]) -> tuple[list[int], list[float]]:
    ranked = sorted(pairs.items(), key=lambda kv: -kv[1])
    return [t for t, _ in ranked], [math.log(p) for _, p in ranked]


def test_outcomes_of_a_hand_built_tree() -> None:
    # root --a(1)--x(3)
    #      \-b(2)
    tree = TokenTree.from_wire([9, 10, 11, 20], [-1, 0, 0, 1])
    dists = {0: _dist({10: 0.5, 11: 0.3, 12: 0.2}), 1: _dist({20: 0.6, 21: 0.4}),
             2: _dist({30: 0.7, 31: 0.3}), 3: _dist({40: 1.0})}
    assert accepted_probabilities(tree, dists) == pytest.approx([1.0, 0.5, 0.3, 0.3])
    got = outcomes(tree, dists)
    want = [Outcome(3, 40, 0.3), Outcome(2, 30, 0.21), Outcome(0, 12, 0.2),
            Outcome(1, 21, 0.2), Outcome(2, 31, 0.09)]  # ties: the shallower node first
    assert [(o.node, o.token) for o in got] == [(o.node, o.token) for o in want]
    assert [o.probability for o in got] == pytest.approx([o.probability for o in want])
    assert sum(o.probability for o in got) == pytest.approx(1.0)
    assert [(o.node, o.token) for o in outcomes(tree, dists, limit=2)] == [(3, 40), (2, 30)]
    # A leaf never forwarded: its mass is an outcome nobody can name.
    del dists[3]
    assert unforwarded_mass(tree, dists) == pytest.approx(0.3)
    assert sum(o.probability for o in outcomes(tree, dists)) == pytest.approx(0.7)


@st.composite
def forwarded_trees(draw: st.DrawFn) -> tuple[TokenTree, dict]:
    """A random tree over a 6-token vocabulary whose every node has a full distribution and
    whose children are distinct tokens of it."""
    vocab = 6
    tokens, parents = [0], [-1]
    for _ in range(draw(st.integers(0, 12))):
        parent = draw(st.integers(0, len(tokens) - 1))
        used = {tokens[i] for i, p in enumerate(parents) if p == parent}
        free = [t for t in range(vocab) if t not in used]
        if free:
            tokens.append(draw(st.sampled_from(free)))
            parents.append(parent)
    dists = {}
    for node in range(len(tokens)):
        weights = draw(st.lists(st.floats(0.01, 1.0), min_size=vocab, max_size=vocab))
        dists[node] = _dist({t: w / sum(weights) for t, w in enumerate(weights)})
    return TokenTree.from_wire(tokens, parents), dists


@settings(max_examples=200, deadline=None)
@given(forwarded_trees())
def test_outcomes_of_a_fully_forwarded_tree_sum_to_one(case: tuple[TokenTree, dict]) -> None:
    tree, dists = case
    found = outcomes(tree, dists)
    assert sum(o.probability for o in found) == pytest.approx(1.0)
    kids = {(tree.parents[i], tree.tokens[i]) for i in range(1, len(tree))}
    assert not {(o.node, o.token) for o in found} & kids  # a drafted child is no outcome
    assert unforwarded_mass(tree, dists) == 0.0


def test_calibration_learns_how_often_the_target_takes_a_token() -> None:
    """Greedy verification of a close pair: the target takes the draft's top token (q = 0.45)
    every time. The calibration learns that, and then ranks the deep outcome first."""
    cal = Calibration()
    assert cal(0.45, 0) == pytest.approx(0.45) and cal(0.05, 3) == pytest.approx(0.05)
    tree = TokenTree.from_wire([9, 10, 20], [-1, 0, 1])  # a chain root -> 10 -> 20
    dists = {0: _dist({10: 0.45, 11: 0.3, 12: 0.05}), 1: _dist({20: 0.45, 21: 0.3}),
             2: _dist({30: 0.45, 31: 0.3})}
    # Uncalibrated, stopping at the root with 11 (0.3) beats the whole chain's 0.45^3.
    assert (outcomes(tree, dists)[0].node, outcomes(tree, dists)[0].token) == (0, 11)
    for _ in range(50):
        cal.observe(tree, dists, path=[0, 1, 2], bonus=30)
    assert cal(0.45, 0) > 0.9 and cal(0.3, 1) < 0.1  # chosen always / never
    best = outcomes(tree, dists, calibration=cal)[0]
    assert (best.node, best.token) == (2, 30) and best.probability > 0.7
    # Probabilities at a node never sum past one, whatever the calibration says.
    assert sum(o.probability for o in outcomes(tree, dists, calibration=lambda q, rank: 1.0)) <= 1.0
