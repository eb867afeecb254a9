"""The verification server: the target model behind a grpc.aio ``Verifier`` service.

It keeps, per edge, the request that edge is generating (an :class:`EdgeRequest`: its committed
tokens; their target KV lives in the edge's row of the server's KV pool,
:mod:`specedge.engine.kv_pool`), hands each Validate call to the
:mod:`specedge.serving.scheduler`, and answers with the accepted path and bonus token. ``python -m
specedge.serving.server RUN_DIR PORT_FILE`` runs it as its own process on RUN_DIR's run_config.yaml
(the launcher does this).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from specedge.algorithm.sequence import encode_prompt
from specedge.algorithm.tree import TokenTree
from specedge.algorithm.verification import Chooser, Verdict, verify_trees
from specedge.base.config.edge import max_tree_nodes
from specedge.base.config.run import RunConfig
from specedge.base.config.server import VerifyBudget
from specedge.base.records import SERVER_FILE, STATS_FILE, JsonlWriter, run_dtype
from specedge.engine.datasets import load_requests
from specedge.engine.kv_pool import KVPool, pool_for
from specedge.engine.models import load_member, load_run_tokenizer
from specedge.engine.prefill_cache import CachedPrompt, load_or_build
from specedge.engine.query_plan import KVRow
from specedge.serving.admission import (
    Limits,
    Rejected,
    check_client,
    check_fits,
    check_prompt,
    check_survival,
    check_tree,
)
from specedge.serving.budget import describe, measure_steps
from specedge.serving.process import start
from specedge.serving.protocol import pb, rpc
from specedge.serving.protocol.convert import reply_from_verdict
from specedge.serving.scheduler import Job, Scheduler, make_policy
from specedge.serving.security import bind, make_server

log = logging.getLogger("specedge.serving.server")


@dataclass
class EdgeRequest:
    """The request an edge is generating, as the server holds it."""

    request_id: int
    tokens: list[int]  # committed tokens: prompt + accepted output
    cached: CachedPrompt | None = None  # prefill KV from disk, loaded when admitted
    # The round applied last, as received, and its reply: a retry gets the reply again.
    last_request: bytes = b""
    last_reply: pb.ValidateReply | None = None


class VerifierService(rpc.VerifierServicer):
    def __init__(self, pool: KVPool, cfg: RunConfig, scheduler: Scheduler,
                 prefilled: dict[int, CachedPrompt] | None = None) -> None:
        self.pool = pool
        self.cfg = cfg
        self.scheduler = scheduler
        self.prefilled = prefilled or {}
        self.requests: dict[int, EdgeRequest] = {}
        # Client k always uses KV row k: a new prefill round starts it over.
        self.rows: dict[int, KVRow] = {c: pool.acquire() for c in range(cfg.server.num_clients)}
        self.limits = Limits(num_clients=cfg.server.num_clients,
                             vocab_size=int(pool.model.config.vocab_size),
                             max_tree_nodes=max_tree_nodes(cfg.edge), max_len=cfg.model.max_len)
        self.last_seen: dict[int, float] = {}
        self.lost: set[int] = set()  # clients whose request the watchdog freed
        self._in_flight: set[int] = set()
        self._quiet: set[int] = set()  # retired: finished, or silent past the timeout
        self._synced: set[int] = set()
        # Sync is the start barrier: edges wait in it until all have joined. A Validate call
        # means the run is under way (this server is a restarted one), so the barrier is
        # lifted: a restarted edge's Sync must not wait for edges that will never sync again.
        self._all_synced = asyncio.Event()

    async def Validate(self, request: pb.ValidateRequest,
                       context: grpc.aio.ServicerContext) -> pb.ValidateReply:
        cid = request.client_id
        wire = request.SerializeToString()  # what a retry of this round will repeat
        if (repeat := self._repeat(request, wire)) is not None:
            log.info("client %d, request %d: round %d again (a lost reply?); same verdict",
                     cid, request.request_id, request.round)
            self.last_seen[cid] = time.monotonic()
            return repeat
        try:
            tree, held = self._admit(request)
            survival = (check_survival(request, tree)
                        if self.cfg.server.verify_budget == VerifyBudget.goodput else None)
        except Rejected as exc:
            log.warning("client %d, request %d refused: %s", cid, request.request_id, exc)
            await context.abort(exc.code, exc.message)
        self._all_synced.set()
        self._in_flight.add(cid)
        self._quiet.discard(cid)
        try:
            row = self.rows[cid]
            prepare = None
            if self.requests.get(cid) is not held:  # only now: a refused request changes no state
                self.requests[cid] = held
                prepare = self._start_row(row, held.cached)
            future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
            job = Job(client_id=cid, row=row, committed=held.tokens, tree=tree,
                      prefill=request.prefill, future=future, key=held.request_id,
                      prepare=prepare, survival=survival)
            verdict = await self.scheduler.submit(job)
            held.tokens.extend(verdict.new_tokens(tree))
            reply = reply_from_verdict(verdict, queue_s=job.queue_s, verify_s=job.verify_s,
                                       kept=job.verified if survival is not None else 0)
            held.last_request, held.last_reply = wire, reply
        finally:
            self._in_flight.discard(cid)
            self.last_seen[cid] = time.monotonic()
        return reply

    def _start_row(self, row: KVRow, cached: CachedPrompt | None) -> Callable[[], None]:
        """A new request's row work, for the forward thread (it owns the KV pool)."""
        def start() -> None:
            self.pool.reset(row)
            if cached is not None:
                self.pool.load(row, cached.keys, cached.values)
        return start

    def _repeat(self, request: pb.ValidateRequest, wire: bytes) -> pb.ValidateReply | None:
        """The reply already sent for exactly this request, if it is the round this client's
        request applied last: answering again keeps a retried round idempotent."""
        held = self.requests.get(request.client_id)
        if held is None or held.last_reply is None or held.request_id != request.request_id:
            return None
        return held.last_reply if wire == held.last_request else None

    def _admit(self, request: pb.ValidateRequest) -> tuple[TokenTree, EdgeRequest]:
        """Every check (specedge.serving.admission) before anything changes; the request to use."""
        cid = request.client_id
        check_client(cid, self.limits)
        if cid in self._in_flight:
            raise Rejected(grpc.StatusCode.ALREADY_EXISTS,
                           f"client {cid} already has a Validate call in flight (two edges "
                           "with one client_id?)")
        tree = check_tree(request, self.limits)
        if request.prefill:
            if request.prompt:
                held = EdgeRequest(request.request_id, check_prompt(request, self.limits))
            elif request.request_id in self.prefilled:
                cached = self.prefilled[request.request_id]
                held = EdgeRequest(request.request_id, list(cached.tokens), cached)
            else:
                raise Rejected(grpc.StatusCode.INVALID_ARGUMENT,
                               f"prefill round for request {request.request_id} carries no "
                               "prompt and the server has no cached prefill for it")
        else:
            current = self.requests.get(cid)
            if current is None or current.request_id != request.request_id:
                raise Rejected(grpc.StatusCode.FAILED_PRECONDITION,
                               f"client {cid} has no prefilled request {request.request_id} "
                               "here: send a prefill round first")
            held = current
        if tree.tokens[0] != held.tokens[-1]:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT,
                           f"tree root {tree.tokens[0]} is not the last committed token "
                           f"{held.tokens[-1]}")
        check_fits(len(held.tokens), tree, self.limits)
        return tree, held

    async def watch_clients(self, timeout_s: float) -> None:
        """Stop waiting for an edge silent for ``timeout_s``: free its request (it may have died)
        and take it out of the scheduler's batches. A restarted server also learns this way
        which edges had already finished. Such an edge can always come back: its next call
        re-activates it, and a prefill round rebuilds it."""
        started = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, timeout_s / 4))
            now = time.monotonic()
            for cid in range(self.cfg.server.num_clients):
                if cid in self._in_flight or cid in self._quiet:
                    continue
                silent = now - self.last_seen.get(cid, started)
                if silent > timeout_s:
                    self._quiet.add(cid)
                    self.scheduler.retire(cid)
                    if self.requests.pop(cid, None) is not None:
                        self.lost.add(cid)
                        log.warning("client %d silent for %.0f s: freed its request", cid, silent)

    async def Sync(self, request: pb.SyncRequest,
                   context: grpc.aio.ServicerContext) -> pb.SyncReply:
        await self._known_client(request.client_id, context)
        self._synced.add(request.client_id)
        self.last_seen[request.client_id] = time.monotonic()
        if len(self._synced) >= self.cfg.server.num_clients:
            self._all_synced.set()
        await self._all_synced.wait()
        return pb.SyncReply(num_clients=self.cfg.server.num_clients)

    async def Finish(self, request: pb.FinishRequest,
                     context: grpc.aio.ServicerContext) -> pb.FinishReply:
        await self._known_client(request.client_id, context)
        if self.requests.pop(request.client_id, None) is not None and request.lost:
            self.lost.add(request.client_id)
        if request.lost:
            log.warning("client %d lost (the launcher saw its process exit): freed its "
                        "request, no batch waits for it", request.client_id)
        self._quiet.add(request.client_id)
        self.scheduler.retire(request.client_id)
        return pb.FinishReply()

    async def _known_client(self, client_id: int, context: grpc.aio.ServicerContext) -> None:
        try:
            check_client(client_id, self.limits)
        except Rejected as exc:
            await context.abort(exc.code, exc.message)


def make_verify(pool: KVPool, choose: Chooser) -> Callable[[list[Job]], list[Verdict]]:
    def verify(batch: list[Job]) -> list[Verdict]:
        return verify_trees(pool, [j.row for j in batch], [j.pending for j in batch],
                            [j.tree for j in batch], choose, [j.key for j in batch])
    return verify


async def serve(cfg: RunConfig, run_dir: Path, port_file: Path | None = None) -> None:
    device = cfg.hardware.server_device
    pool = pool_for(load_member(cfg.model, "target", device, record_in=run_dir),
                    cfg.server.num_clients,
                    cfg.model, cfg.edge, device)
    log.info("forward path: %s", pool.mode.value)
    choose = Chooser(cfg.generation.temperature, cfg.generation.top_p, cfg.seed)
    steps_out = JsonlWriter(run_dir / SERVER_FILE)

    policy = make_policy(cfg.server.scheduler_policy, cfg.server.max_batch_size,
                         cfg.server.num_clients)
    step_cost = (measure_steps(pool, cfg.server.step_batches, max_tree_nodes(cfg.edge),
                               cfg.server.cost_window)
                 if cfg.server.needs_step_cost else None)
    scheduler = Scheduler(policy, make_verify(pool, choose), cfg.server.num_clients,
                          cfg.server.max_wait_ms / 1000, on_batch=steps_out.write,
                          step_cost=step_cost,
                          budget=cfg.server.verify_budget == VerifyBudget.goodput,
                          regroup=cfg.server.regroups)
    prefilled = None
    if cfg.server.cache_prefill:
        tok = load_run_tokenizer(cfg.model)
        prompts = {r.index: encode_prompt(tok, r, cfg.dataset.chat_template)
                   for r in load_requests(cfg.dataset, tok)}
        prefilled = load_or_build(pool, cfg.model.target,
                                  run_dtype(run_dir, cfg.model.dtype.value),
                                  cfg.hardware.server_device, prompts,
                                  Path(cfg.server.prefill_cache_dir))
    server = make_server(cfg.server)
    service = VerifierService(pool, cfg, scheduler, prefilled)
    rpc.add_VerifierServicer_to_server(service, server)
    port = bind(server, cfg.server)
    await server.start()
    loop_task = asyncio.create_task(scheduler.run())
    watch_task = asyncio.create_task(service.watch_clients(cfg.server.client_timeout_s))
    log.info("verifier listening on %s:%d (%s scheduling, %s, %s)", cfg.server.host, port,
             cfg.server.scheduler_policy, "TLS" if cfg.server.tls_cert else "no TLS",
             "token auth" if cfg.server.auth_token_file else "no auth")
    if port_file is not None:  # tells the launcher we are ready, and where
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.rename(port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=2.0)
        loop_task.cancel()
        watch_task.cancel()
        if service.lost:
            log.warning("clients whose request was freed after %.0f s of silence: %s",
                        cfg.server.client_timeout_s, sorted(service.lost))
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        (run_dir / STATS_FILE).write_text(json.dumps(
            {"peak_rss_mib": peak_mib, "lost_clients": sorted(service.lost)}) + "\n")
        log.info("peak RSS %.0f MiB", peak_mib)
        if step_cost is not None:
            log.info("step cost after %d forwards, new tokens -> ms: %s", step_cost.forwards,
                     describe(step_cost.table))
        steps_out.close()
        log.info("verifier stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specedge.serving.server", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="holds run_config.yaml; gets server.jsonl")
    parser.add_argument("port_file", type=Path, nargs="?", help="written once listening")
    parser.add_argument("--port", type=int, help="override server.port (a restarted server "
                        "takes its predecessor's port, so edges can reconnect)")
    args = parser.parse_args(argv)
    cfg = start(args.run_dir)
    if cfg is None:
        return 2
    if args.port is not None:
        cfg.server.port = args.port
    asyncio.run(serve(cfg, args.run_dir, args.port_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
