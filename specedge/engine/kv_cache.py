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
attends to its row's committed prefix plus the work columns it names. How it runs is the
``model.compile`` setting (:class:`~specedge.base.config.model.CompileMode`):

- ``eager``: exact shapes, attention over the columns in use only (fastest on a CPU);
- ``static``: shapes rounded up to buckets (batch: powers of two; new tokens:
  ``model.token_buckets``; work area: one width per pool; KV columns read: the longest row's,
  rounded up to a power of two of at least 64, :meth:`KVPool.kv_bucket`): exactly what a graph
  replays;
- ``graphs``: ``static``, with each bucket's forward captured once as a CUDA graph and replayed.
  :func:`pool_for` captures every bucket a run can use at start-up
  (:meth:`KVPool.capture_all`), so no capture happens inside a served round.

The attention mask is built on the device from each row's prefix length and a small boolean
block over its work area, so the host never builds (or copies) a ``[batch, tokens, columns]``
mask.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from specedge.base.config.edge import EdgeConfig, ProactiveType
from specedge.base.config.model import CompileMode, ModelConfig, resolve_compile

CAPACITY_ALIGN = 64  # a row's allocated columns are rounded up to a multiple of this
log = logging.getLogger(__name__)


class KVCapacityError(RuntimeError):
    """A forward would not fit a row of the pool; the message says which limit to raise."""


@dataclass(eq=False)
class KVRow:
    """One request's row of a :class:`KVPool`."""

    index: int
    length: int = 0  # committed entries: columns [0, length)
    used: int = 0  # end of the work area: forwards append at this column

    def __len__(self) -> int:
        return self.length


@dataclass
class Query:
    """New tokens of one row in a forward, and what each of them attends to.

    Token ``i`` is written at column ``row.used + i`` (read ``row.used`` before the call to know
    it). ``visible[i]`` lists the work columns (``>= row.length``) it sees besides the committed
    prefix; it must contain the token's own column.
    """

    row: KVRow
    tokens: list[int]
    positions: list[int]
    visible: list[list[int]]


def causal_query(row: KVRow, tokens: list[int], first_position: int,
                 see: Sequence[int] = ()) -> Query:
    """Tokens that each see ``see`` (work columns), the earlier ones and themselves."""
    start = row.used
    return Query(row=row, tokens=list(tokens),
                 positions=list(range(first_position, first_position + len(tokens))),
                 visible=[[*see, *range(start, start + i + 1)] for i in range(len(tokens))])


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


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def bucket(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``n``; beyond the largest, the next power of two."""
    for b in buckets:
        if n <= b:
            return b
    return _pow2_at_least(n)


@dataclass
class _Plan:
    """Host-side arrays of one forward, at its (possibly bucketed) shape."""

    input_ids: np.ndarray  # [B, N]
    position_ids: np.ndarray  # [B, N]
    write_rows: np.ndarray  # [B, N]: row each token is written to (scratch for padding)
    write_cols: np.ndarray  # [B, N]
    read_rows: np.ndarray  # [B]
    lengths: np.ndarray  # [B]: committed prefix each row sees
    block: np.ndarray  # [B, N, W]: work columns length + w each token sees
    kv_len: int  # columns attention reads

    @property
    def key(self) -> tuple[int, int, int, int]:
        """(batch, new tokens, work width, KV columns read): a static shape, a graph."""
        return (*self.input_ids.shape, self.block.shape[2], self.kv_len)

    def packed(self) -> np.ndarray:
        """Every integer input in one array: one host-to-device copy (plus the block's)."""
        return np.concatenate([self.input_ids.ravel(), self.position_ids.ravel(),
                               self.write_rows.ravel(), self.write_cols.ravel(),
                               self.read_rows, self.lengths])


def _unpacked(ints: torch.Tensor, block: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views of a packed plan on the device, by name."""
    batch, n_new, _ = block.shape
    m = batch * n_new
    return {"input_ids": ints[:m].view(batch, n_new),
            "position_ids": ints[m : 2 * m].view(batch, n_new),
            "write_rows": ints[2 * m : 3 * m].view(batch, n_new),
            "write_cols": ints[3 * m : 4 * m].view(batch, n_new),
            "read_rows": ints[4 * m : 4 * m + batch],
            "lengths": ints[4 * m + batch :], "block": block}


class _PoolView:
    """What the model's attention layers see as their cache during one forward: ``update``
    writes the new keys/values into the pool and returns every column the rows may read."""

    is_compileable = False

    def __init__(self, pool: KVPool, write_rows: torch.Tensor, write_cols: torch.Tensor,
                 read_rows: torch.Tensor | int, kv_len: int) -> None:
        self.pool = pool
        self.write_rows = write_rows
        self.write_cols = write_cols
        self.read_rows = read_rows
        self.kv_len = kv_len
        self.is_sliding = [False] * len(pool.keys)  # full attention in every layer

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.pool.keys[layer_idx], self.pool.values[layer_idx]
        # [B, H, N, D] -> [B, N, H, D]: the layout of k[rows, :, cols] with [B, N] indices.
        k[self.write_rows, :, self.write_cols] = key_states.transpose(1, 2)
        v[self.write_rows, :, self.write_cols] = value_states.transpose(1, 2)
        if isinstance(self.read_rows, int):  # one row: a view, nothing copied
            r = self.read_rows
            return k[r : r + 1, :, : self.kv_len], v[r : r + 1, :, : self.kv_len]
        return k[self.read_rows, :, : self.kv_len], v[self.read_rows, :, : self.kv_len]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.kv_len

    def __len__(self) -> int:
        return len(self.pool.keys)


GQA_ATTENTION = "specedge_gqa_sdpa"


def gqa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor, attention_mask: torch.Tensor | None,
                  dropout: float = 0.0, scaling: float | None = None,
                  **kwargs: object) -> tuple[torch.Tensor, None]:
    """SDPA for grouped-query attention with a mask, without repeating K/V: the query heads
    that share a KV head become extra query rows of it (the mask repeated to match, which is
    tokens x columns, not columns x heads x dims). Transformers' SDPA path repeats K/V
    whenever there is a mask on CUDA, since SDPA's ``enable_gqa`` with a mask falls back to
    the math kernel; a tree verification always has a mask. Returns ``[B, N, H, D]``."""
    if attention_mask is None:
        # Hugging Face's own calls (generate, a causal prefill) may skip the mask: the stock
        # path then sets ``is_causal``, which SDPA here would not.
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    batch, heads, n_new, dim = query.shape
    kv_heads = key.shape[1]
    rep = heads // kv_heads
    q = query.reshape(batch, kv_heads, rep * n_new, dim)  # head h uses KV head h // rep
    mask = attention_mask[..., : key.shape[-2]]
    if rep > 1:
        mask = mask.repeat(1, 1, rep, 1) if mask.shape[1] == 1 else mask.reshape(
            batch, kv_heads, rep * n_new, -1)
    out = torch.nn.functional.scaled_dot_product_attention(
        q, key, value, attn_mask=mask, dropout_p=dropout if module.training else 0.0,
        scale=scaling)
    return out.reshape(batch, heads, n_new, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(GQA_ATTENTION, gqa_attention)
# Masks as for SDPA: without an entry here, Hugging Face's mask builders give our attention no
# mask at all, and a model's own ``generate`` would attend bidirectionally.
AttentionMaskInterface.register(GQA_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def cache_argument(model: PreTrainedModel) -> str:
    """The forward's cache keyword: ``cache`` in newer transformers 5.x, ``past_key_values``
    before (both declared versions must work)."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def text_config(model: PreTrainedModel) -> object:
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def kv_shape(model: PreTrainedModel) -> tuple[int, int, int]:
    """(layers, kv_heads, head_dim) of ``model``'s KV cache."""
    cfg = text_config(model)
    heads = int(cfg.num_attention_heads)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    return int(cfg.num_hidden_layers), kv_heads, head_dim


def kv_bytes_per_column(model: PreTrainedModel) -> int:
    """Bytes of keys and values one token takes in ``model``'s cache, over all layers."""
    layers, kv_heads, head_dim = kv_shape(model)
    return layers * 2 * kv_heads * head_dim * (torch.finfo(model.dtype).bits // 8)


@dataclass
class _Graph:
    replay: Callable[[], None]
    ints: torch.Tensor  # the buffers the graph reads (a packed plan)
    block: torch.Tensor
    logits: torch.Tensor  # the buffer it writes
    staging: tuple[torch.Tensor, torch.Tensor] | None = None  # pinned host copies (CUDA)
    copied: object = None  # a CUDA event: the last copy out of the staging buffers is done


@dataclass(frozen=True)
class Captured:
    """What capturing a pool's buckets at start-up took."""

    graphs: int
    seconds: float
    memory_bytes: int  # device memory reserved by the graphs, their buffers and the logits


@dataclass
class KVPool:
    """Preallocated KV of ``rows`` requests for ``model``; every forward goes through here."""

    model: PreTrainedModel
    rows: int
    max_len: int  # longest committed sequence (model.max_len)
    work: int  # work-area columns beyond it (largest tree round, see drafting.work_columns)
    mode: CompileMode = CompileMode.eager
    token_buckets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    on_forward: Callable[[tuple[int, int, int, int]], None] | None = None  # each forward's key
    capture: Capture | None = None  # graphs mode: how a bucket is captured (None: CUDA graph)
    batch: int | None = None  # most queries in one forward (None: rows); static shapes go to it
    keys: torch.Tensor = field(init=False)
    values: torch.Tensor = field(init=False)
    timed: bool = False  # synchronise after each forward and add up calls and seconds
    calls: int = field(init=False, default=0)
    seconds: float = field(init=False, default=0.0)
    captures: int = field(init=False, default=0)  # CUDA graphs captured (graphs mode)
    late: int = field(init=False, default=0)  # captured inside a forward after capture_all
    shapes: set[tuple[int, int, int]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        if self.mode == CompileMode.auto:
            raise ValueError("resolve CompileMode.auto first "
                             "(specedge.base.config.model.resolve_compile)")
        layers, kv_heads, head_dim = kv_shape(self.model)
        self.capacity = self.max_len + self.work  # what a row may hold
        # Allocated as a multiple of 64: attention kernels tile the key length (SDPA's
        # memory-efficient kernel re-pads a mask whose last dimension is not a multiple of 8,
        # in every layer); static forwards read up to here.
        self.columns = -(-self.capacity // CAPACITY_ALIGN) * CAPACITY_ALIGN
        shape = (layers, self.rows + 1, kv_heads, self.columns, head_dim)
        # Read once: the model's .device/.dtype walk its modules on every access.
        self._device, self._dtype = self.model.device, self.model.dtype
        self._min = torch.finfo(self._dtype).min
        opts = {"dtype": self._dtype, "device": self._device}
        self.keys = torch.zeros(shape, **opts)
        self.values = torch.zeros(shape, **opts)
        self.scratch = self.rows
        self._free = list(range(self.rows))
        self._cache_arg = cache_argument(self.model)
        self._graphs: dict[tuple[int, int, int, int], _Graph] = {}
        self.token_buckets = tuple(sorted(self.token_buckets))
        self.max_batch = self.rows if self.batch is None else self.batch
        if not 1 <= self.max_batch <= self.rows:
            raise ValueError(f"batch must lie in [1, rows = {self.rows}], not {self.batch}")
        # Static forwards all see one work width, so it never multiplies the graphs: a
        # round's work area (work_columns bounds it) after a catch-up of up to a bucket.
        self.width = bucket(self.work + self.token_buckets[-1], self.token_buckets)
        self._columns = torch.arange(self.columns, device=self._device)
        if self._device.type == "cuda" and kv_heads < int(text_config(self.model)
                                                          .num_attention_heads):
            # Grouped-query attention with our masks, without repeating K/V (gqa_attention).
            self.model.set_attn_implementation(GQA_ATTENTION)
        self._graph_memory: object = None  # graphs mode: this pool's CUDA graph memory
        self._logits: torch.Tensor | None = None  # graphs mode: every graph's output, flat
        self._started = False  # capture_all ran: a capture in a forward is late

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def max_tokens(self) -> int:
        """Most new tokens of one row in one forward (eager: no limit)."""
        return self.token_buckets[-1] if self.mode != CompileMode.eager else 1 << 30

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
        if not self.timed:
            return self._forward(queries)
        t0 = time.perf_counter()
        logits = self._forward(queries)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        return logits

    @torch.inference_mode()
    def time_padding(self, batch: int, n_new: int, kv_len: int, repeats: int = 3) -> float:
        """Median seconds of a forward of ``batch`` rows x ``n_new`` new tokens over ``kv_len``
        KV columns, run as padding (only the scratch row is written; no counter moves): what a
        step of that shape costs, before any request has come."""
        if not (1 <= batch <= self.max_batch and n_new >= 1 and 1 <= kv_len <= self.columns):
            raise ValueError(f"a padding forward of batch {batch}, {n_new} new tokens, "
                             f"{kv_len} KV columns does not fit this pool (batch <= "
                             f"{self.max_batch}, KV columns <= {self.columns})")
        static = self.mode != CompileMode.eager
        plan = (self._padding(_pow2_at_least(batch), bucket(n_new, self.token_buckets),
                              self.kv_bucket(kv_len)) if static
                else self._padding(batch, n_new, kv_len, n_new))
        times = []
        for _ in range(repeats + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            if self.mode == CompileMode.graphs:
                self._replay(plan)
            else:
                self._run(_unpacked(*self._to_device(plan)), plan.kv_len, None)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            times.append(time.perf_counter() - t0)
        return float(np.median(times[1:]))

    def _forward(self, queries: list[Query]) -> torch.Tensor:
        plan = self._plan(queries)
        for q in queries:
            q.row.used += len(q.tokens)
        self.shapes.add(plan.key)
        if self.on_forward is not None:
            self.on_forward(plan.key)
        if self.mode == CompileMode.graphs:
            return self._replay(plan)
        single = int(plan.read_rows[0]) if len(plan.read_rows) == 1 else None
        return self._run(_unpacked(*self._to_device(plan)), plan.kv_len, single)

    def _plan(self, queries: list[Query]) -> _Plan:
        if not queries or any(not q.tokens for q in queries):
            raise ValueError("a forward needs at least one query, each with at least one token")
        static = self.mode != CompileMode.eager
        n_real = max(len(q.tokens) for q in queries)
        w_real = max(q.row.used + len(q.tokens) - q.row.length for q in queries)
        for q in queries:
            end = q.row.used + len(q.tokens)
            if end > self.capacity:
                raise KVCapacityError(
                    f"row {q.row.index} would need {end} KV columns ({q.row.length} committed + "
                    f"{end - q.row.length} in the work area); the pool holds {self.capacity} "
                    f"(model.max_len = {self.max_len} + {self.work} for trees)")
        if static and n_real > self.max_tokens:
            raise KVCapacityError(f"{n_real} new tokens in one forward exceed the largest "
                                  f"bucket of model.token_buckets ({self.max_tokens})")
        if static and len(queries) > self.max_batch:
            raise KVCapacityError(f"a batch of {len(queries)} exceeds the pool's limit of "
                                  f"{self.max_batch} (its rows, or the batch it was made for)")
        if static and w_real > self.width:
            raise KVCapacityError(f"{w_real} work columns exceed the pool's static work width "
                                  f"{self.width} (a catch-up of up to the largest bucket, "
                                  f"then work_columns)")
        ends = max(q.row.used + len(q.tokens) for q in queries)
        if static:
            plan = self._padding(_pow2_at_least(len(queries)), bucket(n_real, self.token_buckets),
                                 self.kv_bucket(ends))
        else:
            plan = self._padding(len(queries), n_real, ends, w_real)
        for b, q in enumerate(queries):
            n, row = len(q.tokens), q.row
            if len(q.positions) != n or len(q.visible) != n:
                raise ValueError("a query needs one position and one visible list per token")
            plan.input_ids[b, :n] = q.tokens
            plan.position_ids[b, :n] = q.positions
            plan.write_rows[b, :n] = row.index
            plan.write_cols[b, :n] = np.arange(row.used, row.used + n)
            plan.read_rows[b] = row.index
            plan.lengths[b] = row.length
            plan.block[b, :n, 0] = False
            flat_i = np.repeat(np.arange(n), [len(v) for v in q.visible])
            flat_c = np.fromiter((c for v in q.visible for c in v), np.int64, len(flat_i))
            end = row.used + n
            if ((flat_c < row.length) | (flat_c >= end)).any():
                raise ValueError(f"row {row.index}: visible columns must lie in its work area "
                                 f"[{row.length}, {end})")
            plan.block[b, flat_i, flat_c - row.length] = True
            own = np.arange(row.used, end) - row.length
            if not plan.block[b, np.arange(n), own].all():
                raise ValueError("every query token must see its own column")
        return plan

    def _padding(self, batch: int, n_new: int, kv_len: int, width: int | None = None) -> _Plan:
        """A plan of padding only: every token writes to the scratch row and sees one finite
        column of it (no NaN rows); ``width`` defaults to the pool's static one."""
        plan = _Plan(
            input_ids=np.zeros((batch, n_new), np.int64),
            position_ids=np.zeros((batch, n_new), np.int64),
            write_rows=np.full((batch, n_new), self.scratch, np.int64),
            write_cols=np.tile(np.arange(n_new, dtype=np.int64), (batch, 1)),
            read_rows=np.full(batch, self.scratch, np.int64),
            lengths=np.zeros(batch, np.int64),
            block=np.zeros((batch, n_new, self.width if width is None else width), bool),
            kv_len=kv_len,
        )
        plan.block[:, :, 0] = True
        return plan

    def buckets(self) -> list[tuple[int, int, int, int]]:
        """Every static shape a forward of this pool can take, as graph keys: batches of
        powers of two up to its batch limit x every token bucket (a verification's first
        round carries its prompt's tail, so any batch may meet any bucket) x every KV bucket
        up to the row, at the pool's one work width."""
        kv, b = [], CAPACITY_ALIGN
        while b < self.columns:
            kv.append(b)
            b *= 2
        kv.append(self.columns)
        batches = [1 << i for i in range(_pow2_at_least(self.max_batch).bit_length())]
        return [(batch, n, self.width, c) for batch in batches for n in self.token_buckets
                for c in kv]

    def capture_all(self) -> Captured:
        """Capture every bucket of :meth:`buckets` now, before any request: a served round
        then only replays. The captures run padding (the scratch row's KV only) and touch
        none of the records' counters (``calls``, ``seconds``, ``shapes``)."""
        if self.mode != CompileMode.graphs:
            raise ValueError(f"capture_all needs model.compile = graphs, not {self.mode.value}")
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
        before = torch.cuda.memory_reserved(self.device) if cuda else 0
        t0, n0 = time.perf_counter(), self.captures
        with torch.inference_mode(), self._on_device():
            for key in self.buckets():
                if key not in self._graphs:
                    self._capture(self._padding(key[0], key[1], key[3]))
        if cuda:
            torch.cuda.synchronize(self.device)
        self._started = True
        memory = torch.cuda.memory_reserved(self.device) - before if cuda else 0
        return Captured(self.captures - n0, time.perf_counter() - t0, memory)

    def kv_bucket(self, columns: int) -> int:
        """KV columns a static forward reads: the batch's longest row rounded up to a power
        of two, at least :data:`CAPACITY_ALIGN`, at most the row (attention and the rows'
        gather then grow with the context, not with ``model.max_len``)."""
        return min(self.columns, max(CAPACITY_ALIGN, _pow2_at_least(columns)))

    def kv_traffic(self, batch: int, columns: int) -> tuple[int, int]:
        """Bytes of KV one forward of ``batch`` rows, the longest ``columns`` long, moves on
        this pool's path: (read by attention over every layer, extra moved by gathering the
        rows: the gather reads them and writes a copy that attention then reads). One row is
        a view, nothing gathered: a one-row batch, or any batch of a one-row pool in graphs
        mode."""
        static = self.mode != CompileMode.eager
        rows = _pow2_at_least(batch) if static else batch
        cols = self.kv_bucket(columns) if static else columns
        read = rows * cols * kv_bytes_per_column(self.model)
        view = rows == 1 and (self.mode != CompileMode.graphs or self.rows == 1)
        return read, 0 if view else 2 * read

    def _to_device(self, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed integers and the block, on the device."""
        return (torch.from_numpy(plan.packed()).to(self.device),
                torch.from_numpy(plan.block).to(self.device))

    def _mask(self, lengths: torch.Tensor, block: torch.Tensor, kv_len: int) -> torch.Tensor:
        """``[B, 1, N, kv_len]`` additive mask: the committed prefix, plus the block's columns."""
        batch, n_new, width = block.shape
        offset = self._columns[:kv_len].unsqueeze(0) - lengths.unsqueeze(1)  # [B, C]
        in_work = (offset >= 0) & (offset < width)
        index = offset.clamp(0, width - 1).unsqueeze(1).expand(batch, n_new, kv_len)
        allowed = (offset < 0).unsqueeze(1) | (in_work.unsqueeze(1) & block.gather(2, index))
        mask = torch.zeros((batch, 1, n_new, kv_len), dtype=self._dtype, device=self._device)
        return mask.masked_fill_(~allowed.unsqueeze(1), self._min)

    def _run(self, t: dict[str, torch.Tensor], kv_len: int, single: int | None) -> torch.Tensor:
        """``single``: the one row read (a view of the pool, no gather), known on the host."""
        read: torch.Tensor | int = t["read_rows"] if single is None else single
        view = _PoolView(self, t["write_rows"], t["write_cols"], read, kv_len)
        out = self.model(input_ids=t["input_ids"], position_ids=t["position_ids"],
                         attention_mask=self._mask(t["lengths"], t["block"], kv_len),
                         use_cache=True, **{self._cache_arg: view})
        return out.logits

    # --- CUDA graphs ---------------------------------------------------------------------

    def _on_device(self) -> contextlib.AbstractContextManager[object]:
        """The model's own CUDA device as the current one: streams, events, graph memory
        and captures all belong to the current device, which need not be the model's (a
        model on cuda:1 in a process whose current device is cuda:0)."""
        if self.device.type == "cuda":
            return torch.cuda.device(self.device)
        return contextlib.nullcontext()

    def _replay(self, plan: _Plan) -> torch.Tensor:
        with self._on_device():
            return self._replay_here(plan)

    def _replay_here(self, plan: _Plan) -> torch.Tensor:
        graph = self._graphs.get(plan.key)
        if graph is None:
            if self._started:  # a shape buckets() missed: correct, but captured mid-run
                self.late += 1
                log.warning("captured bucket %s inside a forward (not among the %d captured "
                            "at start-up)", plan.key, len(self._graphs))
            graph = self._capture(plan)
        elif graph.staging is None:  # a CPU stand-in (tests): plain copies
            graph.ints.copy_(torch.from_numpy(plan.packed()))
            graph.block.copy_(torch.from_numpy(plan.block))
        else:  # pinned staging, asynchronous copies; never overwrite one still in flight
            if graph.copied is not None:
                graph.copied.synchronize()  # type: ignore[attr-defined]
            ints, block = graph.staging
            ints.numpy()[:] = plan.packed()
            block.numpy()[:] = plan.block
            graph.ints.copy_(ints, non_blocking=True)
            graph.block.copy_(block, non_blocking=True)
            graph.copied = torch.cuda.Event()
            graph.copied.record()  # type: ignore[attr-defined]
        graph.replay()
        return graph.logits

    def _capture(self, plan: _Plan) -> _Graph:
        """Capture this bucket's forward once, over input buffers it keeps: later forwards of
        the bucket copy their inputs in and replay. The buffers hold this call's real inputs,
        so a warm-up run writes the same KV values to the same columns."""
        packed, block = self._to_device(plan)
        views = _unpacked(packed, block)
        if self.capture is not None:
            capture = self.capture
        else:  # this pool's own graph memory: see cuda_graph
            if self._graph_memory is None:
                self._graph_memory = torch.cuda.graph_pool_handle()
            capture = functools.partial(cuda_graph, device=self.device,
                                        memory=self._graph_memory)

        # A pool of one row always reads row 0: the graph can take it as a view (no gather).
        single = 0 if self.rows == 1 else None
        # Every graph writes its logits into the front of one buffer, allocated outside any
        # graph's memory and sized for the largest shape: an output is only read before the
        # pool's next forward, so one buffer serves them all, and only inputs, KV and it
        # stay live between replays.
        head = self.model.get_output_embeddings()  # the logits' width and dtype
        vocab = int(head.out_features)
        if self._logits is None:
            most = _pow2_at_least(self.max_batch) * self.token_buckets[-1] * vocab
            self._logits = torch.empty(most, dtype=head.weight.dtype, device=self._device)
        batch, n_new = plan.key[:2]
        out = self._logits[: batch * n_new * vocab].view(batch, n_new, vocab)

        def step() -> torch.Tensor:
            return out.copy_(self._run(views, plan.kv_len, single))

        replay, logits = capture(step)
        self.captures += 1
        staging = None
        if self.device.type == "cuda":
            staging = (torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True),
                       torch.empty(block.shape, dtype=block.dtype, pin_memory=True))
        captured = _Graph(replay=replay, ints=packed, block=block, logits=logits,
                          staging=staging)
        self._graphs[plan.key] = captured
        return captured


Capture = Callable[[Callable[[], torch.Tensor]], tuple[Callable[[], None], torch.Tensor]]


def cuda_graph(step: Callable[[], torch.Tensor], device: torch.device,
               memory: object) -> tuple[Callable[[], None], torch.Tensor]:
    """Record ``step`` as a CUDA graph on ``device`` (after two warm-up runs on a side stream
    of that device, as capture requires), in the graph memory ``memory``; returns its replay
    (on ``device``'s current stream) and its output buffer.

    Graphs sharing ``memory`` share their intermediate and output allocations: an output is
    valid until the next replay of any graph captured in the same memory. Each
    :class:`KVPool` keeps its own, so a pool's logits stay valid until that pool's next
    forward (the rule :meth:`KVPool.forward` states)."""
    with torch.cuda.device(device):
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                step()
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=memory):
            out = step()

    def replay() -> None:
        with torch.cuda.device(device):
            graph.replay()

    return replay, out


def work_columns(edge: EdgeConfig) -> int:
    """KV columns a round may need beyond the committed prefix (an upper bound), on the edge
    or the server: the nodes a tree forwards (the root, then up to max_n_beams a step), or
    the tree verified; with proactive drafting also the leaves forwarded once, the sub-tree,
    an adopted sub-tree kept while it grows, and the next guess's sub-tree."""
    forwarded = 1 + edge.max_n_beams * max(0, edge.max_beam_len - 1)
    need = forwarded + max(edge.max_budget, edge.proactive.max_budget) + 1
    if edge.proactive.type != ProactiveType.disabled:
        sub = edge.proactive.max_n_beams * edge.proactive.max_beam_len
        need += 2 * sub + edge.max_budget + edge.max_n_beams
    return need


def pool_for(model: PreTrainedModel, rows: int, mcfg: ModelConfig, edge: EdgeConfig,
             device: str, batch: int | None = None) -> KVPool:
    """The run's KV pool for ``model``: ``rows`` requests of ``model.max_len`` tokens, each
    with room for the configured trees, forwarded ``batch`` at most at a time (None: all
    rows), run as ``model.compile`` says for ``device``; in graphs mode with every bucket
    captured before it returns."""
    pool = KVPool(model=model, rows=rows, max_len=mcfg.max_len, work=work_columns(edge),
                  mode=resolve_compile(mcfg.compile, device),
                  token_buckets=tuple(mcfg.token_buckets), batch=batch)
    if pool.mode == CompileMode.graphs:
        done = pool.capture_all()
        log.info("captured %d CUDA graphs for %s at start-up in %.1f s, %.0f MiB of device "
                 "memory", done.graphs, getattr(model, "name_or_path", "the model"),
                 done.seconds, done.memory_bytes / 2**20)
    return pool
