"""`python -m specedge.run`: one experiment, composed by Hydra from the groups under conf/."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import Counter
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge.algorithm.sequence import Sequence, make_sequences
from specedge.analysis.metrics import write_summary
from specedge.analysis.run_records import MetricsError
from specedge.base.config.baseline import BaselineName
from specedge.base.config.checks import ConfigError
from specedge.base.config.preflight import preflight
from specedge.base.config.run import RunConfig, save_run_config, to_run_config
from specedge.base.records import SUMMARY_FILE
from specedge.engine.datasets import DatasetError, load_requests
from specedge.engine.models import ModelLoadError, check_member, load_run_tokenizer
from specedge.serving.launcher import launch
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
            # Imported here: a SpecEdge run's launcher loads no model (about 3 s of start-up).
            from specedge.commands.in_process import run_server_side
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
