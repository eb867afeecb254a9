"""SpecExec drafting: grow a token tree with the draft model (the edge's job).

Semantics are the upstream README's: for up to ``max_beam_len`` steps, forward at most
``max_n_beams`` not-yet-forwarded nodes (best cumulative score first) through the draft model
with the tree mask; each proposes its ``max_branch_width`` most likely children, scored
``parent score + log(0.9) + log p(child)``; only the ``max_budget`` best nodes (root excluded)
are kept. Drafting stops early once no child of any candidate could enter a full budget.

:func:`grow_forest` grows several trees on one KV row as one budget (the proactive speculation
cache's sub-trees, each rooted at a guessed bonus token and ranked by that guess's
probability); :func:`grow` is its one-tree case. :func:`grow_forests` grows many rows' forests
with one batched forward per step: :func:`draft_trees` drafts a batch of requests' trees so
(server-only), each the tree its request would get alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from specedge.algorithm.tree import NodeStatus, TokenTree
from specedge.base.config.edge import EdgeConfig, ProactiveConfig
from specedge.engine.kv_pool import KVPool, prefill
from specedge.engine.query_plan import KVRow, Query, causal_query

DECAY = math.log(0.9)  # per-level score decay of SpecExec's budget


@dataclass(frozen=True)
class TreeShape:
    max_n_beams: int
    max_beam_len: int
    max_branch_width: int
    max_budget: int

    @classmethod
    def of(cls, cfg: EdgeConfig | ProactiveConfig) -> TreeShape:
        """The shape an edge's tree (``cfg.edge``) or its proactive sub-tree
        (``cfg.edge.proactive``) is grown to: the one place the four settings are read."""
        return cls(cfg.max_n_beams, cfg.max_beam_len, cfg.max_branch_width, cfg.max_budget)


@dataclass
class Draft:
    """A drafted tree, and where the draft model's KV of its forwarded nodes lies."""

    tree: TokenTree
    row: KVRow  # the request's draft KV row; forwarded nodes sit in its work area
    pending_cols: list[int]  # columns of the catch-up tokens forwarded in the first step
    columns: dict[int, int] = field(default_factory=dict)  # node -> its KV column
    forwards: int = 0  # draft model calls spent
    # node -> the draft's most likely next tokens there and their log-probabilities (every
    # forwarded node): what the outcome model (specedge.algorithm.outcomes) reads
    dists: dict[int, tuple[list[int], list[float]]] = field(default_factory=dict)
    top_k: int = 0  # next tokens remembered per forwarded node (at least the branch width)


def top_next(logits: torch.Tensor, width: int) -> tuple[list[list[float]], list[list[int]]]:
    """Each row's ``width`` best tokens and their log-probabilities: one device-to-host copy."""
    top = torch.log_softmax(logits.float(), dim=-1).topk(width, dim=-1)
    both = torch.stack([top.values.double(), top.indices.double()]).cpu()
    return both[0].tolist(), both[1].long().tolist()


def children_of(draft: Draft, parents: list[int], logits: torch.Tensor, width: int,
                decay: float) -> None:
    """Give each forwarded node of ``parents`` its ``width`` likeliest children, and remember
    its ``draft.top_k`` likeliest next tokens."""
    values, indices = top_next(logits, max(width, draft.top_k))
    tree = draft.tree
    for parent, lps, toks in zip(parents, values, indices, strict=True):
        tree.status[parent] = NodeStatus.forwarded
        draft.dists[parent] = (toks, lps)
        base = tree.scores[parent] + decay
        for lp, tok in zip(lps[:width], toks[:width], strict=True):
            tree.add_child(parent, tok, base + lp)


def _candidates(drafts: list[Draft], bases: list[float], shape: TreeShape,
                decay: float) -> list[tuple[int, int]]:
    """(tree, node) pairs to forward next: the best-scored open nodes of the forest."""
    open_nodes = [(bases[t] + d.tree.scores[i], t, i) for t, d in enumerate(drafts)
                  for i, s in enumerate(d.tree.status) if s == NodeStatus.drafted]
    kept = [bases[t] + s for t, d in enumerate(drafts) for s in d.tree.scores[1:]]
    if len(kept) >= shape.max_budget:
        # A full budget only admits a child that beats the worst kept node.
        worst = min(kept)
        open_nodes = [c for c in open_nodes if c[0] + decay > worst]
    open_nodes.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(t, i) for _, t, i in open_nodes[: shape.max_n_beams]]


@dataclass
class Forest:
    """Trees grown on one KV row as one step and node budget: a request's tree, or the
    proactive cache's sub-trees of one request (tree ``t``'s nodes rank by ``bases[t]`` plus
    their own score, so a likelier tree gets more of the forwards and of the budget)."""

    drafts: list[Draft]
    bases: list[float]
    shape: TreeShape
    root_positions: list[int]  # each tree's root position
    seens: list[list[int]]  # work columns each tree's nodes see beyond the committed prefix
    steps: int  # expansion steps it may take
    taken: int = 0  # expansion steps taken
    done: bool = False  # no open node could enter its budget


def grow_forests(pool: KVPool, forests: list[Forest], decay: float = DECAY,
                 stop: Callable[[], bool] | None = None) -> None:
    """Grow every forest, each on its own KV row, with one draft forward per step for all
    those still growing: a forest's step forwards its best open nodes exactly as it would
    alone, so a batch drafts the trees its requests would draft one by one (server-only's
    drafting). ``stop`` is asked before each step (proactive drafting ends when the server's
    reply is in)."""
    while True:
        growing = [f for f in forests if not f.done and f.taken < f.steps]
        if not growing or (stop is not None and stop()):
            return
        queries, picked = [], []
        for f in growing:
            cands = _candidates(f.drafts, f.bases, f.shape, decay)
            if not cands:
                f.done = True
                continue
            row = f.drafts[0].row
            start = row.used
            tokens, positions, visible = [], [], []
            for i, (t, node) in enumerate(cands):
                d = f.drafts[t]
                tokens.append(d.tree.tokens[node])
                positions.append(f.root_positions[t] + d.tree.depths[node])
                visible.append([*f.seens[t], *(d.columns[a] for a in d.tree.path_to(node)[:-1]),
                                start + i])
            queries.append(Query(row, tokens, positions, visible))
            picked.append((f, cands, start))
        if not queries:
            return
        logits = pool.forward(queries)
        for b, (f, cands, start) in enumerate(picked):
            f.taken += 1
            f.drafts[0].forwards += 1
            for t, d in enumerate(f.drafts):
                mine = [(i, node) for i, (u, node) in enumerate(cands) if u == t]
                if not mine:
                    continue
                for i, node in mine:
                    d.columns[node] = start + i
                children_of(d, [node for _, node in mine], logits[b, [i for i, _ in mine]],
                            f.shape.max_branch_width, decay)
            _prune_forest(f.drafts, f.bases, f.shape.max_budget)


def grow(pool: KVPool, draft: Draft, shape: TreeShape, steps: int, root_pos: int,
         seen: list[int], decay: float = DECAY, stop: Callable[[], bool] | None = None) -> int:
    """Run up to ``steps`` SpecExec expansion steps on ``draft``; returns the steps taken.

    ``seen`` lists work columns every node attends to beyond the committed prefix (catch-up
    tokens, or the path a proactive tree hangs from); ``root_pos`` is the root's position.
    """
    return grow_forest(pool, [draft], [0.0], shape, steps, [root_pos], [seen], decay, stop)


def grow_forest(pool: KVPool, drafts: list[Draft], bases: list[float], shape: TreeShape,
                steps: int, root_positions: list[int], seens: list[list[int]],
                decay: float = DECAY, stop: Callable[[], bool] | None = None) -> int:
    """One :class:`Forest` grown alone; returns the steps it took."""
    forest = Forest(drafts, bases, shape, root_positions, seens, steps)
    grow_forests(pool, [forest], decay, stop)
    return forest.taken


@torch.inference_mode()
def draft_trees(pool: KVPool, rows: list[KVRow], pendings: list[list[int]], roots: list[int],
                shapes: list[TreeShape], top_k: int = 0) -> list[Draft]:
    """Draft one tree per request (its draft KV row, the committed tokens not yet in it, its
    root, its shape), with one batched draft forward per level for them all; each tree is
    the one :func:`draft_tree` grows for that request alone. ``top_k``: next tokens to
    remember per forwarded node (for the outcome model)."""
    queries, drafts = [], []
    for row, pending, root in zip(rows, pendings, roots, strict=True):
        pool.drop_work(row)
        excess = len(pending) + 1 - pool.max_tokens
        if excess > 0:  # more catch-up than the largest bucket: commit the excess first
            prefill(pool, row, pending[:excess])
            pending = pending[excess:]
        # Step one forwards the catch-up tokens (causal) together with the root.
        start = row.used
        queries.append(causal_query(row, [*pending, root], row.length))
        drafts.append(Draft(tree=TokenTree.rooted(root), row=row,
                            pending_cols=[start + i for i in range(len(pending))],
                            columns={0: start + len(pending)}, forwards=1, top_k=top_k))
    logits = pool.forward(queries)
    forests = []
    for b, (d, shape) in enumerate(zip(drafts, shapes, strict=True)):
        n0 = len(d.pending_cols) + 1
        children_of(d, [0], logits[b, n0 - 1 : n0], shape.max_branch_width, DECAY)
        _prune_forest([d], [0.0], shape.max_budget)
        root_pos = d.row.length + len(d.pending_cols)
        forests.append(Forest([d], [0.0], shape, [root_pos], [d.pending_cols],
                              shape.max_beam_len - 1))
    grow_forests(pool, forests)
    return drafts


def draft_tree(pool: KVPool, row: KVRow, pending: list[int], root: int,
               shape: TreeShape, top_k: int = 0) -> Draft:
    """Draft one request's tree (:func:`draft_trees` for one)."""
    return draft_trees(pool, [row], [pending], [root], [shape], top_k)[0]


@torch.inference_mode()
def resume_draft(pool: KVPool, draft: Draft, shape: TreeShape, steps: int) -> Draft:
    """Keep growing a tree whose root and some nodes already have KV in the work area,
    within ``shape``'s budget (which may be smaller than the one it was grown to so far)."""
    grow(pool, draft, shape, steps, draft.row.length, draft.pending_cols)
    _prune_forest([draft], [0.0], shape.max_budget)
    return draft


def best_nodes(scores: Sequence[Sequence[float]], bases: Sequence[float],
               budget: int) -> list[list[int]] | None:
    """**SpecExec's budget**, written once: each tree's root and, of every tree's other nodes
    together, the ``budget`` best by the tree's base plus the node's score, in index order
    per tree (None: all fit). A child scores strictly below its parent (log-probabilities
    <= 0, a decay < 1) and ties go to the earlier node, so each tree stays a tree."""
    ranked = sorted((-(bases[t] + s[i]), t, i) for t, s in enumerate(scores)
                    for i in range(1, len(s)))
    if len(ranked) <= budget:
        return None
    best: list[list[int]] = [[0] for _ in scores]
    for _, t, i in ranked[:budget]:
        best[t].append(i)
    return [sorted(b) for b in best]


def _prune_forest(drafts: list[Draft], bases: list[float], budget: int) -> None:
    """Keep every root and the ``budget`` best other nodes of the forest (:func:`best_nodes`),
    with their KV columns and remembered next tokens."""
    best = best_nodes([d.tree.scores for d in drafts], bases, budget)
    if best is None:
        return
    for d, keep in zip(drafts, best, strict=True):
        d.tree.keep_nodes(keep)
        remap = {old: new for new, old in enumerate(keep)}
        d.columns = {remap[o]: col for o, col in d.columns.items() if o in remap}
        d.dists = {remap[o]: dist for o, dist in d.dists.items() if o in remap}


def accepted_columns(draft: Draft, accepted_path: list[int]) -> list[int]:
    """Work columns to keep: the catch-up tokens, then the accepted nodes it forwarded."""
    cols = list(draft.pending_cols)
    for node in accepted_path:
        if node not in draft.columns:
            break  # later nodes were never forwarded either; the next round catches them up
        cols.append(draft.columns[node])
    return cols


def commit_draft(pool: KVPool, draft: Draft, accepted_path: list[int]) -> None:
    """Keep the draft KV of the catch-up tokens and of the accepted nodes it forwarded."""
    pool.keep([(draft.row, accepted_columns(draft, accepted_path))])
