"""Scheduling policies decide which queued Validate calls share a target forward."""

from __future__ import annotations

import asyncio

import pytest

from specedge.algorithm.tree import TokenTree
from specedge.algorithm.verification import Verdict
from specedge.engine.kv_cache import KVRow
from specedge.serving.scheduler import (
    DynamicPolicy,
    Job,
    PipelinePolicy,
    Scheduler,
    StaticPolicy,
    make_policy,
)


def _jobs(loop: asyncio.AbstractEventLoop, clients: list[int]) -> list[Job]:
    return [Job(client_id=c, row=KVRow(c), pending=[], tree=TokenTree.rooted(1),
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


def test_a_batch_is_answered_before_the_next_forward_blocks_the_loop() -> None:
    """Pipeline groups take turns: group 0's edges must get their replies while group 1's
    batch is verified (and draft meanwhile), not after it."""
    async def scenario() -> list[str]:
        events: list[str] = []

        def verify(batch: list[Job]) -> list[Verdict]:
            events.append(f"verify {[j.client_id for j in batch]}")
            return [Verdict(path=[0], bonus=7) for _ in batch]

        async def edge(job: Job) -> None:
            await sched.submit(job)
            events.append(f"reply {job.client_id}")

        sched = Scheduler(PipelinePolicy(1, 2), verify, num_clients=2, max_wait_s=5)
        jobs = _jobs(asyncio.get_running_loop(), [0, 1])
        edges = [asyncio.create_task(edge(j)) for j in jobs]
        await asyncio.sleep(0)  # both calls queued before the server looks
        runner = asyncio.create_task(sched.run())
        await asyncio.wait_for(asyncio.gather(*edges), timeout=5)
        runner.cancel()
        return events

    assert asyncio.run(scenario()) == ["verify [0]", "reply 0", "verify [1]", "reply 1"]
