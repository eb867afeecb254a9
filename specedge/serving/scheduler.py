"""Server scheduling: which queued Validate calls share the next target forward.

A policy only decides *which* waiting jobs form the next batch and *when*; the scheduler loop
runs the batch and answers the callers. ``server.scheduler=pipeline`` picks the pipeline
policy; ``server.scheduler=batch`` picks ``server.batch_type``'s (``dynamic`` or ``static``):

- ``dynamic``: take whatever is queued (up to ``max_batch_size``) as soon as anything is.
- ``static``: wait until ``max_batch_size`` calls are queued (fewer once fewer edges remain).
- ``pipeline``: **pipeline-aware scheduling** (the paper's). Edges are split into groups that
  take turns: the server verifies one group's trees while the other group drafts, so neither
  the server nor the edges wait for a full batch. With ``num_clients = 2 x max_batch_size``
  there are two groups of ``max_batch_size`` edges each.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from specedge.algorithm.goodput import (
    Budget,
    IdleHorizon,
    OnlineStepCost,
    pipeline_groups,
    pruned,
)
from specedge.base.records import ServerStepRecord

if TYPE_CHECKING:  # annotations only: the simulator imports the policies without torch
    from specedge.algorithm.tree import TokenTree
    from specedge.algorithm.verification import Verdict
    from specedge.engine.query_plan import KVRow

log = logging.getLogger("specedge.serving.scheduler")


@dataclass
class Job:
    """One Validate call waiting for the target."""

    client_id: int
    row: KVRow  # the client's target KV row
    committed: list[int]  # the request's committed tokens; the row holds a prefix of them
    tree: TokenTree
    prefill: bool
    future: asyncio.Future[Verdict]
    key: int = 0  # the request, whose positions key its samples (sampling only)
    # Work on the row the forward thread does first (a new request: reset, load cached KV):
    # the handler must not write the KV pool while another batch's forward reads it.
    prepare: Callable[[], None] | None = None
    survival: list[float] | None = None  # per tree node, sanitized (goodput budget only)
    enqueued: float = field(default_factory=time.perf_counter)
    queue_s: float = 0.0  # set when its batch is done: waiting, then the batched forward
    verify_s: float = 0.0
    kept: list[int] | None = None  # the tree's nodes its step verified (None: all of them)

    @property
    def verified(self) -> int:
        """Drafted nodes verified (the root excluded)."""
        return len(self.tree) - 1 if self.kept is None else len(self.kept) - 1

    @property
    def pending(self) -> list[int]:
        """Committed tokens missing from the row's cache (the prompt on prefill)."""
        return self.committed[self.row.length:-1]


class Queued(Protocol):
    """What a batch decision reads of a waiting call (the server's :class:`Job`, the
    simulator's own)."""

    client_id: int
    enqueued: float


Q = TypeVar("Q", bound=Queued)


class BatchPolicy(Protocol):
    def pick(self, waiting: list[Q], active: set[int]) -> list[Q] | None:
        """The next batch from ``waiting``, or None to keep waiting."""


@dataclass
class DynamicPolicy:
    max_batch_size: int

    def pick(self, waiting: list[Q], active: set[int]) -> list[Q] | None:
        return waiting[: self.max_batch_size] or None


@dataclass
class StaticPolicy:
    max_batch_size: int

    def pick(self, waiting: list[Q], active: set[int]) -> list[Q] | None:
        need = min(self.max_batch_size, max(1, len(active)))
        return waiting[:need] if len(waiting) >= need else None


@dataclass
class PipelinePolicy:
    """Groups of edges take turns at the server (client id // group size). ``split``: the
    groups in use, 1 to :attr:`most` (None: the most; :func:`regroup` may change it)."""

    max_batch_size: int
    num_clients: int
    turn: int = 0
    split: int | None = None
    cycles: int = 0  # turns of every group completed
    changed_at: int = 0  # the cycle the group count last changed at
    changes: int = 0  # how often the group count changed (each round trip backs off)
    # The edges' mean gap measured under each group count, and the cycle it was measured at.
    gaps: dict[int, tuple[float, int]] = field(default_factory=dict)

    @property
    def most(self) -> int:
        return max(1, -(-self.num_clients // self.max_batch_size))

    @property
    def groups(self) -> int:
        return self.most if self.split is None else self.split

    def group_of(self, client_id: int) -> int:
        size = -(-self.num_clients // self.groups)
        return min(client_id // size, self.groups - 1)

    def pick(self, waiting: list[Q], active: set[int]) -> list[Q] | None:
        for _ in range(self.groups):
            members = {c for c in active if self.group_of(c) == self.turn}
            if members:
                ready = [j for j in waiting if self.group_of(j.client_id) == self.turn]
                if {j.client_id for j in ready} >= members:
                    self._pass_turn()
                    return ready
                return None
            self._pass_turn()  # a finished group gives up its turn
        return None

    def _pass_turn(self) -> None:
        self.turn = (self.turn + 1) % self.groups
        self.cycles += self.turn == 0


SETTLE_CYCLES = 2  # cycles under a group count before its gap is trusted
REMEMBER_CYCLES = 16  # cycles a gap measured under another group count stays trusted
MAX_BACKOFF = 5  # round trips after which holding and remembering stop growing (x32)


def backoff(policy: PipelinePolicy) -> int:
    """How much longer a count is held and a left count's gap trusted (``2 ** backoff``):
    each round trip between counts (there and back) doubles both. Where the counts nearly tie,
    gaps that wander (drafting on shared cores) made the choice go whichever way the last
    cycles fell, back and forth for the whole run (ten times in 30 s once), so which steps
    ran as one group was chance; backed off, a tie settles after a few tries, and a clear
    change of load still moves the count at once after a hold."""
    return min(policy.changes // 2, MAX_BACKOFF)


def regroup(policy: PipelinePolicy, active: set[int], horizon: IdleHorizon,
            cost: OnlineStepCost) -> str | None:
    """At the start of a cycle (turn 0), take the group count the goodput objective prefers
    (:func:`specedge.algorithm.goodput.pipeline_groups`) for the edges' gaps and the rows'
    new tokens. The gap is measured under the count in use, once :data:`SETTLE_CYCLES` have
    passed since it changed (the first cycles hold the prompts' drafting, or the old
    count's); a count left less than :data:`REMEMBER_CYCLES` ago is weighed with the gap
    measured under it. Edges that share hardware draft slower the more of them draft at
    once, so one gap for every count would flip between counts for ever. Both spans grow
    with every round trip (:func:`backoff`). Returns what changed and why, if anything did
    (the server logs it)."""
    gap = horizon.mean_gap(active)
    scale = 1 << backoff(policy)
    if (policy.turn != 0 or gap is None or not active
            or policy.cycles - policy.changed_at < SETTLE_CYCLES * scale):
        return None
    policy.gaps[policy.groups] = (gap, policy.cycles)

    def gap_under(g: int) -> float:
        known, at = policy.gaps.get(g, (gap, policy.cycles))
        return known if policy.cycles - at < REMEMBER_CYCLES * scale else gap

    row_tokens = cost.row_tokens
    groups = pipeline_groups(policy.groups, policy.most, policy.num_clients, row_tokens,
                             gap_under, cost)
    if groups == policy.groups:
        return None
    change = (f"pipeline groups {policy.groups} -> {groups} (edges back {gap * 1e3:.1f} ms "
              f"after an answer under {policy.groups}, {gap_under(groups) * 1e3:.1f} ms "
              f"under {groups}; {row_tokens:.1f} new tokens a row; change "
              f"{policy.changes + 1})")
    policy.split, policy.changed_at = groups, policy.cycles
    policy.changes += 1
    return change


def free_seconds(policy: BatchPolicy, active: set[int], horizon: IdleHorizon,
                 now: float) -> float:
    """How long the server would idle after a step begun ``now`` that took no time: under the
    pipeline policy, until the group whose turn is next is expected back (the policy has
    already passed the turn on); otherwise 0 (a dynamic batch takes what is there)."""
    if not isinstance(policy, PipelinePolicy) or policy.groups < 2:
        return 0.0
    return horizon.seconds({c for c in active if policy.group_of(c) == policy.turn}, now)


@dataclass
class BatchDecision(Generic[Q]):
    batch: list[Q] | None  # None: keep waiting
    free_s: float = 0.0  # how long the server would idle after the step anyway
    regrouped: str | None = None  # what changed in the group count, and why (logged)


def decide(policy: BatchPolicy, waiting: list[Q], active: set[int], horizon: IdleHorizon,
           now: float, max_wait_s: float, cost: OnlineStepCost | None = None
           ) -> BatchDecision[Q]:
    """**The batch decision**, one function for the server and the simulator: a pipeline
    policy's group count by goodput first (:func:`regroup`, when ``cost`` is given), then
    the policy's batch, or every waiting call once the oldest has waited ``max_wait_s`` (a
    straggler, a slow or vanished edge, must not stall everyone else), and how long the
    server would idle after that step anyway (:func:`free_seconds`)."""
    change = None
    if cost is not None and isinstance(policy, PipelinePolicy):
        change = regroup(policy, active, horizon, cost)
    batch = policy.pick(waiting, active)
    if batch is None and waiting and now - min(j.enqueued for j in waiting) > max_wait_s:
        batch = list(waiting)
    free_s = free_seconds(policy, active, horizon, now) if batch is not None else 0.0
    return BatchDecision(batch, free_s, change)


def make_policy(name: str, max_batch_size: int, num_clients: int) -> BatchPolicy:
    if name == "dynamic":
        return DynamicPolicy(max_batch_size)
    if name == "static":
        return StaticPolicy(max_batch_size)
    if name == "pipeline":
        return PipelinePolicy(max_batch_size, num_clients)
    raise ValueError(f"unknown scheduler {name!r}; accepted: dynamic, static, pipeline")


VerifyFn = Callable[[list[Job]], "list[Verdict]"]

# The forward thread's name, for the OS too (``top -H``, /proc/PID/task/*/comm): whoever
# watches the server can tell when it is verifying (the chaos benchmark restarts it then).
FORWARD_THREAD = "specedge-fwd"
_PR_SET_NAME = 15  # prctl(2)


def _name_forward_thread() -> None:
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_NAME, FORWARD_THREAD.encode(), 0, 0, 0)


class Scheduler:
    """Collects jobs, forms batches by policy, runs each batch's forward on one worker thread.

    The forward runs off the event loop so that the loop keeps serving gRPC meanwhile: calls
    that arrive are admitted and queued at once (their queue time is the server's, measured
    here, not hidden in the edge's network time), and the batch just answered has its replies
    sent while the next forward runs, so a pipeline group drafts while the other is verified.
    One worker thread: batches still run one at a time, and it alone touches the KV pool.
    """

    def __init__(self, policy: BatchPolicy, verify: VerifyFn, num_clients: int,
                 max_wait_s: float,
                 on_batch: Callable[[ServerStepRecord], None] | None = None,
                 step_cost: OnlineStepCost | None = None, budget: bool = True,
                 regroup: bool = False) -> None:
        """``step_cost``: what a forward over that many new tokens costs, refitted on each
        forward; with it, ``budget``: each step verifies only the goodput budget's nodes
        (:mod:`specedge.algorithm.goodput`), ``regroup``: a pipeline policy's group count
        follows the same objective (:func:`regroup`)."""
        self.policy = policy
        self.step_cost = step_cost
        self.budget = budget and step_cost is not None
        self.regroup = regroup and step_cost is not None and isinstance(policy, PipelinePolicy)
        self.verify = verify
        self.active: set[int] = set(range(num_clients))
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._waiting: list[Job] = []
        self._wake = asyncio.Event()
        self._step = 0
        self.horizon = IdleHorizon()  # when the next pipeline group is expected back
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=FORWARD_THREAD,
                                          initializer=_name_forward_thread)

    async def submit(self, job: Job) -> Verdict:
        self.active.add(job.client_id)  # an edge that was retired (silent, lost) may come back
        self.horizon.arrived(job.client_id, job.enqueued)
        self._waiting.append(job)
        self._wake.set()
        return await job.future

    def retire(self, client_id: int) -> None:
        """An edge is done: policies stop waiting for it."""
        self.active.discard(client_id)
        self._wake.set()

    def _forward(self, batch: list[Job], free_s: float = 0.0
                 ) -> tuple[list[Verdict], ServerStepRecord, float]:
        """On the worker thread: the rows' own work, then the batched forward; the verdicts,
        the step's record and when the forward started (perf_counter). ``free_s``: how long
        the server would idle after the step anyway (:func:`free_seconds`)."""
        t_start = time.time()
        for job in batch:
            if job.prepare is not None:
                job.prepare()
        prefix_tokens = sum(j.row.length for j in batch)
        sent = [j.tree for j in batch]
        budget = self._prune(batch, free_s) if self.budget else None
        new_tokens = sum(j.verified + 1 + len(j.pending) for j in batch)
        t0 = time.perf_counter()
        verdicts = self.verify(batch)
        forward_s = time.perf_counter() - t0
        if self.step_cost is not None and not any(j.prefill for j in batch):
            self.step_cost.observe(new_tokens, forward_s, len(batch))
        if budget is not None:  # paths in the nodes the edges sent
            for job, tree in zip(batch, sent, strict=True):
                job.tree = tree
            verdicts = [dataclasses.replace(v, path=[j.kept[i] for i in v.path])
                        if j.kept is not None else v
                        for j, v in zip(batch, verdicts, strict=True)]
        return verdicts, ServerStepRecord(
            step=self._step, clients=[j.client_id for j in batch], batch_size=len(batch),
            prefill_count=sum(j.prefill for j in batch),
            tree_nodes=sum(j.verified + 1 for j in batch),
            queue_wait_s=max(t0 - j.enqueued for j in batch), forward_s=forward_s,
            t_start=t_start, t_end=time.time(), prefix_tokens=prefix_tokens,
            sent_nodes=sum(len(t) for t in sent),
            expected_tokens=budget.expected_tokens if budget is not None else 0.0,
            emitted_tokens=sum(len(v.path) for v in verdicts),
            free_s=free_s if budget is not None else 0.0), t0

    def _prune(self, batch: list[Job], free_s: float) -> Budget:
        """The goodput budget of this step: each job's tree cut to its share (``job.kept``);
        the catch-up tokens the rows need anyway count toward the step's cost, and a step no
        longer than ``free_s`` costs ``free_s`` (the server would idle that long anyway)."""
        assert self.step_cost is not None
        extra = sum(len(j.pending) for j in batch)
        step = self.step_cost

        def cost(tokens: float) -> float:
            return max(free_s, step(tokens))

        survivals = [j.survival for j in batch]  # admission refused calls without them
        assert all(s is not None for s in survivals)
        budget, cut, keeps = pruned([j.tree for j in batch], survivals,  # type: ignore[arg-type]
                                    lambda tokens: cost(tokens + extra))
        for job, tree, keep in zip(batch, cut, keeps, strict=True):
            job.tree, job.kept = tree, keep
        return budget

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                decision = decide(self.policy, self._waiting, self.active, self.horizon,
                                  time.perf_counter(), self.max_wait_s,
                                  self.step_cost if self.regroup else None)
                if decision.regrouped:
                    log.info(decision.regrouped)
                batch = decision.batch
                if batch is None:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self.max_wait_s)
                    continue
                ids = {id(j) for j in batch}
                self._waiting = [j for j in self._waiting if id(j) not in ids]
                try:
                    verdicts, step, t0 = await loop.run_in_executor(
                        self._worker, self._forward, batch, decision.free_s)
                except Exception as exc:  # answer every caller; keep serving
                    for job in batch:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                answered = time.perf_counter()
                for job, verdict in zip(batch, verdicts, strict=True):
                    self.horizon.answer(job.client_id, answered)
                    job.queue_s, job.verify_s = t0 - job.enqueued, step.forward_s
                    if not job.future.done():
                        job.future.set_result(verdict)
                if self.on_batch is not None:
                    self.on_batch(step)
                self._step += 1
        finally:
            self._worker.shutdown(wait=False, cancel_futures=True)
