"""The adaptive tree policy: within the configured maxima, deeper on easy text, shallower on
hard text, and the fixed policy never moves."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from specedge.algorithm.drafting import TreeShape
from specedge.algorithm.tree_policy import TreePlanner, expected_tokens
from specedge.base.config.edge import TreePolicy

TOP = TreeShape(max_n_beams=8, max_beam_len=6, max_branch_width=3, max_budget=24)


def _planner_after(rounds: list[tuple[int, float, float]],
                   policy: TreePolicy = TreePolicy.adaptive) -> TreePlanner:
    """A planner that saw ``rounds`` of (tokens accepted, draft step s, wait s), each tree
    drafted to the depth it planned."""
    planner = TreePlanner(TOP, policy)
    for accepted, step_s, wait_s in rounds:
        depth = planner.shape().max_beam_len
        planner.observe(depth, min(accepted, depth), depth * step_s, depth, wait_s)
    return planner


def test_easy_text_grows_trees_and_hard_text_shrinks_them() -> None:
    easy = _planner_after([(6, 0.01, 0.05)] * 12)  # everything accepted
    assert easy.shape() == TOP
    hard = _planner_after([(0, 0.01, 0.02)] * 12)  # nothing accepted
    assert hard.shape().max_beam_len == 1
    assert hard.shape().max_budget < TOP.max_budget
    # The same hard text, then easy text: the estimate follows it back up.
    recovered = _planner_after([(0, 0.01, 0.05)] * 12 + [(6, 0.01, 0.05)] * 16)
    assert recovered.shape().max_beam_len == TOP.max_beam_len
    # A long wait makes a deeper tree worth its drafting even on middling text.
    slow_link = _planner_after([(2, 0.01, 1.0)] * 12)
    fast_link = _planner_after([(2, 0.01, 0.005)] * 12)
    assert slow_link.shape().max_beam_len > fast_link.shape().max_beam_len


def test_the_chosen_depth_maximises_expected_tokens_per_second() -> None:
    planner = _planner_after([(2, 0.02, 0.05)] * 20)
    rate, step, wait = (planner.acceptance.rate, planner.costs.step_s, planner.costs.wait_s)
    assert step is not None and wait is not None
    best = max(range(1, TOP.max_beam_len + 1),
               key=lambda d: expected_tokens(rate, d) / (d * step + wait))
    assert planner.shape().max_beam_len == best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.floats(1e-4, 0.5), st.floats(1e-4, 2.0)),
                max_size=30), st.sampled_from(list(TreePolicy)))
def test_shapes_never_exceed_the_maxima(rounds: list[tuple[int, float, float]],
                                        policy: TreePolicy) -> None:
    shape = _planner_after(rounds, policy).shape()
    if policy == TreePolicy.fixed:
        assert shape == TOP
    assert 1 <= shape.max_beam_len <= TOP.max_beam_len
    assert 1 <= shape.max_budget <= TOP.max_budget
    assert 1 <= shape.max_n_beams <= min(TOP.max_n_beams, shape.max_budget + 1)
    assert shape.max_branch_width == TOP.max_branch_width
