"""One request being generated: its committed tokens, its caches and when it must stop; its
prompt's tokens and its output record."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge.base.records import OutputRecord
from specedge.engine.datasets import Request
from specedge.engine.query_plan import KVRow


@dataclass
class Sequence:
    request: Request
    prompt_ids: list[int]
    max_new_tokens: int
    eos_token_id: int | None
    generated: list[int] = field(default_factory=list)
    target_row: KVRow | None = None  # its target KV row while it is being served
    finished: bool = False
    steps: int = 0
    # Its committed tokens come from an edge that died: the next round prefills them all.
    resumed: bool = False

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


def encode_prompt(tokenizer: PreTrainedTokenizerBase, request: Request,
                  chat_template: bool) -> list[int]:
    # A rendered chat template already holds any BOS the model wants; plain text gets the
    # tokenizer's own special tokens, as generate() users would.
    return tokenizer(request.prompt, add_special_tokens=not chat_template)["input_ids"]


def output_record(seq: Sequence, tokenizer: PreTrainedTokenizerBase) -> OutputRecord:
    return OutputRecord(
        request_id=seq.request.index, category=seq.request.category, prompt=seq.request.prompt,
        prompt_ids=seq.prompt_ids, output_ids=seq.generated,
        text=tokenizer.decode(seq.generated, skip_special_tokens=False),
        subcategory=seq.request.subcategory or seq.request.category,
    )


def make_sequences(requests: list[Request], tokenizer: PreTrainedTokenizerBase,
                   chat_template: bool, max_new_tokens: int) -> list[Sequence]:
    return [Sequence(request=r, prompt_ids=encode_prompt(tokenizer, r, chat_template),
                     max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id)
            for r in requests]
