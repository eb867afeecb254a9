"""Proactive edge drafting: draft the next tree while the server verifies this one.

Both rules first forward the tree's unexpanded leaves once, so every node has the draft's
next-token distribution, then guess where verification will stop and which bonus token the
server will emit there, and grow the next round's tree from that token before the reply is in.
It is a *hit* when the server's outcome is a guessed one: that sub-tree, whose KV is already
computed, becomes the next round's tree. Misses are dropped. Either way the output is unchanged:
the server verifies whatever tree arrives.

- ``excluded`` / ``included`` (upstream's rule): one guess, the best (leaf, next token) pair by
  ``leaf score + log(0.95) + log p(token)``, one sub-tree (decay log 0.95, the
  ``edge.proactive`` shape). A hit needs the whole path down to that leaf accepted.
- ``cache`` (the speculation cache, after SSD/Saguaro): the ``max_guesses`` likeliest outcomes
  of the outcome model (:mod:`specedge.algorithm.outcomes`), inner nodes included, each a sub-tree;
  the sub-trees grow as one forest, one forward per step for all of them, their nodes ranked by the
  outcome's probability times their own, so likelier guesses get more of the ``edge.proactive``
  budget. Growth also stops when the next forward would outlast the wait the edge expects (its
  measured reply time), so drafting ahead does not delay the next round.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from specedge.algorithm.drafting import (
    Draft,
    TreeShape,
    accepted_columns,
    grow_forest,
    top_next,
)
from specedge.algorithm.outcomes import (
    Outcome,
    accepted_probabilities,
    next_token_probabilities,
    outcomes,
)
from specedge.algorithm.tree import NodeStatus, TokenTree
from specedge.algorithm.verification import Verdict
from specedge.base.config.edge import ProactiveConfig, ProactiveType
from specedge.engine.kv_pool import KVPool
from specedge.engine.query_plan import Query

PROACTIVE_DECAY = math.log(0.95)


@dataclass
class Guess:
    node: int  # node of the current tree where verification is guessed to stop
    token: int  # the bonus token the server is expected to emit after it
    probability: float  # the outcome model's estimate of this outcome
    draft: Draft  # the sub-tree rooted at ``token``, in the same work area as the main tree
    steps: int  # cache: levels of its sub-tree forwarded (0: no KV yet); upstream: steps taken


def next_tokens_kept(cfg: ProactiveConfig, max_branch_width: int) -> int:
    """Next tokens a tree remembers per forwarded node: enough for ``max_guesses`` outcomes at
    one node besides its drafted children."""
    return max_branch_width + (cfg.max_guesses if cfg.type == ProactiveType.cache else 1)


@torch.inference_mode()
def draft_proactively(pool: KVPool, main: Draft, cfg: ProactiveConfig,
                      stop: Callable[[], bool] | None = None,
                      calibration: Callable[[float, int], float] | None = None) -> list[Guess]:
    """Guess the outcomes of ``main``'s verification and grow a tree from each (run while the
    server works); the likeliest guess first.

    ``stop`` (asked before each forward) says the server's reply is in, or that it is expected
    before another forward would finish: the guesses keep the steps done so far.
    ``calibration`` maps the draft's probabilities to the target's (:class:`Calibration`).
    """
    calibrate = calibration or (lambda q, rank: q)
    leaves = _forward_leaves(pool, main, stop)
    if not leaves:
        return []
    cache = cfg.type == ProactiveType.cache
    if cache:
        chosen = [o for o in outcomes(main.tree, main.dists, cfg.max_guesses, calibrate)
                  if o.probability > 0.0]
    else:
        chosen = [_upstream_guess(main, leaves, calibrate)]
    if not chosen:
        return []
    tree, row = main.tree, main.row
    root_pos = row.length + len(main.pending_cols)
    subs = [Draft(tree=TokenTree.rooted(o.token), row=row, pending_cols=[], top_k=main.top_k)
            for o in chosen]
    seens = [[*main.pending_cols, *(main.columns[a] for a in tree.path_to(o.node))]
             for o in chosen]
    # Upstream grows its one sub-tree on its own scores; the cache ranks the forest's nodes
    # by their guess's log-probability on top.
    bases = [math.log(o.probability) if cache else 0.0 for o in chosen]
    steps = grow_forest(pool, subs, bases, TreeShape.of(cfg), cfg.max_beam_len,
                [root_pos + tree.depths[o.node] + 1 for o in chosen], seens,
                decay=PROACTIVE_DECAY, stop=stop)
    main.forwards += subs[0].forwards
    subs[0].forwards = 0
    # A cache guess counts the levels its own sub-tree got; upstream's, the steps taken.
    return [Guess(node=o.node, token=o.token, probability=o.probability, draft=sub,
                  steps=1 + max((sub.tree.depths[n] for n in sub.columns), default=-1)
                  if cache else steps)
            for o, sub in zip(chosen, subs, strict=True)]


def _forward_leaves(pool: KVPool, main: Draft, stop: Callable[[], bool] | None) -> list[int]:
    """Forward the tree's unexpanded leaves once: their next-token distributions (and KV, so
    accepted ones need no catch-up). Returns them; none when there are none or no time."""
    tree = main.tree
    leaves = [i for i, s in enumerate(tree.status) if s == NodeStatus.drafted]
    if not leaves or (stop is not None and stop()):
        return []
    row = main.row
    root_pos = row.length + len(main.pending_cols)
    start = row.used
    logits = pool.forward([Query(
        row, [tree.tokens[n] for n in leaves], [root_pos + tree.depths[n] for n in leaves],
        [[*main.pending_cols, *(main.columns[a] for a in tree.path_to(n)[:-1]), start + i]
         for i, n in enumerate(leaves)])])
    main.forwards += 1
    values, indices = top_next(logits[0, : len(leaves)], max(main.top_k, 1))
    for i, node in enumerate(leaves):
        main.columns[node] = start + i
        tree.status[node] = NodeStatus.forwarded
        main.dists[node] = (indices[i], values[i])
    return leaves


def _upstream_guess(main: Draft, leaves: list[int],
                    calibrate: Callable[[float, int], float]) -> Outcome:
    """Upstream's one guess: the best (leaf, next token) by decayed score (and the outcome
    model's estimate of it)."""
    tree = main.tree
    scores = [tree.scores[n] + PROACTIVE_DECAY + main.dists[n][1][0] for n in leaves]
    leaf = leaves[max(range(len(leaves)), key=lambda i: (scores[i], -i))]
    token = main.dists[leaf][0][0]
    nexts = next_token_probabilities({leaf: main.dists[leaf]}, calibrate)[leaf]
    return Outcome(leaf, token,
                   accepted_probabilities(tree, main.dists, calibrate)[leaf] * nexts[token])


def hit_of(guesses: list[Guess], verdict: Verdict) -> int | None:
    """Which guess (its index) the server's outcome is, if any."""
    outcome = (verdict.path[-1], verdict.bonus)
    return next((i for i, g in enumerate(guesses) if (g.node, g.token) == outcome), None)


@torch.inference_mode()
def adopt(pool: KVPool, main: Draft, verdict: Verdict, guess: Guess) -> Draft:
    """After a hit: commit the accepted path, and keep the sub-tree's KV right after it (one
    device-side move), as the next round's tree."""
    sub = guess.draft
    order = sorted(sub.columns, key=lambda n: sub.columns[n])  # empty: stopped at once
    new_cols = pool.keep_then_hold(main.row, accepted_columns(main, verdict.path),
                                   [sub.columns[n] for n in order])
    return Draft(tree=sub.tree, row=main.row, pending_cols=[],
                 columns=dict(zip(order, new_cols, strict=True)), forwards=0,
                 dists=sub.dists, top_k=sub.top_k)


def remaining_steps(cfg: ProactiveConfig, max_beam_len: int, guess: Guess) -> int:
    """Growth steps left for an adopted tree: ``included`` counts the proactive depth;
    ``excluded`` and ``cache`` grow a full ``max_beam_len`` on it (measured on the tiny pair,
    16 requests: the cache made 163 tokens/s this way against 138 counting its depth)."""
    if cfg.type == ProactiveType.included:
        return max(0, max_beam_len - guess.steps)
    return max_beam_len
