"""``baseline``: SpecEdge, server-only or auto-batch, each with its own settings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from omegaconf import MISSING

from specedge.base.config.checks import require


class BaselineName(StrEnum):
    specedge = "specedge"
    server_only = "server_only"
    auto_batch = "auto_batch"




@dataclass
class BaselineConfig:
    name: BaselineName = MISSING


@dataclass
class SpecEdgeBaseline(BaselineConfig):
    """Edges draft, the server verifies over gRPC (the paper's system)."""

    name: BaselineName = BaselineName.specedge


@dataclass
class ServerOnlyBaseline(BaselineConfig):
    """Draft and target both on the server; SpecExec trees batched over requests."""

    name: BaselineName = BaselineName.server_only
    max_batch_size: int = 4
    # true: every active request's tree in one batched draft forward per level (upstream's
    # server-only); false: each request's tree in turn (this project's before, for comparison)
    batch_drafting: bool = True

    @property
    def batch_capacity(self) -> int:
        """Requests served at once (upstream's name for it differs per baseline)."""
        return self.max_batch_size

    def __post_init__(self) -> None:
        require(self.max_batch_size >= 1, "baseline.max_batch_size", self.max_batch_size,
                 "an integer >= 1")


@dataclass
class AutoBatchBaseline(BaselineConfig):
    """Plain batched autoregressive decoding, refilled from the queue as requests finish."""

    name: BaselineName = BaselineName.auto_batch
    batch_size: int = 4

    @property
    def batch_capacity(self) -> int:
        """Requests served at once."""
        return self.batch_size

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "baseline.batch_size", self.batch_size, "an integer >= 1")
