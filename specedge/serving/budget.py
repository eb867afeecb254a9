"""The goodput budget's cost model, measured on the forward path a server or baseline runs."""

from __future__ import annotations

import logging

from specedge.algorithm.goodput import STEP_CONTEXT, OnlineStepCost, StepTable, step_knots
from specedge.engine.kv_cache import KVPool

log = logging.getLogger("specedge.serving.budget")

def measure_steps(pool: KVPool, batch: int, tree_nodes: int, window: int) -> OnlineStepCost:
    """A step of ``batch`` rows timed at start-up for each graph bucket of new tokens per row
    up to a full tree (padding forwards, before any request), by the step's new tokens: the
    prior of the cost the server then refits on its last ``window`` forwards."""
    batch = min(batch, pool.max_batch)
    knots = step_knots(batch, tree_nodes, pool.token_buckets)
    kv = min(STEP_CONTEXT, pool.columns)
    table = StepTable(knots, tuple(pool.time_padding(batch, t // batch, kv) for t in knots))
    log.info("goodput budget: step of %d rows, new tokens -> ms: %s", batch, describe(table))
    return OnlineStepCost(table, window)


def describe(table: StepTable) -> str:
    return ", ".join(f"{t}: {s * 1e3:.1f}" for t, s in zip(table.tokens, table.seconds,
                                                          strict=True))
