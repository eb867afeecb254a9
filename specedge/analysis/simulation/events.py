"""The event model: SpecEdge's edges and server, server-only's and auto-batch's loops as
SimPy processes over a :class:`Plan`, writing the records a real run writes."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import simpy
from omegaconf import OmegaConf

from specedge.algorithm.goodput import (
    IdleHorizon,
    next_share,
)
from specedge.analysis.metrics import write_summary
from specedge.analysis.simulation.latency import (
    Latency,
    ProfileLatency,
)
from specedge.analysis.simulation.plan import Plan
from specedge.analysis.simulation.pruning import (
    ReplayTree,
    budget_cut,
    drafted_round,
    is_budgeted,
    step_cost,
)
from specedge.analysis.simulation.traces import TraceRound
from specedge.base.config.baseline import BaselineName
from specedge.base.config.edge import ProactiveType
from specedge.base.records import (
    OUTPUTS_FILE,
    RUN_CONFIG_FILE,
    SERVER_FILE,
    STEPS_FILE,
    SUMMARY_FILE,
    EdgeRoundRecord,
    JsonlWriter,
    OutputRecord,
    ServerStepRecord,
    StepRecord,
    edge_file,
)
from specedge.serving.network import EmulatedLink
from specedge.serving.scheduler import decide, make_policy

T0 = 1_700_000_000.0  # simulated runs start at this Unix time (records need absolute times)




@dataclass
class _Job:
    client_id: int
    tokens: int
    context: int  # committed tokens the batch attends to (the prefix)
    enqueued: float
    reply: simpy.Event
    prefill: bool
    queue_s: float = 0.0
    verify_s: float = 0.0
    tree: ReplayTree | None = None  # under the goodput budget: as sent, then as verified


@dataclass
class _Out:
    """Record writers of a simulated run."""

    steps: JsonlWriter | None = None
    server: JsonlWriter | None = None
    edges: dict[int, JsonlWriter] = field(default_factory=dict)
    outputs: JsonlWriter | None = None

    def close(self) -> None:
        for w in (self.steps, self.server, self.outputs, *self.edges.values()):
            if w is not None:
                w.close()


def _requests(plan: Plan) -> list[tuple[int, str, int, int, int]]:
    """The trace's requests, repeated (new ids) until there are ``plan.requests``: (id,
    category, tokens, prompt tokens, the trace request it repeats)."""
    lengths = plan.trace.output_lengths
    n = plan.requests or len(lengths)
    return [(i, *lengths[i % len(lengths)][1:], lengths[i % len(lengths)][0])
            for i in range(n)]


def _draft_s(plan: Plan, latency: Latency | None, r: TraceRound, context: int,
             prompt: int) -> float:
    """A round's drafting: traced, or its draft forwards timed by ``latency`` (plus the
    prompt's prefill in the first round)."""
    if latency is None:
        return r.draft_s
    step = latency.seconds(plan.cfg.edge.max_n_beams, 1, context)
    return r.draft_forwards * step + (latency.seconds(prompt, 1, 0) if context == prompt
                                      else 0.0)


def _batch_draft_s(plan: Plan, active: list[_Active], rounds: list[TraceRound],
                   step: int) -> float:
    """Server-only's drafting of a batch, every tree together: traced, replaying a run, its
    ``step``-th step's (requests admitted as others finish mix rounds of different steps,
    whose longest overstates the batch), otherwise the longest of its rounds' (a run
    records the batch's time on each); profiled, one draft forward per level for the
    requests still drafting at that level (``max_n_beams`` nodes each, at that batch), plus
    the prompt prefill of each new request."""
    latency = plan.draft_server
    if latency is None:
        steps = plan.trace.step_draft_s if plan.trace.replay else []
        return steps[min(step, len(steps) - 1)] if steps else max(r.draft_s for r in rounds)
    beams = plan.cfg.edge.max_n_beams
    total = sum(latency.seconds(a.prompt, 1, 0) for a in active if a.steps == 0)
    for level in range(max(r.draft_forwards for r in rounds)):
        at = [a for a, r in zip(active, rounds, strict=True) if r.draft_forwards > level]
        total += latency.seconds(beams * len(at), len(at), sum(a.prompt + a.produced
                                                               for a in at))
    return total


def _late_s(plan: Plan, context: int, wait: float) -> tuple[float, float]:
    """Profiled proactive drafting while the edge waits ``wait`` seconds for its reply: the
    reply waits for the forward in flight (lateness) unless the proactive tree was done.
    Returns (lateness, proactive drafting time)."""
    assert plan.draft_edge is not None
    p = plan.cfg.edge.proactive
    step = plan.draft_edge.seconds(p.max_n_beams, 1, context)
    total = p.max_beam_len * step
    if wait >= total or step <= 0:
        return 0.0, total
    if p.type == ProactiveType.cache:  # it stops before a forward that would end too late
        return 0.0, math.floor(wait / step) * step
    late = math.ceil(wait / step) * step - wait
    return late, wait + late


def _output(request_id: int, category: str, tokens: int) -> OutputRecord:
    return OutputRecord(request_id=request_id, category=category, prompt="(simulated)",
                        prompt_ids=[], output_ids=[0] * tokens, text="", subcategory=category)


def _server(env: simpy.Environment, plan: Plan, waiting: list[_Job], wake: list[simpy.Event],
            active: set[int], out: _Out,
            horizon: IdleHorizon) -> Generator[simpy.Event, Any, None]:
    cfg = plan.cfg
    policy = make_policy(cfg.server.scheduler_policy, cfg.server.max_batch_size,
                         cfg.server.num_clients)
    max_wait = cfg.server.max_wait_ms / 1e3
    cost = step_cost(plan, cfg.server.step_batches)
    regrouped = cfg.server.regroups
    step = 0
    while True:
        decision = decide(policy, waiting, active, horizon, env.now, max_wait,
                          cost if regrouped else None)
        batch = decision.batch
        if batch is None:
            wake[0] = env.event()
            deadline = min((j.enqueued for j in waiting), default=None)
            if deadline is None:
                yield wake[0]
            else:
                yield wake[0] | env.timeout(max(0.0, deadline + max_wait - env.now) + 1e-9)
            continue
        ids = {id(j) for j in batch}
        waiting[:] = [j for j in waiting if id(j) not in ids]
        t0 = env.now
        sent = sum(j.tree.size for j in batch if j.tree is not None)
        tokens, context = sum(j.tokens for j in batch), sum(j.context for j in batch)
        prefill_s = plan.prefill_extra_s * sum(j.prefill for j in batch)
        budget, cut, free_s = None, [], 0.0
        if is_budgeted(plan):
            trees = [j.tree for j in batch if j.tree is not None]
            extra = tokens - sent
            free_s = decision.free_s
            budget, cut = budget_cut(cost, trees, extra, prefill_s, free_s)
            for j, tree in zip(batch, cut, strict=True):
                j.tree = tree
            tokens = extra + sum(t.size for t in cut)
        forward = plan.target.seconds(tokens, len(batch), context) + prefill_s
        if not any(j.prefill for j in batch):
            cost.observe(tokens, forward, len(batch))
        yield env.timeout(forward)
        for j in batch:
            j.queue_s, j.verify_s = t0 - j.enqueued, forward
            horizon.answer(j.client_id, env.now)
            j.reply.succeed()
        if out.server is not None:
            out.server.write(ServerStepRecord(
                step=step, clients=[j.client_id for j in batch], batch_size=len(batch),
                prefill_count=sum(j.prefill for j in batch),
                tree_nodes=tokens, queue_wait_s=max(t0 - j.enqueued for j in batch),
                forward_s=forward, t_start=T0 + t0, t_end=T0 + env.now, prefix_tokens=context,
                sent_nodes=sent if budget is not None else 0,
                expected_tokens=budget.expected_tokens if budget is not None else 0.0,
                emitted_tokens=sum(t.accepted + 1 for t in cut) if budget is not None else 0,
                free_s=free_s))
        step += 1


def _edge(env: simpy.Environment, plan: Plan, client: int,
          requests: list[tuple[int, str, int, int, int]],
          waiting: list[_Job], wake: list[simpy.Event], active: set[int], out: _Out,
          rng: random.Random, horizon: IdleHorizon) -> Generator[simpy.Event, Any, None]:
    proactive = plan.cfg.edge.proactive.type.value != "disabled"
    writer = out.edges[client]
    profiled = plan.draft_edge is not None
    link = EmulatedLink(plan.cfg.hardware.link, rng)  # the real edge's link arithmetic
    budgeted, share = is_budgeted(plan), None  # the nodes the server last left this edge
    for request_id, category, total, prompt, source in requests:
        produced, round_no, adopted = 0, 0, False
        while produced < total:
            prefill = round_no == 0
            r = plan.trace.draw(rng, prefill, adopted, source, round_no)
            tree = None
            if budgeted:
                r, tree = drafted_round(plan, r, share)
            context = prompt + produced
            t_start = env.now
            draft_s = _draft_s(plan, plan.draft_edge, r, context, prompt)
            yield env.timeout(draft_s)
            t_sent = env.now
            yield env.timeout(link.one_way_s(r.bytes // 2))
            # Profiled: the prompt's prefill is a forward of its tokens (a run's fit charges
            # prefill_extra_s instead).
            tokens = r.tree_size + (prompt if prefill and isinstance(plan.target, ProfileLatency)
                                    else 0)
            job = _Job(client, tokens, 0 if prefill else context, env.now, env.event(), prefill,
                       tree=tree)
            waiting.append(job)
            horizon.arrived(client, env.now)
            if not wake[0].triggered:
                wake[0].succeed()
            yield job.reply
            yield env.timeout(link.one_way_s(r.bytes - r.bytes // 2) + r.transport_s)
            arrived = env.now
            late_s, proactive_s = r.late_s, r.proactive_s
            if profiled:
                late_s, proactive_s = _late_s(plan, context, arrived - t_sent) if proactive \
                    else (0.0, 0.0)
            yield env.timeout(late_s + r.other_s)
            verified = r.tree_size - 1
            if job.tree is not None:  # what the budget kept of the tree, and its verdict
                verified = job.tree.size - 1
                r = replace(r, accepted=job.tree.accepted, new_tokens=job.tree.accepted + 1)
                share = next_share(verified, r.tree_size - 1, share)
            new = min(r.new_tokens, total - produced)
            produced += new
            hit = r.hit if plan.trace.replay else proactive and rng.random() < plan.trace.hit_rate
            writer.write(EdgeRoundRecord(
                client_id=client, request_id=request_id, category=category, round=round_no,
                prefill=prefill, draft_s=draft_s, wait_s=arrived - t_sent, late_s=late_s,
                server_queue_s=job.queue_s, server_verify_s=job.verify_s,
                request_bytes=r.bytes // 2, reply_bytes=r.bytes - r.bytes // 2, retries=0,
                tree_size=r.tree_size, accepted=min(r.accepted, new), new_tokens=new,
                draft_forwards=r.draft_forwards, proactive_drafted=proactive,
                proactive_hit=hit, from_proactive=adopted, proactive_s=proactive_s,
                t_start=T0 + t_start, t_sent=T0 + t_sent, t_end=T0 + env.now,
                finished=produced >= total, tokens=[],  # simulated: counts, no tokens
                verified_nodes=verified))
            adopted = hit and produced < total
            round_no += 1
        assert out.outputs is not None
        out.outputs.write(_output(request_id, category, total))
    active.discard(client)
    if not wake[0].triggered:
        wake[0].succeed()


@dataclass
class _Active:
    """A request in a server-side loop's batch."""

    request_id: int
    category: str
    total: int
    prompt: int
    source: int  # the trace request it repeats
    produced: int = 0
    steps: int = 0
    share: int | None = None  # the nodes the goodput budget last left it, with headroom


def _server_side(env: simpy.Environment, plan: Plan, out: _Out,
                 rng: random.Random) -> Generator[simpy.Event, Any, None]:
    """server-only (draft each tree, then verify all) and auto-batch (one token each)."""
    cfg = plan.cfg
    speculate = cfg.baseline.name == BaselineName.server_only
    capacity = cfg.baseline.batch_capacity  # type: ignore[union-attr]
    queue = iter(_requests(plan))
    profiled = isinstance(plan.target, ProfileLatency)
    active: list[_Active] = []
    cost = step_cost(plan, (capacity,))
    step = 0
    assert out.steps is not None and out.outputs is not None
    while True:
        while len(active) < capacity and (nxt := next(queue, None)) is not None:
            active.append(_Active(*nxt))
        if not active:
            return
        t_start = env.now
        rounds = [plan.trace.draw(rng, a.steps == 0, False, a.source, a.steps) if speculate
                  else TraceRound(0.0, 0, 1, 1, 0, 0) for a in active]
        budgeted = speculate and is_budgeted(plan)
        trees: list[ReplayTree] = []
        if budgeted:
            rounds, trees = (list(x) for x in zip(*(drafted_round(plan, r, a.share)
                                                     for a, r in zip(active, rounds,
                                                                     strict=True)),
                                                   strict=True))
        drafted = [r.tree_size for r in rounds]
        draft_s = _batch_draft_s(plan, active, rounds, step) if speculate else 0.0
        yield env.timeout(draft_s)
        # Profiled: a prefill forwards its prompt (a run's fit charges prefill_extra_s).
        extra = sum(a.prompt for a in active if a.steps == 0 and profiled)
        context = sum(a.prompt + a.produced for a in active if a.steps > 0)
        prefill_s = plan.prefill_extra_s * sum(a.steps == 0 for a in active)
        if budgeted:  # the drafting already spent is part of the step's cost
            _, trees = budget_cut(cost, trees, extra, draft_s + prefill_s)
            for a, r, t in zip(active, rounds, trees, strict=True):
                a.share = next_share(t.size - 1, r.tree_size - 1, a.share)
            rounds = [replace(r, tree_size=t.size, accepted=t.accepted, new_tokens=t.accepted + 1)
                      for r, t in zip(rounds, trees, strict=True)]
        tokens = extra + sum(r.tree_size for r in rounds)
        forward = plan.target.seconds(tokens, len(active), context) + prefill_s
        if all(a.steps > 0 for a in active):  # no prompt prefill
            cost.observe(tokens, forward)
        yield env.timeout(forward + plan.step_overhead_s)
        for a, r, nodes in zip(active, rounds, drafted, strict=True):
            prefix = a.prompt + a.produced if a.steps > 0 else 0
            new = min(r.new_tokens, a.total - a.produced)
            a.produced += new
            out.steps.write(StepRecord(
                baseline=cfg.baseline.name.value, step=step, request_id=a.request_id,
                category=a.category, batch_size=len(active), prefill=a.steps == 0,
                draft_s=draft_s, target_s=forward, tree_size=r.tree_size,
                accepted=min(r.accepted, new), new_tokens=new,
                draft_forwards=r.draft_forwards, t_start=T0 + t_start, t_end=T0 + env.now,
                finished=a.produced >= a.total, prefix=prefix, drafted_nodes=nodes))
            a.steps += 1
            if a.produced >= a.total:
                out.outputs.write(_output(a.request_id, a.category, a.total))
        active = [a for a in active if a.produced < a.total]
        step += 1
        yield env.timeout(plan.step_gap_s)


def simulate(plan: Plan, run_dir: Path) -> dict[str, Any]:
    """Simulate ``plan`` into ``run_dir`` (records, run_config.yaml, summary.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in run_dir.glob("*.jsonl"):
        stale.unlink()
    # The simulated run's configuration, as a real run keeps it (metrics take prices from it).
    (run_dir / RUN_CONFIG_FILE).write_text(OmegaConf.to_yaml(OmegaConf.structured(plan.cfg)))
    rng = random.Random(plan.seed)
    env = simpy.Environment()
    out = _Out(outputs=JsonlWriter(run_dir / OUTPUTS_FILE))
    cfg = plan.cfg
    try:
        if cfg.baseline.name == BaselineName.specedge:
            n = cfg.server.num_clients
            out.server = JsonlWriter(run_dir / SERVER_FILE)
            waiting: list[_Job] = []
            wake = [env.event()]
            active = set(range(n))
            requests = _requests(plan)
            horizon = IdleHorizon()  # the server's estimate of the next group's return
            env.process(_server(env, plan, waiting, wake, active, out, horizon))
            for c in range(n):
                out.edges[c] = JsonlWriter(edge_file(run_dir, c))
                env.process(_edge(env, plan, c, requests[c::n], waiting, wake, active, out,
                                  random.Random(rng.random()), horizon))
            env.run()
        else:
            out.steps = JsonlWriter(run_dir / STEPS_FILE)
            env.run(env.process(_server_side(env, plan, out, rng)))
    finally:
        out.close()
    summary = write_summary(run_dir)
    summary |= {"simulated": True, "latency_model": {
                    "target": plan.target.describe(),
                    "draft_edge": plan.draft_edge.describe() if plan.draft_edge else "traced",
                    "draft_server": (plan.draft_server.describe() if plan.draft_server
                                     else "traced")},
                "trace": plan.trace.source, "simulated_s": env.now}
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
