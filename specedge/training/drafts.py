"""A draft made of its target's own layers: which layers, the tensors it trains (its own, in
bf16, what is shipped) and the ones it shares with its target (embeddings and head, tied), and
the draft joined back from a target and its own tensors."""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel

SHARED = ("model.embed_tokens.weight", "lm_head.weight")  # the target's, tied


def draft_from(target: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """The target with only ``layers`` (in that order): embeddings, norm and head shared."""
    n = target.config.num_hidden_layers
    if any(not 0 <= i < n for i in layers):
        raise ValueError(f"layers = {layers!r} is not accepted: the target has layers 0-{n - 1}")
    draft = copy.deepcopy(target)
    draft.model.layers = torch.nn.ModuleList([draft.model.layers[i] for i in layers])
    for k, layer in enumerate(draft.model.layers):
        layer.self_attn.layer_idx = k  # the KV cache is indexed by position in the stack
    draft.config.num_hidden_layers = len(layers)
    if getattr(draft.config, "layer_types", None):
        draft.config.layer_types = [draft.config.layer_types[i] for i in layers]
    draft.model.embed_tokens.weight.requires_grad_(False)  # tied: the head stays the target's
    return draft


class DraftError(RuntimeError):
    """A shipped draft cannot be assembled; the message says why and how to rebuild it."""


def own_tensors(draft: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The draft's trained tensors (not the target's embeddings and head), in bf16: half the
    bytes to ship, and a run in any dtype loads them as they were measured."""
    return {k: v.detach().to(torch.bfloat16).contiguous()
            for k, v in draft.state_dict().items() if k not in SHARED}


def join(target32: PreTrainedModel, layers: list[int],
         own: dict[str, torch.Tensor]) -> PreTrainedModel:
    """The draft: ``layers`` of the target with ``own`` tensors in place of theirs."""
    draft = draft_from(target32, layers)
    missing, unexpected = draft.load_state_dict({k: v.float() for k, v in own.items()},
                                                strict=False)
    if unexpected or set(missing) - set(SHARED):
        raise DraftError(f"the draft's own tensors do not fit {len(layers)} target layers: "
                         f"unexpected {sorted(unexpected)[:4]}, missing "
                         f"{sorted(set(missing) - set(SHARED))[:4]}")
    return draft
