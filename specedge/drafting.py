"""SpecExec drafting: grow a token tree with the draft model (the edge's job).

Semantics are the upstream README's: for up to ``max_beam_len`` steps, forward at most
``max_n_beams`` not-yet-forwarded nodes (best cumulative score first) through the draft model
with the tree mask; each proposes its ``max_branch_width`` most likely children, scored
``parent score + log(0.9) + log p(child)``; only the ``max_budget`` best nodes (root excluded)
are kept. Drafting stops early once no child of any candidate could enter a full budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from specedge.config import EdgeConfig, ProactiveConfig
from specedge.kv_cache import KVPool, KVRow, Query, causal_query, prefill
from specedge.tree import NodeStatus, TokenTree

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


def _top_children(logits: torch.Tensor, width: int) -> tuple[list[list[float]], list[list[int]]]:
    """Each row's ``width`` best tokens and their log-probabilities: one device-to-host copy."""
    top = torch.log_softmax(logits.float(), dim=-1).topk(width, dim=-1)
    both = torch.stack([top.values.double(), top.indices.double()]).cpu()
    return both[0].tolist(), both[1].long().tolist()


def _children_of(tree: TokenTree, parents: list[int], logits: torch.Tensor, width: int,
                 decay: float) -> None:
    values, indices = _top_children(logits, width)
    for parent, lps, toks in zip(parents, values, indices, strict=True):
        tree.status[parent] = NodeStatus.forwarded
        base = tree.scores[parent] + decay
        for lp, tok in zip(lps, toks, strict=True):
            tree.add_child(parent, tok, base + lp)


def _candidates(tree: TokenTree, shape: TreeShape, decay: float) -> list[int]:
    open_nodes = [i for i, s in enumerate(tree.status) if s == NodeStatus.drafted]
    if len(tree) - 1 >= shape.max_budget:
        # A full budget only admits a child that beats the worst kept node.
        worst = min(tree.scores[1:])
        open_nodes = [i for i in open_nodes if tree.scores[i] + decay > worst]
    open_nodes.sort(key=lambda i: (-tree.scores[i], i))
    return open_nodes[: shape.max_n_beams]


def grow(pool: KVPool, draft: Draft, shape: TreeShape, steps: int, root_pos: int,
         seen: list[int], decay: float = DECAY, stop: Callable[[], bool] | None = None) -> int:
    """Run up to ``steps`` SpecExec expansion steps on ``draft``; returns the steps taken.

    ``seen`` lists work columns every node attends to beyond the committed prefix (catch-up
    tokens, or the path a proactive tree hangs from); ``root_pos`` is the root's position.
    ``stop`` is asked before each step (proactive drafting ends when the server's reply is in).
    """
    for step in range(steps):
        if stop is not None and stop():
            return step
        cands = _candidates(draft.tree, shape, decay)
        if not cands:
            return step
        tree = draft.tree
        start = draft.row.used
        visible = [[*seen, *(draft.columns[a] for a in tree.path_to(node)[:-1]), start + i]
                   for i, node in enumerate(cands)]
        logits = pool.forward([Query(draft.row, [tree.tokens[c] for c in cands],
                                     [root_pos + tree.depths[c] for c in cands], visible)])
        draft.forwards += 1
        for i, node in enumerate(cands):
            draft.columns[node] = start + i
        _children_of(tree, cands, logits[0, : len(cands)], shape.max_branch_width, decay)
        _prune(draft, shape.max_budget)
    return steps


@torch.inference_mode()
def draft_tree(pool: KVPool, row: KVRow, pending: list[int], root: int,
               shape: TreeShape) -> Draft:
    """Draft one request's tree. ``pending`` are committed tokens not yet in ``row``."""
    pool.drop_work(row)
    excess = len(pending) + 1 - pool.max_tokens
    if excess > 0:  # more catch-up than the largest bucket: commit the excess first
        prefill(pool, row, pending[:excess])
        pending = pending[excess:]
    root_pos = row.length + len(pending)
    n0 = len(pending) + 1
    # Step one forwards the catch-up tokens (causal) together with the root.
    start = row.used
    logits = pool.forward([causal_query(row, [*pending, root], row.length)])
    draft = Draft(tree=TokenTree.rooted(root), row=row,
                  pending_cols=[start + i for i in range(len(pending))],
                  columns={0: start + len(pending)}, forwards=1)
    _children_of(draft.tree, [0], logits[0, n0 - 1 : n0], shape.max_branch_width, DECAY)
    _prune(draft, shape.max_budget)
    grow(pool, draft, shape, shape.max_beam_len - 1, root_pos, draft.pending_cols)
    return draft


@torch.inference_mode()
def resume_draft(pool: KVPool, draft: Draft, shape: TreeShape, steps: int) -> Draft:
    """Keep growing a tree whose root and some nodes already have KV in the work area."""
    grow(pool, draft, shape, steps, draft.row.length, draft.pending_cols)
    return draft


def _prune(draft: Draft, budget: int) -> None:
    kept = draft.tree.keep_top(budget)
    remap = {old: new for new, old in enumerate(kept)}
    draft.columns = {remap[o]: col for o, col in draft.columns.items() if o in remap}


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
