"""The server's goodput budget: wire encoding, distrust of edges, and the choice of K."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from specedge import CONF_DIR
from specedge.algorithm.goodput import (
    CUT_MARGIN,
    IdleHorizon,
    OnlineStepCost,
    StepTable,
    choose_budget,
    decode,
    encode,
    kept_nodes,
    next_share,
    pipeline_groups,
    pruned,
    ranked,
    sanitized,
    step_knots,
)
from specedge.algorithm.tree import TokenTree
from specedge.analysis.simulation.events import simulate
from specedge.analysis.simulation.latency import LatencyModel, SimulationError
from specedge.analysis.simulation.plan import Plan
from specedge.analysis.simulation.pruning import ReplayTree
from specedge.analysis.simulation.traces import Trace, TraceRound
from specedge.base.config.run import to_run_config
from specedge.base.records import SERVER_FILE, STEPS_FILE
from specedge.serving.admission import Rejected, check_survival
from specedge.serving.protocol.convert import request_from_tree
from specedge.serving.scheduler import DynamicPolicy, PipelinePolicy, free_seconds
from tests.serving import cpu_edges, read_records


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
    rng, whole = random.Random(7), 0
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
        if max(goodputs) > (1 + CUT_MARGIN) * goodputs[-1]:  # a cut that pays its margin
            assert budget.goodput == pytest.approx(max(goodputs)), trial
            assert budget.total == goodputs.index(max(goodputs)), trial  # the smallest best K
        else:  # every node sent: a cut within the margin is not worth its risk
            assert budget.total == len(order), trial
            whole += 1
        for (parents, _), s, n in zip(trees, survivals, budget.kept, strict=True):
            keep = kept_nodes(s, n)
            assert len(keep) == n + 1 and all(parents[i] in keep for i in keep[1:]), trial
    assert 0 < whole < 200  # both cases met


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


def test_an_edge_follows_the_budget_only_where_it_binds() -> None:
    """A cut tree sets the share to what was kept, with headroom; a tree kept whole that
    filled its share lets it grow; one kept whole below its share (a short draft) leaves it,
    so one short tree does not shrink the next ones."""
    assert next_share(6, 16, None) == 9  # cut: 1.5x what was kept
    assert next_share(1, 16, 9) == 4  # never below the floor
    assert next_share(9, 9, 9) == 14  # whole and full: grow
    assert next_share(3, 3, 14) == 14  # whole and short: the share stays
    assert next_share(12, 12, None) is None  # an edge the budget never bound drafts freely


def test_the_step_table_is_flat_then_steep_as_measured() -> None:
    table = StepTable((2, 8, 32, 64), (1.0, 1.0, 1.5, 3.0))
    assert [table(t) for t in (1, 2, 5, 8, 20, 32, 48, 96)] == pytest.approx(
        [1.0, 1.0, 1.0, 1.0, 1.25, 1.5, 2.25, 4.5])
    with pytest.raises(ValueError, match="two or more increasing token counts"):
        StepTable((8, 2), (1.0, 1.0))
    disturbed = StepTable((16, 24, 32, 48), (0.095, 0.202, 0.120, 0.118))
    assert disturbed.non_decreasing().seconds == (0.095, 0.118, 0.118, 0.118)


def test_the_step_cost_is_refitted_on_the_servers_own_forwards() -> None:
    """Forwards near a knot move it to what they cost; a knot no forward came near keeps its
    start-up value scaled by how much slower the forwards ran than the table predicted; the
    fit is the regularized least squares it claims (numpy's answer)."""
    prior = StepTable((2, 8, 32, 64), (1.0, 1.0, 1.5, 3.0))
    cost = OnlineStepCost(prior, window=64, prior_weight=1.0)
    assert cost(20) == prior(20)
    rng = random.Random(0)
    seen = []
    for _ in range(200):
        tokens = rng.choice([2, 5, 8])
        seconds = 2.0 + 0.01 * tokens  # the server is slower than its start-up steps said
        cost.observe(tokens, seconds)
        seen.append((tokens, seconds))
    assert cost(2) == pytest.approx(2.02, abs=0.1) and cost(8) == pytest.approx(2.08, abs=0.1)
    window = seen[-64:]
    scale = sum(sec for _, sec in window) / sum(prior(t) for t, _ in window)
    assert scale == pytest.approx(2.05, abs=0.02)
    # nothing came near 32 or 64: their start-up values, as much slower as the rest
    assert cost.table.seconds[2:] == pytest.approx([scale * x for x in prior.seconds[2:]])
    np = pytest.importorskip("numpy")
    rows = [[1.0 - (t - 2) / 6, (t - 2) / 6, 0, 0] for t, _ in window]
    a = np.vstack([np.array(rows), np.eye(4)])  # the prior's rows: sqrt(prior_weight) = 1
    b = np.concatenate([[sec for _, sec in window], scale * np.array(prior.seconds)])
    assert list(cost.table.seconds) == pytest.approx(np.linalg.lstsq(a, b, rcond=None)[0])


def test_a_step_cost_with_no_window_keeps_its_table_and_bad_settings_are_refused() -> None:
    prior = StepTable((1, 4), (1.0, 2.0))
    frozen = OnlineStepCost(prior, window=0)
    frozen.observe(4, 100.0)
    assert frozen.table is prior
    forgetful = OnlineStepCost(prior, window=4)
    for seconds in (9.0, 9.0, 9.0, 9.0, 2.0, 2.0, 2.0, 2.0):
        forgetful.observe(4, seconds)
    assert forgetful(4) == pytest.approx(2.0)  # the old forwards left the window
    with pytest.raises(ValueError, match=r"window must be >= 0 \(got -1\)"):
        OnlineStepCost(prior, window=-1)


def test_a_replayed_tree_is_cut_as_the_server_cuts_it_and_keeps_its_paths_prefix() -> None:
    parents, survivals = [-1, 0, 1, 0, 2], [1.0, 0.8, 0.5, 0.3, 0.2]
    r = TraceRound(0.01, 3, 4, 5, 40, 3, survival=encode(survivals).hex(), parents=parents,
                   path=[1, 2, 4])
    tree = ReplayTree.of(r, "synthetic")
    assert tree.cut(4) is tree and tree.depth == 3
    two = tree.cut(2)  # nodes 0, 1, 2: the path loses its last node
    assert kept_nodes(tree.survivals, 2) == [0, 1, 2]
    assert (two.parents, two.path, two.accepted, two.depth) == ([-1, 0, 1], [1, 2], 2, 2)
    three = tree.cut(3)  # node 3 (0.3) before node 4 (0.2): renumbered 3
    assert (three.parents, three.path, three.accepted) == ([-1, 0, 1, 0], [1, 2], 2)
    assert tree.cut(0).accepted == 0 and tree.cut(0).size == 1
    with pytest.raises(SimulationError, match="carry no per-node survivals"):
        ReplayTree.of(TraceRound(0.01, 3, 4, 5, 40, 3), "an old trace")


def _budget_plan(baseline: list[str], verify: LatencyModel) -> Plan:
    """Chains of 4 drafted nodes whose first two are accepted, survivals 0.9 .. 0.1."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_run_config(compose(config_name="config", overrides=[
            *baseline, "edge.proactive.type=disabled", "server.verify_budget=goodput"]))
    r = TraceRound(0.01, 2, 3, 5, 40, 4, survival=encode([1.0, 0.9, 0.8, 0.2, 0.1]).hex(),
                   parents=[-1, 0, 1, 2, 3], path=[1, 2])
    trace = Trace("synthetic", [r], [r], [], 0.0, [(i, "t", 30, 8) for i in range(4)])
    return Plan(cfg=cfg, target=verify, trace=trace)


EDGES = [*cpu_edges(2), "server.max_batch_size=2"]
SERVER_ONLY = ["baseline=server_only", "baseline.max_batch_size=2"]


@pytest.mark.parametrize("baseline", [EDGES, SERVER_ONLY], ids=["specedge", "server_only"])
def test_the_simulator_replays_the_budget_free_keeps_all_steep_decodes(
        tmp_path: Path, baseline: list[str]) -> None:
    """A flat step verifies every node (the traced acceptance: 3 tokens a round); a step
    whose every token costs more than its survival is worth (its drafting spent or not)
    keeps none: plain decoding."""
    free = simulate(_budget_plan(baseline, LatencyModel(0.004, 0.0, "flat")), tmp_path / "a")
    assert free["tokens_per_round"] == 3.0
    steep = simulate(_budget_plan(baseline, LatencyModel(0.001, 0.1, "steep")),
                     tmp_path / "b")
    assert steep["tokens_per_round"] == 1.0
    if baseline is EDGES:
        for run, verified in (("a", 5), ("b", 1)):
            steps = read_records(tmp_path / run / SERVER_FILE)
            assert all(s["tree_nodes"] == verified * s["batch_size"]
                       and s["sent_nodes"] == 5 * s["batch_size"] for s in steps)
        assert sum(s["emitted_tokens"] for s in steps) == steep["rounds"]
    else:
        for run, verified in (("a", 5), ("b", 1)):
            steps = read_records(tmp_path / run / STEPS_FILE)
            assert {(s["tree_size"], s["drafted_nodes"]) for s in steps} == {(verified, 5)}


def test_a_budget_of_nothing_is_exactly_a_plain_decoding_step() -> None:
    """K = 0: every tree is cut to its root, the very query auto-batch's step sends (one token
    a row, the same shape bucket, a trivial mask)."""
    rng = random.Random(3)
    trees, survivals = [], []
    for b in range(4):
        parents, s = random_tree(rng, 12)
        trees.append(TokenTree.from_wire([100 + b + i for i in range(12)], parents))
        survivals.append(sanitized(s, parents))
    budget, cut, keeps = pruned(trees, survivals, lambda tokens: float(tokens))
    assert budget.total == 0 and keeps == [[0]] * 4
    for tree, plain in zip(cut, (TokenTree.rooted(t.tokens[0]) for t in trees), strict=True):
        assert (tree.tokens, tree.parents, tree.depths) == (plain.tokens, plain.parents,
                                                             plain.depths)
        assert tree.ancestry().tolist() == plain.ancestry().tolist()


def test_the_idle_horizon_is_when_the_next_group_is_expected_back() -> None:
    h = IdleHorizon()
    assert h.seconds({0, 1}, 0.0) == 0.0  # nothing known: nothing is free
    for c in (0, 1):
        h.arrived(c, 0.0)  # first trees: no gap yet
        h.answer(c, 1.0)
    assert h.seconds({0, 1}, 1.0) == 0.0  # their gaps are not known yet
    h.arrived(0, 1.3)
    h.arrived(1, 1.5)
    h.answer(0, 2.0)
    h.answer(1, 2.0)
    assert h.seconds({0, 1}, 2.1) == pytest.approx(0.4)  # edge 1 back at 2.5
    h.arrived(1, 2.3)  # early: its tree is in, it counts as back now; edge 0 at 2.3 too
    assert h.seconds({0, 1}, 2.1) == pytest.approx(0.2)
    assert h.seconds({1}, 2.4) == 0.0
    policy = PipelinePolicy(max_batch_size=1, num_clients=2)
    assert policy.pick([], {0, 1}) is None and policy.turn == 0
    # after group 0's batch is picked the turn is group 1's: its return is what is free
    h.answer(0, 3.0)
    h.answer(1, 3.0)
    assert free_seconds(policy, {0, 1}, h, 3.0) == pytest.approx(h.gap[0])
    assert free_seconds(DynamicPolicy(2), {0, 1}, h, 3.0) == 0.0


@pytest.mark.parametrize("scheduler", ["pipeline", "batch"])
def test_a_server_that_would_idle_for_the_other_group_verifies_for_free(
        tmp_path: Path, scheduler: str) -> None:
    """Each token costs more than it is worth, so a dynamic batch verifies roots only; two
    pipeline groups whose drafting (0.2 s) outlasts a full step (0.1 s) keep every node once
    the server has seen a round: the other group would keep it waiting anyway."""
    plan = _budget_plan([*EDGES[:2], "server.max_batch_size=1",
                         f"server.scheduler={scheduler}", "server.batch_type=dynamic"],
                        LatencyModel(0.001, 0.02, "steep"))
    plan.trace.prefill = plan.trace.plain = [replace(r, draft_s=0.2) for r in plan.trace.plain]
    s = simulate(plan, tmp_path)
    steps = read_records(tmp_path / SERVER_FILE)
    if scheduler == "batch":
        assert s["tokens_per_round"] == 1.0 and all(x["free_s"] == 0.0 for x in steps)
    else:
        assert s["tokens_per_round"] > 2.5
        # from the first measured gap until one edge is done (alone, nothing is free)
        last = max(i for i, x in enumerate(steps) if x["clients"] == [1])
        assert all(x["free_s"] >= x["forward_s"] - 1e-9 and x["tree_nodes"] == x["sent_nodes"]
                   for x in steps[3:last])
        assert all(x["free_s"] == 0.0 for x in steps[last + 1:])


def test_the_step_table_covers_every_batch_a_step_may_have() -> None:
    """Two groups of 2 rows or one of 4: the table holds both sizes' steps, each timed at its
    own rows, a shared token count at the fewer."""
    assert step_knots([2], 17, (4, 8, 16, 32)) == ((2, 2), (8, 2), (16, 2), (32, 2), (34, 2))
    assert step_knots([2, 4], 17, (4, 8, 16, 32)) == (
        (2, 2), (4, 4), (8, 2), (16, 2), (32, 2), (34, 2), (64, 4), (68, 4))


def test_the_group_count_is_the_shorter_cycle() -> None:
    """A memory-bound server (a step of 8 rows costs what one of 4 does) whose edges are back
    quickly does best with one group; edges that draft longer than a step hide the other
    group's verification, so two; a count within the margin is kept."""
    def gap(seconds: float) -> Callable[[int], float]:
        return lambda groups: seconds

    flat = StepTable((1, 64), (0.05, 0.05))
    assert pipeline_groups(2, 2, 8, 3.0, gap(0.01), flat) == 1
    assert pipeline_groups(1, 2, 8, 3.0, gap(0.01), flat) == 1
    linear = StepTable((1, 64), (0.01, 0.64))  # compute-bound: a step's cost by its tokens
    assert pipeline_groups(1, 2, 8, 4.0, gap(0.5), linear) == 2  # a cycle of 0.66 s, not 0.82
    assert pipeline_groups(1, 2, 8, 4.0, gap(0.0), linear) == 1  # nothing to hide: equal, kept
    assert pipeline_groups(2, 2, 8, 4.0, gap(0.0), linear) == 2  # ... either way
    # Edges that draft 0.01 s apart but 0.2 s all at once (one group): two groups stay.
    assert pipeline_groups(2, 2, 8, 3.0, lambda g: 0.2 if g == 1 else 0.01, flat) == 2


@pytest.mark.parametrize(("draft_s", "batches"), [(0.01, {4}), (0.5, {2})])
def test_the_simulated_server_chooses_its_group_count(tmp_path: Path, draft_s: float,
                                                      batches: set[int]) -> None:
    """Four edges, groups of two at most, a memory-bound server (50 ms a step whatever it
    verifies): edges back in 10 ms make one group of four the shorter cycle; edges drafting
    0.5 s hide the other group's step, so two groups stay. Split always takes turns."""
    four = [*cpu_edges(4), "server.max_batch_size=2", "server.scheduler=pipeline"]
    for groups in ("goodput", "split"):
        plan = _budget_plan([*four, f"server.pipeline_groups={groups}"],
                            LatencyModel(0.05, 0.0, "flat"))
        plan.trace.prefill = plan.trace.plain = [replace(r, draft_s=draft_s)
                                                 for r in plan.trace.plain]
        plan.trace.requests = [(i, "t", 30, 24) for i in range(8)]
        out = tmp_path / groups
        simulate(plan, out)
        steps = read_records(out / SERVER_FILE)
        full = [x["batch_size"] for x in steps[4:-4]]  # once the gaps are known, until the end
        assert set(full) == (batches if groups == "goodput" else {2}), full
