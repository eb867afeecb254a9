"""The server's goodput budget: wire encoding, distrust of edges, and the choice of K."""

from __future__ import annotations

import math
import random

import pytest

from specedge.algorithm.goodput import (
    StepTable,
    choose_budget,
    decode,
    encode,
    kept_nodes,
    ranked,
    sanitized,
)
from specedge.algorithm.tree import TokenTree
from specedge.serving.admission import Rejected, check_survival
from specedge.serving.protocol import request_from_tree


def random_tree(rng: random.Random, n: int) -> tuple[list[int], list[float]]:
    """Parents (index order) and survivals that shrink down each path."""
    parents, survivals = [-1], [1.0]
    for i in range(1, n):
        p = rng.randrange(i)
        parents.append(p)
        survivals.append(survivals[p] * rng.choice([rng.random(), 0.9, 0.5, 0.0]))
    return parents, survivals


def test_survivals_travel_as_one_byte_each_within_a_ninth() -> None:
    values = [1.0, 0.97, 0.5, 0.3, 1e-3, 1e-9, 0.0, -0.2, math.nan, 1.7]
    raw = encode(values)
    assert len(raw) == len(values)
    back = decode(raw)
    for p, q in zip(values[:6], back[:6], strict=True):
        assert abs(math.log2(q) - math.log2(p)) <= 1 / 16 + 1e-9, (p, q)
    assert back[6:9] == [0.0, 0.0, 0.0]  # nothing, or nonsense: the least likely
    assert back[9] == 1.0
    assert list(raw[:6]) == sorted(raw[:6])  # order kept: a child stays below its parent


def test_a_lying_edge_cannot_outgrow_its_parents_or_the_cap() -> None:
    parents = [-1, 0, 1, 2, 3, 0]
    assert sanitized([5.0, 2.0, 0.9, 0.95, -1.0, math.nan], parents) == [1.0, 1.0, 0.9, 0.9,
                                                                         0.0, 0.0]
    assert sanitized([1.0, 0.5], parents) == [1.0, 0.5, 0.0, 0.0, 0.0, 0.0]  # too few values
    # an edge claiming every node certain, verified for free: it still gets only the cap
    liar = sanitized([1.0] * 40, [-1, *range(39)])
    honest = sanitized([1.0, 0.6, 0.3], [-1, 0, 1])
    budget = choose_budget([liar, honest], lambda tokens: 1.0, cap=8)
    assert budget.kept == [8, 2]


def test_the_budget_maximises_expected_tokens_per_second_and_stays_a_tree() -> None:
    rng = random.Random(7)
    for trial in range(200):
        trees = [random_tree(rng, rng.randint(1, 20)) for _ in range(rng.randint(1, 6))]
        survivals = [sanitized(s, p) for p, s in trees]
        a, b, knee = rng.uniform(1, 5), rng.uniform(0, 0.5), rng.randint(1, 60)
        def seconds(tokens: int, a: float = a, b: float = b, knee: int = knee) -> float:
            return a + b * max(0, tokens - knee)  # flat, then a slope: a roofline
        budget = choose_budget(survivals, seconds)
        # brute force over K, through the same global ranking
        order = sorted((-s[i], t, i) for t, s in enumerate(survivals) for i in ranked(s))
        rows = len(survivals)
        goodputs = [(rows - sum(v for v, _, _ in order[:k])) / seconds(rows + k)
                    for k in range(len(order) + 1)]
        assert budget.goodput == pytest.approx(max(goodputs)), trial
        assert budget.total == goodputs.index(max(goodputs)), trial  # the smallest best K
        for (parents, _), s, n in zip(trees, survivals, budget.kept, strict=True):
            keep = kept_nodes(s, n)
            assert len(keep) == n + 1 and all(parents[i] in keep for i in keep[1:]), trial


def test_free_verification_keeps_every_node_and_a_steep_cost_keeps_none() -> None:
    survivals = [sanitized([1.0, 0.8, 0.4, 0.01], [-1, 0, 1, 1]), [1.0, 0.5]]
    assert choose_budget(survivals, lambda tokens: 1.0).kept == [3, 1]
    plain = choose_budget(survivals, lambda tokens: float(tokens))  # each token costs a step
    assert plain.kept == [0, 0] and plain.expected_tokens == 2.0  # plain batched decoding
    assert choose_budget(survivals, lambda tokens: 1.0 + 0.7 * tokens).kept == [1, 0]


def test_a_goodput_server_takes_one_survival_byte_per_node_and_distrusts_them() -> None:
    tree = TokenTree.from_wire([5, 6, 7], [-1, 0, 1])
    msg = request_from_tree(0, 0, tree, survival=[1.0, 0.5, 0.9])  # a child above its parent
    assert len(msg.survival) == 3
    assert check_survival(msg, tree) == pytest.approx([1.0, 0.5, 0.5])
    with pytest.raises(Rejected, match=r"server.verify_budget = goodput needs one survival "
                                       r"byte per tree node: the tree has 3 nodes, the "
                                       r"request 0 bytes"):
        check_survival(request_from_tree(0, 0, tree), tree)


def test_the_step_table_is_flat_then_steep_as_measured() -> None:
    table = StepTable((2, 8, 32, 64), (1.0, 1.0, 1.5, 3.0))
    assert [table(t) for t in (1, 2, 5, 8, 20, 32, 48, 96)] == pytest.approx(
        [1.0, 1.0, 1.0, 1.0, 1.25, 1.5, 2.25, 4.5])
    with pytest.raises(ValueError, match="two or more increasing token counts"):
        StepTable((8, 2), (1.0, 1.0))
