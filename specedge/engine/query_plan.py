"""A forward's queries as host arrays at the shape it runs: exact (``eager``) or rounded up to
buckets (``static``, ``graphs``: batch to powers of two, new tokens to ``model.token_buckets``,
the work area to one width per pool, the KV columns read to :meth:`QueryPlanner.kv_bucket`).

The attention mask is not built here: a plan carries each row's committed length and a small
boolean block over its work area, and the runner builds the mask on the device from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

CAPACITY_ALIGN = 64  # a row's allocated columns are rounded up to a multiple of this


class KVCapacityError(RuntimeError):
    """A forward would not fit a row of the pool; the message says which limit to raise."""


@dataclass(eq=False)
class KVRow:
    """One request's row of a KV pool."""

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


def pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def bucket(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``n``; beyond the largest, the next power of two."""
    for b in buckets:
        if n <= b:
            return b
    return pow2_at_least(n)


@dataclass
class Plan:
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


def unpacked(ints: torch.Tensor, block: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views of a packed plan on the device, by name."""
    batch, n_new, _ = block.shape
    m = batch * n_new
    return {"input_ids": ints[:m].view(batch, n_new),
            "position_ids": ints[m : 2 * m].view(batch, n_new),
            "write_rows": ints[2 * m : 3 * m].view(batch, n_new),
            "write_cols": ints[3 * m : 4 * m].view(batch, n_new),
            "read_rows": ints[4 * m : 4 * m + batch],
            "lengths": ints[4 * m + batch :], "block": block}


@dataclass
class QueryPlanner:
    """The shapes one pool's forwards take, and the checks that a batch of queries fits it."""

    static: bool  # shapes rounded up to buckets (static, graphs)
    token_buckets: tuple[int, ...]  # sorted
    max_batch: int  # most queries in one forward
    max_len: int  # longest committed sequence (model.max_len)
    work: int  # work-area columns beyond it
    columns: int  # columns allocated per row
    scratch: int  # the row padding writes to

    def __post_init__(self) -> None:
        # Static forwards all see one work width, so it never multiplies the graphs: a
        # round's work area (EdgeConfig.work_columns bounds it) after a catch-up of up to a
        # bucket.
        self.width = bucket(self.work + self.token_buckets[-1], self.token_buckets)

    @property
    def capacity(self) -> int:
        """Columns a row may hold."""
        return self.max_len + self.work

    @property
    def max_tokens(self) -> int:
        """Most new tokens of one row in one forward (eager: no limit)."""
        return self.token_buckets[-1] if self.static else 1 << 30

    def kv_bucket(self, columns: int) -> int:
        """KV columns a static forward reads: the batch's longest row rounded up to a power
        of two, at least :data:`CAPACITY_ALIGN`, at most the row (attention and the rows'
        gather then grow with the context, not with ``model.max_len``)."""
        return min(self.columns, max(CAPACITY_ALIGN, pow2_at_least(columns)))

    def buckets(self) -> list[tuple[int, int, int, int]]:
        """Every static shape a forward can take, as graph keys: batches of powers of two up
        to the batch limit x every token bucket (a verification's first round carries its
        prompt's tail, so any batch may meet any bucket) x every KV bucket up to the row, at
        the one work width."""
        kv, b = [], CAPACITY_ALIGN
        while b < self.columns:
            kv.append(b)
            b *= 2
        kv.append(self.columns)
        batches = [1 << i for i in range(pow2_at_least(self.max_batch).bit_length())]
        return [(batch, n, self.width, c) for batch in batches for n in self.token_buckets
                for c in kv]

    def padding(self, batch: int, n_new: int, kv_len: int, width: int | None = None) -> Plan:
        """A plan of padding only: every token writes to the scratch row and sees one finite
        column of it (no NaN rows); ``width`` defaults to the static one."""
        plan = Plan(
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

    def shaped(self, batch: int, n_new: int, kv_len: int) -> Plan:
        """Padding at the shape a forward of this size runs at."""
        if self.static:
            return self.padding(pow2_at_least(batch), bucket(n_new, self.token_buckets),
                                self.kv_bucket(kv_len))
        return self.padding(batch, n_new, kv_len, n_new)

    def plan(self, queries: list[Query]) -> Plan:
        """``queries`` at their shape, every token written after its row's work area."""
        if not queries or any(not q.tokens for q in queries):
            raise ValueError("a forward needs at least one query, each with at least one token")
        n_real = max(len(q.tokens) for q in queries)
        w_real = max(q.row.used + len(q.tokens) - q.row.length for q in queries)
        self._check(queries, n_real, w_real)
        ends = max(q.row.used + len(q.tokens) for q in queries)
        plan = (self.shaped(len(queries), n_real, ends) if self.static
                else self.padding(len(queries), n_real, ends, w_real))
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

    def _check(self, queries: list[Query], n_real: int, w_real: int) -> None:
        for q in queries:
            end = q.row.used + len(q.tokens)
            if end > self.capacity:
                raise KVCapacityError(
                    f"row {q.row.index} would need {end} KV columns ({q.row.length} committed + "
                    f"{end - q.row.length} in the work area); the pool holds {self.capacity} "
                    f"(model.max_len = {self.max_len} + {self.work} for trees)")
        if not self.static:
            return
        if n_real > self.max_tokens:
            raise KVCapacityError(f"{n_real} new tokens in one forward exceed the largest "
                                  f"bucket of model.token_buckets ({self.max_tokens})")
        if len(queries) > self.max_batch:
            raise KVCapacityError(f"a batch of {len(queries)} exceeds the pool's limit of "
                                  f"{self.max_batch} (its rows, or the batch it was made for)")
        if w_real > self.width:
            raise KVCapacityError(f"{w_real} work columns exceed the pool's static work width "
                                  f"{self.width} (a catch-up of up to the largest bucket, "
                                  f"then work_columns)")
