"""A discrete-event model (SimPy) of the three systems, driven by latency profiles and traces.

``python -m specedge.simulate --validate RUN_DIR... [--out DIR]`` re-simulates real runs from
their own config, a latency model fitted on their own forwards and their own rounds (each
request's, replayed in order), and prints measured vs simulated.

``python -m specedge.simulate simulate.trace=RUN_DIR [HYDRA_OVERRIDES...]`` (``-m`` for sweeps,
indexed like real ones) simulates the composed configuration: rounds drawn from the trace run;
latencies from ``simulate.profile`` (a ``specedge.analysis.profile`` JSON: the target's forward,
and a round's draft forwards times the draft's) or, without one, the trace run's own; any number of
edges (``simulate.edges``). With a profile, the trace machine's own overheads (its gRPC stack, its
shared cores) are left out: only the emulated link and the profiled forwards remain.

The model is the real system's structure, each piece a SimPy process:

- SpecEdge: every edge drafts (a duration drawn from the trace), sends its tree over the
  emulated link (``hardware.link``: one-way delay, jitter, bandwidth; the round's bytes from the
  trace), and waits; the server forms batches with the real scheduler policies
  (:mod:`specedge.serving.scheduler`: pipeline-aware groups, static, dynamic, ``max_wait_ms``) and
  verifies a batch in the target's modelled latency; the reply crosses the link back. Rounds
  adopted from a proactive guess draw from the trace's adopted rounds, at its hit rate.
- server-only: one loop drafts every active request's tree in turn, then verifies them in one
  batched forward.
- auto-batch: one loop decodes one token per active request per batched forward.

Requests keep their traced output lengths. The simulation writes the same JSONL records a real run
writes, so :mod:`specedge.analysis.metrics` computes its ``summary.json`` exactly as for a run; the
summary is marked simulated and names the latency model and the trace it used.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Generator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import simpy
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from specedge.analysis.metrics import (
    MetricsError,
    load_records,
    read_frame,
    write_summary,
)
from specedge.base.config import (
    BaselineName,
    ConfigError,
    EdgePlacement,
    ProactiveType,
    RunConfig,
    load_run_config,
    project_file,
    to_run_config,
)
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
from specedge.base.roofline import plain_name
from specedge.serving.network import EmulatedLink
from specedge.serving.scheduler import make_policy

T0 = 1_700_000_000.0  # simulated runs start at this Unix time (records need absolute times)


class SimulationError(ValueError):
    """A run or trace cannot be simulated; the message says what is missing."""


@dataclass(frozen=True)
class LatencyModel:
    """Seconds of one batched forward fitted on a run's own forwards:
    ``a + b * tokens + c * context`` (tokens: every new token of the batch, tree nodes and
    catch-up tokens; context: the tokens already in the batch's KV). Least squares over the
    terms that come out >= 0."""

    a_s: float
    b_s: float
    source: str  # where the numbers come from (a run's records)
    c_s: float = 0.0

    def seconds(self, tokens: int, batch: int = 1, context: int = 0) -> float:
        return self.a_s + self.b_s * tokens + self.c_s * context

    def describe(self) -> dict[str, Any]:
        return {"kind": "linear fit", "a_ms": self.a_s * 1e3, "b_ms_per_token": self.b_s * 1e3,
                "c_ms_per_context_token": self.c_s * 1e3, "source": self.source}

    @classmethod
    def fit(cls, tokens: np.ndarray, seconds: np.ndarray, source: str,
            context: np.ndarray | None = None) -> LatencyModel:
        if len(tokens) == 0:
            raise SimulationError(f"{source}: no forwards to fit a latency model on")
        context = np.zeros_like(tokens) if context is None else context
        columns = [np.ones(len(tokens)), tokens.astype(float), context.astype(float)]
        y = seconds.astype(float)
        best = (float(np.mean(y)), 0.0, 0.0)  # a constant, when nothing else fits
        best_err = float(np.sum((y - best[0]) ** 2))
        # Every subset of the terms (with the constant or not); the best fit whose
        # coefficients are all >= 0 wins: a least squares with non-negative coefficients.
        for terms in ((0, 1, 2), (0, 1), (1, 2), (0, 2), (1,), (2,)):
            x = np.stack([columns[t] for t in terms], axis=1)
            if np.linalg.matrix_rank(x) < len(terms):
                continue
            coef, *_ = np.linalg.lstsq(x, y, rcond=None)
            if (coef < 0).any():
                continue
            err = float(np.sum((x @ coef - y) ** 2))
            if err < best_err - 1e-15:
                full = [0.0, 0.0, 0.0]
                for t, c in zip(terms, coef, strict=True):
                    full[t] = float(c)
                best, best_err = (full[0], full[1], full[2]), err
        return cls(best[0], best[1], source, best[2])


def _brackets(axis: np.ndarray, x: float) -> list[tuple[int, float]]:
    """Indices and weights that interpolate ``x`` on a sorted axis: linear between grid
    points, linear extrapolation past the last one (a roofline grows linearly there), clamped
    below the first."""
    if len(axis) == 1 or x <= axis[0]:
        return [(0, 1.0)]
    hi = min(int(np.searchsorted(axis, x)), len(axis) - 1)
    lo = hi - 1
    w = (x - axis[lo]) / (axis[hi] - axis[lo])
    return [(lo, 1.0 - w), (hi, w)]


@dataclass(frozen=True)
class ProfileLatency:
    """Seconds of one batched forward read from a profile's grid (batch x new tokens per
    sequence x prefix), interpolated at the batch's size and its sequences' mean tokens and
    prefix."""

    batches: np.ndarray
    nodes: np.ndarray
    prefixes: np.ndarray
    ms: np.ndarray  # [batch, nodes, prefix]
    source: str

    def seconds(self, tokens: int, batch: int = 1, context: int = 0) -> float:
        ms = sum(wb * wn * wp * self.ms[b, n, p]
                 for b, wb in _brackets(self.batches, batch)
                 for n, wn in _brackets(self.nodes, tokens / batch)
                 for p, wp in _brackets(self.prefixes, context / batch))
        return max(0.0, float(ms)) / 1e3

    def describe(self) -> dict[str, Any]:
        return {"kind": "profile", "source": self.source}

    @classmethod
    def of(cls, rows: pd.DataFrame, source: str) -> ProfileLatency:
        if "prefix" not in rows:  # a profile of one prefix length that does not say which
            rows = rows.assign(prefix=0)
        axes = [np.array(sorted(set(rows[k]))) for k in ("batch", "nodes", "prefix")]
        grid = rows.pivot_table(index=["batch", "nodes", "prefix"], values="ms_median")
        if len(grid) != math.prod(len(a) for a in axes):
            raise SimulationError(f"{source}: the rows are not a full batch x nodes x prefix "
                                  "grid")
        ms = grid["ms_median"].to_numpy().reshape([len(a) for a in axes])
        return cls(*axes, ms, source)


Latency = LatencyModel | ProfileLatency


@dataclass
class TraceRound:
    draft_s: float
    accepted: int
    new_tokens: int  # before the length cut; at least 1 (the bonus)
    tree_size: int
    bytes: int
    draft_forwards: int  # before the tree was sent (proactive ones overlap the wait)
    late_s: float = 0.0  # the reply waited for proactive drafting to stop
    proactive_s: float = 0.0
    other_s: float = 0.0  # the edge's own bookkeeping around the round
    transport_s: float = 0.0  # measured network time beyond the emulated link (gRPC, stack)
    hit: bool = False  # its proactive guess hit (the next round grows the guessed sub-tree)


@dataclass
class Trace:
    """Rounds of a run (the same pair and dataset) to draw from, and its requests' lengths."""

    source: str
    prefill: list[TraceRound]
    plain: list[TraceRound]  # drafted from scratch
    adopted: list[TraceRound]  # grown from a proactive hit
    hit_rate: float  # of rounds drafted with a proactive guess
    # (request id, category, tokens generated, prompt tokens)
    output_lengths: list[tuple[int, str, int, int]]

    acceptance: list[float] | None = None  # P(k accepted): replaces the rounds' own counts
    # Rounds are chains of this many drafted tokens (published chain acceptance): the tree
    # holds them and the root, drafted in as many forwards.
    chain: int | None = None
    by_request: dict[int, list[TraceRound]] = field(default_factory=dict)  # in round order
    # Replay: request r's k-th round is the trace's (a run re-simulated as it happened);
    # otherwise rounds are drawn at random from the pools above.
    replay: bool = False

    def draw(self, rng: random.Random, prefill: bool, adopted: bool, request: int = -1,
             index: int = 0) -> TraceRound:
        """The round to simulate: request ``request``'s ``index``-th when replaying, else a
        random prefill, adopted or plain round (with the configured acceptance, if any)."""
        own = self.by_request.get(request, []) if self.replay else []
        if index < len(own):
            return own[index]
        pool = self.prefill if prefill and self.prefill else (
            self.adopted if adopted and self.adopted else self.plain or self.prefill)
        r = rng.choice(pool)
        if self.chain is not None:
            r = replace(r, tree_size=self.chain + 1, draft_forwards=self.chain)
        if self.acceptance is None:
            return r
        k = rng.choices(range(len(self.acceptance)), weights=self.acceptance)[0]
        return replace(r, accepted=k, new_tokens=k + 1)


TRACE_FORMAT = "specedge.trace/1"


def save_trace(trace: Trace, path: Path, provenance: str) -> None:
    """A run's rounds as one JSON file: what simulations draw from, without the records.
    ``provenance`` says what was measured where (the file is data, kept in the repository)."""
    pools = {k: [asdict(r) for r in getattr(trace, k)] for k in ("prefill", "plain", "adopted")}
    path.write_text(json.dumps({"format": TRACE_FORMAT, "source": trace.source,
                                "provenance": provenance, "hit_rate": trace.hit_rate,
                                "output_lengths": trace.output_lengths, **pools}) + "\n")


def _load_trace(path: Path) -> Trace:
    try:
        data = json.loads(path.read_text())
        if data.get("format") != TRACE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, not {TRACE_FORMAT!r}")
        pools = {k: [TraceRound(**r) for r in data[k]] for k in ("prefill", "plain", "adopted")}
        return Trace(source=f"{path} ({data['provenance']})", hit_rate=float(data["hit_rate"]),
                     output_lengths=[tuple(x) for x in data["output_lengths"]],  # type: ignore[misc]
                     **pools)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SimulationError(f"{path}: not a trace file written by save_trace ({exc})") from None


def trace_of(run_dir: Path) -> Trace:
    """The acceptance trace of a real run (its rounds and its requests' output lengths), or
    of a trace file (:func:`save_trace`)."""
    if Path(run_dir).is_file():
        return _load_trace(Path(run_dir))
    rec = load_records(run_dir)
    if rec.outputs is None:
        raise SimulationError(f"{run_dir}: no {OUTPUTS_FILE}: the output lengths are unknown")
    r = rec.rounds

    specedge = rec.baseline == "specedge"
    link = load_run_config(run_dir).hardware.link if specedge else None

    def transport(x: Any) -> float:
        """What the round's network time was beyond the emulated link's mean."""
        if link is None:
            return 0.0
        return max(0.0, float(x.network_s) - 2 * link.delay_ms / 1e3 - link.wire_s(x.bytes))

    def rounds(frame: pd.DataFrame) -> list[TraceRound]:
        # Server-side rounds' other_s holds the other requests' drafting: not this round's.
        return [TraceRound(float(x.draft_s), int(x.accepted), int(x.accepted) + 1,
                           int(x.tree_size), int(x.bytes),
                           int(x.draft_forwards) - int(x.proactive_forwards),
                           float(x.late_s), float(x.proactive_s),
                           float(x.other_s) if specedge else 0.0, transport(x),
                           bool(x.proactive_hit))
                for x in frame.itertuples()]

    drafted = r["proactive_drafted"].astype(bool)
    hits = r.loc[drafted, "proactive_hit"].astype(bool)
    return Trace(
        source=str(run_dir),
        prefill=rounds(r[r["prefill"]]),
        plain=rounds(r[~r["prefill"] & ~r["from_proactive"].astype(bool)]),
        adopted=rounds(r[~r["prefill"] & r["from_proactive"].astype(bool)]),
        hit_rate=float(hits.mean()) if len(hits) else 0.0,
        by_request={int(k): rounds(g) for k, g in r.groupby("request_id", sort=False)},
        output_lengths=[(int(o.request_id), str(o.category), len(o.output_ids),
                         len(o.prompt_ids)) for o in rec.outputs.itertuples()])


@dataclass(frozen=True)
class ServerFit:
    """What a run's own server records say about its target forwards and steps."""

    target: LatencyModel
    prefill_extra_s: float  # a prefill forward's mean excess over the model (the prompt)
    step_overhead_s: float  # server-side loops: a step's time outside drafting and forward
    step_gap_s: float  # server-side loops: time between one step's end and the next's start


def fit_server(run_dir: Path) -> ServerFit:
    """The target's latency fitted on a run's own forwards (what the server timed)."""
    problems: list[str] = []
    overhead = gap = 0.0
    if (run_dir / SERVER_FILE).exists():
        steps = read_frame(run_dir / SERVER_FILE, ServerStepRecord, problems)
        tokens, seconds = steps["tree_nodes"].to_numpy(), steps["forward_s"].to_numpy()
        prefill, context = steps["prefill_count"].to_numpy(), steps["prefix_tokens"].to_numpy()
    else:
        steps = read_frame(run_dir / STEPS_FILE, StepRecord, problems)
        per = steps.groupby("step").agg(tokens=("tree_size", "sum"),
                                        seconds=("target_s", "first"),
                                        prefill=("prefill", "sum"), draft=("draft_s", "sum"),
                                        t_start=("t_start", "first"), t_end=("t_end", "first"),
                                        context=("prefix", "sum"))
        tokens, seconds = per["tokens"].to_numpy(), per["seconds"].to_numpy()
        prefill, context = per["prefill"].to_numpy(), per["context"].to_numpy()
        overhead = float((per["t_end"] - per["t_start"] - per["draft"] - per["seconds"])
                         .clip(lower=0).mean())
        order = per.sort_values("t_start")
        gap = float((order["t_start"].shift(-1) - order["t_end"]).clip(lower=0).mean() or 0.0)
    # Prefill forwards also run the prompt, which the tree sizes do not count: fit the rest,
    # and charge a prefill its mean excess.
    plain = prefill == 0
    keep = plain if plain.sum() >= 2 else np.ones_like(plain, dtype=bool)
    model = LatencyModel.fit(tokens[keep], seconds[keep], f"fitted on {run_dir}",
                             context[keep])
    excess = [(s - model.seconds(int(t), 1, int(c))) / n
              for t, s, n, c in zip(tokens, seconds, prefill, context, strict=True) if n > 0]
    return ServerFit(model, max(0.0, float(np.mean(excess))) if excess else 0.0, overhead,
                     gap)


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
            active: set[int], out: _Out) -> Generator[simpy.Event, Any, None]:
    cfg = plan.cfg
    policy = make_policy(cfg.server.scheduler_policy, cfg.server.max_batch_size,
                         cfg.server.num_clients)
    max_wait = cfg.server.max_wait_ms / 1e3
    step = 0
    while True:
        batch = policy.pick(waiting, active)  # type: ignore[arg-type]
        if batch is None and waiting and env.now - min(j.enqueued for j in waiting) > max_wait:
            batch = list(waiting)
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
        forward = plan.target.seconds(sum(j.tokens for j in batch), len(batch),
                                      sum(j.context for j in batch))
        forward += plan.prefill_extra_s * sum(j.prefill for j in batch)
        yield env.timeout(forward)
        for j in batch:
            j.queue_s, j.verify_s = t0 - j.enqueued, forward
            j.reply.succeed()
        if out.server is not None:
            out.server.write(ServerStepRecord(
                step=step, clients=[j.client_id for j in batch], batch_size=len(batch),
                prefill_count=sum(j.prefill for j in batch),
                tree_nodes=sum(j.tokens for j in batch),
                queue_wait_s=max(t0 - j.enqueued for j in batch), forward_s=forward,
                t_start=T0 + t0, t_end=T0 + env.now,
                prefix_tokens=sum(j.context for j in batch)))
        step += 1


def _edge(env: simpy.Environment, plan: Plan, client: int,
          requests: list[tuple[int, str, int, int, int]],
          waiting: list[_Job], wake: list[simpy.Event], active: set[int], out: _Out,
          rng: random.Random) -> Generator[simpy.Event, Any, None]:
    proactive = plan.cfg.edge.proactive.type.value != "disabled"
    writer = out.edges[client]
    profiled = plan.draft_edge is not None
    link = EmulatedLink(plan.cfg.hardware.link, rng)  # the real edge's link arithmetic
    for request_id, category, total, prompt, source in requests:
        produced, round_no, adopted = 0, 0, False
        while produced < total:
            prefill = round_no == 0
            r = plan.trace.draw(rng, prefill, adopted, source, round_no)
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
            job = _Job(client, tokens, 0 if prefill else context, env.now, env.event(), prefill)
            waiting.append(job)
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
                finished=produced >= total, tokens=[]))  # simulated: counts, no tokens
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


def _server_side(env: simpy.Environment, plan: Plan, out: _Out,
                 rng: random.Random) -> Generator[simpy.Event, Any, None]:
    """server-only (draft each tree, then verify all) and auto-batch (one token each)."""
    cfg = plan.cfg
    speculate = cfg.baseline.name == BaselineName.server_only
    capacity = cfg.baseline.batch_capacity  # type: ignore[union-attr]
    queue = iter(_requests(plan))
    profiled = isinstance(plan.target, ProfileLatency)
    active: list[_Active] = []
    step = 0
    assert out.steps is not None and out.outputs is not None
    while True:
        while len(active) < capacity and (nxt := next(queue, None)) is not None:
            active.append(_Active(*nxt))
        if not active:
            return
        t_start = env.now
        rounds, drafts = [], []
        for a in active:
            r = plan.trace.draw(rng, a.steps == 0, False, a.source, a.steps) if speculate else \
                TraceRound(0.0, 0, 1, 1, 0, 0)
            rounds.append(r)
            drafts.append(_draft_s(plan, plan.draft_server, r, a.prompt + a.produced, a.prompt)
                          if speculate else 0.0)
        yield env.timeout(sum(drafts))
        # Profiled: a prefill forwards its prompt (a run's fit charges prefill_extra_s).
        tokens = sum(r.tree_size + (a.prompt if a.steps == 0 and profiled else 0)
                     for a, r in zip(active, rounds, strict=True))
        context = sum(a.prompt + a.produced for a in active if a.steps > 0)
        forward = plan.target.seconds(tokens, len(active), context)
        forward += plan.prefill_extra_s * sum(a.steps == 0 for a in active)
        yield env.timeout(forward + plan.step_overhead_s)
        for a, r, draft_s in zip(active, rounds, drafts, strict=True):
            prefix = a.prompt + a.produced if a.steps > 0 else 0
            new = min(r.new_tokens, a.total - a.produced)
            a.produced += new
            out.steps.write(StepRecord(
                baseline=cfg.baseline.name.value, step=step, request_id=a.request_id,
                category=a.category, batch_size=len(active), prefill=a.steps == 0,
                draft_s=draft_s, target_s=forward, tree_size=r.tree_size,
                accepted=min(r.accepted, new), new_tokens=new,
                draft_forwards=r.draft_forwards, t_start=T0 + t_start, t_end=T0 + env.now,
                finished=a.produced >= a.total, prefix=prefix))
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
            env.process(_server(env, plan, waiting, wake, active, out))
            for c in range(n):
                out.edges[c] = JsonlWriter(edge_file(run_dir, c))
                env.process(_edge(env, plan, c, requests[c::n], waiting, wake, active, out,
                                  random.Random(rng.random())))
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


def profile_latencies(path: str | Path, names: dict[str, str]) -> dict[str, ProfileLatency]:
    """Latencies of the named models from a profile JSON (``specedge.analysis.profile``'s, or a
    derived one of :mod:`specedge.base.roofline`). Rows are found by role ("target", "draft", as
    ``specedge.analysis.profile`` writes them) or by architecture name (a profile of many models:
    ``qwen3-14b`` matches ``Qwen/Qwen3-14B``)."""
    try:
        data = json.loads(project_file(str(path)).read_text())
        rows = pd.DataFrame(data["rows"])
    except (OSError, ValueError, KeyError) as exc:
        raise SimulationError(f"profile {str(path)!r}: not a specedge.analysis.profile JSON "
                              f"({exc})") from None
    latencies = {}
    for role, name in names.items():
        r = rows[rows["model"] == role]
        if r.empty:
            r = rows[rows["model"].map(plain_name) == plain_name(name)]
        if r.empty:
            raise SimulationError(
                f"profile {str(path)!r} has no rows for the {role} ({name!r}): it holds "
                f"{', '.join(sorted(set(rows['model'])))}")
        kind = "derived" if data.get("derived") else "measured"
        source = (f"{path} ({r['model'].iloc[0]}, {data.get('device_name', '?')}, "
                  f"{data.get('forward_path')}, {kind})")
        latencies[role] = ProfileLatency.of(r, source)
    return latencies


def plan_of_config(cfg: RunConfig) -> Plan:
    """The composed configuration, with rounds drawn from ``simulate.trace`` and latencies
    from the profiles (``simulate.profile`` / ``simulate.edge_profile``, else the hardware
    entry's ``server_profile`` / ``edge_profile``) or, without one, the trace run's own."""
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
        server, edge = cfg.hardware.server_profile, cfg.hardware.edge_profile
    edge = edge or server
    if server is None:
        if edge is not None:
            raise SimulationError(f"an edge profile ({edge}) needs a server profile too "
                                  "(simulate.profile or hardware.server_profile)")
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


def compare(measured: dict[str, Any], simulated: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Measured and simulated values of the validated metrics."""
    def values(s: dict[str, Any]) -> dict[str, float]:
        return {"throughput wall tok/s": s["tokens"] / s["server_wall_s"],
                "throughput busy tok/s": s["tokens"] / s["server_busy_s"],
                "ITL ms": s["itl_ms"]["mean"]}
    m, s = values(measured), values(simulated)
    return {k: (m[k], s[k]) for k in m}


def validate(run_dirs: list[Path], out_root: Path, seed: int = 0) -> list[dict[str, Any]]:
    """Measured vs simulated for every run, and for each SpecEdge run its ratios to the
    server-only run among them (the comparison a reader draws from the reports)."""
    rows, values = [], {}
    for run_dir in run_dirs:
        measured = json.loads((run_dir / SUMMARY_FILE).read_text()) \
            if (run_dir / SUMMARY_FILE).exists() else write_summary(run_dir)
        simulated = simulate(plan_of_run(run_dir, seed), out_root / run_dir.name)
        values[run_dir] = (measured["baseline"], compare(measured, simulated))
        for metric, (m, s) in values[run_dir][1].items():
            rows.append(_row(run_dir, measured["baseline"], metric, m, s))
    reference = [metrics for baseline, metrics in values.values()
                 if baseline == BaselineName.server_only.value]
    for run_dir, (baseline, metrics) in values.items():
        if baseline != BaselineName.specedge.value or len(reference) != 1:
            continue
        for metric, (m, s) in metrics.items():
            ref_m, ref_s = reference[0][metric]
            rows.append(_row(run_dir, baseline, f"{metric} / server-only", m / ref_m,
                             s / ref_s))
    return rows


def _row(run_dir: Path, baseline: str, metric: str, m: float, s: float) -> dict[str, Any]:
    return {"run": str(run_dir), "baseline": baseline, "metric": metric, "measured": m,
            "simulated": s, "error": (s - m) / m if m and not math.isnan(m) else math.nan}


def with_edges(composed: DictConfig) -> None:
    """``simulate.edges`` SpecEdge edges like the configured ones: ``server.num_clients`` and
    ``hardware.nodes`` follow it, and ``server.max_batch_size`` is capped at it (a batch
    cannot hold more edges than there are), before the configuration is checked."""
    edges = composed.simulate.edges
    if edges is None or composed.baseline.name != BaselineName.specedge.value:
        return
    first = next(iter(composed.hardware.nodes.values()))[0]
    composed.server.num_clients = edges
    composed.server.max_batch_size = min(composed.server.max_batch_size, edges)
    # Under "localhost": a saved config is merged over the schema, whose default node it is.
    composed.hardware.nodes = {"localhost": [EdgePlacement(first.device) for _ in range(edges)]}


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def simulate_config(composed: DictConfig) -> None:
    """One simulated run of the composed configuration into the Hydra run directory."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        with_edges(composed)
        cfg = to_run_config(composed)
        summary = simulate(plan_of_config(cfg), out_dir)
    except (ConfigError, SimulationError, MetricsError) as exc:
        print(f"specedge: error: {exc}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        sys.exit(2)
    print(f"simulated {summary['baseline']}: {summary['tokens']} tokens, "
          f"{summary['throughput_tok_s']:.1f} tokens/s ({summary['accounting']}), ITL "
          f"{summary['itl_ms']['mean']:.1f} ms, ${summary['usd_per_mtok']:.3f} per M tokens "
          f"-> {out_dir / SUMMARY_FILE}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--validate" not in argv:
        sys.argv = [sys.argv[0], *argv]
        simulate_config()
        return 0
    parser = argparse.ArgumentParser(prog="python -m specedge.simulate --validate",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--validate", action="store_true", required=True,
                        help="print measured vs simulated for every run")
    parser.add_argument("--out", type=Path, default=Path("results/simulated"),
                        help="where simulated runs are written (one folder per run)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        rows = validate(args.runs, args.out, args.seed)
    except (SimulationError, MetricsError) as exc:
        print(f"specedge: error: {exc}", file=sys.stderr)
        return 2
    width = max(len(r["run"]) for r in rows)
    print(f"{'run':<{width}}  {'baseline':<11} {'metric':<36} {'measured':>10} "
          f"{'simulated':>10} {'error':>8}")
    for r in rows:
        print(f"{r['run']:<{width}}  {r['baseline']:<11} {r['metric']:<36} "
              f"{r['measured']:>10.2f} {r['simulated']:>10.2f} {r['error']:>+8.1%}")
    (args.out / "validation.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
