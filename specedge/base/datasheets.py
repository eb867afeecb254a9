"""GPU datasheets, written once: each card's peak memory bandwidth and dense bf16 tensor
throughput (no sparsity), as its vendor publishes them. The profiler reads a measured card's
bandwidth here, the roofline derives its GPUs' latencies from these peaks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Datasheet:
    match: str  # a part of the name torch reports for the card (torch.cuda.get_device_name)
    name: str
    bandwidth_gbs: float
    bf16_tflops: float  # dense tensor throughput; the RTX 4090's with fp32 accumulation


# Vendors' datasheets. First match wins, so a variant's entry comes before its family's.
DATASHEETS: tuple[Datasheet, ...] = (
    Datasheet("H200", "NVIDIA H200", 4800.0, 989.0),
    Datasheet("H100 PCIe", "NVIDIA H100 PCIe", 2000.0, 756.0),
    Datasheet("H100 NVL", "NVIDIA H100 NVL", 3900.0, 835.0),
    Datasheet("H100", "NVIDIA H100 SXM5", 3350.0, 989.0),
    Datasheet("A100-SXM4-80GB", "NVIDIA A100 80GB", 2039.0, 312.0),
    Datasheet("A100 80GB PCIe", "NVIDIA A100 80GB PCIe", 1935.0, 312.0),
    Datasheet("A100", "NVIDIA A100 40GB", 1555.0, 312.0),
    Datasheet("L40S", "NVIDIA L40S", 864.0, 362.0),
    Datasheet("RTX 4090", "NVIDIA GeForce RTX 4090", 1008.0, 165.0),
)


def datasheet(device_name: str) -> Datasheet | None:
    """The datasheet of the card torch names ``device_name`` (or a catalogue name), if known."""
    return next((d for d in DATASHEETS if d.match in device_name or d.name == device_name),
                None)
