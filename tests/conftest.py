"""Shared fixtures: a micro target/draft pair built by the real builder in a few seconds, and
SmolLM2 as the main job builds it; each built once per test run, however many workers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from specedge import PROJECT_ROOT
from specedge.base.config.model import DType
from specedge.commands.build_models import ArchConfig, BuildConfig, build_pair
from specedge.commands.convert import ConvertConfig, convert
from specedge.commands.distill import DistillConfig, Mode, assemble, distill


def worker_share() -> int:
    """This pytest-xdist worker's share of the cores: two workers with two threads each on two
    cores made micro-model tests wait on threads the other worker's processes held, up to 100x
    slower than alone (0.07 s -> 13 s)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, len(os.sched_getaffinity(0)) // workers)


@pytest.fixture(autouse=True)
def worker_threads() -> None:
    """Each worker's torch on its share of the cores, set before every test: a build sets torch
    to the threads its recipe names, as a build should."""
    torch.set_num_threads(worker_share())


def micro_build_config(out_dir: Path, seed: int = 0) -> BuildConfig:
    """The default recipe shrunk to seconds: same code path, tiny shapes and step counts, on
    the worker's share of the cores."""
    return BuildConfig(
        out_dir=str(out_dir),
        threads=worker_share(),
        corpus_dir=str(PROJECT_ROOT / "models" / "corpus"),
        seed=seed,
        vocab_size=384,
        seq_len=64,
        batch_size=8,
        target=ArchConfig(layers=2, hidden=64, heads=2, kv_heads=1, intermediate=128),
        draft=ArchConfig(layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64),
        target_steps=40,
        draft_ce_steps=10,
        draft_kl_steps=10,
        bf16_autocast=False,
        max_corpus_chars=200_000,
        eval_prompts=4,
        eval_prompt_len=16,
        eval_new_tokens=16,
        timing_repeats=5,
    )


def micro_build_overrides(corpus_dir: Path) -> list[str]:
    """The micro recipe as Hydra overrides of `python -m specedge.commands.build_models`."""
    cfg = micro_build_config(Path("models/tiny"))
    cfg.corpus_dir = str(corpus_dir)
    out = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            out += [f"{f.name}.{g.name}={getattr(value, g.name)}" for g in fields(value)]
        else:
            out.append(f"{f.name}={str(value).lower() if isinstance(value, bool) else value}")
    return out


def built_once(tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str,
               build: Callable[[Path], None]) -> Path:
    """A session fixture's folder, built once per test run: here, or under pytest-xdist by
    the first worker to get here while the others wait on its lock and then read it."""
    if worker_id == "master":  # not distributed
        out = tmp_path_factory.mktemp(name) / name
        build(out)
        return out
    shared = tmp_path_factory.getbasetemp().parent  # this run's, common to its workers
    out, done = shared / name, shared / f"{name}.built"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            build(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def micro_pair(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """Folder holding target/, draft/, tokenizer/ and card.json of a micro pair."""
    return built_once(tmp_path_factory, worker_id, "micro",
                      lambda out: build_pair(micro_build_config(out)))


WHEELS = PROJECT_ROOT / "models" / "wheels"  # git-ignored: the one download is kept here


def quick_recipe(target: Path, out_dir: Path, seed: int = 0, cache_dir: Path | None = None,
                 prompts: int = 8, measure: bool = True) -> DistillConfig:
    """The default recipe cut to seconds: same code path, fp32, a one-layer draft, on the
    worker's share of the cores (its measure in a fresh process too: with both cores, beside
    the other worker, that process took 41 s of CPU; its measuring alone takes 8.5 s)."""
    return DistillConfig(target=str(target), out_dir=str(out_dir), seed=seed, dtype=DType.fp32,
                         threads=worker_share(),
                         layers=[0], prompts=prompts, reply_tokens=12, batch_rows=8, top_k=4,
                         steps=3, batch_size=4, eval_prompts=2, eval_new_tokens=8, spec_prompts=1,
                         timing_repeats=2, measure=measure,
                         cache_dir=str(cache_dir) if cache_dir else None)


def _smollm2_pair(pair: Path) -> None:
    convert(ConvertConfig(out_dir=str(pair / "target"), wheel_dir=str(WHEELS)))
    assemble(DistillConfig(mode=Mode.assemble, target=str(pair / "target"),
                           out_dir=str(pair / "draft")))
    distill(quick_recipe(pair / "target", pair / "quick"))


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A pair folder: target/ converted from the wheel, draft/ the shipped draft assembled on
    it (what the main job builds), quick/ a draft distilled by the quick recipe."""
    return built_once(tmp_path_factory, worker_id, "smollm2", _smollm2_pair)
