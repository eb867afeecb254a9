"""Derived latency profiles: GPUs nobody here has measured, from a roofline of sourced efficiencies.

``python -m specedge.roofline [--measured JSON...] [--out DIR]`` writes one
``specedge.analysis.profile`` JSON per GPU of :data:`GPUS` and forward path, for every shipped
architecture, over batch x new tokens x prefix. A forward costs

    t = max(host, bytes / (eff_bw * bandwidth), flops / (eff_compute * peak_bf16))

- ``bytes``: every weight once (an untied input embedding only looks up rows) plus the KV
  cache read and written, ``batch * (prefix + nodes) * layers * 2 * kv_heads * head_dim``;
- ``flops``: ``2 * weights * tokens`` (the matrix products) plus attention,
  ``4 * layers * heads * head_dim * tokens * (prefix + nodes)``;
- ``host``: launching the kernels. ``eager``: ``host_ms_per_layer * layers`` (Hugging Face
  launches a layer's kernels one by one from Python); ``graphs``: 0, the assumption that a
  replayed CUDA graph hides the launches.

The two efficiencies are per device and come from measured figures whose source each GPU names
(:data:`GPUS`): the bandwidth a compiled decode step reaches, the throughput of a bf16 matrix
product. A measured profile refits what it identifies: an eager one (host-bound: about 1 ms a
layer whatever the work) only the host cost, a graphs-mode one (``forward_path: graphs``) the two
efficiencies of its GPU. The fitted values, what they were fitted on and the fit's error are
written into every derived file, and every file and row is marked ``derived``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from specedge import ARCHITECTURES_DIR, PROFILES_DIR, PROJECT_ROOT
from specedge.base.datasheets import Datasheet, datasheet

MEASURED = PROFILES_DIR / "h200-eager-2026-11-26.json"


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the datasheet peaks a forward reaches, and where the figures come from."""

    bandwidth: float
    compute: float
    source: str


# Measured figures (public benchmarks; no GPU here measured them):
# - bandwidth: gpt-fast's README (pytorch-labs/gpt-fast), Llama-2-7B bf16 with a compiled decode
#   step on an A100 80GB power-limited to 330 W: 1397.31 GB/s of 2039 = 0.685;
# - compute: the MAMF table of stas00/ml-engineering (compute/accelerator), the best bf16
#   matmul found, torch 2.6.0+cu126: A100 SXM 271.2 of 312 TFLOPS = 0.869; GH200 (the H200's
#   die and 141 GB HBM3e) 828.6 of 989 = 0.838.
GPT_FAST_A100 = "gpt-fast README: Llama-2-7B bf16 compiled decode, 1397 GB/s on an A100 80GB"
MAMF_A100 = "ml-engineering MAMF table: A100 SXM bf16 matmul 271.2 of 312 TFLOPS"
MAMF_GH200 = "ml-engineering MAMF table: GH200 bf16 matmul 828.6 of 989 TFLOPS"
A100_BANDWIDTH = round(1397.31 / 2039.0, 3)


@dataclass(frozen=True)
class Gpu:
    """A card's datasheet peaks (:mod:`specedge.base.datasheets`) and the efficiencies a
    forward reaches on them."""

    key: str  # file name stem and hardware config name
    sheet: Datasheet
    efficiency: Efficiency

    @property
    def name(self) -> str:
        return self.sheet.name

    @property
    def bandwidth_gbs(self) -> float:
        return self.sheet.bandwidth_gbs

    @property
    def bf16_tflops(self) -> float:
        return self.sheet.bf16_tflops


def _sheet(name: str) -> Datasheet:
    sheet = datasheet(name)
    assert sheet is not None, name
    return sheet


# Where no figure was measured on the device itself, another's is the proxy, and its source
# says so.
GPUS: tuple[Gpu, ...] = (
    Gpu("a100_40", _sheet("NVIDIA A100 40GB"), Efficiency(
        A100_BANDWIDTH, 0.869, f"proxy (the A100 80GB's figures): {GPT_FAST_A100}; {MAMF_A100}")),
    Gpu("a100_80", _sheet("NVIDIA A100 80GB"), Efficiency(
        A100_BANDWIDTH, 0.869, f"{GPT_FAST_A100}; {MAMF_A100}")),
    Gpu("rtx4090", _sheet("NVIDIA GeForce RTX 4090"), Efficiency(
        A100_BANDWIDTH, 0.869, f"proxy (no published figure for this card; the A100 80GB's): "
        f"{GPT_FAST_A100}; {MAMF_A100}")),
    Gpu("h200", _sheet("NVIDIA H200"), Efficiency(
        A100_BANDWIDTH, 0.838, f"bandwidth proxy (the A100 80GB's): {GPT_FAST_A100}; "
        f"{MAMF_GH200}")),
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
    """What a forward of a decoder-only transformer reads and computes, from its config: the
    one bytes and flops model of the profiler, the roofline, the simulator and the
    projection."""

    name: str
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    weights: int  # parameters a forward reads (all but an untied input embedding)
    params: int  # all parameters
    dtype_bytes: int = BYTES  # bytes of one weight or cached key/value

    @classmethod
    def of(cls, path: Path) -> Architecture:
        return cls.from_config(path.stem, json.loads(path.read_text()))

    @classmethod
    def from_config(cls, name: str, c: dict, counted: tuple[int, int] | None = None,
                    dtype_bytes: int = BYTES) -> Architecture:
        """From a Hugging Face config's fields; ``counted``: (weights, params) of loaded
        weights, where there are some (else from the config, as a shipped file has no
        weights)."""
        hidden, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
        heads = c["num_attention_heads"]
        kv_heads = c.get("num_key_value_heads") or heads
        head_dim = c.get("head_dim") or hidden // heads
        if counted is None:
            attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
            if c.get("attention_bias"):
                attention += head_dim * (heads + 2 * kv_heads)
            qk_norm = 2 * head_dim if c.get("model_type") == "qwen3" else 0
            layer = attention + 3 * hidden * c["intermediate_size"] + 2 * hidden + qk_norm
            embedding = vocab * hidden
            tied = bool(c.get("tie_word_embeddings"))
            params = embedding + layers * layer + hidden + (0 if tied else embedding)
            counted = (params - (0 if tied else embedding), params)
        return cls(name, layers, heads, kv_heads, head_dim, *counted, dtype_bytes)

    def weight_bytes(self) -> int:
        return self.weights * self.dtype_bytes

    def kv_bytes(self, batch: int, nodes: int, prefix: int) -> int:
        return (batch * (prefix + nodes) * self.layers * 2 * self.kv_heads * self.head_dim
                * self.dtype_bytes)

    def floor_bytes(self, batch: int, nodes: int, prefix: int) -> int:
        """Bytes a forward must read at least: every weight once and the KV of every
        sequence's prefix and new tokens."""
        return self.weight_bytes() + self.kv_bytes(batch, nodes, prefix)

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
    bandwidth_eff: float  # fraction of the datasheet bandwidth a forward reaches
    compute_eff: float  # fraction of the datasheet bf16 throughput
    host_ms_per_layer: float  # eager launch cost per decoder layer (0 for graphs)

    @classmethod
    def of(cls, gpu: Gpu, host_ms_per_layer: float = 0.0) -> Roofline:
        return cls(gpu.efficiency.bandwidth, gpu.efficiency.compute, host_ms_per_layer)

    def terms(self, arch: Architecture, gpu: Gpu, batch: int, nodes: int,
              prefix: int) -> tuple[float, float, float]:
        """Milliseconds of (host, memory, compute): the forward takes the largest."""
        memory = arch.floor_bytes(batch, nodes, prefix) / (
            self.bandwidth_eff * gpu.bandwidth_gbs * 1e6)
        compute = arch.flops(batch, nodes, prefix) / (self.compute_eff * gpu.bf16_tflops * 1e9)
        return self.host_ms_per_layer * arch.layers, memory, compute

    def ms(self, arch: Architecture, gpu: Gpu, batch: int, nodes: int, prefix: int) -> float:
        return max(self.terms(arch, gpu, batch, nodes, prefix))


@dataclass(frozen=True)
class Fit:
    """What a measured profile says: the roofline that explains it and how well."""

    roofline: Roofline
    error: float  # mean absolute relative error over the measured points
    host_bound: float  # share of the points whose fitted time is the host term
    fitted: str  # "host" (an eager profile) or "efficiencies" (a graphs-mode one)


def is_graphs(measured: dict[str, Any]) -> bool:
    return str(measured.get("forward_path", "")).startswith("graphs")


def gpu_of(measured: dict[str, Any]) -> Gpu:
    """The GPU a measured profile names (``device_name``)."""
    name = measured.get("device_name")
    sheet = datasheet(name) if isinstance(name, str) else None
    for gpu in GPUS:
        if gpu.sheet == sheet:
            return gpu
    raise ValueError(f"device_name {name!r} is not a GPU the roofline knows "
                     f"({', '.join(g.name for g in GPUS)})")


def fit(measured: dict[str, Any], gpu: Gpu) -> Fit:
    """The roofline that best explains a measured profile (least squares on log time over a
    grid). An eager profile fits only the host cost per layer, the efficiencies staying the
    GPU's sourced ones: host-bound points say nothing about bandwidth or compute. A
    graphs-mode profile fits the two efficiencies, with no host term."""
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

    graphs = is_graphs(measured)
    if graphs:
        grid = [Roofline(b / 100, c / 100, 0.0) for b in range(5, 101) for c in range(5, 101)]
    else:
        grid = [Roofline.of(gpu, h / 100) for h in range(10, 301, 2)]
    best = min(grid, key=loss)
    error = sum(abs(best.ms(a, gpu, b, n, p) / t - 1) for a, b, n, p, t in points) / len(points)
    host = sum(max(t := best.terms(a, gpu, b, n, p)) == t[0] > 0
               for a, b, n, p, _ in points) / len(points)
    return Fit(best, error, host, "efficiencies" if graphs else "host")


def derive(gpu: Gpu, path: str, model: Roofline, fits: dict[str, str]) -> dict[str, Any]:
    """A ``specedge.analysis.profile`` JSON for ``gpu``, every shipped architecture, marked derived.
    ``fits`` names what each parameter was fitted on, where it was."""
    model = replace(model, host_ms_per_layer=model.host_ms_per_layer if path == "eager"
                    else 0.0)
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
    efficiencies = fits.get("efficiencies", gpu.efficiency.source)
    return {
        "device": "cuda", "device_name": gpu.name, "dtype": "bf16",
        "bandwidth_gbs": gpu.bandwidth_gbs,
        "bf16_tflops": gpu.bf16_tflops, "forward_path": path, "weights": "derived",
        "derived": True,
        "formula": ("max(host, (weights*2 + kv_bytes) / (eff_bw * bandwidth), flops / "
                    "(eff_compute * peak_bf16)); host = " + host),
        "parameters": {"eff_bw": model.bandwidth_eff, "eff_compute": model.compute_eff,
                       "host_ms_per_layer": model.host_ms_per_layer},
        "sources": {"efficiencies": efficiencies,
                    **({"host_ms_per_layer": fits["host"]} if path == "eager" else {})},
        "note": (f"derived, not measured: a roofline of the {gpu.name}'s datasheet peaks "
                 f"({gpu.bandwidth_gbs:g} GB/s, {gpu.bf16_tflops:g} TFLOPS bf16) at "
                 f"{model.bandwidth_eff:.0%} of its bandwidth and {model.compute_eff:.0%} of "
                 f"its compute ({efficiencies})"),
        "rows": rows,
    }


def dumps(profile: dict[str, Any]) -> str:
    """JSON with one row a line: readable, and a regenerated file diffs by row."""
    head = json.dumps({k: v for k, v in profile.items() if k != "rows"}, indent=1)
    rows = ",\n".join("  " + json.dumps(r) for r in profile["rows"])
    return head[:-2] + ',\n "rows": [\n' + rows + "\n ]\n}\n"


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specedge roofline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measured", type=Path, nargs="+", default=[MEASURED],
                        help="measured profile JSONs (specedge.analysis.profile's, naming "
                             "their GPU in device_name): eager ones refit the host cost, "
                             "graphs-mode ones their GPU's efficiencies")
    parser.add_argument("--out", type=Path, default=PROFILES_DIR)
    args = parser.parse_args(argv)
    host: tuple[float, str] | None = None
    refit: dict[str, tuple[Roofline, str]] = {}
    for path in args.measured:
        try:
            measured = json.loads(path.read_text())
            gpu = gpu_of(measured)
            result = fit(measured, gpu)
        except (OSError, ValueError, KeyError) as exc:
            print(f"specedge: error: --measured {path}: {exc}", file=sys.stderr)
            return 2
        where = (f"{_relative(path)} ({gpu.name}, {result.fitted} fitted, mean error "
                 f"{result.error:.0%}, {result.host_bound:.0%} of points host-bound)")
        if result.fitted == "host":
            host = (result.roofline.host_ms_per_layer, where)
            print(f"{path}: host-bound eager profile: host {host[0]:.2f} ms per layer; "
                  f"{result.host_bound:.0%} of its points are host-bound, so it does not "
                  f"identify the efficiencies (kept from their sources); mean error "
                  f"{result.error:.1%}")
        else:
            refit[gpu.key] = (result.roofline, where)
            print(f"{path}: graphs-mode profile: bandwidth {result.roofline.bandwidth_eff:.2f},"
                  f" compute {result.roofline.compute_eff:.2f} of {gpu.name}'s peaks; mean "
                  f"error {result.error:.1%}")
    if host is None:
        print("specedge: error: --measured needs an eager profile for the host cost of the "
              "eager path", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for gpu in GPUS:
        model, where = refit.get(gpu.key, (Roofline.of(gpu), gpu.efficiency.source))
        fits = {"host": host[1], "efficiencies": where}
        for forward_path in PATHS:
            out = args.out / f"{gpu.key}-{forward_path}-derived.json"
            out.write_text(dumps(derive(gpu, forward_path, replace(
                model, host_ms_per_layer=host[0]), fits)))
            print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
