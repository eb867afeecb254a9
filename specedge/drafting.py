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
from transformers import DynamicCache, PreTrainedModel

from specedge.kv_cache import RequestCache, Rows, forward_rows
from specedge.tree import NodeStatus, TokenTree

DECAY = math.log(0.9)  # per-level score decay of SpecExec's budget


@dataclass(frozen=True)
class TreeShape:
    max_n_beams: int
    max_beam_len: int
    max_branch_width: int
    max_budget: int


@dataclass
class Draft:
    """A drafted tree plus what the draft model computed for it (needed to commit its KV)."""

    tree: TokenTree
    work_cache: DynamicCache | None  # prefix + every node forwarded while drafting
    pending_cols: list[int]  # columns of the catch-up tokens forwarded in the first step
    slots: dict[int, int] = field(default_factory=dict)  # node -> column in work_cache
    forwards: int = 0  # draft model calls spent


def _children_of(tree: TokenTree, parents: list[int], logits: torch.Tensor, width: int,
                 decay: float) -> None:
    logp = torch.log_softmax(logits.float(), dim=-1)
    top = logp.topk(width, dim=-1)
    for row, parent in enumerate(parents):
        tree.status[parent] = NodeStatus.forwarded
        base = tree.scores[parent] + decay
        for lp, tok in zip(top.values[row].tolist(), top.indices[row].tolist(), strict=True):
            tree.add_child(parent, tok, base + lp)


def _candidates(tree: TokenTree, shape: TreeShape, decay: float) -> list[int]:
    open_nodes = [i for i, s in enumerate(tree.status) if s == NodeStatus.pending]
    if len(tree) - 1 >= shape.max_budget:
        # A full budget only admits a child that beats the worst kept node.
        worst = min(tree.scores[1:])
        open_nodes = [i for i in open_nodes if tree.scores[i] + decay > worst]
    open_nodes.sort(key=lambda i: (-tree.scores[i], i))
    return open_nodes[: shape.max_n_beams]


def grow(model: PreTrainedModel, cache: RequestCache, draft: Draft, shape: TreeShape,
         steps: int, root_pos: int, seen: list[int], decay: float = DECAY,
         stop: Callable[[], bool] | None = None) -> int:
    """Run up to ``steps`` SpecExec expansion steps on ``draft``; returns the steps taken.

    ``seen`` lists work-cache columns every node attends to beyond ``cache`` (catch-up tokens,
    or the path a proactive tree hangs from); ``root_pos`` is the root's position. ``stop`` is
    asked before each step (proactive drafting ends when the server's reply is in).
    """
    hidden = [-(c + 1) for c in seen]
    for step in range(steps):
        if stop is not None and stop():
            return step
        cands = _candidates(draft.tree, shape, decay)
        if not cands:
            return step
        tree = draft.tree
        visible = [[*hidden, *(-(draft.slots[a] + 1) for a in tree.path_to(node)[:-1]), i]
                   for i, node in enumerate(cands)]
        rows = Rows(tokens=[tree.tokens[c] for c in cands],
                    positions=[root_pos + tree.depths[c] for c in cands], visible=visible)
        logits, draft.work_cache, start = forward_rows(
            model, [cache], [rows], cache=draft.work_cache, prefix_lens=[len(cache)])
        draft.forwards += 1
        for i, node in enumerate(cands):
            draft.slots[node] = start + i
        _children_of(tree, cands, logits[0, : len(cands)], shape.max_branch_width, decay)
        _prune(draft, shape.max_budget)
    return steps


@torch.inference_mode()
def draft_tree(model: PreTrainedModel, cache: RequestCache, pending: list[int], root: int,
               shape: TreeShape) -> Draft:
    """Draft one request's tree. ``pending`` are committed tokens not yet in ``cache``."""
    base = len(cache)
    root_pos = base + len(pending)
    n0 = len(pending) + 1
    # Step one forwards the catch-up tokens (causal) together with the root.
    first = Rows(tokens=[*pending, root], positions=list(range(base, root_pos + 1)),
                 visible=[list(range(i + 1)) for i in range(n0)])
    logits, work, start = forward_rows(model, [cache], [first])
    draft = Draft(tree=TokenTree.rooted(root), work_cache=work,
                  pending_cols=[start + i for i in range(len(pending))],
                  slots={0: start + len(pending)}, forwards=1)
    _children_of(draft.tree, [0], logits[0, n0 - 1 : n0], shape.max_branch_width, DECAY)
    _prune(draft, shape.max_budget)
    grow(model, cache, draft, shape, shape.max_beam_len - 1, root_pos, draft.pending_cols)
    return draft


@torch.inference_mode()
def resume_draft(model: PreTrainedModel, cache: RequestCache, draft: Draft, shape: TreeShape,
                 steps: int) -> Draft:
    """Keep growing a tree whose root and some nodes are already in ``draft.work_cache``."""
    grow(model, cache, draft, shape, steps, len(cache), draft.pending_cols)
    return draft


def _prune(draft: Draft, budget: int) -> None:
    kept = draft.tree.keep_top(budget)
    remap = {old: new for new, old in enumerate(kept)}
    draft.slots = {remap[o]: col for o, col in draft.slots.items() if o in remap}


@torch.inference_mode()
def commit_draft(cache: RequestCache, draft: Draft, accepted_path: list[int]) -> None:
    """Keep the draft KV of the catch-up tokens and of the accepted nodes it forwarded."""
    cols = list(draft.pending_cols)
    for node in accepted_path:
        if node not in draft.slots:
            break  # later nodes were never forwarded either; the next round catches them up
        cols.append(draft.slots[node])
    if draft.work_cache is not None:
        cache.keep(draft.work_cache, 0, 0, cols)
