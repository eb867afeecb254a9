"""Precomputed prompt prefill for benchmark runs (``server.cache_prefill=true``).

The server computes the target's KV for every prompt of the run's dataset once and keeps it on
disk under ``server.prefill_cache_dir/<key>/``, where the key hashes everything the KV depends
on (target weights' folder or hub id, dtype, device type, the prompt token ids). Edges then send
only the request id on a prefill round. Runs that share model and prompts share the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel

from specedge.kv_cache import RequestCache, Rows, forward_rows

log = logging.getLogger("specedge.prefill_cache")


@dataclass
class CachedPrompt:
    tokens: list[int]  # the whole prompt
    cache: RequestCache  # target KV of tokens[:-1]


def cache_key(model_name: str, dtype: str, device: str, prompts: dict[int, list[int]]) -> str:
    blob = json.dumps({"model": model_name, "dtype": dtype, "device": torch.device(device).type,
                       "prompts": sorted(prompts.items())}, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@torch.inference_mode()
def _prefill(model: PreTrainedModel, tokens: list[int]) -> RequestCache:
    cache = RequestCache()
    body = tokens[:-1]
    if body:
        rows = Rows(tokens=body, positions=list(range(len(body))),
                    visible=[list(range(i + 1)) for i in range(len(body))])
        _, batch, start = forward_rows(model, [cache], [rows])
        cache.keep(batch, 0, start, list(range(len(body))))
    return cache


def load_or_build(model: PreTrainedModel, model_name: str, dtype: str, device: str,
                  prompts: dict[int, list[int]], root: Path) -> dict[int, CachedPrompt]:
    """Prefill every prompt, from disk when an earlier run already did."""
    folder = root / cache_key(model_name, dtype, device, prompts)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[int, CachedPrompt] = {}
    built = 0
    for request_id, tokens in prompts.items():
        path = folder / f"{request_id}.pt"
        if path.exists():
            saved = torch.load(path, map_location=model.device, weights_only=True)
            cache = RequestCache(keys=list(saved["keys"]), values=list(saved["values"]))
        else:
            cache = _prefill(model, tokens)
            tmp = path.with_suffix(".tmp")
            torch.save({"keys": [k.cpu() for k in cache.keys],
                        "values": [v.cpu() for v in cache.values]}, tmp)
            tmp.rename(path)
            built += 1
        out[request_id] = CachedPrompt(tokens=tokens, cache=cache)
    log.info("prefill cache %s: %d prompts (%d computed, %d from disk)", folder, len(out), built,
             len(out) - built)
    return out
