"""``profile`` and ``simulate``: what the forward profile and the performance model do."""

from __future__ import annotations

from dataclasses import dataclass, field

from specedge.base.config.checks import require


@dataclass
class ProfileConfig:
    """What `python -m specedge.profile` times (on hardware.server_device)."""

    models: list[str] = field(default_factory=lambda: ["target", "draft"])
    batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    nodes: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128])
    prefixes: list[int] = field(default_factory=lambda: [512])
    repeats: int = 6
    warmup: int = 2  # untimed forwards first (CUDA graphs are captured here)
    bandwidth_gbs: float | None = None  # null: looked up by the GPU's name, if known
    out: str = "results/profile/profile.json"

    def __post_init__(self) -> None:
        require(bool(self.models) and set(self.models) <= {"target", "draft"},
                 "profile.models", self.models, "a non-empty list of 'target' and/or 'draft'")
        for key in ("batches", "nodes", "prefixes"):
            values = getattr(self, key)
            require(bool(values) and all(v >= 1 for v in values), f"profile.{key}", values,
                     "a non-empty list of integers >= 1")
        require(self.repeats >= 1, "profile.repeats", self.repeats, "an integer >= 1")
        require(self.warmup >= 0, "profile.warmup", self.warmup, "an integer >= 0")
        require(self.bandwidth_gbs is None or self.bandwidth_gbs > 0, "profile.bandwidth_gbs",
                 self.bandwidth_gbs, "null or a bandwidth > 0 GB/s")


@dataclass
class SimulateConfig:
    """What `python -m specedge.simulate` models (see specedge/analysis/simulation/)."""

    trace: str | None = None  # a run directory whose rounds are the acceptance trace
    # specedge.analysis.profile JSONs (null: hardware.profiles)
    profile: str | None = None  # the server's (target, and draft for server-only)
    edge_profile: str | None = None  # the edges' drafts (null: the server's)
    edges: int | None = None  # SpecEdge edges (null: server.num_clients)
    requests: int | None = None  # requests served (null: the trace's, at least one per edge)
    # or this many per edge (per batch place for server-only and auto-batch): sweeps over
    # simulate.edges keep every edge busy for as long
    requests_per_edge: int | None = None
    # P(k drafted tokens accepted in a round), k = 0, 1, ...: replaces the trace's acceptance
    acceptance: list[float] | None = None
    # rounds are chains of this many drafted tokens (with published chain acceptance): the
    # tree sizes and draft forwards follow it instead of the trace's
    chain: int | None = None

    def __post_init__(self) -> None:
        if self.acceptance is not None:
            require(bool(self.acceptance) and all(p >= 0 for p in self.acceptance)
                     and abs(sum(self.acceptance) - 1) < 1e-6, "simulate.acceptance",
                     self.acceptance, "null or probabilities of 0, 1, 2, ... accepted tokens "
                     "that sum to 1")
        require(self.chain is None or self.acceptance is None
                 or len(self.acceptance) <= self.chain + 1, "simulate.acceptance",
                 self.acceptance, f"at most simulate.chain + 1 = {(self.chain or 0) + 1} "
                 "probabilities (a chain accepts 0 to all of its tokens)")
        require(self.requests is None or self.requests_per_edge is None,
                 "simulate.requests_per_edge", self.requests_per_edge,
                 "null when simulate.requests is set (one of the two)")
        for key in ("edges", "requests", "requests_per_edge", "chain"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"simulate.{key}", value,
                     "null or an integer >= 1")
