"""One request being generated: its committed tokens, its caches and when it must stop."""

from __future__ import annotations

from dataclasses import dataclass, field

from specedge.datasets import Request
from specedge.kv_cache import KVRow


@dataclass
class Sequence:
    request: Request
    prompt_ids: list[int]
    max_new_tokens: int
    eos_token_id: int | None
    generated: list[int] = field(default_factory=list)
    target_row: KVRow | None = None  # KV rows, held while the request is being served
    draft_row: KVRow | None = None
    finished: bool = False
    steps: int = 0

    @property
    def tokens(self) -> list[int]:
        return self.prompt_ids + self.generated

    @property
    def root(self) -> int:
        """The last committed token: the next tree's root (never in a cache yet)."""
        return self.tokens[-1]

    def pending_for(self, row: KVRow | None) -> list[int]:
        """Committed tokens that ``row`` lacks, except the root."""
        return self.tokens[(row.length if row is not None else 0) : -1]

    def commit(self, new_tokens: list[int]) -> list[int]:
        """Append tokens as plain decoding would: stop after EOS or at max_new_tokens.

        Returns the tokens actually kept.
        """
        kept = []
        for tok in new_tokens:
            if len(self.generated) >= self.max_new_tokens:
                break
            self.generated.append(tok)
            kept.append(tok)
            if tok == self.eos_token_id:
                break
        if len(self.generated) >= self.max_new_tokens or (
                self.generated and self.generated[-1] == self.eos_token_id):
            self.finished = True
        return kept
