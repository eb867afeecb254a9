"""``python -m specedge.profile [HYDRA_OVERRIDES...]``: forward latency of the target and draft.

Times the forward every method makes (:meth:`specedge.engine.kv_pool.KVPool.forward`, on the path
``model.compile`` selects for ``hardware.server_device``) over batch x new tokens x prefix
length, synchronised, median and minimum of ``profile.repeats`` after warm-up (which also
captures the CUDA graphs). Each row stands beside its memory-bandwidth floor (weights streamed
once plus the KV read, over the device's bandwidth) where the bandwidth is known, and the
bytes this path moves (whole KV buckets, the gather of several rows) with its floor on the same
terms. Prints a
table and writes JSON (``profile.out``) that the performance model reads. With
``model.weights=random`` no weights need to exist anywhere: ``model=qwen3_14b
model.weights=random`` profiles Qwen3-14B on any GPU that fits it.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from specedge import CONF_DIR
from specedge.base.config.checks import ConfigError
from specedge.base.config.model import CompileMode, resolve_compile
from specedge.base.config.preflight import checked_run_config
from specedge.base.config.run import RunConfig
from specedge.base.datasheets import datasheet
from specedge.base.roofline import Architecture
from specedge.engine.attention import architecture, text_config
from specedge.engine.kv_pool import KVPool, prefill
from specedge.engine.models import ModelLoadError, device_name, load_member, with_resolved_dtype
from specedge.engine.query_plan import KVRow, causal_query, pow2_at_least


@dataclass
class Row:
    model: str  # "target" or "draft"
    name: str  # what model.target / model.draft named
    device: str
    device_name: str
    dtype: str
    forward_path: str
    weights: str
    batch: int
    nodes: int  # new tokens per sequence in one forward
    prefix: int  # committed tokens per sequence before it
    ms_median: float
    ms_min: float
    floor_ms: float | None  # (weights + KV read) / bandwidth; None where it is unknown
    floor_bytes: int
    # What this path moves (kv_traffic): the weights, the KV its attention reads (whole
    # buckets on static shapes) and the extra of gathering several rows; its floor on the
    # same terms
    weight_bytes: int = 0
    kv_read_bytes: int = 0
    kv_gathered_bytes: int = 0
    path_floor_ms: float | None = None


def kv_traffic(pool: KVPool, arch: Architecture, batch: int, columns: int) -> tuple[int, int]:
    """Bytes of KV one forward of ``batch`` rows, the longest ``columns`` long, moves on
    ``pool``'s path: (read by attention over every layer, extra moved by gathering the rows:
    the gather reads them and writes a copy that attention then reads). One row is a view,
    nothing gathered: a one-row batch, or any batch of a one-row pool in graphs mode."""
    static = pool.mode != CompileMode.eager
    rows = pow2_at_least(batch) if static else batch
    cols = pool.planner.kv_bucket(columns) if static else columns
    read = arch.kv_bytes(rows, cols, 0)
    view = rows == 1 and (pool.mode != CompileMode.graphs or pool.rows == 1)
    return read, 0 if view else 2 * read


def profile_model(pool: KVPool, which: str, name: str, cfg: RunConfig,
                  bandwidth: float | None) -> list[Row]:
    """Every (batch, nodes, prefix) point of ``cfg.profile`` for one model."""
    p = cfg.profile
    vocab = int(text_config(pool.model).vocab_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    rows_out = []
    dev = pool.device
    arch = architecture(pool.model)
    for prefix in p.prefixes:
        rows = [pool.acquire() for _ in range(max(p.batches))]
        for row in rows:  # committed random tokens: the prefix every point attends to
            pool.reset(row)
            prefill(pool, row, torch.randint(vocab, (prefix,), generator=gen).tolist())
        for batch in p.batches:
            for nodes in p.nodes:
                tokens = torch.randint(vocab, (batch, nodes), generator=gen).tolist()

                def forward(batch_rows: list[KVRow] = rows[:batch],
                            tokens: list[list[int]] = tokens) -> None:
                    pool.forward([causal_query(r, t, r.length)
                                  for r, t in zip(batch_rows, tokens, strict=True)])
                    for r in batch_rows:
                        pool.drop_work(r)

                times = []
                for i in range(p.warmup + p.repeats):
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    t0 = time.perf_counter()
                    forward()
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    if i >= p.warmup:
                        times.append((time.perf_counter() - t0) * 1e3)
                nbytes = arch.floor_bytes(batch, nodes, prefix)
                weights = arch.weight_bytes()
                kv_read, kv_gathered = kv_traffic(pool, arch, batch, prefix + nodes)
                moved = weights + kv_read + kv_gathered
                rows_out.append(Row(
                    model=which, name=name, device=str(dev), device_name=device_name(str(dev)),
                    dtype=cfg.model.dtype.value, forward_path=pool.mode.value,
                    weights=cfg.model.weights.value, batch=batch, nodes=nodes, prefix=prefix,
                    ms_median=round(statistics.median(times), 4), ms_min=round(min(times), 4),
                    floor_ms=None if bandwidth is None else round(nbytes / bandwidth / 1e6, 4),
                    floor_bytes=nbytes, weight_bytes=weights, kv_read_bytes=kv_read,
                    kv_gathered_bytes=kv_gathered, path_floor_ms=None if bandwidth is None
                    else round(moved / bandwidth / 1e6, 4)))
        for row in rows:
            pool.release(row)
    return rows_out


def run_profile(cfg: RunConfig) -> dict[str, Any]:
    device = cfg.hardware.server_device
    name = device_name(device)
    sheet = datasheet(name)
    bandwidth = cfg.profile.bandwidth_gbs or (sheet.bandwidth_gbs if sheet else None)
    max_prefix = max(cfg.profile.prefixes) + max(cfg.profile.nodes)
    if max_prefix > cfg.model.max_len:
        raise ConfigError(f"profile.prefixes = {cfg.profile.prefixes} is not accepted: the "
                          f"longest prefix + nodes ({max_prefix}) must fit model.max_len = "
                          f"{cfg.model.max_len}")
    mode = resolve_compile(cfg.model.compile, device)
    largest = cfg.model.token_buckets[-1]
    if mode != CompileMode.eager and max(cfg.profile.nodes) > largest:
        raise ConfigError(f"profile.nodes = {cfg.profile.nodes} is not accepted: at most the "
                          f"largest of model.token_buckets ({largest}) with static shapes")
    rows: list[Row] = []
    for which in cfg.profile.models:
        model = load_member(cfg.model, which, device)
        pool = KVPool(model=model, rows=max(cfg.profile.batches), max_len=cfg.model.max_len,
                      work=max(cfg.profile.nodes), mode=mode,
                      token_buckets=tuple(cfg.model.token_buckets))
        rows += profile_model(pool, which, getattr(cfg.model, which), cfg, bandwidth)
        del pool, model
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return {
        "device": device, "device_name": name, "bandwidth_gbs": bandwidth,
        "forward_path": mode.value,
        "weights": cfg.model.weights.value,
        "note": ("random weights: timing only" if cfg.model.weights.value == "random" else ""),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": [asdict(r) for r in rows],
    }


def print_profile(result: dict[str, Any], console: Console) -> None:
    t = Table(title=f"Forward latency on {result['device_name']} ({result['forward_path']}, "
                    f"{result['weights']} weights; bandwidth "
                    f"{result['bandwidth_gbs'] or 'unknown'} GB/s)")
    for col in ("model", "batch", "nodes", "prefix", "ms median", "ms min", "floor ms",
                "x floor"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in result["rows"]:
        floor = r["floor_ms"]
        t.add_row(f"{r['model']} ({r['name']})", str(r["batch"]), str(r["nodes"]),
                  str(r["prefix"]), f"{r['ms_median']:.3f}", f"{r['ms_min']:.3f}",
                  "-" if floor is None else f"{floor:.3f}",
                  "-" if floor is None else f"{r['ms_median'] / floor:.2f}x")
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specedge profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (conf/, profile.*)")
    args = parser.parse_args(argv)
    # The loads and the start-up capture (graphs, seconds, device memory) go to the log.
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = with_resolved_dtype(checked_run_config(
                compose(config_name="config", overrides=args.overrides)))
        result = run_profile(cfg)
    except (ConfigError, ModelLoadError) as exc:
        print(f"specedge: error: {exc}", file=sys.stderr)
        return 2
    print_profile(result, Console(width=132))
    out = Path(cfg.profile.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
