"""Where a simulation's acceptance comes from (:class:`Scenario`): a trace's rounds as they were,
or a published chain acceptance, or the maps' tokens per round, turned into the distribution
of accepted tokens per round that the simulator draws from."""

from __future__ import annotations

import math
from dataclasses import dataclass

from specedge.analysis.simulation.systems import (
    Settings,
)
from specedge.base.config.checks import ConfigError


@dataclass
class Scenario:
    """Where a simulation's acceptance comes from. ``trace``: a run directory or trace file
    whose rounds are drawn (tree sizes, draft forwards, output lengths). With
    ``tokens_per_round`` and ``drafted``, a published chain acceptance replaces the rounds'
    (the trace then gives only the output lengths and bytes)."""

    name: str
    label: str  # what it is, for tables
    source: str  # where it comes from
    trace: str
    tokens_per_round: float | None = None  # mean tokens per verification (bonus included)
    drafted: int | None = None  # chain length those were measured at

    def __post_init__(self) -> None:
        if (self.tokens_per_round is None) != (self.drafted is None):
            raise ConfigError(f"scenario {self.name!r}: tokens_per_round and drafted are "
                              "given together (a published chain acceptance) or not at all")
        if self.drafted is not None and not 1 <= self.tokens_per_round <= self.drafted + 1:
            raise ConfigError(f"scenario {self.name!r}: tokens_per_round = "
                              f"{self.tokens_per_round} is not accepted: between 1 and "
                              f"drafted + 1 = {self.drafted + 1}")

    def settings(self) -> Settings:
        out: Settings = {"simulate.trace": self.trace}
        if self.drafted is not None:
            assert self.tokens_per_round is not None
            out |= {"simulate.acceptance": chain_acceptance(self.tokens_per_round, self.drafted),
                    "simulate.chain": self.drafted}
        return out


def chain_acceptance(tokens_per_round: float, drafted: int) -> list[float]:
    """P(k of ``drafted`` chain tokens accepted), k = 0..drafted, for the constant per-token
    acceptance rate a whose mean tokens per verification, 1 + a + ... + a^drafted, is
    ``tokens_per_round`` (bisection; the closed form has no inverse)."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        a = (lo + hi) / 2
        if sum(a ** j for j in range(drafted + 1)) < tokens_per_round:
            lo = a
        else:
            hi = a
    a = (lo + hi) / 2
    probs = [a ** k * (1 - a) for k in range(drafted)] + [a ** drafted]
    return [round(p, 6) for p in _normalized(probs)]


def two_point_acceptance(tokens_per_round: float) -> list[float]:
    """The acceptance with mean ``tokens_per_round`` - 1 accepted tokens spread over the two
    nearest counts: the map's tokens-per-round axis, the trace's trees kept."""
    mean = tokens_per_round - 1
    low = math.floor(mean)
    frac = round(mean - low, 6)
    probs = [0.0] * (low + 2)
    probs[low], probs[low + 1] = 1 - frac, frac
    return _normalized(probs if frac else probs[:-1])


def _normalized(probs: list[float]) -> list[float]:
    total = sum(probs)
    return [p / total for p in probs]
