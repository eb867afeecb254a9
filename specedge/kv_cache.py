"""Per-request KV caches and the masked forward that runs trees of many requests at once.

Each request owns a compact cache of its committed tokens (all but the last one, which is the
next tree's root). A forward batches requests by right-padding their caches to a common length;
padded slots are masked out, so every row attends to exactly its own prefix. After the forward,
:meth:`RequestCache.keep` copies only the entries of the tokens that were accepted; the KV of
rejected tree nodes is never written back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel


@dataclass
class RequestCache:
    """KV entries of one request for one model: per layer ``[1, kv_heads, T, head_dim]``."""

    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return 0 if not self.keys else self.keys[0].shape[2]

    def keep(self, batch_cache: DynamicCache, row: int, start: int, indices: list[int]) -> None:
        """Append entries ``start + indices`` of ``row`` of a forward's cache to this cache."""
        if not indices:
            return
        idx = torch.tensor(indices, device=batch_cache.layers[0].keys.device) + start
        new_k = [layer.keys[row : row + 1].index_select(2, idx) for layer in batch_cache.layers]
        new_v = [layer.values[row : row + 1].index_select(2, idx) for layer in batch_cache.layers]
        if not self.keys:
            self.keys, self.values = new_k, new_v
        else:
            self.keys = [torch.cat([a, b], dim=2) for a, b in zip(self.keys, new_k, strict=True)]
            self.values = [torch.cat([a, b], dim=2)
                           for a, b in zip(self.values, new_v, strict=True)]


@dataclass
class Rows:
    """New tokens of one request in a forward, and which earlier new tokens each one sees.

    ``visible[i]`` lists indices (into this request's new tokens) that token ``i`` attends to
    besides the request's whole cached prefix; it always contains ``i`` itself.
    """

    tokens: list[int]
    positions: list[int]
    visible: list[list[int]]


def batch_cache(model: PreTrainedModel, caches: list[RequestCache]) -> tuple[DynamicCache, int]:
    """One DynamicCache holding every request's prefix, right-padded to the longest."""
    longest = max(len(c) for c in caches)
    cache = DynamicCache(config=model.config)
    if longest == 0:
        return cache, 0
    ref = next(c for c in caches if len(c))  # an empty cache borrows its shape: all padding
    if len(caches) == 1:  # nothing to pad: the forward appends to new tensors, never to ours
        for layer, (k, v) in enumerate(zip(ref.keys, ref.values, strict=True)):
            cache.update(k, v, layer)
        return cache, longest
    for layer in range(len(ref.keys)):
        ks, vs = [], []
        for c in caches:
            k = c.keys[layer] if len(c) else ref.keys[layer][:, :, :0]
            v = c.values[layer] if len(c) else ref.values[layer][:, :, :0]
            pad = longest - k.shape[2]
            ks.append(torch.nn.functional.pad(k, (0, 0, 0, pad)))
            vs.append(torch.nn.functional.pad(v, (0, 0, 0, pad)))
        cache.update(torch.cat(ks), torch.cat(vs), layer)
    return cache, longest


@torch.inference_mode()
def forward_rows(
    model: PreTrainedModel,
    caches: list[RequestCache],
    rows: list[Rows],
    cache: DynamicCache | None = None,
    prefix_lens: list[int] | None = None,
) -> tuple[torch.Tensor, DynamicCache, int]:
    """Run every request's new tokens in one forward with an explicit 4D mask.

    Returns ``(logits [B, N, V], cache, start)``: request ``b``'s ``i``-th new token sits at
    index ``start + i`` of row ``b`` of ``cache``. Pass ``cache``/``prefix_lens`` to continue a
    forward's cache (multi-step drafting): then the first ``prefix_lens[b]`` entries of row
    ``b`` are its prefix and any other old entry is hidden unless ``visible`` names it: an index
    ``j < 0`` in ``visible`` means the old cache column ``-(j + 1)``.
    """
    device = model.device
    dtype = model.dtype
    if cache is None:
        cache, padded = batch_cache(model, caches)
        prefix_lens = [len(c) for c in caches]
    else:
        padded = cache.get_seq_length()
        assert prefix_lens is not None
    n_new = max(len(r.tokens) for r in rows)
    total = padded + n_new
    batch = len(rows)
    # Built in numpy: per-element writes into a torch tensor cost microseconds each.
    allowed = np.zeros((batch, n_new, total), dtype=bool)
    input_ids = np.zeros((batch, n_new), dtype=np.int64)
    position_ids = np.zeros((batch, n_new), dtype=np.int64)
    for b, (r, plen) in enumerate(zip(rows, prefix_lens, strict=True)):
        n = len(r.tokens)
        input_ids[b, :n] = r.tokens
        position_ids[b, :n] = r.positions
        allowed[b, :n, :plen] = True
        for i, vis in enumerate(r.visible):
            cols = np.asarray(vis, dtype=np.int64)
            allowed[b, i, np.where(cols >= 0, padded + cols, -(cols + 1))] = True
        for i in range(n, n_new):  # padding rows see themselves only, so softmax stays finite
            allowed[b, i, padded + i] = True
    mask = torch.zeros(batch, 1, n_new, total, dtype=dtype)
    mask.masked_fill_(~torch.from_numpy(allowed).unsqueeze(1), torch.finfo(dtype).min)
    out = model(
        input_ids=torch.from_numpy(input_ids).to(device),
        position_ids=torch.from_numpy(position_ids).to(device),
        attention_mask=mask.to(device),
        cache=cache,
        use_cache=True,
    )
    return out.logits, out.cache, padded
