"""An edge client: the draft model, SpecExec drafting, and Validate calls to the server.

``python -m specedge.edge RUN_DIR --client-id K --server HOST:PORT [--device cpu]`` serves the
requests ``K, K + n, K + 2n, ...`` of the run's dataset (``n = server.num_clients``), writing
``edge-K.jsonl`` (one :class:`~specedge.records.EdgeRoundRecord` per round) and
``outputs-edge-K.jsonl`` into RUN_DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path

import grpc
import torch

from specedge.baselines import encode_prompt, output_record
from specedge.config import ProactiveType, RunConfig, load_run_config
from specedge.datasets import load_requests
from specedge.drafting import Draft, TreeShape, commit_draft, draft_tree, resume_draft
from specedge.kv_cache import pool_for
from specedge.models import load_member, load_run_tokenizer
from specedge.network import EmulatedLink
from specedge.proactive import adopt, draft_proactively, is_hit, remaining_steps
from specedge.protocol import pb, request_from_tree, rpc, verdict_from_reply
from specedge.records import EdgeRoundRecord, JsonlWriter
from specedge.security import call_metadata, open_channel
from specedge.sequence import Sequence

log = logging.getLogger("specedge.edge")


def edge_files(run_dir: Path, client_id: int) -> tuple[Path, Path]:
    return run_dir / f"edge-{client_id}.jsonl", run_dir / f"outputs-edge-{client_id}.jsonl"


async def run_edge(cfg: RunConfig, run_dir: Path, client_id: int, address: str,
                   device: str) -> None:
    tok = load_run_tokenizer(cfg.model, "draft")
    requests = load_requests(cfg.dataset, tok)[client_id :: cfg.server.num_clients]
    pool = pool_for(load_member(cfg.model, "draft", device), 1, cfg.model, cfg.edge, device)
    row = pool.acquire()  # one request at a time: its draft KV
    shape = TreeShape.of(cfg.edge)
    rounds_path, outputs_path = edge_files(run_dir, client_id)
    link = EmulatedLink.for_client(cfg.hardware.link, cfg.seed, client_id)
    proactive = cfg.edge.proactive.type != ProactiveType.disabled
    loop = asyncio.get_running_loop()
    meta = call_metadata(cfg.server)
    timeout = cfg.server.rpc_timeout_s
    async with open_channel(cfg.server, address) as channel:
        stub = rpc.VerifierStub(channel)

        async def roundtrip(msg: pb.ValidateRequest,
                            seq: Sequence) -> tuple[pb.ValidateReply, float, int, int]:
            """The reply; when it arrived (the edge may still be drafting proactively); the
            bytes sent; and how many times the call was retried.

            An unreachable server is retried with backoff for ``server.reconnect_s``; a server
            that no longer holds this request (it restarted, or freed the slot of an edge it
            thought dead) gets the committed tokens again as a prefill round."""
            retries, backoff = 0, 0.25
            deadline = time.monotonic() + cfg.server.reconnect_s
            while True:
                await link.cross(msg.ByteSize())
                try:
                    reply = await stub.Validate(msg, timeout=timeout, metadata=meta)
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                    if code == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline:
                        log.warning("edge %d: server unavailable (%s); retrying in %.1f s",
                                    client_id, exc.details(), backoff)
                        await asyncio.sleep(backoff)
                        backoff = min(2 * backoff, 5.0)
                    elif code == grpc.StatusCode.FAILED_PRECONDITION and not msg.prefill:
                        log.warning("edge %d: server lost request %d (%s); prefilling again",
                                    client_id, msg.request_id, exc.details())
                        msg = pb.ValidateRequest(
                            client_id=msg.client_id, request_id=msg.request_id, prefill=True,
                            prompt=seq.tokens, tokens=msg.tokens, parents=msg.parents)
                    else:
                        raise
                    retries += 1
                    continue
                await link.cross(reply.ByteSize())
                return reply, time.perf_counter(), msg.ByteSize(), retries

        await stub.Sync(pb.SyncRequest(client_id=client_id), timeout=timeout, metadata=meta)
        with JsonlWriter(rounds_path) as rounds_out, JsonlWriter(outputs_path) as outputs_out:
            for req in requests:
                seq = Sequence(request=req, prompt_ids=encode_prompt(tok, req,
                                                                     cfg.dataset.chat_template),
                               max_new_tokens=cfg.generation.max_new_tokens,
                               eos_token_id=tok.eos_token_id)
                pool.reset(row)
                adopted: Draft | None = None
                steps_left = shape.max_beam_len
                while not seq.finished:
                    t_start, t0 = time.time(), time.perf_counter()
                    from_proactive = adopted is not None
                    if adopted is not None:
                        draft_ = resume_draft(pool, adopted, shape, steps_left)
                    else:
                        draft_ = draft_tree(pool, row, seq.pending_for(row), seq.root, shape)
                    draft_s = time.perf_counter() - t0
                    prefill = seq.steps == 0
                    send_prompt = prefill and not cfg.server.cache_prefill
                    msg = request_from_tree(client_id, req.index, draft_.tree, prefill,
                                            seq.prompt_ids if send_prompt else None)
                    t_sent, t1 = time.time(), time.perf_counter()
                    call = asyncio.ensure_future(roundtrip(msg, seq))
                    reply_in = threading.Event()
                    call.add_done_callback(lambda _, ev=reply_in: ev.set())
                    guess, proactive_s = None, 0.0
                    if proactive:  # while the server verifies, draft where it will likely stop
                        t2 = time.perf_counter()
                        guess = await loop.run_in_executor(
                            None, draft_proactively, pool, draft_, cfg.edge.proactive,
                            reply_in.is_set)
                        proactive_s = time.perf_counter() - t2
                    reply, arrived, sent_bytes, retries = await call
                    wait_s = arrived - t1
                    late_s = time.perf_counter() - arrived
                    verdict = verdict_from_reply(reply)
                    adopted = None
                    hit = is_hit(guess, verdict)
                    if hit and guess is not None:
                        adopted = adopt(pool, draft_, verdict, guess)
                        steps_left = remaining_steps(cfg.edge.proactive, shape.max_beam_len,
                                                     guess)
                    else:
                        commit_draft(pool, draft_, verdict.path)
                    kept = seq.commit(verdict.new_tokens(draft_.tree))
                    rounds_out.write(EdgeRoundRecord(
                        client_id=client_id, request_id=req.index, category=req.category,
                        round=seq.steps, prefill=seq.steps == 0, draft_s=draft_s, wait_s=wait_s,
                        late_s=late_s,
                        server_queue_s=reply.queue_us / 1e6,
                        server_verify_s=reply.verify_us / 1e6,
                        request_bytes=sent_bytes, reply_bytes=reply.ByteSize(),
                        retries=retries,
                        tree_size=len(draft_.tree), accepted=len(verdict.path) - 1,
                        new_tokens=len(kept), draft_forwards=draft_.forwards,
                        proactive_drafted=guess is not None, proactive_hit=hit,
                        from_proactive=from_proactive, proactive_s=proactive_s,
                        t_start=t_start, t_sent=t_sent, t_end=time.time(),
                        finished=seq.finished))
                    seq.steps += 1
                outputs_out.write(output_record(seq, tok))
        await stub.Finish(pb.FinishRequest(client_id=client_id), timeout=timeout,
                          metadata=meta)
    log.info("edge %d done: %d requests", client_id, len(requests))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specedge.edge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--client-id", type=int, required=True)
    parser.add_argument("--server", required=True, help="HOST:PORT of the verifier")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    cfg = load_run_config(args.run_dir)
    asyncio.run(run_edge(cfg, args.run_dir, args.client_id, args.server, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
