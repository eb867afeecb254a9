"""server_only and auto_batch: the whole run in this process, on the server's device
(:func:`specedge.commands.run.execute` imports this only for them)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge.algorithm.drafting import TreeShape
from specedge.algorithm.sequence import Sequence, output_record
from specedge.algorithm.verification import Chooser
from specedge.base.config.baseline import AutoBatchBaseline, ServerOnlyBaseline
from specedge.base.config.edge import max_tree_nodes
from specedge.base.config.run import RunConfig
from specedge.base.config.server import VerifyBudget
from specedge.base.records import OUTPUTS_FILE, RUN_INFO_FILE, STEPS_FILE, JsonlWriter
from specedge.engine.kv_pool import KVPool, pool_for
from specedge.engine.models import load_member
from specedge.serving.baselines import serve
from specedge.serving.budget import measure_steps
from specedge.serving.launcher import cores_to_pin

log = logging.getLogger("specedge.commands.run")  # the run's own log, as before the split


def run_server_side(cfg: RunConfig, tokenizer: PreTrainedTokenizerBase,
                    seqs: list[Sequence], run_dir: Path) -> None:
    """server_only and auto_batch: everything in this process, on the server's device."""
    with pinned(cfg.hardware.server_cores):  # the cores SpecEdge's server process gets
        _serve_in_process(cfg, tokenizer, seqs, run_dir)


@contextlib.contextmanager
def pinned(cores: list[int] | None) -> Iterator[None]:
    """Pin this process to ``cores`` for the block, then give back what it had: a multirun
    runs its jobs one after another in this same process."""
    if not cores:
        yield
        return
    allowed, threads = os.sched_getaffinity(0), torch.get_num_threads()
    wanted = cores_to_pin(cores, "hardware.server_cores")
    os.sched_setaffinity(0, wanted)
    torch.set_num_threads(len(wanted))
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)
        torch.set_num_threads(threads)


def _serve_in_process(cfg: RunConfig, tokenizer: PreTrainedTokenizerBase,
                      seqs: list[Sequence], run_dir: Path) -> None:
    device = cfg.hardware.server_device
    baseline = cfg.baseline
    if isinstance(baseline, ServerOnlyBaseline):
        capacity = baseline.batch_capacity
        # Every active request's tree drafted together (baselines._draft_all).
        draft: KVPool | None = pool_for(load_member(cfg.model, "draft", device), capacity,
                                        cfg.model, cfg.edge, device)
        shape: TreeShape | None = TreeShape.of(cfg.edge)
        batch_drafting = baseline.batch_drafting
    else:
        assert isinstance(baseline, AutoBatchBaseline)
        draft, shape, capacity = None, None, baseline.batch_capacity
        batch_drafting = True  # nothing to draft
    target = pool_for(load_member(cfg.model, "target", device, record_in=run_dir), capacity,
                      cfg.model, cfg.edge, device)
    log.info("forward path: %s (model.compile = %s)", target.mode.value, cfg.model.compile.value)
    step_cost = (measure_steps(target, (capacity,), max_tree_nodes(cfg.edge),
                               cfg.server.cost_window)
                 if draft is not None and cfg.server.verify_budget == VerifyBudget.goodput
                 else None)
    torch.manual_seed(cfg.seed)
    choose = Chooser(cfg.generation.temperature, cfg.generation.top_p, cfg.seed)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[tokens]} tokens"), TimeElapsedColumn())
    with (JsonlWriter(run_dir / STEPS_FILE) as steps_out,
          JsonlWriter(run_dir / OUTPUTS_FILE) as outputs_out,
          Progress(*columns) as progress):
        task = progress.add_task(baseline.name.value, total=len(seqs), tokens=0)
        produced = 0

        def finished(seq: Sequence) -> None:
            outputs_out.write(output_record(seq, tokenizer))
            progress.advance(task)

        def stepped(n: int) -> None:
            nonlocal produced
            produced += n
            progress.update(task, tokens=produced)

        result = serve(baseline=baseline.name.value, sequences=seqs, capacity=capacity,
                       target=target, draft=draft, shape=shape, choose=choose, steps_out=steps_out,
                       on_finish=finished, on_step=stepped, policy=cfg.edge.tree_policy,
                       batch_drafting=batch_drafting, step_cost=step_cost)
    tokens = sum(len(s.generated) for s in result.sequences)
    log.info("%s: %d requests, %d tokens in %d steps, %.1f s (%.1f tokens/s)",
             baseline.name.value, len(seqs), tokens, result.steps, result.wall_s,
             tokens / result.wall_s)
    (run_dir / RUN_INFO_FILE).write_text(json.dumps(
        {"baseline": baseline.name.value, "requests": len(seqs), "tokens": tokens,
         "steps": result.steps, "wall_s": result.wall_s}, indent=2) + "\n")
