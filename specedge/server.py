"""The verification server: the target model behind a grpc.aio ``Verifier`` service.

It keeps one slot per edge (the committed tokens and the target KV of the request that edge is
generating), hands each Validate call to the :mod:`specedge.scheduler`, and answers with the
accepted path and bonus token. ``python -m specedge.server RUN_CONFIG.yaml PORT_FILE`` runs it
as its own process (the launcher does this).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import torch
from transformers import PreTrainedModel

from specedge.baselines import encode_prompt
from specedge.config import RunConfig, load_run_config
from specedge.datasets import load_requests
from specedge.kv_cache import RequestCache
from specedge.models import load_model, load_tokenizer
from specedge.prefill_cache import CachedPrompt, load_or_build
from specedge.protocol import pb, reply_from_verdict, rpc, tree_from_request
from specedge.records import SERVER_FILE, JsonlWriter
from specedge.scheduler import Job, Scheduler, make_policy
from specedge.verification import Chooser, Verdict, verify_trees

log = logging.getLogger("specedge.server")


@dataclass
class Slot:
    request_id: int
    tokens: list[int]  # committed tokens: prompt + accepted output
    cache: RequestCache = field(default_factory=RequestCache)


class VerifierService(rpc.VerifierServicer):
    def __init__(self, target: PreTrainedModel, cfg: RunConfig, scheduler: Scheduler,
                 prefilled: dict[int, CachedPrompt] | None = None) -> None:
        self.target = target
        self.cfg = cfg
        self.scheduler = scheduler
        self.prefilled = prefilled or {}
        self.slots: dict[int, Slot] = {}
        self._synced: set[int] = set()
        self._all_synced = asyncio.Event()

    async def Validate(self, request: pb.ValidateRequest,
                       context: grpc.aio.ServicerContext) -> pb.ValidateReply:
        cid = request.client_id
        if not 0 <= cid < self.cfg.server.num_clients:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"client_id {cid} is not in 0..{self.cfg.server.num_clients - 1}")
        try:
            tree = tree_from_request(request)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed tree: {exc}")
        if request.prefill:
            if request.prompt:
                self.slots[cid] = Slot(request.request_id, list(request.prompt))
            elif request.request_id in self.prefilled:
                cached = self.prefilled[request.request_id]
                self.slots[cid] = Slot(request.request_id, list(cached.tokens), RequestCache(
                    keys=list(cached.cache.keys), values=list(cached.cache.values)))
            else:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"prefill round for request {request.request_id} carries no "
                                    "prompt and the server has no cached prefill for it")
        slot = self.slots.get(cid)
        if slot is None or slot.request_id != request.request_id:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"client {cid} has no prefilled request {request.request_id}")
        assert slot is not None
        if tree.tokens[0] != slot.tokens[-1]:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"tree root {tree.tokens[0]} is not the last committed token "
                                f"{slot.tokens[-1]}")
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        job = Job(client_id=cid, cache=slot.cache, pending=slot.tokens[len(slot.cache):-1],
                  tree=tree, prefill=request.prefill, future=future)
        verdict = await self.scheduler.submit(job)
        slot.tokens.extend(verdict.new_tokens(tree))
        return reply_from_verdict(verdict, queue_s=job.queue_s, verify_s=job.verify_s)

    async def Sync(self, request: pb.SyncRequest,
                   context: grpc.aio.ServicerContext) -> pb.SyncReply:
        self._synced.add(request.client_id)
        if len(self._synced) >= self.cfg.server.num_clients:
            self._all_synced.set()
        await self._all_synced.wait()
        return pb.SyncReply(num_clients=self.cfg.server.num_clients)

    async def Finish(self, request: pb.FinishRequest,
                     context: grpc.aio.ServicerContext) -> pb.FinishReply:
        self.slots.pop(request.client_id, None)
        self.scheduler.retire(request.client_id)
        return pb.FinishReply()


def make_verify(target: PreTrainedModel, choose: Chooser) -> Callable[[list[Job]], list[Verdict]]:
    def verify(batch: list[Job]) -> list[Verdict]:
        return verify_trees(target, [j.cache for j in batch], [j.pending for j in batch],
                            [j.tree for j in batch], choose)
    return verify


async def serve(cfg: RunConfig, run_dir: Path, port_file: Path | None = None) -> None:
    target = load_model(cfg.model.target, cfg.model.dtype, cfg.hardware.server_device,
                        cfg.model.attn_implementation)
    choose = Chooser(cfg.generation.temperature, cfg.generation.top_p)
    steps_out = JsonlWriter(run_dir / SERVER_FILE)

    policy = make_policy(cfg.server.scheduler_policy, cfg.server.max_batch_size,
                         cfg.server.num_clients)
    scheduler = Scheduler(policy, make_verify(target, choose), cfg.server.num_clients,
                          cfg.server.max_wait_ms / 1000, on_batch=steps_out.write)
    prefilled = None
    if cfg.server.cache_prefill:
        tok = load_tokenizer(cfg.model.target)
        prompts = {r.index: encode_prompt(tok, r, cfg.dataset.chat_template)
                   for r in load_requests(cfg.dataset, tok)}
        prefilled = load_or_build(target, cfg.model.target, cfg.model.dtype.value,
                                  cfg.hardware.server_device, prompts,
                                  Path(cfg.server.prefill_cache_dir))
    server = grpc.aio.server()
    service = VerifierService(target, cfg, scheduler, prefilled)
    rpc.add_VerifierServicer_to_server(service, server)
    port = server.add_insecure_port(f"{cfg.server.host}:{cfg.server.port}")
    await server.start()
    loop_task = asyncio.create_task(scheduler.run())
    log.info("verifier listening on %s:%d (%s scheduling)", cfg.server.host, port,
             cfg.server.scheduler_policy)
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
        steps_out.close()
        log.info("verifier stopped")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m specedge.server RUN_DIR [PORT_FILE]", file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    cfg = load_run_config(run_dir)
    asyncio.run(serve(cfg, run_dir, Path(args[1]) if len(args) == 2 else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
