"""Derived latency profiles: GPUs nobody here has measured, from a roofline fitted on one that was.

``python -m specedge.roofline [--measured JSON] [--out DIR]`` writes one ``specedge.profile``
JSON per GPU of :data:`GPUS` and forward path, for every shipped architecture, over batch x new
tokens x prefix. A forward costs

    t = max(host, max(bytes / (eff * bandwidth), flops / (eff * peak_bf16)))

- ``bytes``: every weight once (an untied input embedding only looks up rows) plus the KV
  cache read and written, ``batch * (prefix + nodes) * layers * 2 * kv_heads * head_dim``;
- ``flops``: ``2 * weights * tokens`` (the matrix products) plus attention,
  ``4 * layers * heads * head_dim * tokens * (prefix + nodes)``;
- ``host``: launching the kernels. ``eager``: ``host_ms_per_layer * layers`` (Hugging Face
  launches a layer's kernels one by one from Python); ``graphs``: 0, the assumption that a
  replayed CUDA graph hides the launches (not measured yet: the GPU-path issue measures it).

``eff`` (one efficiency for bandwidth and compute) and ``host_ms_per_layer`` are fitted on a
measured profile (:data:`MEASURED`, an H200 with the eager path) by least squares on the
logarithm of the time; the fitted values and the fit's error are written into every derived
file, and every file and row is marked ``derived``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specedge import ARCHITECTURES_DIR, PROFILES_DIR, PROJECT_ROOT

MEASURED = PROFILES_DIR / "h200-eager-2026-11-26.json"


@dataclass(frozen=True)
class Gpu:
    """Datasheet peaks: memory bandwidth and dense bf16 tensor throughput (no sparsity)."""

    key: str  # file name stem and hardware config name
    name: str
    bandwidth_gbs: float
    bf16_tflops: float


# Vendors' datasheets: A100 (SXM4) 40 GB 1555 GB/s and 80 GB 2039 GB/s, 312 TFLOPS bf16;
# GeForce RTX 4090 1008 GB/s, 165 TFLOPS bf16 with fp32 accumulation (Ada whitepaper);
# H200 4800 GB/s, 989 TFLOPS.
GPUS: tuple[Gpu, ...] = (
    Gpu("a100_40", "NVIDIA A100 40GB", 1555.0, 312.0),
    Gpu("a100_80", "NVIDIA A100 80GB", 2039.0, 312.0),
    Gpu("rtx4090", "NVIDIA GeForce RTX 4090", 1008.0, 165.0),
    Gpu("h200", "NVIDIA H200", 4800.0, 989.0),
)
PATHS = ("eager", "graphs")
BATCHES = (1, 2, 4, 8, 16, 32)
NODES = (1, 2, 4, 8, 16, 32, 64, 128)
PREFIXES = (128, 512, 2048)
BYTES = 2  # bf16


def plain_name(name: str) -> str:
    """A model name reduced to what names of one architecture share: ``Qwen/Qwen3-14B``,
    ``qwen3-14b`` and ``Qwen3-14B.json`` all give ``qwen314b``."""
    return "".join(c for c in Path(name).name.lower() if c.isalnum())


@dataclass(frozen=True)
class Architecture:
    """What a forward of a decoder-only transformer reads and computes, from its config."""

    name: str
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    weights: int  # parameters a forward reads (all but an untied input embedding)
    params: int  # all parameters

    @classmethod
    def of(cls, path: Path) -> Architecture:
        c = json.loads(path.read_text())
        hidden, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
        heads, kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
        head_dim = c.get("head_dim") or hidden // heads
        attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
        if c.get("attention_bias"):
            attention += head_dim * (heads + 2 * kv_heads)
        qk_norm = 2 * head_dim if c.get("model_type") == "qwen3" else 0
        layer = attention + 3 * hidden * c["intermediate_size"] + 2 * hidden + qk_norm
        embedding = vocab * hidden
        tied = bool(c.get("tie_word_embeddings"))
        params = embedding + layers * layer + hidden + (0 if tied else embedding)
        return cls(path.stem, layers, heads, kv_heads, head_dim,
                   params - (0 if tied else embedding), params)

    def kv_bytes(self, batch: int, nodes: int, prefix: int) -> int:
        return batch * (prefix + nodes) * self.layers * 2 * self.kv_heads * self.head_dim * BYTES

    def flops(self, batch: int, nodes: int, prefix: int) -> float:
        tokens = batch * nodes
        return (2.0 * self.weights * tokens
                + 4.0 * self.layers * self.heads * self.head_dim * tokens * (prefix + nodes))


def architectures() -> dict[str, Architecture]:
    """Shipped architectures by plain name (``qwen3-14b`` and ``Qwen/Qwen3-14B`` both match)."""
    return {plain_name(p.stem): Architecture.of(p)
            for p in sorted(ARCHITECTURES_DIR.glob("*.json"))}


@dataclass(frozen=True)
class Roofline:
    efficiency: float  # fraction of the datasheet peaks a forward reaches
    host_ms_per_layer: float  # eager launch cost per decoder layer (0 for graphs)

    def ms(self, arch: Architecture, gpu: Gpu, batch: int, nodes: int, prefix: int) -> float:
        memory = (arch.weights * BYTES + arch.kv_bytes(batch, nodes, prefix)) / (
            self.efficiency * gpu.bandwidth_gbs * 1e6)
        compute = arch.flops(batch, nodes, prefix) / (self.efficiency * gpu.bf16_tflops * 1e9)
        return max(self.host_ms_per_layer * arch.layers, memory, compute)


def fit(measured: dict[str, Any], gpu: Gpu) -> tuple[Roofline, float]:
    """``eff`` and the host cost per layer that best explain a measured eager profile (least
    squares on log time over a grid), and the mean absolute relative error of the fit."""
    archs = architectures()
    points = []
    for r in measured["rows"]:
        arch = archs.get(plain_name(r["name"] if "name" in r else r["model"]))
        if arch is None:
            raise ValueError(f"{r.get('name', r['model'])!r}: not a shipped architecture "
                             f"({', '.join(a.name for a in archs.values())})")
        points.append((arch, r["batch"], r["nodes"], r["prefix"], r["ms_median"]))

    def loss(model: Roofline) -> float:
        return sum(math.log(model.ms(a, gpu, b, n, p) / t) ** 2 for a, b, n, p, t in points)

    grid = [Roofline(e / 100, h / 100) for e in range(5, 101) for h in range(10, 301, 2)]
    best = min(grid, key=loss)
    error = sum(abs(best.ms(a, gpu, b, n, p) / t - 1) for a, b, n, p, t in points) / len(points)
    return best, error


def derive(gpu: Gpu, path: str, fitted: Roofline, error: float, source: str) -> dict[str, Any]:
    """A ``specedge.profile`` JSON for ``gpu``, every shipped architecture, marked derived."""
    model = Roofline(fitted.efficiency, fitted.host_ms_per_layer if path == "eager" else 0.0)
    rows = []
    for arch in architectures().values():
        for prefix in PREFIXES:
            for batch in BATCHES:
                for nodes in NODES:
                    rows.append({"model": arch.name, "batch": batch, "nodes": nodes,
                                 "prefix": prefix, "ms_median": round(
                                     model.ms(arch, gpu, batch, nodes, prefix), 4)})
    host = ("host_ms_per_layer * layers" if path == "eager"
            else "0 (assumed: CUDA graph replay hides kernel launches; not measured)")
    return {
        "device": "cuda", "device_name": gpu.name, "dtype": "bf16",
        "bandwidth_gbs": gpu.bandwidth_gbs,
        "bf16_tflops": gpu.bf16_tflops, "forward_path": path, "weights": "derived",
        "derived": True,
        "formula": ("max(host, (weights*2 + kv_bytes) / (eff * bandwidth), flops / (eff * "
                    "peak_bf16)); host = " + host),
        "parameters": {"eff": model.efficiency,
                       "host_ms_per_layer": model.host_ms_per_layer},
        "fitted_on": source, "fit_mean_abs_error": round(error, 4),
        "note": (f"derived, not measured: a roofline of the {gpu.name}'s datasheet peaks "
                 f"({gpu.bandwidth_gbs:g} GB/s, {gpu.bf16_tflops:g} TFLOPS bf16) with the "
                 f"efficiency fitted on {Path(source).name} (mean error {error:.0%})"),
        "rows": rows,
    }


def dumps(profile: dict[str, Any]) -> str:
    """JSON with one row a line: readable, and a regenerated file diffs by row."""
    head = json.dumps({k: v for k, v in profile.items() if k != "rows"}, indent=1)
    rows = ",\n".join("  " + json.dumps(r) for r in profile["rows"])
    return head[:-2] + ',\n "rows": [\n' + rows + "\n ]\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specedge.roofline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measured", type=Path, default=MEASURED,
                        help="a measured profile JSON of an eager forward on a GPU")
    parser.add_argument("--gpu", default="h200", choices=[g.key for g in GPUS],
                        help="the GPU the measured profile was taken on")
    parser.add_argument("--out", type=Path, default=PROFILES_DIR)
    args = parser.parse_args(argv)
    try:
        measured = json.loads(args.measured.read_text())
        fitted, error = fit(measured, next(g for g in GPUS if g.key == args.gpu))
    except (OSError, ValueError, KeyError) as exc:
        print(f"specedge: error: --measured {args.measured}: {exc}", file=sys.stderr)
        return 2
    print(f"fitted on {args.measured}: eff {fitted.efficiency:.2f}, host "
          f"{fitted.host_ms_per_layer:.2f} ms per layer, mean error {error:.1%}")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        source = str(args.measured.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        source = str(args.measured)
    for gpu in GPUS:
        for path in PATHS:
            out = args.out / f"{gpu.key}-{path}-derived.json"
            out.write_text(dumps(derive(gpu, path, fitted, error, source)))
            print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
