"""The goodput budget's cost model, measured on the forward path a server or baseline runs."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from specedge.algorithm.goodput import STEP_CONTEXT, OnlineStepCost, StepTable, step_knots
from specedge.engine.kv_pool import KVPool

log = logging.getLogger("specedge.serving.budget")

def measure_steps(pool: KVPool, batches: Sequence[int], tree_nodes: int,
                  window: int) -> OnlineStepCost:
    """Steps of each batch size a step may have (``batches``) timed at start-up for each graph
    bucket of new tokens per row up to a full tree (padding forwards, before any request), by
    the step's new tokens: the prior of the cost the server then refits on its last
    ``window`` forwards."""
    knots = step_knots([min(b, pool.max_batch) for b in batches], tree_nodes,
                       pool.token_buckets)
    kv = min(STEP_CONTEXT, pool.columns)
    table = StepTable(tuple(t for t, _ in knots),
                      tuple(pool.time_padding(rows, t // rows, kv) for t, rows in knots)
                      ).non_decreasing()
    log.info("goodput budget: steps of %s rows, new tokens -> ms: %s",
             "/".join(str(b) for b in sorted(set(batches))), describe(table))
    return OnlineStepCost(table, window)


def describe(table: StepTable) -> str:
    return ", ".join(f"{t}: {s * 1e3:.1f}" for t, s in zip(table.tokens, table.seconds,
                                                          strict=True))
