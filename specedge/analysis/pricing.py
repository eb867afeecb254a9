"""How runs are priced, once for every report and projection: a hardware entry's dollars per
GPU-hour, and which server time is billed (``busy``: the sum of its steps; ``wall``: first to
last record, idle included; upstream's default per baseline)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf

from specedge import CONF_DIR
from specedge.analysis.run_records import MetricsError
from specedge.base.config.checks import ConfigError
from specedge.base.config.hardware import HardwareConfig


class Accounting(StrEnum):
    busy = "busy"
    wall = "wall"


DEFAULT_ACCOUNTING = {"specedge": Accounting.wall, "server_only": Accounting.busy,
                      "auto_batch": Accounting.busy}


@dataclass(frozen=True)
class Prices:
    """Dollars per hour of the server's GPU and of one edge's GPU."""

    hardware: str
    server_gpu: str
    server_per_hour: float
    edge_gpu: str
    edge_per_hour: float

    @classmethod
    def of(cls, hw: HardwareConfig) -> Prices:
        p = hw.prices
        return cls(hw.name, p.server_gpu, p.server_per_hour, p.edge_gpu, p.edge_per_hour)

    def server_usd(self, seconds: float) -> float:
        """The server's bill for ``seconds`` of its time (how they are counted is the
        accounting's: busy or wall)."""
        return seconds / 3600 * self.server_per_hour

    def edges_usd(self, seconds: float) -> float:
        """The edges' bill for ``seconds`` of edge time, summed over the edges."""
        return seconds / 3600 * self.edge_per_hour


def hardware_prices(name: str) -> Prices:
    """Prices of a ``conf/hardware`` option, composed by Hydra as a run would compose it."""
    options = sorted(p.stem for p in (CONF_DIR / "hardware").glob("*.yaml"))
    if name not in options:
        raise MetricsError(f"--hardware {name!r} is not a hardware option: one of "
                           f"{', '.join(options)}")
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"hardware={name}"])
        hw = OmegaConf.to_object(cfg.hardware)
    except (HydraException, ConfigError) as exc:
        raise MetricsError(f"hardware={name}: {exc}") from None
    assert isinstance(hw, HardwareConfig)
    return Prices.of(hw)


# A simulated or measured point's summary, priced (the projection's tables)
ACCOUNTINGS = ("upstream", "ours", "wall", "busy")


def costs(point: dict[str, Any], accounting: str = "upstream") -> tuple[float, float]:
    """The server's and the edges' dollars of a point under an accounting: ``upstream`` (the
    upstream metric scripts': edges billed for their whole round time), ``ours`` (our
    defaults: SpecEdge's server wall, the baselines' busy; edges their drafting), ``wall``
    or ``busy`` (every system's server billed alike)."""
    if accounting not in ACCOUNTINGS:
        raise ConfigError(f"accounting {accounting!r} is not accepted: "
                          f"{', '.join(ACCOUNTINGS)}")
    server = point["server_cost_usd"]
    if accounting in ("wall", "busy"):
        server = Prices(**point["prices"]).server_usd(point[f"server_{accounting}_s"])
    edges = point["upstream"]["edge_cost_usd"] if accounting == "upstream" \
        else point["edge_cost_usd"]
    return server, edges


def figures(point: dict[str, Any], accounting: str = "upstream") -> dict[str, float]:
    """Throughput, ITL and $ per 1M tokens of a point under an accounting (:func:`costs`)."""
    usd = sum(costs(point, accounting)) / point["tokens"] * 1e6
    if accounting == "upstream":
        u = point["upstream"]
        return {"throughput_tok_s": u["throughput_tok_s"], "itl_ms": u["itl_ms"],
                "usd_per_mtok": usd}
    seconds = point["server_time_s"] if accounting == "ours" \
        else point[f"server_{accounting}_s"]
    return {"throughput_tok_s": point["tokens"] / seconds, "itl_ms": point["itl_ms"]["mean"],
            "usd_per_mtok": usd}


def break_even_edge_price(point: dict[str, Any], usd_per_mtok: float,
                          accounting: str = "upstream") -> float | None:
    """The $/h of an edge at which a SpecEdge point costs ``usd_per_mtok`` (a baseline's):
    its edges' bill is linear in their price. None: dearer even with free edges."""
    server, edges = costs(point, accounting)
    allowed = usd_per_mtok * point["tokens"] / 1e6 - server
    if allowed < 0:
        return None
    return math.inf if edges <= 0 else point["prices"]["edge_per_hour"] * allowed / edges


def priced(point: dict[str, Any]) -> dict[str, Any]:
    """What :func:`costs` reads of a point: enough to price a further draw of it."""
    return {**{k: point[k] for k in ("tokens", "server_cost_usd", "server_busy_s",
                                     "server_wall_s", "edge_cost_usd", "prices")},
            "upstream": {"edge_cost_usd": point["upstream"]["edge_cost_usd"]}}


def compare_draws(candidate: list[float | None], reference: list[float | None]) -> str:
    """How ``candidate``'s break-even edge prices stand against ``reference``'s over paired
    draws (the same seeds; None, dearer even with free edges, is the lowest): ``higher`` or
    ``lower`` only where every draw agrees, ``equal`` where every draw is equal, else
    ``tie`` (the difference lies inside the draws' spread, so one draw cannot tell it)."""
    def rank(price: float | None) -> float:
        return -math.inf if price is None else price
    signs = {(rank(c) > rank(r)) - (rank(c) < rank(r))
             for c, r in zip(candidate, reference, strict=True)}
    return {frozenset({1}): "higher", frozenset({-1}): "lower",
            frozenset({0}): "equal"}.get(frozenset(signs), "tie")
