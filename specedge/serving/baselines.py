"""The two server-side baselines: server-only SpecExec and auto-batch decoding.

Both are the same loop: keep up to ``capacity`` requests active, give each a tree, verify all
trees in one batched target forward, commit, refill from the queue as requests finish. Server-only
drafts a SpecExec tree per request with the draft model on the server, all of them together
(one batched draft forward per level, as upstream's server-only does); auto-batch's tree is
just the root, so its "verification" is exactly one step of plain batched greedy/sampled
decoding.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from specedge.algorithm.drafting import Draft, TreeShape
from specedge.algorithm.goodput import OnlineStepCost, pruned, replay_fields
from specedge.algorithm.rounds import Drafter, RoundStats
from specedge.algorithm.sequence import Sequence
from specedge.algorithm.tree import TokenTree
from specedge.algorithm.verification import Chooser, verify_trees
from specedge.base.config.edge import TreePolicy
from specedge.base.records import JsonlWriter, StepRecord
from specedge.engine.kv_pool import KVPool


@dataclass
class ServeResult:
    sequences: list[Sequence]
    steps: int
    wall_s: float


def serve(
    *,
    baseline: str,
    sequences: list[Sequence],
    capacity: int,
    target: KVPool,
    draft: KVPool | None,
    shape: TreeShape | None,
    choose: Chooser,
    steps_out: JsonlWriter | None = None,
    on_finish: Callable[[Sequence], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    policy: TreePolicy = TreePolicy.fixed,
    batch_drafting: bool = True,
    step_cost: OnlineStepCost | None = None,
) -> ServeResult:
    """Serve ``sequences``, at most ``capacity`` at once; ``draft=None`` is plain batched decoding.

    ``target`` (and ``draft``) hold at least ``capacity`` KV rows; a request holds one of each
    while it is served. ``batch_drafting=False`` drafts the requests' trees one after the other
    (the same trees, more draft forwards), to compare with. ``step_cost`` (server-only): a
    target step's cost by its new tokens, refitted on each step; given, each step verifies only
    the goodput budget's nodes (:mod:`specedge.algorithm.goodput`), the step's drafting
    counted in its cost, and each request drafts about its share next step."""
    queue = deque(sequences)
    active: list[Sequence] = []
    drafters: dict[int, Drafter] = {}  # by request index: server-only's draft KV rows
    step = 0
    t_run = time.perf_counter()
    while queue or active:
        while queue and len(active) < capacity:
            seq = queue.popleft()
            seq.target_row = target.acquire()
            if draft is not None and shape is not None:
                drafters[seq.request.index] = Drafter(draft, draft.acquire(), shape,
                                                      policy=policy)
            active.append(seq)
        t_start = time.time()
        drafts, draft_s = _draft_all(active, drafters, batch_drafting)
        trees = [d.tree if d is not None else TokenTree.rooted(s.root)
                 for d, s in zip(drafts, active, strict=True)]
        rows = [s.target_row for s in active]
        assert all(r is not None for r in rows)
        prefixes = [r.length for r in rows]  # type: ignore[union-attr]
        pendings = [s.pending_for(s.target_row) for s in active]
        # Each tree's survivals (before its verdict calibrates the next): the goodput budget
        # ranks by them, the records keep them for the simulator's replay.
        # (Neither wanted: none computed, as auto-batch and the benchmarks' loops run.)
        wanted = steps_out is not None or step_cost is not None
        survivals = [drafters[s.request.index].survival(d) if d is not None and wanted
                     else [1.0] for d, s in zip(drafts, active, strict=True)]
        verified, keeps = trees, [None] * len(trees)
        if step_cost is not None and any(d is not None for d in drafts):
            verified, keeps = _budget(trees, drafts, survivals, pendings, draft_s, step_cost)
        t0 = time.perf_counter()
        verdicts = verify_trees(target, rows, pendings, verified, choose,  # type: ignore[arg-type]
                                [s.request.index for s in active])
        verdicts = [v if k is None else replace(v, path=[k[i] for i in v.path])
                    for v, k in zip(verdicts, keeps, strict=True)]
        timing = _StepTiming(step, t_start, time.time(), time.perf_counter() - t0)
        if step_cost is not None and all(s.steps > 0 for s in active):  # no prompt prefill
            step_cost.observe(sum(len(t) + len(p) for t, p in zip(verified, pendings,
                                                                  strict=True)),
                              timing.target_s)
        produced = 0
        for seq, d, tree, verdict, prefix, keep, survival in zip(
                active, drafts, trees, verdicts, prefixes, keeps, survivals, strict=True):
            d_s = draft_s if d is not None else 0.0  # its tree was ready with the batch's
            if d is not None:
                drafter = drafters[seq.request.index]
                drafter.commit(d, verdict)
                drafter.observe(d_s, timing.target_s)  # its verdict waited for the forward
                if keep is not None:
                    drafter.follow(len(keep) - 1, len(tree) - 1)
            kept = seq.commit(verdict.new_tokens(tree))
            produced += len(kept)
            if steps_out is not None:
                stats = drafters[seq.request.index].stats if d is not None else None
                record = timing.record(baseline, seq, len(active), d, d_s, tree,
                                       len(verdict.path) - 1, len(kept), prefix, stats,
                                       len(tree) if keep is None else len(keep))
                if d is not None:
                    record = replace(record, **replay_fields(tree, survival, verdict.path))
                steps_out.write(record)
            seq.steps += 1
            if seq.finished:
                _release(seq, target, drafters)
                if on_finish is not None:
                    on_finish(seq)
        active = [s for s in active if not s.finished]
        step += 1
        if on_step is not None:
            on_step(produced)
    return ServeResult(sequences=sequences, steps=step, wall_s=time.perf_counter() - t_run)


@dataclass(frozen=True)
class _StepTiming:
    """What one batched step shares across its requests' step records."""

    step: int
    t_start: float
    t_end: float
    target_s: float

    def record(self, baseline: str, seq: Sequence, batch_size: int, draft: Draft | None,
               draft_s: float, tree: TokenTree, accepted: int, kept: int,
               prefix: int, stats: RoundStats | None, verified: int) -> StepRecord:
        return StepRecord(
            baseline=baseline, step=self.step, request_id=seq.request.index,
            category=seq.request.category, batch_size=batch_size, prefill=seq.steps == 0,
            draft_s=draft_s, target_s=self.target_s, tree_size=verified, accepted=accepted,
            drafted_nodes=len(tree),
            new_tokens=kept, draft_forwards=draft.forwards if draft is not None else 0,
            t_start=self.t_start, t_end=self.t_end, finished=seq.finished, prefix=prefix,
            tree_budget=stats.budget if stats else 0, tree_depth=stats.depth if stats else 0)


def _draft_all(active: list[Sequence], drafters: dict[int, Drafter],
               batched: bool = True) -> tuple[list[Draft | None], float]:
    """Server-only drafts every active request's tree together, one batched draft forward per
    level (``batched=False``: one request after the other; auto-batch: none); returns the
    drafts and the step's drafting time."""
    mine = [(i, drafters[s.request.index]) for i, s in enumerate(active)
            if s.request.index in drafters]
    drafts: list[Draft | None] = [None] * len(active)
    t0 = time.perf_counter()
    for group in ([mine] if batched else [[m] for m in mine]):
        if not group:
            continue
        grown = Drafter.draft_batch([d for _, d in group],
                                    [active[i].pending_for(d.row) for i, d in group],
                                    [active[i].root for i, _ in group])
        for (i, _), d in zip(group, grown, strict=True):
            drafts[i] = d
    return drafts, time.perf_counter() - t0


def _budget(trees: list[TokenTree], drafts: list[Draft | None], survivals: list[list[float]],
            pendings: list[list[int]], draft_s: float, step_seconds: Callable[[float], float]
            ) -> tuple[list[TokenTree], list[list[int] | None]]:
    """Server-only's goodput budget: the same selection as the SpecEdge server's, over
    survivals its drafters estimate; the drafting already spent is part of the step's time."""
    extra = sum(len(p) for p in pendings)
    _, cut, keeps = pruned(trees, survivals, lambda t: draft_s + step_seconds(t + extra))
    return cut, [k if d is not None else None for k, d in zip(keeps, drafts, strict=True)]


def _release(seq: Sequence, target: KVPool, drafters: dict[int, Drafter]) -> None:
    """A finished request gives its KV rows back."""
    if seq.target_row is not None:
        target.release(seq.target_row)
        seq.target_row = None
    if (done := drafters.pop(seq.request.index, None)) is not None:
        done.pool.release(done.row)
