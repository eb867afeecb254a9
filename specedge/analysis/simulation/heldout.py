"""Held-out validation of the performance model: configurations it was never fitted or tuned
on, drawn at random (seeded) from a declared space, each run for real beside a server-only run
of the same prompts at the same concurrency, then re-simulated from its own records.

The fixed matrix (``validation.runs``) is where the model was built; a draw from this space is
where it has to hold. The space lives in ``validation.heldout`` of workflow/config.yaml; the
Snakefile turns each draw into two runs, ``heldout-<k>`` and ``heldout-<k>-server_only``.
Pure Python on purpose: the Snakefile imports it while it parses.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

EDGES = "edges"  # drawn: server.num_clients, hardware.nodes and the server-only batch follow
DATASET = "dataset"  # drawn: a name of ``datasets``, whose overrides both runs take
# Keys the server-only twin shares with its SpecEdge run: it drafts the same trees. The link,
# the proactive rule and the server's scheduling exist only where edges do.
SHARED_PREFIXES = ("edge.max_", "edge.tree_policy", "generation.", "model.")
# A drawn value capped at another drawn one, as the configuration's checks require: a batch
# holds at most the edges there are; jitter cannot exceed the delay it varies.
CAPS = {"server.max_batch_size": EDGES, "hardware.link.jitter_ms": "hardware.link.delay_ms"}


class HeldoutError(ValueError):
    """A held-out space that cannot be drawn from, named with what is accepted."""


@dataclass(frozen=True)
class Draw:
    """One held-out configuration: what was drawn and the overrides of its two runs."""

    name: str
    choices: dict[str, Any]
    specedge: list[str]
    server_only: list[str]


def _value(value: Any) -> str:
    """A YAML value as a Hydra override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def draw(space: Mapping[str, Sequence[Any]], datasets: Mapping[str, Sequence[str]], n: int,
         seed: int, requests: int) -> list[Draw]:
    """``n`` configurations, each parameter drawn uniformly and independently (seeded, in the
    space's key order sorted, so adding a draw never changes the earlier ones).

    ``space``: override key -> values, plus ``edges`` (how many edges) and ``dataset`` (names
    of ``datasets``); a value of :data:`CAPS` is capped at the value it depends on. Each run
    serves ``max(requests, edges)`` prompts, so no edge is idle."""
    if n < 0:
        raise HeldoutError(f"validation.heldout.draws = {n} is not accepted: an integer >= 0")
    if requests < 1:
        raise HeldoutError(f"validation.heldout.requests = {requests} is not accepted: an "
                           "integer >= 1")
    for key, values in space.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise HeldoutError(f"validation.heldout.space.{key} = {values!r} is not accepted: "
                               "a non-empty list of values to draw from")
    if EDGES not in space:
        raise HeldoutError("validation.heldout.space has no 'edges': a list of edge counts "
                           "is required (the server-only twin's batch follows it)")
    if any(not isinstance(e, int) or e < 1 for e in space[EDGES]):
        raise HeldoutError(f"validation.heldout.space.edges = {list(space[EDGES])} is not "
                           "accepted: integers >= 1")
    unknown = sorted(set(space.get(DATASET, [])) - set(datasets))
    if unknown:
        raise HeldoutError(f"validation.heldout.space.dataset names {unknown}, which are not "
                           f"in validation.heldout.datasets; accepted: {sorted(datasets)}")
    rng = random.Random(seed)
    draws = []
    for k in range(n):
        choices = {key: rng.choice(list(space[key])) for key in sorted(space)}
        draws.append(_overrides(f"heldout-{k}", choices, datasets, requests))
    return draws


def _overrides(name: str, choices: dict[str, Any], datasets: Mapping[str, Sequence[str]],
               requests: int) -> Draw:
    edges = int(choices[EDGES])
    both = [*(datasets[choices[DATASET]] if DATASET in choices else []),
            f"dataset.max_requests={max(requests, edges)}"]
    own: list[str] = []
    for key, value in choices.items():
        if key in (EDGES, DATASET):
            continue
        if key in CAPS:
            value = min(value, choices.get(CAPS[key], 0))
        (both if key.startswith(SHARED_PREFIXES) else own).append(f"{key}={_value(value)}")
    nodes = ",".join(["{device:cpu}"] * edges)
    specedge = [*both, *own, f"server.num_clients={edges}",
                f"hardware.nodes={{localhost:[{nodes}]}}"]
    if "server.max_batch_size" not in choices:
        specedge.append(f"server.max_batch_size={min(edges, 2)}")  # the schema's 2, capped
    server_only = [*both, "baseline=server_only", f"baseline.max_batch_size={edges}"]
    return Draw(name, choices, specedge, server_only)


def runs(draws: Sequence[Draw]) -> dict[str, list[str]]:
    """Every run of the draws: name -> overrides (``<name>`` and ``<name>-server_only``)."""
    out: dict[str, list[str]] = {}
    for d in draws:
        out[d.name], out[f"{d.name}-server_only"] = d.specedge, d.server_only
    return out
