"""What a simulation simulates (:class:`Plan`): a run's configuration with its latency models
and the trace its rounds come from, made from a real run (to validate against it) or from a
composed configuration (to project it)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from specedge.analysis.simulation.latency import (
    Latency,
    SimulationError,
    fit_server,
    profile_latencies,
)
from specedge.analysis.simulation.traces import Trace, TraceRound, trace_of
from specedge.base.config.baseline import BaselineName
from specedge.base.config.run import RunConfig, load_run_config
from specedge.base.records import (
    RUN_CONFIG_FILE,
)

T0 = 1_700_000_000.0  # simulated runs start at this Unix time (records need absolute times)




@dataclass
class Plan:
    """What to simulate: a run's configuration, latency models and a trace.

    Without draft latencies the rounds keep the trace's own drafting times (and the trace
    machine's proactive lateness); with them, a round's drafting is its traced number of draft
    forwards timed by the profile of the device that drafts (the edge's, or the server's for
    server-only), and proactive drafting runs on the edge while it waits for the reply."""

    cfg: RunConfig
    target: Latency
    trace: Trace
    draft_edge: Latency | None = None
    draft_server: Latency | None = None
    seed: int = 0
    prefill_extra_s: float = 0.0  # a prefill forward's extra time over a tree round's
    step_overhead_s: float = 0.0  # server-side loops: per step, outside drafting and forward
    step_gap_s: float = 0.0  # server-side loops: between steps (outputs, queue refills)
    requests: int | None = None  # None: the trace's requests


def plan_of_run(run_dir: Path, seed: int = 0) -> Plan:
    """A real run re-simulated from its own config, forwards and rounds."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_CONFIG_FILE).exists():
        raise SimulationError(f"{run_dir}: no {RUN_CONFIG_FILE}: not a run directory")
    fit = fit_server(run_dir)
    trace = trace_of(run_dir)
    trace.replay = True  # each request's own rounds, in order: no sampling noise
    return Plan(cfg=load_run_config(run_dir), target=fit.target, trace=trace,
                seed=seed, prefill_extra_s=fit.prefill_extra_s,
                step_overhead_s=fit.step_overhead_s, step_gap_s=fit.step_gap_s)




def plan_of_config(cfg: RunConfig) -> Plan:
    """The composed configuration, with rounds drawn from ``simulate.trace`` and latencies
    from the profiles (``simulate.profile`` / ``simulate.edge_profile``, else the hardware
    entry's ``profiles``) or, without one, the trace run's own."""
    sim = cfg.simulate
    if sim.trace is None:
        raise SimulationError("simulate.trace = None is not accepted: name a run directory "
                              "(the same pair and dataset) whose rounds to draw from")
    trace_dir = Path(sim.trace)
    trace = trace_of(trace_dir)
    # simulate.profile / edge_profile replace the hardware entry's pair as a whole.
    if sim.profile is not None or sim.edge_profile is not None:
        server, edge = sim.profile, sim.edge_profile or sim.profile
    else:
        server, edge = cfg.hardware.profiles.server, cfg.hardware.profiles.edge
    edge = edge or server
    if server is None:
        if edge is not None:
            raise SimulationError(f"an edge profile ({edge}) needs a server profile too "
                                  "(simulate.profile or hardware.profiles.server)")
        fit = fit_server(trace_dir)
        plan = Plan(cfg=cfg, target=fit.target, trace=trace, seed=cfg.seed,
                    prefill_extra_s=fit.prefill_extra_s, step_overhead_s=fit.step_overhead_s,
                    step_gap_s=fit.step_gap_s)
    else:
        on_server = profile_latencies(server, {"target": cfg.model.target,
                                                        "draft": cfg.model.draft})
        on_edge = profile_latencies(edge, {"draft": cfg.model.draft})["draft"]
        # The trace machine's own timings (its gRPC stack, its shared cores) are left out.
        def untimed(rounds: list[TraceRound]) -> list[TraceRound]:
            return [replace(r, late_s=0.0, proactive_s=0.0, other_s=0.0, transport_s=0.0)
                    for r in rounds]
        trace = Trace(f"{trace.source} (timed by {server}"
                      + (f" and {edge})" if edge != server else ")"),
                      untimed(trace.prefill), untimed(trace.plain), untimed(trace.adopted),
                      trace.hit_rate, trace.output_lengths)
        plan = Plan(cfg=cfg, target=on_server["target"], trace=trace, seed=cfg.seed,
                    draft_edge=on_edge, draft_server=on_server["draft"])
    if sim.acceptance is not None:
        trace.acceptance = list(sim.acceptance)
        trace.source += f" (acceptance {sim.acceptance})"
    if sim.chain is not None:
        trace.chain = sim.chain
        trace.source += f" (chains of {sim.chain} drafted tokens)"
    if cfg.baseline.name == BaselineName.specedge:
        streams = cfg.server.num_clients
    else:
        streams = cfg.baseline.batch_capacity  # type: ignore[union-attr]
    plan.requests = sim.requests or (sim.requests_per_edge * streams if sim.requests_per_edge
                                     else max(len(trace.output_lengths), streams))
    return plan
