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
from transformers import DynamicCache, PreTrainedModel

from specedge.config import ProactiveConfig, ProactiveType
from specedge.drafting import Draft, TreeShape, commit_draft, grow
from specedge.kv_cache import RequestCache, Rows, forward_rows
from specedge.tree import NodeStatus, TokenTree
from specedge.verification import Verdict

PROACTIVE_DECAY = math.log(0.95)


@dataclass
class Guess:
    leaf: int  # node of the current tree the guess hangs from
    token: int  # the bonus token the server is expected to emit after it
    draft: Draft  # the sub-tree rooted at ``token``; its slots index the current work cache
    steps: int  # growth steps spent on it


def shape_of(cfg: ProactiveConfig) -> TreeShape:
    return TreeShape(cfg.max_n_beams, cfg.max_beam_len, cfg.max_branch_width, cfg.max_budget)


@torch.inference_mode()
def draft_proactively(model: PreTrainedModel, cache: RequestCache, main: Draft,
                      cfg: ProactiveConfig, stop: Callable[[], bool] | None = None
                      ) -> Guess | None:
    """Guess the bonus token of ``main`` and grow a tree from it (run while the server works).

    ``stop`` (asked before each forward) says the server's reply is in: drafting further would
    only delay the next round, so the guess keeps the steps done so far.
    """
    tree = main.tree
    leaves = [i for i, s in enumerate(tree.status) if s == NodeStatus.pending]
    if not leaves or main.work_cache is None or (stop is not None and stop()):
        return None
    root_pos = len(cache) + len(main.pending_cols)
    hidden = [-(c + 1) for c in main.pending_cols]
    rows = Rows(tokens=[tree.tokens[n] for n in leaves],
                positions=[root_pos + tree.depths[n] for n in leaves],
                visible=[[*hidden, *(-(main.slots[a] + 1) for a in tree.path_to(n)[:-1]), i]
                         for i, n in enumerate(leaves)])
    logits, main.work_cache, start = forward_rows(model, [cache], [rows], cache=main.work_cache,
                                                  prefix_lens=[len(cache)])
    main.forwards += 1
    for i, node in enumerate(leaves):  # leaves now have KV: accepted ones need no catch-up
        main.slots[node] = start + i
        tree.status[node] = NodeStatus.forwarded
    best = torch.log_softmax(logits[0, : len(leaves)].float(), dim=-1).max(dim=-1)
    scores = [tree.scores[n] + PROACTIVE_DECAY + lp
              for n, lp in zip(leaves, best.values.tolist(), strict=True)]
    pick = max(range(len(leaves)), key=lambda i: (scores[i], -i))
    leaf, token = leaves[pick], int(best.indices[pick])

    sub = Draft(tree=TokenTree.rooted(token), work_cache=main.work_cache,
                pending_cols=[], slots={}, forwards=0)
    seen = [*main.pending_cols, *(main.slots[a] for a in tree.path_to(leaf))]
    steps = grow(model, cache, sub, shape_of(cfg), cfg.max_beam_len,
                 root_pos + tree.depths[leaf] + 1, seen, decay=PROACTIVE_DECAY, stop=stop)
    main.work_cache = sub.work_cache
    main.forwards += sub.forwards
    return Guess(leaf=leaf, token=token, draft=sub, steps=steps)


def is_hit(guess: Guess | None, verdict: Verdict) -> bool:
    return guess is not None and verdict.path[-1] == guess.leaf and verdict.bonus == guess.token


@torch.inference_mode()
def adopt(model: PreTrainedModel, cache: RequestCache, main: Draft, verdict: Verdict,
          guess: Guess) -> Draft:
    """After a hit: commit the accepted path, and re-base the sub-tree on the new cache."""
    commit_draft(cache, main, verdict.path)
    sub = guess.draft
    order = sorted(sub.slots, key=lambda n: sub.slots[n])
    assert main.work_cache is not None
    cols = torch.tensor([sub.slots[n] for n in order], dtype=torch.long,
                        device=main.work_cache.layers[0].keys.device)  # empty: stopped at once
    work = DynamicCache(config=model.config)
    for i, layer in enumerate(main.work_cache.layers):
        work.update(torch.cat([cache.keys[i], layer.keys.index_select(2, cols)], dim=2),
                    torch.cat([cache.values[i], layer.values.index_select(2, cols)], dim=2), i)
    base = len(cache)
    return Draft(tree=sub.tree, work_cache=work, pending_cols=[],
                 slots={n: base + i for i, n in enumerate(order)}, forwards=0)


def remaining_steps(cfg: ProactiveConfig, max_beam_len: int, guess: Guess) -> int:
    """Growth steps left for an adopted tree: ``included`` counts the proactive depth."""
    if cfg.type == ProactiveType.included:
        return max(0, max_beam_len - guess.steps)
    return max_beam_len
