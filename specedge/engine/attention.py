"""What a model's attention layers see during a pool's forward: the cache adapter handed to the
model, the grouped-query SDPA kernel the CUDA runners switch to for their own forwards, and the
model's geometry."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from specedge.base.roofline import Architecture

GQA_ATTENTION = "specedge_gqa_sdpa"


class PoolView:
    """The model's cache during one forward: ``update`` writes the new keys/values into the
    pool's tensors and returns every column the rows may read."""

    is_compileable = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, write_rows: torch.Tensor,
                 write_cols: torch.Tensor, read_rows: torch.Tensor | int, kv_len: int) -> None:
        self.keys, self.values = keys, values
        self.write_rows = write_rows
        self.write_cols = write_cols
        self.read_rows = read_rows
        self.kv_len = kv_len
        self.is_sliding = [False] * len(keys)  # full attention in every layer

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.keys[layer_idx], self.values[layer_idx]
        # [B, H, N, D] -> [B, N, H, D]: the layout of k[rows, :, cols] with [B, N] indices.
        k[self.write_rows, :, self.write_cols] = key_states.transpose(1, 2)
        v[self.write_rows, :, self.write_cols] = value_states.transpose(1, 2)
        if isinstance(self.read_rows, int):  # one row: a view, nothing copied
            r = self.read_rows
            return k[r : r + 1, :, : self.kv_len], v[r : r + 1, :, : self.kv_len]
        return k[self.read_rows, :, : self.kv_len], v[self.read_rows, :, : self.kv_len]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.kv_len

    def __len__(self) -> int:
        return len(self.keys)


def gqa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor, attention_mask: torch.Tensor | None,
                  dropout: float = 0.0, scaling: float | None = None,
                  **kwargs: object) -> tuple[torch.Tensor, None]:
    """SDPA for grouped-query attention with a mask, without repeating K/V: the query heads
    that share a KV head become extra query rows of it (the mask repeated to match, which is
    tokens x columns, not columns x heads x dims). Transformers' SDPA path repeats K/V
    whenever there is a mask on CUDA, since SDPA's ``enable_gqa`` with a mask falls back to
    the math kernel; a tree verification always has a mask. Returns ``[B, N, H, D]``."""
    if attention_mask is None:
        # Hugging Face's own calls (generate, a causal prefill) may skip the mask: the stock
        # path then sets ``is_causal``, which SDPA here would not.
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    batch, heads, n_new, dim = query.shape
    kv_heads = key.shape[1]
    rep = heads // kv_heads
    q = query.reshape(batch, kv_heads, rep * n_new, dim)  # head h uses KV head h // rep
    mask = attention_mask[..., : key.shape[-2]]
    if rep > 1:
        mask = mask.repeat(1, 1, rep, 1) if mask.shape[1] == 1 else mask.reshape(
            batch, kv_heads, rep * n_new, -1)
    out = torch.nn.functional.scaled_dot_product_attention(
        q, key, value, attn_mask=mask, dropout_p=dropout if module.training else 0.0,
        scale=scaling)
    return out.reshape(batch, heads, n_new, dim).transpose(1, 2).contiguous(), None


def register_gqa() -> None:
    """Make :data:`GQA_ATTENTION` a name Hugging Face's attention layers can use (once per
    runner that needs it, not per forward)."""
    AttentionInterface.register(GQA_ATTENTION, gqa_attention)
    # Masks as for SDPA: without an entry here, Hugging Face's mask builders would give this
    # attention no mask at all.
    AttentionMaskInterface.register(GQA_ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


@contextlib.contextmanager
def attention_implementation(model: PreTrainedModel, name: str) -> Iterator[None]:
    """``model``'s attention layers use ``name`` (registered) inside the block and what they
    used before after it: a runner switches only its own forwards (a CUDA graph keeps the
    kernel it captured), never a model that others (Hugging Face's ``generate``) share."""
    config = text_config(model)
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


def cache_argument(model: PreTrainedModel) -> str:
    """The forward's cache keyword: ``cache`` in newer transformers 5.x, ``past_key_values``
    before (both declared versions must work)."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def text_config(model: PreTrainedModel) -> object:
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def architecture(model: PreTrainedModel) -> Architecture:
    """``model``'s geometry and bytes (the one model of them, base.roofline), with its
    weights counted as loaded (an untied input embedding only looks rows up) in its dtype."""
    cfg = text_config(model)
    params = sum(p.numel() for p in model.parameters())
    weights = params
    if not getattr(cfg, "tie_word_embeddings", False):
        weights -= model.get_input_embeddings().weight.numel()
    return Architecture.from_config(getattr(model, "name_or_path", "") or "model",
                                    cfg.to_dict(), (weights, params),
                                    torch.finfo(model.dtype).bits // 8)
