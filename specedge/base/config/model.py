"""``model``: the target/draft pair, its precision and the forward path."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from omegaconf import MISSING

from specedge.base.config.checks import require


class DType(StrEnum):
    auto = "auto"  # by the hardware (specedge.engine.models.resolve_dtype): bf16 where native
    fp16 = "fp16"
    bf16 = "bf16"
    fp32 = "fp32"




class CompileMode(StrEnum):
    """How every forward runs (specedge.engine.kv_pool): the one setting of the forward path."""

    auto = "auto"  # graphs on a CUDA device, eager on a CPU
    eager = "eager"  # exact shapes, attention over the columns in use
    static = "static"  # bucketed shapes over the preallocated cache (what graphs replay)
    graphs = "graphs"  # static, each bucket captured once as a CUDA graph and replayed


def resolve_compile(mode: CompileMode, device: str) -> CompileMode:
    if mode != CompileMode.auto:
        return mode
    return CompileMode.graphs if device.startswith("cuda") else CompileMode.eager




class Weights(StrEnum):
    pretrained = "pretrained"  # from_pretrained(target / draft)
    random = "random"  # the architecture only (timing runs: acceptance means nothing)




@dataclass
class ModelConfig:
    """A target/draft pair; names are hub ids or local folders, loaded the same way."""

    name: str = MISSING  # label used in reports, e.g. "tiny" or "qwen3-14b+1.7b"
    target: str = MISSING
    draft: str = MISSING
    dtype: DType = DType.auto
    max_len: int = 2048  # KV cache capacity in tokens (upstream: max_len)
    attn_implementation: str = "sdpa"
    compile: CompileMode = CompileMode.auto  # the forward path (specedge.engine.kv_pool)
    # static/graphs: new tokens per row and work-area widths are rounded up to one of these
    token_buckets: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128])
    # random: build target/draft from their architecture (a shipped name such as qwen3-14b,
    # a config.json or a model folder) with random weights, for timing without a model hub
    weights: Weights = Weights.pretrained
    tokenizer: str | None = None  # null: the target's (random weights: the tiny pair's)

    def __post_init__(self) -> None:
        require(self.max_len >= 16, "model.max_len", self.max_len, "an integer >= 16")
        require(bool(self.token_buckets) and all(b >= 1 for b in self.token_buckets)
                 and list(self.token_buckets) == sorted(set(self.token_buckets)),
                 "model.token_buckets", self.token_buckets,
                 "a non-empty increasing list of integers >= 1")
        require(
            self.attn_implementation in ("sdpa", "eager"),
            "model.attn_implementation",
            self.attn_implementation,
            "'sdpa' or 'eager' (tree verification needs an explicit 4D mask)",
        )
