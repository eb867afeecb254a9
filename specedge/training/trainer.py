"""One AdamW loop for every model the project trains (the tiny pair's target and draft, the
SmolLM2 draft), with its warm-up and cosine learning-rate schedule and a rich progress bar."""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger(__name__)
Batch = TypeVar("Batch")


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first 5 % of steps, then cosine down to a tenth of ``peak``."""
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def training_progress() -> Progress:
    """One bar per stage with its loss (a build's stages add their tasks to it)."""
    return Progress(TextColumn("{task.description:<10}"), BarColumn(),
                    TextColumn("loss {task.fields[loss]:.3f}"),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    TimeRemainingColumn())


def train(model: torch.nn.Module, loss_fn: Callable[[Batch], torch.Tensor],
          batches: Iterator[Batch], steps: int, lr: float, bf16_autocast: bool, label: str,
          progress: Progress) -> float:
    """Run ``steps`` AdamW steps (bf16 autocast on the CPU where asked, weights in fp32);
    returns the mean loss of the last 10 % of steps."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    task = progress.add_task(label, total=steps, loss=float("nan"))
    tail: list[float] = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_autocast):
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
