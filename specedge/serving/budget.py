"""The goodput budget's cost model, measured on the forward path a server or baseline runs."""

from __future__ import annotations

import logging

from specedge.algorithm.goodput import StepTable
from specedge.engine.kv_cache import KVPool

log = logging.getLogger("specedge.serving.budget")

STEP_KV_COLUMNS = 256  # the context a start-up step is timed over


def measure_steps(pool: KVPool, batch: int, tree_nodes: int) -> StepTable:
    """A step of ``batch`` rows timed at start-up for 1, 2, 4, ... new tokens per row up to a
    full tree (padding forwards, before any request), by the step's new tokens."""
    batch = min(batch, pool.max_batch)
    per_row = sorted({*(1 << i for i in range(tree_nodes.bit_length())), tree_nodes})
    kv = min(STEP_KV_COLUMNS, pool.columns)
    table = StepTable(tuple(batch * n for n in per_row),
                      tuple(pool.time_padding(batch, n, kv) for n in per_row))
    log.info("goodput budget: step of %d rows, new tokens -> ms: %s", batch,
             ", ".join(f"{t}: {s * 1e3:.1f}" for t, s in zip(table.tokens, table.seconds,
                                                          strict=True)))
    return table
