"""A request's draft -> verify -> commit round, written once.

:class:`Drafter` holds what drafting carries from one round to the next on a request's draft KV
row: the proactive sub-tree adopted after a hit, and the growth steps it may still take. The
edge (:mod:`specedge.edge`), server-only (:mod:`specedge.baselines`) and the tests drive the
same object:

    d = drafter.draft(seq.pending_for(drafter.row), seq.root)
    guess = drafter.draft_proactively(d, reply_is_in)   # while the target verifies
    verdict = ...                                       # the target's, over gRPC or in-process
    hit = drafter.commit(d, verdict, guess)
"""

from __future__ import annotations

from collections.abc import Callable

from specedge.config import ProactiveConfig, ProactiveType
from specedge.drafting import Draft, TreeShape, commit_draft, draft_tree, resume_draft
from specedge.kv_cache import KVPool, KVRow
from specedge.proactive import Guess, adopt, draft_proactively, is_hit, remaining_steps
from specedge.verification import Verdict


class Drafter:
    """Drafting for one request at a time on one draft KV row."""

    def __init__(self, pool: KVPool, row: KVRow, shape: TreeShape,
                 proactive: ProactiveConfig | None = None) -> None:
        self.pool, self.row, self.shape = pool, row, shape
        enabled = proactive is not None and proactive.type != ProactiveType.disabled
        self.proactive = proactive if enabled else None
        self.adopted: Draft | None = None  # the sub-tree a proactive hit handed over
        self.steps_left = shape.max_beam_len

    def reset(self) -> None:
        """A new request: nothing cached, nothing adopted."""
        self.pool.reset(self.row)
        self.adopted, self.steps_left = None, self.shape.max_beam_len

    @property
    def from_proactive(self) -> bool:
        """The next :meth:`draft` grows an adopted proactive sub-tree."""
        return self.adopted is not None

    def draft(self, pending: list[int], root: int) -> Draft:
        """This round's tree: the adopted sub-tree grown on, or a new one from ``root`` after
        catching up on ``pending`` committed tokens."""
        if self.adopted is not None:
            return resume_draft(self.pool, self.adopted, self.shape, self.steps_left)
        return draft_tree(self.pool, self.row, pending, root, self.shape)

    def draft_proactively(self, draft: Draft,
                          stop: Callable[[], bool] | None = None) -> Guess | None:
        """Grow the next tree from the likeliest bonus token while the target verifies
        ``draft`` (``stop``: the verdict is in); None when proactive drafting is off."""
        if self.proactive is None:
            return None
        return draft_proactively(self.pool, draft, self.proactive, stop)

    def commit(self, draft: Draft, verdict: Verdict, guess: Guess | None = None) -> bool:
        """Keep the accepted path's KV; on a proactive hit also keep the guessed sub-tree as
        the next round's tree. Returns whether the guess hit."""
        self.adopted = None
        hit = is_hit(guess, verdict)
        if hit and guess is not None and self.proactive is not None:
            self.adopted = adopt(self.pool, draft, verdict, guess)
            self.steps_left = remaining_steps(self.proactive, self.shape.max_beam_len, guess)
        else:
            commit_draft(self.pool, draft, verdict.path)
        return hit
