"""`python -m specedge.run`: one experiment, composed by Hydra from the groups under conf/."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge.algorithm.drafting import TreeShape
from specedge.algorithm.sequence import Sequence, make_sequences, output_record
from specedge.algorithm.verification import Chooser
from specedge.analysis.metrics import write_summary
from specedge.analysis.run_records import MetricsError
from specedge.base.config.baseline import AutoBatchBaseline, BaselineName, ServerOnlyBaseline
from specedge.base.config.checks import ConfigError
from specedge.base.config.edge import max_tree_nodes
from specedge.base.config.preflight import preflight
from specedge.base.config.run import RunConfig, save_run_config, to_run_config
from specedge.base.config.server import VerifyBudget
from specedge.base.records import OUTPUTS_FILE, RUN_INFO_FILE, STEPS_FILE, SUMMARY_FILE, JsonlWriter
from specedge.engine.datasets import DatasetError, load_requests
from specedge.engine.kv_pool import KVPool, pool_for
from specedge.engine.models import ModelLoadError, check_member, load_member, load_run_tokenizer
from specedge.serving.baselines import serve
from specedge.serving.budget import measure_steps
from specedge.serving.launcher import cores_to_pin, launch
from specedge.serving.remote import LaunchError

log = logging.getLogger("specedge.commands.run")


def prepare(cfg: RunConfig) -> tuple[PreTrainedTokenizerBase, list[Sequence]]:
    """Everything a run checks before it loads a model (``dry_run`` included): the models it
    needs exist, the tokenizer loads, every prompt fits the KV cache. Returns the requests,
    tokenized, ready to serve."""
    speculative = cfg.baseline.name != BaselineName.auto_batch
    for which in ("target", "draft") if speculative else ("target",):
        check_member(cfg.model, which)
    tokenizer = load_run_tokenizer(cfg.model)
    requests = load_requests(cfg.dataset, tokenizer)
    categories = Counter(r.category for r in requests)
    log.info("%d requests from dataset %s (%s)", len(requests), cfg.dataset.name.value,
             ", ".join(f"{c}: {n}" for c, n in sorted(categories.items())))
    seqs = make_sequences(requests, tokenizer, cfg.dataset.chat_template,
                          cfg.generation.max_new_tokens)
    check_prompts_fit(cfg, seqs)
    return tokenizer, seqs


def check_prompts_fit(cfg: RunConfig, seqs: list[Sequence]) -> None:
    """Prompt + generated tokens + the deepest tree must fit ``model.max_len``, for every
    request and every baseline: found here, not by a server or edge halfway through."""
    depth = 0 if cfg.baseline.name == BaselineName.auto_batch else cfg.edge.max_beam_len
    budget = cfg.generation.max_new_tokens + depth + 1
    too_long = [s for s in seqs if len(s.prompt_ids) + budget > cfg.model.max_len]
    if too_long:
        s = too_long[0]
        raise ConfigError(
            f"model.max_len = {cfg.model.max_len} is too small for request "
            f"{s.request.index} ({s.request.category}) of dataset {cfg.dataset.name.value}: "
            f"{len(s.prompt_ids)} prompt tokens + generation.max_new_tokens "
            f"{cfg.generation.max_new_tokens} + tree depth {depth} + 1 = "
            f"{len(s.prompt_ids) + budget} ({len(too_long)} request(s) too long); accepted: "
            "a model.max_len at least that, a smaller generation.max_new_tokens, or a dataset "
            "selection (dataset.max_requests / offset / stride) without them")


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


def execute(cfg: RunConfig, run_dir: Path, composed: DictConfig) -> None:
    log.info("baseline=%s model=%s dataset=%s hardware=%s -> %s", cfg.baseline.name.value,
             cfg.model.name, cfg.dataset.name.value, cfg.hardware.name, run_dir)
    preflight(cfg)
    if cfg.model.weights.value == "random":
        log.warning("model.weights=random: this run times the architecture; its outputs and "
                    "acceptance mean nothing (summary.json says weights: random)")
    tokenizer, seqs = prepare(cfg)
    if cfg.dry_run:
        log.info("dry run: configuration, tokenizer and prompts are valid; no model loaded")
        return
    save_run_config(composed, run_dir)
    try:
        if cfg.baseline.name == BaselineName.specedge:
            launch(cfg, run_dir, [s.request.index for s in seqs])
        else:
            run_server_side(cfg, tokenizer, seqs, run_dir)
    except (LaunchError, KeyboardInterrupt):
        with contextlib.suppress(MetricsError):  # aggregate what there is, marked partial
            write_summary(run_dir)
            log.warning("the run ended early; %s covers what was recorded and is marked "
                        "partial", run_dir / SUMMARY_FILE)
        raise
    summary = write_summary(run_dir)
    for problem in summary["problems"]:
        log.warning("%s", problem)
    log.info("%s: %.1f tokens/s of server time (%s), ITL %.1f ms/token, $%.3f per million "
             "tokens -> %s", cfg.baseline.name.value, summary["throughput_tok_s"],
             summary["accounting"], summary["itl_ms"]["mean"], summary["usd_per_mtok"],
             run_dir / SUMMARY_FILE)


class RunFailed(RuntimeError):
    """A sweep job that failed; Hydra records it and the sweep goes on with the next job."""


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    try:
        execute(to_run_config(cfg), Path(hydra_cfg.runtime.output_dir), cfg)
    except (ConfigError, DatasetError, ModelLoadError, LaunchError, MetricsError) as exc:
        print(f"specedge: error: {exc}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise RunFailed(str(exc)) from None
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print(f"specedge: interrupted ({exc or 'SIGINT'}); server and edges stopped",
              file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
