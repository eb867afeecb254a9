"""A draft for a real target, distilled from it offline on this machine, and shipped.

A target's truncation does not agree with it (SmolLM2-135M cut to 2-6 layers: under 8 % of
tokens), and cross-entropy on a few thousand of its replies memorises them. So the draft learns
the target's *distributions* over the contexts it will draft in:

1. **Prompts**: requests of Spec-Bench's six kinds written from templates
   (:mod:`specedge.commands.distill_prompts`), none close to a prompt a report evaluates on.
2. **Replies**: the target's greedy replies to them, decoded in large batches through the KV
   pool; at each step its top-k log-probabilities are kept (token-level distillation targets
   along exactly the greedy path the draft will be asked to predict). Kept in ``cache_dir``.
3. **The draft**: a few of the target's own layers (``layers``) with its embeddings, final norm
   and tied head, the embeddings frozen; trained by cross-entropy against the target's top-k
   distribution, the softmax taken over every token that appears in any top-k (a shortlist:
   over the full 49 k-token head a step took 1.7x as long).
4. **The card**: top-1/top-4 agreement along the target's greedy path on held-out prompts (the
   built-in set), overall and per category, forward times of both, and SpecExec's tokens per
   target forward at the edge's default tree, measured in a fresh process on the pair as saved.

Building takes about an hour and a half on a 2-core CPU, so the draft's own tensors (not the
target's embeddings and head) ship with the project, with recipe and card: ``mode=assemble``
(the main job's ``draft_model`` rule) checks their sha256 and joins them to the target. Step
counts bound everything and each stage seeds its own stream, so a rebuild (``distill_draft``
rule) on the same kind of CPU gives the same bytes. Run it as ``python -m
specedge.commands.distill`` (Hydra: ``conf/distill.yaml``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import platform
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import hydra
import safetensors.torch
import torch
import transformers
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from rich.progress import Progress
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge import DATA_DIR
from specedge.algorithm.sequence import make_sequences
from specedge.base.config.dataset import DatasetConfig, DatasetName
from specedge.base.config.model import DType
from specedge.commands.convert import sha256_of
from specedge.commands.distill_prompts import distill_prompts
from specedge.engine.datasets import Request, load_requests
from specedge.engine.models import (
    TORCH_DTYPES,
    cpu_autocast,
    cpu_capability,
    load_model,
    load_tokenizer,
    resolve_dtype,
)
from specedge.training.builds import (
    CARD_FILE,
    card_sha,
    finish,
    in_fresh_process,
    in_project,
    start_build,
)
from specedge.training.decoding import Example, decode
from specedge.training.drafts import DraftError, draft_from, join, own_tensors
from specedge.training.losses import top_k_loss
from specedge.training.measures import agreement, forward_ms, speculation
from specedge.training.trainer import train, training_progress

log = logging.getLogger("specedge.commands.distill")

OWN_FILE = "own.safetensors"  # the tensors a draft does not share with its target
SHIPPED_DRAFTS = DATA_DIR / "drafts"


class Mode(StrEnum):
    build = "build"  # distil a draft from the target (about 1.5 h on a 2-core CPU, fp32)
    assemble = "assemble"  # the shipped draft: its own tensors joined to the target's


@dataclass
class DistillConfig:
    """The draft recipe; step and token counts, never wall time, bound it."""

    mode: Mode = Mode.build
    target: str = "models/smollm2/target"
    out_dir: str = "models/smollm2/distilled"
    # build: also write the draft's own tensors and card into specedge/data/drafts/<name>,
    # the draft every clone assembles (replacing what is shipped there)
    ship: bool = False
    shipped: str = str(SHIPPED_DRAFTS / "smollm2")  # where mode=assemble reads them
    seed: int = 0
    # fp32, for the teacher and for training: the shipped draft is rebuilt byte for byte on the
    # same kind of CPU (dtype=auto, bf16_autocast=null use bf16 where the CPU has it: about half
    # the time, bytes that depend on the CPU's bf16 kernels)
    dtype: DType = DType.fp32
    # target layers kept: more cost a draft forward little (the 49 k-token head dominates it)
    layers: list[int] = field(default_factory=lambda: [0, 1, 2, 27, 28, 29])
    prompts: int = 3072  # requests of Spec-Bench's six kinds (distill_prompts)
    reply_tokens: int = 128
    batch_rows: int = 128  # sequences decoded together
    top_k: int = 8  # target log-probabilities kept per position
    steps: int = 1200
    batch_size: int = 16  # replies per training step
    lr: float = 2e-3
    bf16_autocast: bool | None = False  # null: where the CPU has native bf16
    eval_prompts: int = 48  # held out: the built-in set's first turns
    eval_new_tokens: int = 64
    spec_prompts: int = 8  # of those, served by SpecExec for tokens per target forward
    timing_repeats: int = 50
    measure: bool = True  # the card's checks (a fresh process); false: weights only, said so
    threads: int = 0  # torch threads; 0: every core this process may use
    # the target's replies, kept by what they depend on (a new training recipe reuses them);
    # null: not kept
    cache_dir: str | None = "models/smollm2/distill-cache"

    def __post_init__(self) -> None:
        for key in ("prompts", "reply_tokens", "batch_rows", "top_k", "steps",
                    "batch_size", "eval_prompts", "eval_new_tokens", "spec_prompts",
                    "timing_repeats"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} = {getattr(self, key)!r} is not accepted: must be >= 1")
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers = {self.layers!r} is not accepted: a non-empty list of "
                             "distinct target layer indices")


ConfigStore.instance().store(name="base_distill", node=DistillConfig)


def user_turn(tok: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The chat template's tokens before and after a user message (and the assistant's
    header), read off the template itself."""
    marker = "\x00MESSAGE\x00"
    text = tok.apply_chat_template([{"role": "user", "content": marker}], tokenize=False,
                                   add_generation_prompt=True)
    head, tail = text.split(marker)
    return (tok(head, add_special_tokens=False)["input_ids"],
            tok(tail, add_special_tokens=False)["input_ids"])


def teacher_data(target: PreTrainedModel, tok: PreTrainedTokenizerBase, cfg: DistillConfig,
                 texts: list[str]) -> list[Example]:
    """The target's greedy replies to ``texts`` (user turns, decoded together), with their
    top-k."""
    head, tail = user_turn(tok)
    prompts = [head + tok(text, add_special_tokens=False)["input_ids"] + tail
               for text in texts]
    return [ex for ex in decode(target, prompts, cfg.reply_tokens, tok.eos_token_id,
                                top_k=cfg.top_k) if ex.reply]


def cached_teacher_data(target: PreTrainedModel, tok: PreTrainedTokenizerBase,
                        cfg: DistillConfig, target_sha: str | None, held_out: list[str],
                        progress: Progress) -> list[Example]:
    """:func:`teacher_data` in batches of ``cfg.batch_rows`` prompts, each kept in
    ``cfg.cache_dir`` under a key of everything its replies depend on: a new training recipe
    decodes nothing again, and more prompts (the templates give the same ones first) decode
    only the new batches."""
    texts = [text for _, text in distill_prompts(cfg.prompts, cfg.seed, held_out)]
    task = progress.add_task("replies", total=cfg.prompts, loss=float("nan"))
    data: list[Example] = []
    reused = 0
    for start in range(0, cfg.prompts, cfg.batch_rows):
        batch = texts[start : start + cfg.batch_rows]
        key = hashlib.sha256(json.dumps(
            {"target": target_sha, "dtype": cfg.dtype.value, "prompts": batch,
             "reply_tokens": cfg.reply_tokens, "top_k": cfg.top_k,
             "torch": torch.__version__, "cpu": cpu_capability()}, sort_keys=True).encode()
        ).hexdigest()[:16]
        path = (Path(cfg.cache_dir) / f"replies-{key}.pt"
                if cfg.cache_dir and target_sha else None)
        if path is not None and path.is_file():
            data += [Example(**e) for e in torch.load(path)]
            reused += len(batch)
        else:
            replies = teacher_data(target, tok, cfg, batch)
            data += replies
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save([dataclasses.asdict(e) for e in replies], path.with_suffix(".tmp"))
                path.with_suffix(".tmp").rename(path)
        progress.update(task, advance=len(batch))
        log.info("replies: %d prompts, %d reply tokens", len(data),
                 sum(len(ex.reply) for ex in data))
    if reused:
        log.info("replies: reused those of %d of %d prompts from %s", reused, cfg.prompts,
                 cfg.cache_dir)
    return data


# ---------------------------------------------------------------------------------- the draft

def _batches(data: list[Example], cfg: DistillConfig, pad: int) -> Iterator[tuple[torch.Tensor,
                                                                               ...]]:
    """Right-padded (prompt + reply) rows, the flat positions whose next token is a reply
    token, and the target's top-k there."""
    rng = random.Random(cfg.seed + 2)
    while True:
        batch = rng.sample(data, min(cfg.batch_size, len(data)))
        width = max(len(ex.prompt) + len(ex.reply) for ex in batch)
        ids = torch.full((len(batch), width), pad)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        positions = []
        for b, ex in enumerate(batch):
            seq = ex.prompt + ex.reply
            ids[b, : len(seq)] = torch.tensor(seq)
            mask[b, : len(seq)] = 1
            positions += range(b * width + len(ex.prompt) - 1, b * width + len(seq) - 1)
        yield (ids, mask, torch.tensor(positions), torch.cat([ex.top_ids for ex in batch]),
               torch.cat([ex.top_logp for ex in batch]))


def train_draft(target32: PreTrainedModel, data: list[Example], cfg: DistillConfig, pad: int,
                progress: Progress) -> tuple[PreTrainedModel, float]:
    torch.manual_seed(cfg.seed + 3)
    draft = draft_from(target32, cfg.layers)
    shortlist = torch.unique(torch.cat([ex.top_ids.flatten() for ex in data]))
    index_of = torch.full((draft.config.vocab_size,), -1, dtype=torch.long)
    index_of[shortlist] = torch.arange(len(shortlist))
    log.info("draft: target layers %s, shortlist of %d tokens", cfg.layers, len(shortlist))
    batches = _batches(data, cfg, pad)
    loss = train(draft, lambda b: top_k_loss(draft, b, shortlist, index_of), batches,
                 cfg.steps, cfg.lr, bool(cfg.bf16_autocast), "draft KD", progress)
    return draft, loss


# ---------------------------------------------------------------------------------- measuring

def held_out_requests(tok: PreTrainedTokenizerBase, n: int) -> list[Request]:
    """The built-in prompt set's first turns, as chat prompts (what runs serve)."""
    return load_requests(DatasetConfig(name=DatasetName.builtin, max_requests=n), tok)


def measure_job(job: dict) -> dict[str, object]:
    """Everything the card says about the pair, as saved and loaded the way runs load it
    (called in a fresh process, :func:`specedge.training.builds.in_fresh_process`)."""
    target_dir, draft_dir = job["target"], job["draft"]
    cfg = DistillConfig(**job["cfg"] | {"dtype": DType(job["cfg"]["dtype"])})
    torch.set_num_threads(cfg.threads or len(os.sched_getaffinity(0)))
    target = load_model(target_dir, cfg.dtype, "cpu")
    draft = load_model(draft_dir, cfg.dtype, "cpu")
    tok = load_tokenizer(target_dir)
    requests = held_out_requests(tok, cfg.eval_prompts)
    prompts = [seq.prompt_ids for seq in make_sequences(requests, tok, True, cfg.eval_new_tokens)]
    forward = forward_ms(target, draft, prompts[0] * 4, cfg.timing_repeats)
    return {"agreement": agreement(target, draft, prompts, [r.category for r in requests],
                                   cfg.eval_new_tokens, tok.eos_token_id)
            | {"held_out": f"built-in prompt set, first turns of {len(prompts)} requests, "
                           f"{cfg.eval_new_tokens} greedy tokens each, {cfg.dtype.value}"},
            "forward": forward | {"dtype": cfg.dtype.value},
            "specexec": speculation(target, draft, tok, requests[: cfg.spec_prompts],
                                    cfg.eval_new_tokens)}


# ---------------------------------------------------------------------------------- the build

def _save_draft(draft: PreTrainedModel, target32: PreTrainedModel,
                tok: PreTrainedTokenizerBase, folder: Path) -> str:
    """Save a loadable draft folder; returns its weights' sha256."""
    draft.generation_config = copy.deepcopy(target32.generation_config)
    draft.save_pretrained(folder)
    tok.save_pretrained(folder)
    return sha256_of(folder / "model.safetensors")


def distill(cfg: DistillConfig) -> dict:
    """Build the draft into ``cfg.out_dir`` (written whole, then renamed); returns its card."""
    t_start = time.perf_counter()
    dtype, why = resolve_dtype(cfg.dtype, "cpu")
    log.info("teacher dtype %s: %s", dtype.value, why)
    cfg = dataclasses.replace(cfg, dtype=dtype, bf16_autocast=cpu_autocast(cfg.bf16_autocast))
    out, partial = start_build(cfg.out_dir, cfg.threads)
    tok = load_tokenizer(cfg.target, "target")
    target32 = load_model(cfg.target, DType.fp32, "cpu", key="target")
    teacher = target32 if cfg.dtype == DType.fp32 else copy.deepcopy(target32).to(
        TORCH_DTYPES[cfg.dtype])
    held_out = [r.prompt.strip() for r in load_requests(
        DatasetConfig(name=DatasetName.builtin, chat_template=False), tok)]
    target_sha = card_sha(cfg.target)
    timings: dict[str, float] = {}
    with training_progress() as progress:
        t0 = time.perf_counter()
        data = cached_teacher_data(teacher, tok, cfg, target_sha, held_out, progress)
        timings["data_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        trained, loss = train_draft(target32, data, cfg, tok.pad_token_id, progress)
        timings["train_s"] = time.perf_counter() - t0
    safetensors.torch.save_file(own_tensors(trained), partial / OWN_FILE)
    own = safetensors.torch.load_file(partial / OWN_FILE)
    weights_sha = _save_draft(join(target32, cfg.layers, own), target32, tok, partial)
    t0 = time.perf_counter()
    measured = in_fresh_process("specedge.commands.distill:measure_job", {
        "target": cfg.target, "draft": str(partial), "cfg": asdict(cfg)}) if cfg.measure else {
        "measured": "no (measure=false): no agreement, forward times or SpecExec check"}
    timings["eval_s"] = time.perf_counter() - t0
    card = {
        "draft": f"{len(cfg.layers)} of the target's layers ({cfg.layers}) with its embeddings, "
                 "norm and tied head, distilled on its top-k log-probabilities along its greedy "
                 "replies to requests of Spec-Bench's six kinds written from templates",
        "target": cfg.target,
        "target_weights_sha256": target_sha,
        "data": {"prompts": len(data), "reply_tokens": sum(len(ex.reply) for ex in data)},
        "config": asdict(cfg) | {"shipped": in_project(cfg.shipped)},
        "params": sum(p.numel() for p in trained.parameters()),
        "own_sha256": sha256_of(partial / OWN_FILE),
        "weights_sha256": weights_sha,
        "threads": torch.get_num_threads(),
        "train_loss": loss,
        **measured,
        "build_seconds": {**timings, "total_s": time.perf_counter() - t_start},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version(), "machine": platform.machine(),
                     "cpu": cpu_capability()},
    }
    finish(partial, out, card)
    _compare_with_shipped(card, Path(cfg.shipped))
    if cfg.ship:
        ship(out, Path(cfg.shipped))
    return card


def _compare_with_shipped(card: dict, shipped: Path) -> None:
    if not (shipped / CARD_FILE).is_file():
        return
    before = json.loads((shipped / CARD_FILE).read_text())["own_sha256"]
    if before == card["own_sha256"]:
        log.info("the draft's own tensors are byte for byte the shipped ones (%s)", shipped)
    else:
        log.info("the draft's own tensors differ from the shipped ones in %s (sha256 %s, "
                 "shipped %s); ship=true replaces them", shipped, card["own_sha256"][:12],
                 before[:12])


def ship(built: Path, shipped: Path) -> None:
    """Copy a built draft's own tensors and card to ``shipped`` (what every clone assembles)."""
    tmp = shipped.with_name(shipped.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (OWN_FILE, CARD_FILE):
        shutil.copyfile(built / name, tmp / name)
    shutil.rmtree(shipped, ignore_errors=True)
    tmp.rename(shipped)
    log.info("shipped %s to %s", built, shipped)


def assemble(cfg: DistillConfig) -> dict:
    """The shipped draft into ``cfg.out_dir``: its own tensors, checked against their card's
    sha256, joined to the target's embeddings and head; returns its card."""
    shipped = Path(cfg.shipped)
    rebuild = ("rebuild it with `snakemake --cores 1 distill_draft` (or `python -m "
               "specedge.commands.distill ship=true`)")
    if not (shipped / CARD_FILE).is_file() or not (shipped / OWN_FILE).is_file():
        raise DraftError(f"shipped = {str(shipped)!r}: no {OWN_FILE} and {CARD_FILE} there; "
                         f"{rebuild}")
    card = json.loads((shipped / CARD_FILE).read_text())
    if (sha := sha256_of(shipped / OWN_FILE)) != card["own_sha256"]:
        raise DraftError(f"{shipped / OWN_FILE}: sha256 is {sha}, its card says "
                         f"{card['own_sha256']}: the file was changed or truncated; {rebuild}")
    if (target_sha := card_sha(cfg.target)) != card["target_weights_sha256"]:
        raise DraftError(f"target = {cfg.target!r}: its weights (sha256 {target_sha}) are not "
                         f"the ones the shipped draft was distilled from "
                         f"({card['target_weights_sha256']}); {rebuild}")
    out, partial = start_build(cfg.out_dir, cfg.threads)
    target32 = load_model(cfg.target, DType.fp32, "cpu", key="target")
    own = safetensors.torch.load_file(shipped / OWN_FILE)
    weights_sha = _save_draft(join(target32, card["config"]["layers"], own), target32,
                              load_tokenizer(cfg.target, "target"), partial)
    card |= {"weights_sha256": weights_sha, "assembled_from": str(shipped)}
    finish(partial, out, card)
    log.info("assembled the shipped draft (%s) into %s", shipped, out)
    return card


@hydra.main(version_base="1.3", config_path="../../conf", config_name="distill")
def main(cfg: DictConfig) -> None:
    distill_cfg: DistillConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    card = (assemble if distill_cfg.mode == Mode.assemble else distill)(distill_cfg)
    summary = {k: card[k] for k in ("agreement", "forward", "specexec", "build_seconds")}
    print(json.dumps(summary, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
