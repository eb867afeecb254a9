"""Model building's decoder is the serving loop's: auto-batch decoding (``serve`` with no
draft) of every prompt at once, each choice the project's :class:`Chooser`, optionally keeping
the top-k log-probabilities at each reply position along the way (a distillation's targets).
The target's replies here are, by construction, what an auto-batch run of it serves."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel

from specedge.algorithm.sequence import Sequence
from specedge.algorithm.verification import Chooser
from specedge.base.config.model import CompileMode
from specedge.engine.datasets import Request
from specedge.engine.kv_pool import KVPool
from specedge.serving.baselines import serve

GREEDY = Chooser()


@dataclass
class Example:
    """A prompt, the target's reply, and its top-k at each reply position."""

    prompt: list[int]
    reply: list[int]
    top_ids: torch.Tensor  # [len(reply), k]
    top_logp: torch.Tensor  # [len(reply), k]


@dataclass(frozen=True)
class _KeepingTopK(Chooser):
    """A :class:`Chooser` that also keeps, by request, the top-k log-probabilities of every
    distribution it chooses from (auto-batch verifies a lone root: one per row and step)."""

    k: int = 0
    kept: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)

    def spans(self, logits: torch.Tensor, spans: list[tuple[int, int]],
              keys: list[int] | None = None,
              positions: list[list[int]] | None = None) -> list[list[int]]:
        if self.k and keys is not None:
            for b, (lo, _) in enumerate(spans):
                values, ids = torch.log_softmax(logits[b, lo].float(), dim=-1).topk(self.k)
                self.kept.setdefault(keys[b], []).append((ids, values))
        return super().spans(logits, spans, keys, positions)


@torch.inference_mode()
def decode(model: PreTrainedModel, prompts: list[list[int]], max_new: int, eos: int | None,
           choose: Chooser = GREEDY, top_k: int = 0) -> list[Example]:
    """Decode every prompt at once (auto-batch: no padding, each row attends to its own
    prefix), each token chosen by ``choose``; a reply stops after ``eos`` (None: never)."""
    longest = max(len(p) for p in prompts)
    pool = KVPool(model, len(prompts), longest + max_new + 1, longest, CompileMode.eager)
    keeping = _KeepingTopK(choose.temperature, choose.top_p, choose.seed, k=top_k)
    sequences = [Sequence(Request(index=i, category="", prompt=""), list(p), max_new, eos)
                 for i, p in enumerate(prompts)]
    serve(baseline="auto_batch", sequences=sequences, capacity=len(prompts), target=pool,
          draft=None, shape=None, choose=keeping)
    examples = []
    for seq in sequences:
        tops = keeping.kept.get(seq.request.index, [])[: len(seq.generated)]
        examples.append(Example(
            seq.prompt_ids, seq.generated,
            torch.stack([ids for ids, _ in tops]) if tops else torch.empty(0, 0),
            torch.stack([logp for _, logp in tops]) if tops else torch.empty(0, 0)))
    return examples
