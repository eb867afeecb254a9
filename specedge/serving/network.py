"""Network emulation for the edge-server link: one-way delay, jitter, bandwidth and loss.

The paper's claims are about edges on a WAN; on one machine the link is loopback. The edge
applies the emulated link to each Validate round trip (request out, reply back) by sleeping
for ``delay +- jitter + bytes / bandwidth`` each way, so wait times, and therefore pipeline
behaviour, look like a real link's. A lost message (``loss``, per message) is never
delivered: the edge notices after ``loss_timeout_ms`` and sends the round again, which the
server answers idempotently. All zeros (the default) emulates nothing. A link can also drop
for a while (:meth:`EmulatedLink.drop`, an edge's answer to SIGUSR1): every message crossing
it then is lost, as when a Wi-Fi or cellular link goes away and comes back.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from specedge.base.config.hardware import LinkConfig


@dataclass
class EmulatedLink:
    cfg: LinkConfig
    rng: random.Random
    down_until: float = 0.0  # time.monotonic() until which the link is down

    @classmethod
    def for_client(cls, cfg: LinkConfig, seed: int, client_id: int) -> EmulatedLink:
        return cls(cfg, random.Random(seed * 1_000_003 + client_id))

    def one_way_s(self, n_bytes: int) -> float:
        delay = self.cfg.delay_ms
        if self.cfg.jitter_ms:
            delay += self.rng.uniform(-self.cfg.jitter_ms, self.cfg.jitter_ms)
        return max(0.0, delay) / 1000 + self.cfg.wire_s(n_bytes)

    def lost(self) -> bool:
        """Whether the message now crossing is lost."""
        if time.monotonic() < self.down_until:
            return True
        return self.cfg.loss > 0 and self.rng.random() < self.cfg.loss

    def drop(self, seconds: float) -> None:
        """Take the link down for ``seconds`` from now."""
        self.down_until = time.monotonic() + seconds

    async def cross(self, n_bytes: int) -> float:
        """Wait as long as ``n_bytes`` take to cross the link; returns the seconds waited."""
        seconds = self.one_way_s(n_bytes)
        if seconds:
            await asyncio.sleep(seconds)
        return seconds
