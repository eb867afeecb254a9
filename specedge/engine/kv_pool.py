"""The KV cache: one preallocated pool per model, and the one forward every method makes.

A :class:`KVPool` holds the keys and values of every request a process serves, as one tensor
each of shape ``[layers, rows + 1, kv_heads, columns, head_dim]`` allocated once. A request
owns a row (:class:`KVRow`): columns ``[0, length)`` are its committed tokens; the columns after
them are a *work area* where forwards append speculative tokens (tree nodes). Keeping the
accepted ones is a gather on the device that moves their columns down to ``length``; nothing
else is ever copied, and rejected nodes are simply overwritten later. The last row is scratch:
padding tokens write there.

Every forward (tree verification, drafting steps, proactive drafting, plain decoding, prefill)
is :meth:`KVPool.forward`: each query token is written at the end of its row's work area and
attends to its row's committed prefix plus the work columns it names. The queries become a
plan at the shape ``model.compile`` sets (:mod:`specedge.engine.query_plan`), which a runner
runs (:mod:`specedge.engine.runners`): eager and static directly, graphs as CUDA graphs that
:func:`pool_for` captures for every bucket at start-up, so no capture happens inside a served
round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import PreTrainedModel

from specedge.base.config.edge import EdgeConfig
from specedge.base.config.model import CompileMode, ModelConfig, resolve_compile
from specedge.engine.attention import architecture
from specedge.engine.query_plan import (
    CAPACITY_ALIGN,
    KVCapacityError,
    KVRow,
    Query,
    QueryPlanner,
    causal_query,
)
from specedge.engine.runners import Capture, Captured, GraphRunner, ModelRunner, Runner

log = logging.getLogger(__name__)


@dataclass
class KVPool:
    """Preallocated KV of ``rows`` requests for ``model``; every forward goes through here."""

    model: PreTrainedModel
    rows: int
    max_len: int  # longest committed sequence (model.max_len)
    work: int  # work-area columns beyond it (largest tree round, EdgeConfig.work_columns)
    mode: CompileMode = CompileMode.eager
    token_buckets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    on_forward: Callable[[tuple[int, int, int, int]], None] | None = None  # each forward's key
    capture: Capture | None = None  # graphs mode: how a bucket is captured (None: CUDA graph)
    batch: int | None = None  # most queries in one forward (None: rows); static shapes go to it
    gqa: bool | None = None  # grouped-query SDPA in its forwards (None: on CUDA where it saves)
    keys: torch.Tensor = field(init=False)
    values: torch.Tensor = field(init=False)
    shapes: set[tuple[int, int, int, int]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        if self.mode == CompileMode.auto:
            raise ValueError("resolve CompileMode.auto first "
                             "(specedge.base.config.model.resolve_compile)")
        arch = architecture(self.model)
        capacity = self.max_len + self.work  # what a row may hold
        # Allocated as a multiple of 64: attention kernels tile the key length (SDPA's
        # memory-efficient kernel re-pads a mask whose last dimension is not a multiple of 8,
        # in every layer); static forwards read up to here.
        self.columns = -(-capacity // CAPACITY_ALIGN) * CAPACITY_ALIGN
        shape = (arch.layers, self.rows + 1, arch.kv_heads, self.columns, arch.head_dim)
        self.device: torch.device = self.model.device
        opts = {"dtype": self.model.dtype, "device": self.device}
        self.keys = torch.zeros(shape, **opts)
        self.values = torch.zeros(shape, **opts)
        self.scratch = self.rows
        self._free = list(range(self.rows))
        self.token_buckets = tuple(sorted(self.token_buckets))
        self.max_batch = self.rows if self.batch is None else self.batch
        if not 1 <= self.max_batch <= self.rows:
            raise ValueError(f"batch must lie in [1, rows = {self.rows}], not {self.batch}")
        self.planner = QueryPlanner(static=self.mode != CompileMode.eager,
                                    token_buckets=self.token_buckets, max_batch=self.max_batch,
                                    max_len=self.max_len, work=self.work, columns=self.columns,
                                    scratch=self.scratch)
        grouped = arch.kv_heads < arch.heads  # where gqa_attention saves repeating K/V
        gqa = self.device.type == "cuda" and grouped if self.gqa is None else self.gqa
        direct = ModelRunner(self.model, self.keys, self.values, gqa=gqa)
        self._own: Runner = direct
        if self.mode == CompileMode.graphs:
            self._own = GraphRunner(direct, (self.max_batch, self.token_buckets[-1]),
                                    one_row=self.rows == 1, capture=self.capture)
        self.runner: Runner = self._own  # what forwards run on (runners.timed wraps it)

    @property
    def max_tokens(self) -> int:
        """Most new tokens of one row in one forward (eager: no limit)."""
        return self.planner.max_tokens

    @property
    def capacity(self) -> int:
        """Columns a row may hold (model.max_len + the work area)."""
        return self.planner.capacity

    @property
    def graphs(self) -> GraphRunner:
        """The graphs mode's runner: its captures, late captures and graphs."""
        if not isinstance(self._own, GraphRunner):
            raise ValueError(f"a pool in {self.mode.value} mode has no CUDA graphs")
        return self._own

    # --- rows -------------------------------------------------------------------------------

    def acquire(self) -> KVRow:
        if not self._free:
            raise KVCapacityError(f"all {self.rows} rows of the KV pool are in use")
        return KVRow(self._free.pop(0))

    def release(self, row: KVRow) -> None:
        self._free.append(row.index)
        self._free.sort()

    def reset(self, row: KVRow) -> None:
        row.length = row.used = 0

    def drop_work(self, row: KVRow) -> None:
        row.used = row.length

    # --- device-side keep -------------------------------------------------------------------

    @torch.inference_mode()
    def keep(self, kept: list[tuple[KVRow, list[int]]]) -> None:
        """Commit work columns: each row's ``cols`` move down to its ``length`` (one gather
        and one scatter for all rows and layers), and its work area is emptied."""
        self._move(kept)
        for row, cols in kept:
            row.length += len(cols)
            row.used = row.length

    @torch.inference_mode()
    def keep_then_hold(self, row: KVRow, commit: list[int], hold: list[int]) -> list[int]:
        """Commit ``commit`` and move ``hold`` right after it, uncommitted (an adopted
        proactive tree); the held entries' new columns."""
        self._move([(row, commit + hold)])
        row.length += len(commit)
        row.used = row.length + len(hold)
        return list(range(row.length, row.used))

    def _move(self, moves: list[tuple[KVRow, list[int]]]) -> None:
        rows, src, dst = [], [], []
        for row, cols in moves:
            if any(not row.length <= c < row.used for c in cols):
                raise ValueError(f"row {row.index}: columns {cols} are not all in its work area "
                                 f"[{row.length}, {row.used})")
            rows += [row.index] * len(cols)
            src += cols
            dst += range(row.length, row.length + len(cols))
        if not rows or src == dst:
            return
        r, s, d = self._upload(np.array([rows, src, dst], dtype=np.int64))
        self.keys[:, r, :, d] = self.keys[:, r, :, s]  # the right side is gathered first
        self.values[:, r, :, d] = self.values[:, r, :, s]

    def _upload(self, host: np.ndarray) -> torch.Tensor:
        """One host-to-device copy of an index array; on CUDA from pinned memory and without
        blocking the host (the caching host allocator keeps the pinned block alive until the
        copy is done)."""
        tensor = torch.from_numpy(host)
        if self.device.type != "cuda":
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def export(self, row: KVRow) -> tuple[torch.Tensor, torch.Tensor]:
        """The committed KV of ``row`` ([layers, kv_heads, length, head_dim] each), on the CPU."""
        return (self.keys[:, row.index, :, : row.length].cpu(),
                self.values[:, row.index, :, : row.length].cpu())

    def load(self, row: KVRow, keys: torch.Tensor, values: torch.Tensor) -> None:
        n = keys.shape[2]
        if n > self.max_len:
            raise KVCapacityError(f"{n} cached tokens exceed model.max_len = {self.max_len}")
        self.keys[:, row.index, :, :n] = keys.to(self.device)
        self.values[:, row.index, :, :n] = values.to(self.device)
        row.length = row.used = n

    # --- the forward ------------------------------------------------------------------------

    @torch.inference_mode()
    def forward(self, queries: list[Query]) -> torch.Tensor:
        """Logits ``[B, N, vocab]`` on the device: query ``b``'s token ``i`` at ``[b, i]``
        (entries past a query's tokens, and rows past the last query, are padding). In graphs
        mode the tensor is the graph's output buffer: read it before the next forward."""
        plan = self.planner.plan(queries)
        for q in queries:
            q.row.used += len(q.tokens)
        self.shapes.add(plan.key)
        if self.on_forward is not None:
            self.on_forward(plan.key)
        return self.runner.run(plan)

    @torch.inference_mode()
    def time_padding(self, batch: int, n_new: int, kv_len: int, repeats: int = 3) -> float:
        """Median seconds of a forward of ``batch`` rows x ``n_new`` new tokens over ``kv_len``
        KV columns, run as padding (only the scratch row is written; no counter moves): what a
        step of that shape costs, before any request has come."""
        if not (1 <= batch <= self.max_batch and n_new >= 1 and 1 <= kv_len <= self.columns):
            raise ValueError(f"a padding forward of batch {batch}, {n_new} new tokens, "
                             f"{kv_len} KV columns does not fit this pool (batch <= "
                             f"{self.max_batch}, KV columns <= {self.columns})")
        plan = self.planner.shaped(batch, n_new, kv_len)
        times = []
        for _ in range(repeats + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            self._own.run(plan)  # never a timer's: no counter moves
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            times.append(time.perf_counter() - t0)
        return float(np.median(times[1:]))

    def capture_all(self) -> Captured:
        """Capture every static shape a forward can take (:meth:`QueryPlanner.buckets`) now,
        before any request. The captures run padding (the scratch row's KV only) and touch
        none of the records' counters (``shapes``, a timer's calls and seconds)."""
        if not isinstance(self._own, GraphRunner):
            raise ValueError(f"capture_all needs model.compile = graphs, not {self.mode.value}")
        return self._own.capture_all(self.planner.padding(key[0], key[1], key[3])
                                       for key in self.planner.buckets())


def prefill(pool: KVPool, row: KVRow, tokens: list[int]) -> None:
    """Forward committed tokens in causal chunks of at most the largest bucket, and commit
    them (a prompt longer than any bucket still runs on static shapes)."""
    pool.drop_work(row)
    step = pool.max_tokens
    for i in range(0, len(tokens), step):
        chunk = tokens[i : i + step]
        start = row.used
        pool.forward([causal_query(row, chunk, row.length)])
        pool.keep([(row, list(range(start, start + len(chunk))))])


def pool_for(model: PreTrainedModel, rows: int, mcfg: ModelConfig, edge: EdgeConfig,
             device: str, batch: int | None = None) -> KVPool:
    """The run's KV pool for ``model``: ``rows`` requests of ``model.max_len`` tokens, each
    with room for the configured trees, forwarded ``batch`` at most at a time (None: all
    rows), run as ``model.compile`` says for ``device``; in graphs mode with every bucket
    captured before it returns."""
    pool = KVPool(model=model, rows=rows, max_len=mcfg.max_len, work=edge.work_columns(),
                  mode=resolve_compile(mcfg.compile, device),
                  token_buckets=tuple(mcfg.token_buckets), batch=batch)
    if pool.mode == CompileMode.graphs:
        done = pool.capture_all()
        log.info("captured %d CUDA graphs for %s at start-up in %.1f s, %.0f MiB of device "
                 "memory", done.graphs, getattr(model, "name_or_path", "the model"),
                 done.seconds, done.memory_bytes / 2**20)
    return pool
