"""An edge client: the draft model, SpecExec drafting, and Validate calls to the server.

``python -m specedge.serving.edge RUN_DIR --client-id K --server HOST:PORT [--device cpu]`` serves
the requests ``K, K + n, K + 2n, ...`` of the run's dataset (``n = server.num_clients``), writing
``edge-K.jsonl`` (one :class:`~specedge.base.records.EdgeRoundRecord` per round) and
``outputs-edge-K.jsonl`` into RUN_DIR. With ``--resume`` (the launcher restarting an edge that
died) it first reads those files and skips what they show finished, and resumes the request it
was generating from the tokens its recorded rounds committed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from specedge.algorithm.drafting import TreeShape
from specedge.algorithm.goodput import replay_fields
from specedge.algorithm.rounds import Drafter
from specedge.algorithm.sequence import Sequence, encode_prompt, output_record
from specedge.base.config.run import RunConfig
from specedge.base.config.server import VerifyBudget
from specedge.base.records import (
    EdgeRoundRecord,
    JsonlWriter,
    OutputRecord,
    edge_file,
    edge_outputs_file,
    read_jsonl,
)
from specedge.engine.datasets import edge_share, load_requests
from specedge.engine.kv_pool import pool_for
from specedge.engine.models import load_member, load_run_tokenizer
from specedge.serving.network import EmulatedLink
from specedge.serving.process import start
from specedge.serving.protocol import pb, rpc
from specedge.serving.protocol.convert import request_from_tree, verdict_from_reply
from specedge.serving.security import call_metadata, open_channel

log = logging.getLogger("specedge.serving.edge")


class VerifierClient:
    """An edge's Validate calls: through the emulated link, retried while the server is
    unreachable (with backoff, for ``server.reconnect_s``), and turned into a prefill round
    when the server no longer holds the request (it restarted, or freed the request of an edge
    it thought dead)."""

    def __init__(self, cfg: RunConfig, stub: rpc.VerifierStub, client_id: int) -> None:
        self.cfg, self.stub, self.client_id = cfg, stub, client_id
        self.link = EmulatedLink.for_client(cfg.hardware.link, cfg.seed, client_id)
        self.meta = call_metadata(cfg.server)

    async def validate(self, msg: pb.ValidateRequest,
                       committed: list[int]) -> tuple[pb.ValidateReply, float, int, int]:
        """The reply; when it arrived (the edge may still be drafting proactively); the
        bytes sent; and how many times the call was retried. ``committed``: the request's
        committed tokens, resent as the prompt if the server lost the request."""
        retries, reconnect = 0, _Reconnect(self.cfg.server.reconnect_s, self.client_id)
        while True:
            await self.link.cross(msg.ByteSize())
            if self.link.lost():  # the request never arrives: resend after the timeout
                retries += 1
                await asyncio.sleep(self.cfg.hardware.link.loss_timeout_ms / 1e3)
                continue
            try:
                reply = await self.stub.Validate(msg, timeout=self.cfg.server.rpc_timeout_s,
                                                 metadata=self.meta)
            except grpc.aio.AioRpcError as exc:
                if await reconnect.waited(exc):
                    pass
                elif exc.code() == grpc.StatusCode.FAILED_PRECONDITION and not msg.prefill:
                    log.warning("edge %d: server lost request %d (%s); prefilling again",
                                self.client_id, msg.request_id, exc.details())
                    again = pb.ValidateRequest()
                    again.CopyFrom(msg)  # the same round (its survivals too), as a prefill
                    again.prefill = True
                    again.prompt[:] = committed
                    msg = again
                else:
                    raise
                retries += 1
                continue
            await self.link.cross(reply.ByteSize())
            if self.link.lost():  # the server applied the round, its reply never arrives
                retries += 1
                await asyncio.sleep(self.cfg.hardware.link.loss_timeout_ms / 1e3)
                continue
            return reply, time.perf_counter(), msg.ByteSize(), retries

    async def call(self, method: str, msg: Any) -> Any:
        """A Sync or Finish call, retried like ``validate`` while the server is unreachable:
        an edge restarted while the server is down or restarting must wait for it, not die."""
        reconnect = _Reconnect(self.cfg.server.reconnect_s, self.client_id)
        while True:
            try:
                return await getattr(self.stub, method)(
                    msg, timeout=self.cfg.server.rpc_timeout_s, metadata=self.meta)
            except grpc.aio.AioRpcError as exc:
                if not await reconnect.waited(exc):
                    raise


class _Reconnect:
    """Backoff for one call while the server cannot be reached, up to ``reconnect_s``."""

    def __init__(self, reconnect_s: float, client_id: int) -> None:
        self.deadline = time.monotonic() + reconnect_s
        self.client_id, self.backoff = client_id, 0.25

    async def waited(self, exc: grpc.aio.AioRpcError) -> bool:
        """Whether ``exc`` says the server is unreachable and the call may be tried again
        (after a wait); False when it failed otherwise or for too long."""
        if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() >= self.deadline:
            return False
        log.warning("edge %d: server unavailable (%s); retrying in %.1f s", self.client_id,
                    exc.details(), self.backoff)
        await asyncio.sleep(self.backoff)
        self.backoff = min(2 * self.backoff, 5.0)
        return True


@dataclass
class Journal:
    """What an edge's earlier process finished and committed, read back from its records."""

    finished: set[int] = field(default_factory=set)  # requests with an output record
    committed: dict[int, list[int]] = field(default_factory=dict)  # request -> output so far
    rounds: dict[int, int] = field(default_factory=dict)  # request -> rounds recorded

    @classmethod
    def read(cls, run_dir: Path, client_id: int) -> Journal:
        problems: list[str] = []
        journal = cls({int(r["request_id"]) for r in read_jsonl(
            edge_outputs_file(run_dir, client_id), OutputRecord, problems, missing_ok=True)})
        for r in read_jsonl(edge_file(run_dir, client_id), EdgeRoundRecord, problems,
                            missing_ok=True):
            journal.committed.setdefault(r["request_id"], []).extend(r["tokens"])
            journal.rounds[r["request_id"]] = journal.rounds.get(r["request_id"], 0) + 1
        for problem in problems:
            log.warning("%s (cut short when the edge died?)", problem)
        return journal

    def restore(self, seq: Sequence) -> None:
        """Give ``seq`` the tokens its rounds committed before; its next round prefills them."""
        committed = self.committed.get(seq.request.index)
        if committed:
            seq.commit(committed)
            seq.steps, seq.resumed = self.rounds[seq.request.index], True
            log.info("resuming request %d from %d committed tokens after %d rounds",
                     seq.request.index, len(seq.generated), seq.steps)


async def run_edge(cfg: RunConfig, run_dir: Path, client_id: int, address: str,
                   device: str, resume: bool = False) -> None:
    """Serve this edge's share of the requests one after another, a round at a time."""
    tok = load_run_tokenizer(cfg.model, "draft")
    requests = edge_share(load_requests(cfg.dataset, tok), client_id, cfg.server.num_clients)
    journal = Journal.read(run_dir, client_id) if resume else Journal()
    pool = pool_for(load_member(cfg.model, "draft", device), 1, cfg.model, cfg.edge, device)
    drafter = Drafter(pool, pool.acquire(), TreeShape.of(cfg.edge), cfg.edge.proactive,
                      cfg.edge.tree_policy)
    async with open_channel(cfg.server, address) as channel:
        server = VerifierClient(cfg, rpc.VerifierStub(channel), client_id)
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _drop_link, server)
        await server.call("Sync", pb.SyncRequest(client_id=client_id))
        with JsonlWriter(edge_file(run_dir, client_id)) as rounds_out, \
                JsonlWriter(edge_outputs_file(run_dir, client_id)) as outputs_out:
            for req in requests:
                if req.index in journal.finished:
                    continue
                seq = Sequence(request=req, prompt_ids=encode_prompt(tok, req,
                                                                     cfg.dataset.chat_template),
                               max_new_tokens=cfg.generation.max_new_tokens,
                               eos_token_id=tok.eos_token_id)
                journal.restore(seq)
                drafter.reset()
                while not seq.finished:
                    rounds_out.write(await edge_round(cfg, drafter, server, seq))
                    seq.steps += 1
                outputs_out.write(output_record(seq, tok))
        await server.call("Finish", pb.FinishRequest(client_id=client_id))
    log.info("edge %d done: %d requests (%d finished before a restart)", client_id,
             len(requests), len(journal.finished))


def _drop_link(server: VerifierClient) -> None:
    seconds = server.cfg.hardware.link.drop_s
    log.warning("edge %d: SIGUSR1: the link drops for %.1f s", server.client_id, seconds)
    server.link.drop(seconds)


async def edge_round(cfg: RunConfig, drafter: Drafter, server: VerifierClient,
                     seq: Sequence) -> EdgeRoundRecord:
    """Draft, send, draft proactively until the verdict is in, commit; the round's record."""
    t_start, t0 = time.time(), time.perf_counter()
    from_proactive = drafter.from_proactive
    draft = drafter.draft(seq.pending_for(drafter.row), seq.root)
    draft_s = time.perf_counter() - t0
    prefill = seq.steps == 0 or seq.resumed
    # A resumed request's committed tokens are no cached prompt: they always travel.
    send_prompt = seq.resumed or (prefill and not cfg.server.cache_prefill)
    # Every round's survivals are recorded (the simulator replays a budget on them); only a
    # goodput server is sent them.
    survivals = drafter.survival(draft)
    survival = survivals if cfg.server.verify_budget == VerifyBudget.goodput else None
    msg = request_from_tree(server.client_id, seq.request.index, draft.tree, prefill,
                            seq.tokens if send_prompt else None, seq.steps, survival)
    t_sent, t1 = time.time(), time.perf_counter()
    call = asyncio.ensure_future(server.validate(msg, seq.tokens))
    reply_in = threading.Event()
    call.add_done_callback(lambda _: reply_in.set())
    guesses, proactive_s = [], 0.0
    if drafter.proactive is not None:  # while the server verifies, draft where it will stop
        t2 = time.perf_counter()
        guesses = await asyncio.get_running_loop().run_in_executor(
            None, drafter.draft_proactively, draft, reply_in.is_set)
        proactive_s = time.perf_counter() - t2
    reply, arrived, sent_bytes, retries = await call
    late_s = time.perf_counter() - arrived
    verdict = verdict_from_reply(reply)
    hit = drafter.commit(draft, verdict, guesses)
    if survival is not None:
        drafter.follow(reply.kept, len(draft.tree) - 1)
    drafter.observe(draft_s, arrived - t1)
    stats = drafter.stats
    kept = seq.commit(verdict.new_tokens(draft.tree))
    seq.resumed = False
    return EdgeRoundRecord(
        client_id=server.client_id, request_id=seq.request.index,
        category=seq.request.category, round=seq.steps, prefill=prefill, draft_s=draft_s,
        wait_s=arrived - t1, late_s=late_s, server_queue_s=reply.queue_us / 1e6,
        server_verify_s=reply.verify_us / 1e6, request_bytes=sent_bytes,
        reply_bytes=reply.ByteSize(), retries=retries, tree_size=len(draft.tree),
        accepted=len(verdict.path) - 1, new_tokens=len(kept), draft_forwards=draft.forwards,
        proactive_drafted=bool(guesses), proactive_hit=hit, from_proactive=from_proactive,
        proactive_s=proactive_s, t_start=t_start, t_sent=t_sent, t_end=time.time(),
        finished=seq.finished, tokens=kept, tree_budget=stats.budget, tree_depth=stats.depth,
        proactive_guesses=stats.guesses, proactive_hit_rank=stats.hit_rank,
        proactive_hit_p=stats.hit_p, proactive_guessed_p=stats.guessed_p,
        proactive_forwards=stats.proactive_forwards,
        verified_nodes=len(draft.tree) - 1 if survival is None else reply.kept,
        **replay_fields(draft.tree, survivals, verdict.path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specedge.serving.edge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--client-id", type=int, required=True)
    parser.add_argument("--server", required=True, help="HOST:PORT of the verifier")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resume", action="store_true",
                        help="skip the requests this edge's records show finished and resume "
                        "the one it was generating (a restarted edge)")
    args = parser.parse_args(argv)
    cfg = start(args.run_dir)
    if cfg is None:
        return 2
    asyncio.run(run_edge(cfg, args.run_dir, args.client_id, args.server, args.device,
                         args.resume))
    return 0


if __name__ == "__main__":
    sys.exit(main())
