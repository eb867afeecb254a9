"""Network emulation for the edge-server link: one-way delay, jitter, bandwidth and loss.

The paper's claims are about edges on a WAN; on one machine the link is loopback. The edge
applies the emulated link to each Validate round trip (request out, reply back) by sleeping
for ``delay +- jitter + bytes / bandwidth`` each way, so wait times, and therefore pipeline
behaviour, look like a real link's. A lost message (``loss``, per message) is never
delivered: the edge notices after ``loss_timeout_ms`` and sends the round again, which the
server answers idempotently. All zeros (the default) emulates nothing.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from specedge.base.config.hardware import LinkConfig


@dataclass
class EmulatedLink:
    cfg: LinkConfig
    rng: random.Random

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
        return self.cfg.loss > 0 and self.rng.random() < self.cfg.loss

    async def cross(self, n_bytes: int) -> float:
        """Wait as long as ``n_bytes`` take to cross the link; returns the seconds waited."""
        seconds = self.one_way_s(n_bytes)
        if seconds:
            await asyncio.sleep(seconds)
        return seconds
