"""Scheduling policies decide which queued Validate calls share a target forward."""

from __future__ import annotations

import asyncio
import itertools
import struct
import threading
import time
from collections.abc import Callable

import grpc
import pytest

from specedge.algorithm.goodput import IdleHorizon, OnlineStepCost, StepTable
from specedge.algorithm.tree import TokenTree
from specedge.algorithm.verification import Verdict
from specedge.engine.query_plan import KVRow
from specedge.serving.scheduler import (
    REMEMBER_CYCLES,
    SETTLE_CYCLES,
    DynamicPolicy,
    Job,
    PipelinePolicy,
    Scheduler,
    StaticPolicy,
    backoff,
    make_policy,
    regroup,
)


def _jobs(loop: asyncio.AbstractEventLoop, clients: list[int]) -> list[Job]:
    return [Job(client_id=c, row=KVRow(c), committed=[1], tree=TokenTree.rooted(1),
                prefill=False, future=loop.create_future()) for c in clients]


def test_dynamic_takes_what_is_queued() -> None:
    loop = asyncio.new_event_loop()
    jobs = _jobs(loop, [3, 1, 2])
    assert DynamicPolicy(2).pick(jobs, {0, 1, 2, 3}) == jobs[:2]
    assert DynamicPolicy(2).pick([], {0}) is None
    loop.close()


def test_static_waits_for_a_full_batch_until_edges_retire() -> None:
    loop = asyncio.new_event_loop()
    jobs = _jobs(loop, [0, 1])
    assert StaticPolicy(3).pick(jobs, {0, 1, 2, 3}) is None
    assert StaticPolicy(3).pick(jobs, {0, 1}) == jobs
    loop.close()


def test_pipeline_groups_take_turns() -> None:
    loop = asyncio.new_event_loop()
    policy = PipelinePolicy(max_batch_size=2, num_clients=4)  # groups {0, 1} and {2, 3}
    active = {0, 1, 2, 3}
    early = _jobs(loop, [2, 0])
    assert policy.pick(early, active) is None  # group 0 is not complete: client 1 drafts
    full = _jobs(loop, [2, 0, 3, 1])
    assert [j.client_id for j in policy.pick(full, active)] == [0, 1]
    assert [j.client_id for j in policy.pick(full, active)] == [2, 3]  # then the other group
    # a group whose edges have all finished gives up its turn
    assert [j.client_id for j in policy.pick(_jobs(loop, [0]), {0})] == [0]
    loop.close()


def _cycle(policy: PipelinePolicy, loop: asyncio.AbstractEventLoop, active: set[int]) -> None:
    """Every group takes its turn once."""
    for _ in range(policy.groups):
        assert policy.pick(_jobs(loop, sorted(active)), active) is not None


def _gaps(horizon: IdleHorizon, active: set[int], seconds: float) -> None:
    for c in active:
        horizon.answer(c, 0.0)
        horizon.arrived(c, seconds)


def test_a_memory_bound_server_regroups_its_edges_into_one_group() -> None:
    """Every edge back 10 ms after its answer, a step costing 50 ms whatever it verifies: one
    group of four is the shorter cycle. The count changes only at a cycle's start (turn 0),
    once every active edge's gap is known and the first cycles (the prompts' drafting) are
    past."""
    loop = asyncio.new_event_loop()
    policy = PipelinePolicy(max_batch_size=2, num_clients=4)
    active, horizon = {0, 1, 2, 3}, IdleHorizon()
    flat = OnlineStepCost(StepTable((1, 64), (0.05, 0.05)), window=0)
    flat.observe(12, 0.05, rows=4)  # 3 new tokens a row
    for c in active:
        horizon.answer(c, 0.0)
    for _ in range(SETTLE_CYCLES):
        _cycle(policy, loop, active)
    regroup(policy, active, horizon, flat)
    assert policy.groups == 2  # no gap known yet
    for c in active:
        horizon.arrived(c, 0.01)
    policy.turn = 1
    regroup(policy, active, horizon, flat)
    assert policy.groups == 2  # mid-cycle
    policy.turn = 0
    regroup(policy, active, horizon, flat)
    assert policy.groups == 1
    assert [j.client_id for j in policy.pick(_jobs(loop, [2, 0, 3, 1]), active)] == [2, 0, 3, 1]
    assert policy.pick(_jobs(loop, [2, 0, 3]), active) is None  # the one group waits for all
    loop.close()


def test_the_group_count_remembers_the_gap_each_count_had_and_backs_off() -> None:
    """Edges sharing one core come back 10 ms after an answer under two groups but 200 ms
    under one (all draft at once): the server tries one group, measures it, goes back to two
    and stays there (one gap for both counts flipped between them every few cycles), until
    what one group measured is old enough to be measured again; each round trip doubles how
    long a count is held and the other's gap remembered, so a tie cannot flip all run long."""
    loop = asyncio.new_event_loop()
    policy = PipelinePolicy(max_batch_size=2, num_clients=4)
    active, horizon = {0, 1, 2, 3}, IdleHorizon()
    flat = OnlineStepCost(StepTable((1, 64), (0.05, 0.05)), window=0)
    flat.observe(12, 0.05, rows=4)
    counts = []
    for _ in range(8 * SETTLE_CYCLES + 14 * REMEMBER_CYCLES):
        _gaps(horizon, active, 0.2 if policy.groups == 1 else 0.01)
        regroup(policy, active, horizon, flat)
        counts.append(policy.groups)
        _cycle(policy, loop, active)
    runs = [(count, len(list(run))) for count, run in itertools.groupby(counts)]
    s, r = SETTLE_CYCLES, REMEMBER_CYCLES
    assert runs[:7] == [(2, s), (1, s), (2, 2 * r), (1, 2 * s), (2, 4 * r), (1, 4 * s),
                        (2, 8 * r)]
    assert policy.changes == 6 and backoff(policy) == 3
    loop.close()


def test_unknown_policy_is_named() -> None:
    with pytest.raises(ValueError, match="accepted: dynamic, static, pipeline"):
        make_policy("fifo", 2, 4)


def test_scheduler_never_waits_past_max_wait_for_a_straggler() -> None:
    async def scenario() -> list[list[int]]:
        batches: list[list[int]] = []

        def verify(batch: list[Job]) -> list[Verdict]:
            batches.append([j.client_id for j in batch])
            return [Verdict(path=[0], bonus=7) for _ in batch]

        sched = Scheduler(StaticPolicy(2), verify, num_clients=2, max_wait_s=0.2)
        runner = asyncio.create_task(sched.run())
        loop = asyncio.get_running_loop()
        (job,) = _jobs(loop, [0])  # client 1 never shows up
        verdict = await asyncio.wait_for(sched.submit(job), timeout=5)
        assert verdict.bonus == 7
        runner.cancel()
        return batches

    assert asyncio.run(scenario()) == [[0]]


class _LoopbackVerifier:
    """A real grpc.aio server on 127.0.0.1 whose one method submits to a real Scheduler
    (pipeline, groups of one), and a blocking client per edge: the scheduler as the
    verification server runs it, without a model."""

    def __init__(self, verify: Callable[[list[Job]], list[Verdict]]) -> None:
        self.verify = verify
        self.started = threading.Event()
        self.stop = threading.Event()
        self.sched: Scheduler | None = None
        self.port = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        self.sched = Scheduler(PipelinePolicy(1, 2), self.verify, num_clients=2, max_wait_s=30)

        async def validate(request: bytes, context: object) -> bytes:
            (job,) = _jobs(asyncio.get_running_loop(), [request[0]])
            await self.sched.submit(job)
            return struct.pack("d", job.queue_s)

        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "test.Verifier", {"Validate": grpc.unary_unary_rpc_method_handler(validate)}),))
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        runner = asyncio.create_task(self.sched.run())
        self.started.set()
        await asyncio.get_running_loop().run_in_executor(None, self.stop.wait)
        runner.cancel()
        await server.stop(0)

    def __enter__(self) -> _LoopbackVerifier:
        self.thread.start()
        assert self.started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def call(self, client_id: int) -> float:
        """One Validate round of edge ``client_id``; the queue time the server measured."""
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            reply = channel.unary_unary("/test.Verifier/Validate")(bytes([client_id]),
                                                                    timeout=60)
        return struct.unpack("d", reply)[0]


def test_a_reply_goes_out_while_the_next_forward_runs() -> None:
    """Pipeline groups take turns: group 0's edge must get its reply while group 1's batch
    is verified (and draft meanwhile), not after it. Group 1's forward waits, up to 20 s, for
    group 0's reply to reach its client over gRPC: it must not need to."""
    replied = threading.Event()
    seen: dict[int, bool] = {}

    def verify(batch: list[Job]) -> list[Verdict]:
        if batch[0].client_id == 1:
            seen[1] = replied.wait(20)
        return [Verdict(path=[0], bonus=7) for _ in batch]

    with _LoopbackVerifier(verify) as server:
        def edge(client_id: int) -> None:
            server.call(client_id)
            if client_id == 0:
                replied.set()

        edges = [threading.Thread(target=edge, args=(c,)) for c in (0, 1)]
        for t in edges:
            t.start()
        for t in edges:
            t.join(60)
    assert seen == {1: True}


def test_a_call_is_queued_while_a_forward_runs() -> None:
    """A call that arrives during another group's forward is admitted at once, so the
    server's queue clock (which the records and the performance model use) counts its
    wait: group 0's forward holds until group 1's call is queued (up to 20 s)."""
    queued: dict[str, bool] = {}
    holder: list[_LoopbackVerifier] = []

    def verify(batch: list[Job]) -> list[Verdict]:
        if batch[0].client_id == 0:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not holder[0].sched._waiting:
                time.sleep(0.01)
            queued["during"] = bool(holder[0].sched._waiting)
            time.sleep(0.2)
        return [Verdict(path=[0], bonus=7) for _ in batch]

    with _LoopbackVerifier(verify) as server:
        holder.append(server)
        waits: dict[int, float] = {}
        first = threading.Thread(target=lambda: waits.__setitem__(0, server.call(0)))
        first.start()
        time.sleep(0.2)  # group 0's forward is under way
        waits[1] = server.call(1)
        first.join(60)
    assert queued == {"during": True}
    assert waits[1] >= 0.2  # it waited for group 0's forward, and the server counted it
