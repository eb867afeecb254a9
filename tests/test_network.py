"""The emulated edge-server link."""

from __future__ import annotations

import asyncio
import time

import pytest

from specedge.base.config.checks import ConfigError
from specedge.base.config.hardware import LinkConfig
from specedge.serving.network import EmulatedLink


def test_zero_link_costs_nothing() -> None:
    link = EmulatedLink.for_client(LinkConfig(), seed=0, client_id=0)
    assert link.one_way_s(10_000) == 0.0


def test_delay_and_bandwidth_add_up() -> None:
    link = EmulatedLink.for_client(LinkConfig(delay_ms=20, bandwidth_mbps=8), 0, 0)
    assert link.one_way_s(1000) == pytest.approx(0.020 + 1000 * 8 / 8e6)


def test_jitter_stays_in_bounds_and_is_seeded() -> None:
    cfg = LinkConfig(delay_ms=10, jitter_ms=4)
    link, again = (EmulatedLink.for_client(cfg, 1, 2) for _ in range(2))
    seq = [link.one_way_s(0) for _ in range(200)]
    assert all(0.006 <= s <= 0.014 for s in seq) and len(set(seq)) > 100
    assert [again.one_way_s(0) for _ in range(200)] == seq  # same seed and client
    other = EmulatedLink.for_client(cfg, 1, 3)
    assert [other.one_way_s(0) for _ in range(200)] != seq


def test_cross_sleeps() -> None:
    link = EmulatedLink.for_client(LinkConfig(delay_ms=30), 0, 0)
    t0 = time.perf_counter()
    asyncio.run(link.cross(100))
    assert time.perf_counter() - t0 >= 0.029


def test_bad_link_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"hardware\.link\.jitter_ms"):
        LinkConfig(delay_ms=1, jitter_ms=5)
    with pytest.raises(ConfigError, match=r"hardware\.link\.delay_ms"):
        LinkConfig(delay_ms=-1)
