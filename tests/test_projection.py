"""The projection: scenarios, the paper's protocol, maps and sensitivity (all simulated)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from specedge import CONF_DIR, PROJECT_ROOT
from specedge.analysis.pages.figures import figures_table
from specedge.analysis.pages.index import index_page
from specedge.analysis.pages.projection import projection_report
from specedge.analysis.pricing import break_even_edge_price, compare_draws, costs, figures
from specedge.analysis.projection import run
from specedge.analysis.projection_config import MapGrid, ProjectionConfig
from specedge.analysis.simulation.acceptance import Scenario, chain_acceptance, two_point_acceptance
from specedge.analysis.simulation.events import simulate
from specedge.analysis.simulation.latency import SimulationError
from specedge.analysis.simulation.plan import plan_of_config
from specedge.analysis.simulation.systems import (
    Bases,
    compose_bases,
    configured,
    simulate_point,
    simulate_system,
    system_settings,
    with_edges,
)
from specedge.analysis.simulation.traces import Trace, TraceRound, save_trace, trace_of
from specedge.base.config.checks import ConfigError
from specedge.base.config.preflight import checked_run_config

TINY = "specedge/data/traces/tiny-4e-noproactive.json"


def _bases(setup: list[str], hardware: list[str] | None = None) -> Bases:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose_bases(setup, hardware or [])


def _at_the_command_line(overrides: list[str]) -> dict:
    """A point as ``specedge simulate <overrides>`` composes and simulates it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = compose(config_name="config", overrides=overrides)
    with_edges(composed)
    return simulate_point(checked_run_config(composed))


@pytest.mark.parametrize(("tokens", "drafted"), [(3.13, 4), (3.40, 5), (1.0, 3), (5.0, 4)])
def test_a_published_chain_acceptance_keeps_its_mean(tokens: float, drafted: int) -> None:
    probs = chain_acceptance(tokens, drafted)
    assert len(probs) == drafted + 1 and sum(probs) == pytest.approx(1.0)
    assert 1 + sum(k * p for k, p in enumerate(probs)) == pytest.approx(tokens, abs=1e-4)
    # a constant per-token rate: each count is a times the one before (but the last)
    if 1 < tokens < drafted + 1:
        rate = 1 - probs[0]
        assert probs[2] / probs[1] == pytest.approx(rate, rel=1e-3)


@pytest.mark.parametrize("tokens", [1.0, 1.5, 2.5, 3.25, 5.0])
def test_the_maps_acceptance_has_the_tokens_per_round_asked(tokens: float) -> None:
    probs = two_point_acceptance(tokens)
    assert sum(probs) == pytest.approx(1.0)
    assert 1 + sum(k * p for k, p in enumerate(probs)) == pytest.approx(tokens)
    assert sum(p > 0 for p in probs) <= 2


def test_bad_scenarios_and_settings_are_refused_with_what_is_accepted() -> None:
    with pytest.raises(ConfigError, match="between 1 and drafted"):
        Scenario("x", "x", "x", TINY, tokens_per_round=7.0, drafted=4)
    with pytest.raises(ConfigError, match="given together"):
        Scenario("x", "x", "x", TINY, tokens_per_round=3.0)
    with pytest.raises(ConfigError, match="main_scenario"):
        ProjectionConfig(main_scenario="nope")
    with pytest.raises(ConfigError, match="headline_batch"):
        ProjectionConfig(batch_sizes=[1, 2], headline_batch=8)
    with pytest.raises(ConfigError, match="not hardware entries"):
        ProjectionConfig(maps=MapGrid(hardware=["tpu9"]))
    with pytest.raises(ConfigError, match=r"at most simulate\.chain"):
        _at_the_command_line(["simulate.trace=" + TINY, "simulate.chain=1",
                              "simulate.acceptance=[0.2,0.3,0.5]"])
    base = _bases([]).configs[(None, "specedge")]
    with pytest.raises(ConfigError, match=r"at most simulate\.chain"):
        configured(base, {"simulate.chain": 1, "simulate.acceptance": [0.2, 0.3, 0.5]})
    with pytest.raises(ConfigError, match=r"server\.max_batch is not accepted.*max_batch_size"):
        configured(base, {"server.max_batch": 2})
    with pytest.raises(ConfigError, match="one of specedge, specedge_budgeted"):
        system_settings("speculative", 1)
    with pytest.raises(ConfigError, match="accounting"):
        figures({}, "monthly")


def test_a_trace_file_round_trips_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    trace = trace_of(PROJECT_ROOT / TINY)
    assert "measured 2026-12-05" in trace.source and trace.plain and trace.prefill
    assert all(len(bytes.fromhex(r.survival)) == len(r.parents) == r.tree_size
               and len(r.path) == r.accepted for r in trace.plain)  # the budget replays them
    copy = tmp_path / "copy.json"
    save_trace(trace, copy, "copied")
    again = trace_of(copy)
    assert again.plain == trace.plain and again.output_lengths == trace.output_lengths
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    with pytest.raises(SimulationError, match="not a trace file"):
        trace_of(bad)


def _constant_profile(path: Path, target_ms: float, draft_ms: float) -> Path:
    rows = [{"model": role, "batch": b, "nodes": n, "prefix": 0, "ms_median": ms}
            for role, ms in (("target", target_ms), ("draft", draft_ms))
            for b in (1, 64) for n in (1, 4096)]
    path.write_text(json.dumps({"device_name": "test", "forward_path": "graphs",
                                "rows": rows}))
    return path


def test_one_edge_matches_the_closed_forms(tmp_path: Path) -> None:
    """1 edge, chains of k tokens all accepted, constant forwards: a round is k draft steps,
    the link both ways and one verification; server-only drafts on the server instead;
    autoregressive is one forward a token."""
    k, verify_ms, draft_ms, delay_ms = 2, 20.0, 3.0, 5.0
    r = TraceRound(draft_s=0.0, accepted=k, new_tokens=k + 1, tree_size=k + 1, bytes=64,
                   draft_forwards=k)
    trace = tmp_path / "trace.json"
    save_trace(Trace("closed form", [r], [r], [], 0.0, [(0, "t", 30, 8), (1, "t", 30, 8)]),
               trace, "synthetic")
    profile = _constant_profile(tmp_path / "profile.json", verify_ms, draft_ms)
    common = ["hardware=a100_80", "model=qwen3_14b", f"hardware.link.delay_ms={delay_ms}",
              f"simulate.trace={trace}", f"simulate.profile={profile}",
              f"simulate.chain={k}", f"simulate.acceptance={[0.0] * k + [1.0]}",
              "edge.proactive.type=disabled"]
    bases = _bases(common)
    se, so, ab = (simulate_system(bases, None, system, 1, 1, {})
                  for system in ("specedge", "server_only", "auto_batch"))
    round_ms = k * draft_ms + 2 * delay_ms + verify_ms
    assert se["upstream"]["itl_ms"] == pytest.approx(round_ms / (k + 1))
    assert so["upstream"]["itl_ms"] == pytest.approx((k * draft_ms + verify_ms) / (k + 1))
    assert ab["itl_ms"]["mean"] == pytest.approx(verify_ms)
    server_price = so["prices"]["server_per_hour"]
    # Server-only's server does the drafting, busy for whole rounds, and drafts each prompt
    # once (one more constant draft forward a request): 2 requests of 30 tokens, 20 rounds.
    busy_ms = 20 * (k * draft_ms + verify_ms) + 2 * draft_ms
    assert figures(so, "busy")["usd_per_mtok"] == pytest.approx(
        busy_ms / 1e3 / 3600 * server_price / 60 * 1e6)
    assert figures(ab, "busy")["usd_per_mtok"] == pytest.approx(
        verify_ms / 1e3 / 3600 * server_price * 1e6)
    # SpecEdge bills the edge's drafting (k steps a round, and each prompt once) at its price
    assert se["edge_busy_s"] == pytest.approx((20 * k + 2) * draft_ms / 1e3)


def test_budgeted_against_fixed_is_called_only_where_every_draw_agrees() -> None:
    assert compare_draws([2.0, 3.0, 1.5], [1.0, 2.9, 1.4]) == "higher"
    assert compare_draws([0.9, 2.0], [1.0, 2.1]) == "lower"
    assert compare_draws([1.0, None, math.inf], [1.0, None, math.inf]) == "equal"
    assert compare_draws([1.1, 0.9], [1.0, 1.0]) == "tie"  # one draw's noise decides
    assert compare_draws([0.01], [None]) == "higher"  # None: dearer even with free edges
    assert compare_draws([math.inf, 1.0], [5.0, 0.5]) == "higher"
    with pytest.raises(ValueError):
        compare_draws([1.0, 2.0], [1.0])


def _small(tmp_path: Path) -> ProjectionConfig:
    tiny = Scenario("tiny", "tiny pair", "the committed trace", TINY)
    chain = Scenario("chain", "a published chain", "test", TINY, 3.13, 4)
    return ProjectionConfig(
        out_dir=str(tmp_path / "out"), scenarios=[tiny, chain], main_scenario="tiny",
        batch_sizes=[1, 2], headline_batch=2, requests_per_slot=1, draws=2,
        maps=MapGrid(hardware=["a100_80"], concurrency=[1, 4], tokens_per_round=[1.5, 3.0],
                     rtt_ms=[0.0, 14.0]))


@pytest.mark.slow
def test_the_projection_is_deterministic_labelled_and_its_maps_are_their_points(
        tmp_path: Path) -> None:
    cfg = _small(tmp_path)
    bases = _bases(cfg.setup, cfg.maps.hardware)
    run(cfg, bases)
    out = tmp_path / "out"
    first = {n: (out / f"{n}.json").read_text() for n in ("protocol", "maps", "sensitivity")}
    for name in ("protocol", "maps", "sensitivity"):
        assert json.loads(first[name])["simulated"] is True
    run(cfg, bases)
    assert {n: (out / f"{n}.json").read_text() for n in first} == first  # same seed, same
    protocol = json.loads(first["protocol"])
    edges = {(p["system"], p["batch"]): p["edges"] for p in protocol["points"]}
    assert edges[("specedge", 2)] == 4 and edges[("server_only", 2)] is None  # 2B edges
    assert edges[("specedge_budgeted", 2)] == 4
    assert len(protocol["table"]) == 2 * 2
    points = {(p["scenario"], p["system"], p["batch"]): p for p in protocol["points"]}
    for row in protocol["table"]:  # the budget verifies no more than the trees hold
        fixed = points[(row["scenario"], "specedge", row["batch"])]
        assert 1 <= row["budgeted_verified_size"] <= fixed["verified_size_mean"]
        assert fixed["verified_size_mean"] == fixed["tree_size_mean"]
        for system in ("specedge", "specedge_budgeted"):
            assert row[f"{system}_busy_vs_auto_batch"] > 0
            # at the break-even price SpecEdge costs what the cheaper baseline costs
            price = row[f"{system}_break_even_usd_h_upstream"]
            point = points[(row["scenario"], system, row["batch"])]
            cheaper = min(row["server_only_usd_per_mtok"], row["auto_batch_usd_per_mtok"])
            if price is None:
                assert costs(point)[0] / point["tokens"] * 1e6 > cheaper
            else:
                server, edge = costs(point)
                paid = server + edge * price / point["prices"]["edge_per_hour"]
                assert paid / point["tokens"] * 1e6 == pytest.approx(cheaper)
    for row in protocol["table"]:  # budgeted against fixed: the paired draws' agreement
        for accounting in ("upstream", "ours"):
            by_draw = {s: row[f"{s}_break_even_draws_{accounting}"]
                       for s in ("specedge", "specedge_budgeted")}
            assert [len(d) for d in by_draw.values()] == [cfg.draws] * 2
            assert by_draw["specedge"][0] == row[f"specedge_break_even_usd_h_{accounting}"]
            assert row[f"budgeted_break_even_{accounting}"] == compare_draws(
                by_draw["specedge_budgeted"], by_draw["specedge"])
    # a further draw is the point simulated under the next seed, priced against the seed's
    # cheaper baseline
    row = next(r for r in protocol["table"] if r["scenario"] == "tiny" and r["batch"] == 2)
    point = points[("tiny", "specedge_budgeted", 2)]
    assert [d["seed"] for d in point["draws"]] == list(range(1, cfg.draws))
    again = simulate_system(bases, None, "specedge_budgeted", 2, point["edges"],
                            {"simulate.trace": TINY, "simulate.requests_per_edge": 1}, 1)
    cheaper = min(row["server_only_usd_per_mtok"], row["auto_batch_usd_per_mtok"])
    assert row["specedge_budgeted_break_even_draws_upstream"][1] == break_even_edge_price(
        again, cheaper)
    for p in protocol["points"]:  # each point names its trace and its derived latencies
        assert "tiny-4e-noproactive" in p["trace"]
        assert "derived" in p["latency_model"]["target"]["source"]
        assert ("acceptance" in p["trace"]) == (p["scenario"] == "chain")
    cells = json.loads(first["maps"])["cells"]
    assert len(cells) == 1 * 2 * 2 * 2
    assert all(c["budgeted_vs_auto_batch"] > 0 and c["budgeted_vs_server_only"] > 0
               for c in cells)
    cell = next(c for c in cells if c["concurrency"] == 4 and c["rtt_ms"] == 14.0
                and c["tokens_per_round"] == 3.0)
    assert "hardware=a100_80" in cell["overrides"]["specedge"]
    assert "hardware.link.delay_ms=7.0" in cell["overrides"]["specedge"]
    # a cell's overrides reproduce it at the command line: the typed settings and the
    # composed overrides are the same configuration
    se = figures(_at_the_command_line(cell["overrides"]["specedge"]))
    so = figures(_at_the_command_line(cell["overrides"]["server_only"]))
    assert cell["vs_server_only"] == se["usd_per_mtok"] / so["usd_per_mtok"]
    assert cell["specedge_tokens_per_round"] == pytest.approx(3.0, abs=0.35)
    sens = json.loads(first["sensitivity"])
    assumptions = [r["assumption"] for r in sens["rows"]]
    assert assumptions[0] == "baseline" and {"acceptance", "efficiency", "edges per batch",
                                             "accounting", "verification budget"
                                             } <= set(assumptions)
    assert len(sens["verdict"]) == 3 and all("reproduced" in v for v in sens["verdict"])


def _projection_inputs(tmp_path: Path) -> tuple[list[Path], list[Path], Path]:
    """What the rest of the projection page reads: the paper's setup simulated per system,
    an edges sweep's index (one job) and a validation table."""
    setup = []
    bases = _bases(["hardware=a100_80", "model=qwen3_14b", f"simulate.trace={TINY}"])
    for system in ("auto_batch", "server_only", "specedge"):
        base = bases.configs[(None, system)]
        setup.append(tmp_path / "setup" / system)
        summary = simulate(plan_of_config(configured(base, system_settings(system, 2))),
                           setup[-1])
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "index.json").write_text(json.dumps({"sweep_dir": str(sweep), "jobs": [
        {"status": "completed", "params": {"edge.proactive.type": "disabled"},
         "summary": summary}]}))
    validation = tmp_path / "validation.json"
    validation.write_text(json.dumps([{"run": "r/specedge", "baseline": "specedge",
                                       "metric": "ITL ms", "measured": 10.0,
                                       "simulated": 10.5, "error": 0.05}]))
    return setup, [sweep], validation


@pytest.mark.slow
def test_the_reports_show_the_projection_and_say_what_this_run_cannot_show(
        tmp_path: Path) -> None:
    """The projection page leads with the protocol, sensitivity and maps; the index says what
    one CPU can and cannot show and links the headline."""
    cfg = _small(tmp_path)
    run(cfg, _bases(cfg.setup, cfg.maps.hardware))
    setup, sweeps, validation = _projection_inputs(tmp_path)
    page = projection_report(setup, sweeps, validation, tmp_path / "projection.html", "P",
                             scenarios=tmp_path / "out")
    html = page.read_text()
    assert html.index('id="headline"') < html.index('id="sensitivity"') < html.index(
        'id="maps"') < html.index("Validation")
    assert "break-even" in html and "SIMULATED" in html and "the paper" in html
    assert "SpecEdge with goodput budget" in html and "budgeted: nodes verified a round" in html
    index = index_page([page], tmp_path / "index.html", tmp_path / "out").read_text()
    assert "cannot show" in index and "projection.html#headline" in index
    assert "reproduced" in index
    # the one table of figures: every number read from the results, none typed
    table = figures_table(setup, validation, [validation], tmp_path / "out",
                          tmp_path / "figures.md").read_text()
    for system in ("auto_batch", "server_only", "specedge"):
        summary = json.loads((tmp_path / "setup" / system / "summary.json").read_text())
        busy = summary["tokens"] / summary["server_busy_s"]
        assert f"| {system} " in table and f"{busy:.3g}" in table
    assert "| validation matrix " in table and "| held-out " in table
    assert "+5.0% (specedge, ITL ms)" in table  # the worst figure, named
    assert "## The paper's setup (simulated)" in table
    assert all(line in table for line in json.loads(
        (tmp_path / "out" / "sensitivity.json").read_text())["verdict"])
