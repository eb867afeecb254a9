"""Goodput-optimal verification: the server's one budget per step, shared by the batch's trees.

Each edge sizes its own tree for its own speed, but the scarce resource is the shared server:
a batch of B full trees can push its forward past the point where it is memory-bound, so a
step verifies many nodes for few tokens. Instead the server keeps, across all the batch's
trees, the roots and the K non-root nodes most likely to be accepted, with K chosen to
maximise expected tokens per second of server time:

    goodput(K) = (B + sum of the K best survivals) / step_seconds(B + K)

A node's *survival* is the edge's calibrated probability that the target accepts the path to
it (:func:`specedge.algorithm.outcomes.accepted_probabilities`), so the expected accepted
tokens of a tree are the sum of its nodes' survivals, and each row's bonus token counts one.
A child's survival never exceeds its parent's, so the best K are prefix-closed: every kept
node's parent is kept, and each tree stays a tree. When K = 0 the step is plain batched
decoding, one token per row.

Survivals travel as one byte per node on a log scale (:func:`encode` / :func:`decode`); the
server never trusts them blindly (:func:`sanitized`: clamped to [0, 1] and to the parent's
value), and caps what one tree may ask for.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the simulator imports this without torch
    from specedge.algorithm.tree import TokenTree

STEPS_PER_HALVING = 8  # wire resolution: 2 ** (1/8), a 9 % step
_FLOOR = 255  # the largest byte: survival 2 ** (-255/8), about 2e-10


def encode(survivals: Sequence[float]) -> bytes:
    """One byte per node: round(-8 log2 p), clamped to 0..255 (0 is certain, 255 is ~0)."""
    out = bytearray()
    for p in survivals:
        if not p > 0.0:  # zero, negative or NaN: the least likely value
            out.append(_FLOOR)
        else:
            out.append(min(_FLOOR, max(0, round(-STEPS_PER_HALVING * math.log2(min(p, 1.0))))))
    return bytes(out)


def decode(raw: bytes) -> list[float]:
    return [0.0 if b == _FLOOR else 2.0 ** (-b / STEPS_PER_HALVING) for b in raw]


def sanitized(survivals: Sequence[float], parents: Sequence[int]) -> list[float]:
    """What the server takes from an edge: each value clamped to [0, 1] and to its parent's
    (a child cannot outlive its parent); the root is 1. Parents precede children."""
    out = [1.0] * len(parents)
    for i in range(1, len(parents)):
        p = survivals[i] if i < len(survivals) else 0.0
        p = 0.0 if not p > 0.0 else min(p, 1.0)
        out[i] = min(p, out[parents[i]])
    return out


def ranked(survivals: Sequence[float]) -> list[int]:
    """Non-root node indices, likeliest first; ties by index, so a parent (earlier) precedes a
    child of equal survival and every prefix of the ranking is prefix-closed (any value that
    never grows down a path ranks alike: the drafter's scores too)."""
    return sorted(range(1, len(survivals)), key=lambda i: (-survivals[i], i))


def kept_nodes(survivals: Sequence[float], count: int) -> list[int]:
    """The root and the ``count`` likeliest other nodes, in index order: what the server
    verifies of a tree it keeps ``count`` nodes of, and what the edge reconstructs from its
    own survivals and that count."""
    return [0, *sorted(ranked(survivals)[:count])]


@dataclass
class IdleHorizon:
    """When the next pipeline group will be ready: each edge's last answer plus its usual gap
    until its next tree arrives (drafting and the link both ways, a running mean). Until then
    the server would idle, so a step that ends by then verifies its extra nodes for free."""

    weight: float = 0.5  # of the newest gap in the running mean
    answered: dict[int, float] = dataclasses.field(default_factory=dict)
    gap: dict[int, float] = dataclasses.field(default_factory=dict)

    def arrived(self, client: int, now: float) -> None:
        if client in self.answered:
            new = max(0.0, now - self.answered.pop(client))
            old = self.gap.get(client)
            self.gap[client] = new if old is None else old + self.weight * (new - old)

    def answer(self, client: int, now: float) -> None:
        self.answered[client] = now

    def mean_gap(self, clients: set[int]) -> float | None:
        """The mean of ``clients``' gaps (None until each has one)."""
        gaps = [self.gap.get(c) for c in clients]
        if not gaps or any(g is None for g in gaps):
            return None
        return sum(gaps) / len(gaps)  # type: ignore[arg-type]

    def seconds(self, clients: set[int], now: float) -> float:
        """Until every one of ``clients`` is expected back: one whose tree is in counts as
        back now; one whose gap is not known yet makes it 0 (nothing is assumed free)."""
        ready = now
        for c in clients:
            if c in self.answered:  # drafting its next tree
                if c not in self.gap:
                    return 0.0
                ready = max(ready, self.answered[c] + self.gap[c])
        return ready - now


def cycle_seconds(groups: int, edges: int, row_tokens: float, gap_s: float,
                  step_seconds: Callable[[float], float]) -> float:
    """One turn of every edge when ``edges`` edges take turns in ``groups`` groups: each
    group's step verifies its rows' ``row_tokens`` new tokens each, and an edge is back
    ``gap_s`` after its answer (drafting and the link). The server is the bottleneck
    (``groups`` steps back to back) unless a group's gap outlasts the other groups' steps."""
    step = step_seconds(-(-edges // groups) * row_tokens)
    return max(groups * step, step + gap_s)


REGROUP_MARGIN = 0.05  # another group count must shorten the cycle this much to be taken


def pipeline_groups(current: int, most: int, edges: int, row_tokens: float,
                    gap_s: Callable[[int], float],
                    step_seconds: Callable[[float], float]) -> int:
    """**The pipeline's group count, by the goodput objective.** Every edge yields the same
    tokens per turn whatever the grouping, so expected tokens per second are highest for the
    shortest cycle: several groups pay only while edges draft long enough to hide the other
    groups' verification; otherwise one group of every edge (one step where the server is
    memory-bound costs about what a smaller one does). ``gap_s(g)``: the edges' gap under
    ``g`` groups (edges that share hardware draft slower when more of them draft at once).
    ``current`` is kept unless another count (1..``most``) is shorter by
    :data:`REGROUP_MARGIN`."""
    def cycle(g: int) -> float:
        return cycle_seconds(g, edges, row_tokens, gap_s(g), step_seconds)

    best = min(range(1, most + 1), key=lambda g: (cycle(g), g))
    return best if cycle(best) < (1 - REGROUP_MARGIN) * cycle(current) else current


SHARE_HEADROOM = 1.5  # an edge drafts this many times the share a goodput server last kept
SHARE_FLOOR = 4  # ... and never fewer nodes than this (a share of 0 must be able to grow)


def next_share(kept: int, sent: int, share: int | None) -> int | None:
    """The nodes an edge drafts next round (``None``: its own shape) after the server kept
    ``kept`` of the ``sent`` non-root nodes of its tree, drafted under ``share``: about what
    was kept, with headroom, when the budget bound (it cut the tree, or kept a tree that filled
    the share whole: the share may grow). A tree kept whole that was smaller than its share
    did not meet the budget, so the share stays: a short tree (a reply near its end, a shallow
    draft) must not shrink the next ones when the server would have verified them whole."""
    if kept >= sent and (share is None or sent < share):
        return share
    return max(SHARE_FLOOR, math.ceil(SHARE_HEADROOM * kept))


def replay_fields(tree: TokenTree, survivals: Sequence[float],
                  path: Sequence[int]) -> dict[str, object]:
    """A round's record fields from which the simulator replays a budget on its tree: the
    survivals as the wire carries them (hex), the parents, the accepted path (root excluded)."""
    return {"survival": encode(survivals).hex(), "parents": list(tree.parents),
            "path": list(path[1:])}


def replayed_survivals(survival_hex: str, parents: Sequence[int]) -> list[float]:
    """What a goodput server makes of a recorded round's survivals (decoded, sanitized)."""
    return sanitized(decode(bytes.fromhex(survival_hex)), parents)


@dataclass(frozen=True)
class StepTable:
    """Seconds of a verification step by its new tokens, measured at a few sizes
    (piecewise linear between them, extended along the last segment beyond): a roofline is
    flat while memory-bound and grows once compute-bound, which a straight line misses."""

    tokens: tuple[int, ...]
    seconds: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.tokens) < 2 or list(self.tokens) != sorted(set(self.tokens)):
            raise ValueError(f"a step table needs two or more increasing token counts, got "
                             f"{list(self.tokens)}")

    def __call__(self, tokens: float) -> float:
        return max(0.0, sum(w * self.seconds[i] for i, w in hat_weights(self.tokens, tokens)))

    def non_decreasing(self) -> StepTable:
        """Each knot no dearer than any larger one. A step of more tokens timed cheaper (a
        disturbed timing, or more rows: 6 rows of 4 tokens beside 4 rows of 8) made the
        budget shun that size, so no forward ever came near it to correct it (a start-up
        table once put 24 tokens at 202 ms between 16 at 95 and 32 at 120); clamped, the
        steps the server then runs refit it (:class:`OnlineStepCost`)."""
        seconds = list(self.seconds)
        for i in range(len(seconds) - 2, -1, -1):
            seconds[i] = min(seconds[i], seconds[i + 1])
        return StepTable(self.tokens, tuple(seconds))


STEP_CONTEXT = 256  # KV columns per row a start-up step is timed over


def step_knots(batches: Sequence[int], tree_nodes: int,
               buckets: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """The steps a step table holds, as (new tokens, rows), by new tokens: for each batch
    size a step may have (``batches``), each row 1 new token, each graph bucket of new tokens
    a row below a full tree (``model.token_buckets``: the shapes a static path pads to,
    where its cost steps), and a full tree; a token count two sizes share is timed at the
    fewer rows. The real server times them at start-up, the simulator reads them off its
    latency model."""
    per_row = sorted({1, tree_nodes, *(b for b in buckets if b < tree_nodes)})
    knots: dict[int, int] = {}
    for rows in sorted(set(batches)):
        for n in per_row:
            knots.setdefault(rows * n, rows)
    return tuple(sorted(knots.items()))


class OnlineStepCost:
    """The step cost a budget uses, refitted from the server's own forwards: the table's values
    at its token counts (the knots: the shapes the start-up table measured, and the graph
    buckets a static path pads to) are a least-squares fit of the last ``window`` forwards,
    each knot pulled toward its start-up value, scaled by how much slower (or faster) the
    window's forwards ran than the start-up table says they would, as ``prior_weight``
    forwards would pull it (a knot no forward came near keeps its start-up value so scaled:
    were it kept as measured, a load that slows every step would make the sizes the server
    seldom runs, a merged group's, look cheap beside the ones it runs). So the budget follows
    what steps really cost at the context and load the server serves, not only what a
    start-up step at one context cost. ``window=0`` keeps the start-up table. It also keeps
    the rows' mean new tokens a step (``row_tokens``, a running mean), which the group count
    weighs. The simulator's server uses this class too, observing its simulated forwards.
    Callers leave out steps that prefill a prompt: a one-off far larger than any tree, it
    would skew the rows' mean and, beyond the last knot, the fit."""

    def __init__(self, prior: StepTable, window: int = 256, prior_weight: float = 4.0) -> None:
        if window < 0 or prior_weight <= 0:
            raise ValueError(f"window must be >= 0 (got {window}) and prior_weight > 0 (got "
                             f"{prior_weight})")
        self.prior, self.table = prior, prior
        self.window, self.prior_weight = window, prior_weight
        self.observed: collections.deque[tuple[float, float]] = collections.deque()
        self.forwards = 0
        self.row_tokens = 0.0
        # The normal equations of sum over the window (hat(tokens) . y - seconds)^2 +
        # prior_weight * sum over knots (y_k - scale * prior_k)^2, kept as forwards enter and
        # leave; scale = the window's seconds over what the start-up table predicted for them.
        n = len(prior.tokens)
        self._gram = prior_weight * np.eye(n)
        self._rhs = np.zeros(n)
        self._seconds = self._predicted = 0.0

    @property
    def scale(self) -> float:
        """The window's forwards' time over what the start-up table predicted for them."""
        return self._seconds / self._predicted if self._predicted > 0 else 1.0

    def __call__(self, tokens: float) -> float:
        return self.table(tokens)

    def observe(self, tokens: float, seconds: float, rows: int = 1) -> None:
        """A forward of ``rows`` rows over ``tokens`` new tokens took ``seconds``: refit."""
        weight = ROW_TOKENS_WEIGHT if self.forwards else 1.0
        self.row_tokens += weight * (tokens / rows - self.row_tokens)
        self.forwards += 1
        if self.window == 0 or not (seconds >= 0.0 and math.isfinite(seconds)):
            return
        self._add(float(tokens), seconds, 1.0)
        self.observed.append((float(tokens), seconds))
        if len(self.observed) > self.window:
            self._add(*self.observed.popleft(), -1.0)
        rhs = self._rhs + self.prior_weight * self.scale * np.array(self.prior.seconds)
        fitted = np.linalg.solve(self._gram, rhs)
        self.table = StepTable(self.prior.tokens, tuple(max(0.0, float(v)) for v in fitted))

    def _add(self, tokens: float, seconds: float, sign: float) -> None:
        self._seconds += sign * seconds
        self._predicted += sign * self.prior(tokens)
        weights = hat_weights(self.prior.tokens, tokens)
        for i, wi in weights:
            self._rhs[i] += sign * wi * seconds
            for j, wj in weights:
                self._gram[i, j] += sign * wi * wj


ROW_TOKENS_WEIGHT = 0.2  # of the newest step in the rows' running mean of new tokens


def hat_weights(knots: Sequence[float], tokens: float) -> list[tuple[int, float]]:
    """The knots' weights in :class:`StepTable`'s value at ``tokens`` (its interpolation as
    a linear function of the knots' values: flat below the first, along the last segment
    beyond the last)."""
    if tokens <= knots[0]:
        return [(0, 1.0)]
    i = next((k for k, x in enumerate(knots) if x >= tokens), len(knots) - 1)
    w = (tokens - knots[i - 1]) / (knots[i] - knots[i - 1])
    return [(i - 1, 1.0 - w), (i, w)]


@dataclass(frozen=True)
class Budget:
    """One step's verification budget: non-root nodes kept per tree."""

    kept: list[int]  # per tree of the batch
    expected_tokens: float  # bonus tokens plus the kept nodes' survivals
    step_s: float  # the cost model's seconds for the step

    @property
    def total(self) -> int:
        return sum(self.kept)

    @property
    def goodput(self) -> float:
        return self.expected_tokens / self.step_s if self.step_s > 0 else math.inf


CUT_MARGIN = 0.02  # a cut must promise this much more goodput than verifying every node sent


def choose_budget(survivals: Sequence[Sequence[float]], step_seconds: Callable[[int], float],
                  cap: int | None = None) -> Budget:
    """The K that maximises expected tokens per second of a step verifying the batch's roots
    and its K likeliest non-root nodes (``step_seconds(tokens)``: the forward over that many
    new tokens). ``survivals[b]`` are tree b's, sanitized; ``cap`` bounds each tree's share.
    Every node sent (up to ``cap``) is kept unless the best K promises :data:`CUT_MARGIN`
    more: the cost model and the survivals are estimates a few per cent off, so a smaller
    cut is as likely to lose as to win, and it changes what the edges draft next (where the
    step is memory-bound the budget then is exactly fixed trees). Among cuts, ties go to the
    smaller K."""
    rows = len(survivals)
    order = sorted(((-s[i], b, i) for b, s in enumerate(survivals) for i in ranked(s)[:cap]))
    best = Budget([0] * rows, float(rows), step_seconds(rows))
    kept = [0] * rows
    expected = float(rows)
    for k, (neg, b, _) in enumerate(order, start=1):
        kept[b] += 1
        expected -= neg
        seconds = step_seconds(rows + k)
        if expected * best.step_s > best.expected_tokens * seconds * (1 + 1e-12):
            best = Budget(list(kept), expected, seconds)
    everything = Budget(kept, expected, step_seconds(rows + len(order)))
    if best.expected_tokens * everything.step_s <= (
            (1 + CUT_MARGIN) * everything.expected_tokens * best.step_s):
        return everything
    return best


def pruned(trees: Sequence[TokenTree], survivals: Sequence[Sequence[float]],
           step_seconds: Callable[[int], float]) -> tuple[Budget, list[TokenTree], list[list[int]]]:
    """The step's budget, the trees cut to it (copies) and, per tree, the nodes kept (indices
    in the tree as sent: a verdict's path on a cut tree maps back through them)."""
    budget = choose_budget(survivals, step_seconds)
    cut, keeps = [], []
    for tree, s, n in zip(trees, survivals, budget.kept, strict=True):
        keep = kept_nodes(s, n)
        copy = dataclasses.replace(tree)
        copy.keep_nodes(keep)
        cut.append(copy)
        keeps.append(keep)
    return budget, cut, keeps
