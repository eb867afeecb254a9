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

from specedge.engine.kv_pool import KVPool, prefill

log = logging.getLogger("specedge.engine.prefill_cache")


FORMAT = 2  # 2: one [layers, kv_heads, tokens, head_dim] tensor each for keys and values


@dataclass
class CachedPrompt:
    tokens: list[int]  # the whole prompt
    keys: torch.Tensor  # target KV of tokens[:-1]: [layers, kv_heads, tokens, head_dim]
    values: torch.Tensor


def cache_key(model_name: str, dtype: str, device: str, prompts: dict[int, list[int]]) -> str:
    blob = json.dumps({"format": FORMAT, "model": model_name, "dtype": dtype,
                       "device": torch.device(device).type, "prompts": sorted(prompts.items())},
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _prefill(pool: KVPool, tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    row = pool.acquire()
    try:
        prefill(pool, row, tokens[:-1])
        return pool.export(row)
    finally:
        pool.release(row)


def load_or_build(pool: KVPool, model_name: str, dtype: str, device: str,
                  prompts: dict[int, list[int]], root: Path) -> dict[int, CachedPrompt]:
    """Prefill every prompt, from disk when an earlier run already did."""
    folder = root / cache_key(model_name, dtype, device, prompts)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[int, CachedPrompt] = {}
    built = 0
    for request_id, tokens in prompts.items():
        path = folder / f"{request_id}.pt"
        if path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            keys, values = saved["keys"], saved["values"]
        else:
            keys, values = _prefill(pool, tokens)
            tmp = path.with_suffix(".tmp")
            torch.save({"keys": keys, "values": values}, tmp)
            tmp.rename(path)
            built += 1
        out[request_id] = CachedPrompt(tokens=tokens, keys=keys, values=values)
    log.info("prefill cache %s: %d prompts (%d computed, %d from disk)", folder, len(out), built,
             len(out) - built)
    return out
