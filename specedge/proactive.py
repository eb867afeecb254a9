"""Proactive edge drafting: draft the next tree while the server verifies this one.

Upstream's rule, kept: forward the tree's unexpanded leaves once, take the single best
(leaf, next token) pair by ``leaf score + log(0.95) + log p(token)`` as the guess of where the
server will stop and which bonus token it will emit, and grow a sub-tree rooted at that token
(decay log 0.95, the ``edge.proactive`` shape). It is a *hit* when the deepest accepted node is
that leaf and the bonus is that token: the sub-tree, whose KV is already computed, becomes the
next round's tree. On a miss it is dropped. Either way the output is unchanged: the server
verifies whatever tree arrives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from specedge.config import ProactiveConfig, ProactiveType
from specedge.drafting import Draft, TreeShape, accepted_columns, grow
from specedge.kv_cache import KVPool, Query
from specedge.tree import NodeStatus, TokenTree
from specedge.verification import Verdict

PROACTIVE_DECAY = math.log(0.95)


@dataclass
class Guess:
    leaf: int  # node of the current tree the guess hangs from
    token: int  # the bonus token the server is expected to emit after it
    draft: Draft  # the sub-tree rooted at ``token``, in the same work area as the main tree
    steps: int  # growth steps spent on it


@torch.inference_mode()
def draft_proactively(pool: KVPool, main: Draft, cfg: ProactiveConfig,
                      stop: Callable[[], bool] | None = None) -> Guess | None:
    """Guess the bonus token of ``main`` and grow a tree from it (run while the server works).

    ``stop`` (asked before each forward) says the server's reply is in: drafting further would
    only delay the next round, so the guess keeps the steps done so far.
    """
    tree = main.tree
    leaves = [i for i, s in enumerate(tree.status) if s == NodeStatus.drafted]
    if not leaves or (stop is not None and stop()):
        return None
    row = main.row
    root_pos = row.length + len(main.pending_cols)
    start = row.used
    logits = pool.forward([Query(
        row, [tree.tokens[n] for n in leaves], [root_pos + tree.depths[n] for n in leaves],
        [[*main.pending_cols, *(main.columns[a] for a in tree.path_to(n)[:-1]), start + i]
         for i, n in enumerate(leaves)])])
    main.forwards += 1
    for i, node in enumerate(leaves):  # leaves now have KV: accepted ones need no catch-up
        main.columns[node] = start + i
        tree.status[node] = NodeStatus.forwarded
    best = torch.log_softmax(logits[0, : len(leaves)].float(), dim=-1).max(dim=-1)
    both = torch.stack([best.values.double(), best.indices.double()]).cpu()  # one copy
    values, tokens = both[0].tolist(), both[1].long().tolist()
    scores = [tree.scores[n] + PROACTIVE_DECAY + lp for n, lp in zip(leaves, values, strict=True)]
    pick = max(range(len(leaves)), key=lambda i: (scores[i], -i))
    leaf, token = leaves[pick], tokens[pick]

    sub = Draft(tree=TokenTree.rooted(token), row=row, pending_cols=[], columns={}, forwards=0)
    seen = [*main.pending_cols, *(main.columns[a] for a in tree.path_to(leaf))]
    steps = grow(pool, sub, TreeShape.of(cfg), cfg.max_beam_len, root_pos + tree.depths[leaf] + 1,
                 seen, decay=PROACTIVE_DECAY, stop=stop)
    main.forwards += sub.forwards
    return Guess(leaf=leaf, token=token, draft=sub, steps=steps)


def is_hit(guess: Guess | None, verdict: Verdict) -> bool:
    return guess is not None and verdict.path[-1] == guess.leaf and verdict.bonus == guess.token


@torch.inference_mode()
def adopt(pool: KVPool, main: Draft, verdict: Verdict, guess: Guess) -> Draft:
    """After a hit: commit the accepted path, and keep the sub-tree's KV right after it (one
    device-side move), as the next round's tree."""
    sub = guess.draft
    order = sorted(sub.columns, key=lambda n: sub.columns[n])  # empty: stopped at once
    new_cols = pool.keep_then_hold(main.row, accepted_columns(main, verdict.path),
                                   [sub.columns[n] for n in order])
    return Draft(tree=sub.tree, row=main.row, pending_cols=[],
                 columns=dict(zip(order, new_cols, strict=True)), forwards=0)
def remaining_steps(cfg: ProactiveConfig, max_beam_len: int, guess: Guess) -> int:
    """Growth steps left for an adopted tree: ``included`` counts the proactive depth."""
    if cfg.type == ProactiveType.included:
        return max(0, max_beam_len - guess.steps)
    return max_beam_len
