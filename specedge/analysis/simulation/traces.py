"""Acceptance traces: a run's rounds (draft time, tree, accepted tokens, bytes) as the
simulator draws them, read from a run directory or a saved trace file."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from specedge.algorithm.goodput import encode, replayed_survivals
from specedge.analysis.run_records import load_records
from specedge.analysis.simulation.latency import SimulationError
from specedge.base.config.run import load_run_config
from specedge.base.records import OUTPUTS_FILE


@dataclass
class TraceRound:
    draft_s: float
    accepted: int
    new_tokens: int  # before the length cut; at least 1 (the bonus)
    tree_size: int
    bytes: int
    draft_forwards: int  # before the tree was sent (proactive ones overlap the wait)
    late_s: float = 0.0  # the reply waited for proactive drafting to stop
    proactive_s: float = 0.0
    other_s: float = 0.0  # the edge's own bookkeeping around the round
    transport_s: float = 0.0  # measured network time beyond the emulated link (gRPC, stack)
    hit: bool = False  # its proactive guess hit (the next round grows the guessed sub-tree)
    # the drafted tree as a goodput budget ranks it (specedge.base.records: survival hex,
    # parents, accepted path); empty when not recorded
    survival: str = ""
    parents: list[int] = field(default_factory=list)
    path: list[int] = field(default_factory=list)


def served_order(rounds: pd.DataFrame) -> dict[int, int]:
    """Each request's place in the order the run served them, which the simulator deals out
    the same way: a server-side loop admits them in order; edge c of n takes places c, c + n,
    ... (as specedge.engine.datasets.edge_share). outputs.jsonl is in finishing order."""
    first = rounds.groupby("request_id").agg(client=("client_id", "first"),
                                            t=("t_start", "min")).sort_values("t")
    clients = sorted(first["client"].unique())
    if clients == [-1]:  # a server-side loop
        return {int(k): i for i, k in enumerate(first.index)}
    rank = first.groupby("client").cumcount()
    slot = {c: i for i, c in enumerate(clients)}
    return {int(k): int(rank[k]) * len(clients) + slot[first.loc[k, "client"]]
            for k in first.index}


@dataclass
class Trace:
    """Rounds of a run (the same pair and dataset) to draw from, and its requests' lengths."""

    source: str
    prefill: list[TraceRound]
    plain: list[TraceRound]  # drafted from scratch
    adopted: list[TraceRound]  # grown from a proactive hit
    hit_rate: float  # of rounds drafted with a proactive guess
    # (request id, category, tokens generated, prompt tokens)
    output_lengths: list[tuple[int, str, int, int]]

    acceptance: list[float] | None = None  # P(k accepted): replaces the rounds' own counts
    # Rounds are chains of this many drafted tokens (published chain acceptance): the tree
    # holds them and the root, drafted in as many forwards.
    chain: int | None = None
    by_request: dict[int, list[TraceRound]] = field(default_factory=dict)  # in round order
    # Replay: request r's k-th round is the trace's (a run re-simulated as it happened);
    # otherwise rounds are drawn at random from the pools above.
    replay: bool = False
    # A server-side run's drafting time of each of its steps, in order (the batch's, which
    # each of its rounds also records): what a replay's k-th step drafts for.
    step_draft_s: list[float] = field(default_factory=list)

    def draw(self, rng: random.Random, prefill: bool, adopted: bool, request: int = -1,
             index: int = 0) -> TraceRound:
        """The round to simulate: request ``request``'s ``index``-th when replaying, else a
        random prefill, adopted or plain round (with the configured acceptance, if any)."""
        own = self.by_request.get(request, []) if self.replay else []
        if index < len(own):
            return own[index]
        pool = self.prefill if prefill and self.prefill else (
            self.adopted if adopted and self.adopted else self.plain or self.prefill)
        r = rng.choice(pool)
        if self.chain is not None:
            r = replace(r, tree_size=self.chain + 1, draft_forwards=self.chain,
                        **self._chain_tree())
        if self.acceptance is None:
            return r
        k = rng.choices(range(len(self.acceptance)), weights=self.acceptance)[0]
        return replace(r, accepted=k, new_tokens=k + 1, path=self._path(r, k))

    def _chain_tree(self) -> dict[str, Any]:
        """A chain's survivals as a calibrated draft would give them, P(at least j accepted),
        and its parents."""
        assert self.chain is not None
        if self.acceptance is None:
            return {"survival": "", "parents": [], "path": []}
        tail = [sum(self.acceptance[j:]) for j in range(self.chain + 1)]
        return {"survival": encode(tail).hex(), "parents": list(range(-1, self.chain))}

    @staticmethod
    def _path(r: TraceRound, k: int) -> list[int]:
        """The accepted path of ``k`` tokens when the acceptance replaces the round's own: the
        tree's likeliest chain (with ``k`` beyond it, a kept chain accepts all ``k``)."""
        if not r.survival:
            return []
        survival = replayed_survivals(r.survival, r.parents)
        children: dict[int, list[int]] = {}
        for i, parent in enumerate(r.parents[1:], start=1):
            children.setdefault(parent, []).append(i)
        path, node = [], 0
        while len(path) < k and children.get(node):
            node = max(children[node], key=lambda i: (survival[i], -i))
            path.append(node)
        return path


TRACE_FORMAT = "specedge.trace/1"


def save_trace(trace: Trace, path: Path, provenance: str) -> None:
    """A run's rounds as one JSON file: what simulations draw from, without the records.
    ``provenance`` says what was measured where (the file is data, kept in the repository)."""
    pools = {k: [asdict(r) for r in getattr(trace, k)] for k in ("prefill", "plain", "adopted")}
    path.write_text(json.dumps({"format": TRACE_FORMAT, "source": trace.source,
                                "provenance": provenance, "hit_rate": trace.hit_rate,
                                "output_lengths": trace.output_lengths, **pools}) + "\n")


def _load_trace(path: Path) -> Trace:
    try:
        data = json.loads(path.read_text())
        if data.get("format") != TRACE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, not {TRACE_FORMAT!r}")
        pools = {k: [TraceRound(**r) for r in data[k]] for k in ("prefill", "plain", "adopted")}
        return Trace(source=f"{path} ({data['provenance']})", hit_rate=float(data["hit_rate"]),
                     output_lengths=[tuple(x) for x in data["output_lengths"]],  # type: ignore[misc]
                     **pools)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SimulationError(f"{path}: not a trace file written by save_trace ({exc})") from None


def trace_of(run_dir: Path) -> Trace:
    """The acceptance trace of a real run (its rounds and its requests' output lengths), or
    of a trace file (:func:`save_trace`)."""
    if Path(run_dir).is_file():
        return _load_trace(Path(run_dir))
    rec = load_records(run_dir)
    if rec.outputs is None:
        raise SimulationError(f"{run_dir}: no {OUTPUTS_FILE}: the output lengths are unknown")
    r = rec.rounds

    specedge = rec.baseline == "specedge"
    cfg = load_run_config(run_dir)
    link = cfg.hardware.link if specedge else None

    def transport(x: Any) -> float:
        """What the round's network time was beyond the emulated link's mean. The server
        admits a call while a forward runs (specedge.serving.scheduler), so the time the
        call then waits is on the server's queue clock, which the simulator replays itself."""
        if link is None:
            return 0.0
        return max(0.0, float(x.network_s) - 2 * link.delay_ms / 1e3 - link.wire_s(x.bytes))

    def rounds(frame: pd.DataFrame) -> list[TraceRound]:
        # Server-side rounds' other_s holds the other requests' drafting: not this round's.
        return [TraceRound(float(x.draft_s), int(x.accepted), int(x.accepted) + 1,
                           int(x.tree_size), int(x.bytes),
                           int(x.draft_forwards) - int(x.proactive_forwards),
                           float(x.late_s), float(x.proactive_s),
                           float(x.other_s) if specedge else 0.0, transport(x),
                           bool(x.proactive_hit), str(x.survival), list(x.parents),
                           list(x.path))
                for x in frame.itertuples()]

    drafted = r["proactive_drafted"].astype(bool)
    hits = r.loc[drafted, "proactive_hit"].astype(bool)
    steps = [] if specedge else r.groupby("t_start")["draft_s"].first().sort_index().tolist()
    return Trace(
        step_draft_s=[float(x) for x in steps],
        source=str(run_dir),
        prefill=rounds(r[r["prefill"]]),
        plain=rounds(r[~r["prefill"] & ~r["from_proactive"].astype(bool)]),
        adopted=rounds(r[~r["prefill"] & r["from_proactive"].astype(bool)]),
        hit_rate=float(hits.mean()) if len(hits) else 0.0,
        by_request={int(k): rounds(g) for k, g in r.groupby("request_id", sort=False)},
        output_lengths=[(int(o.request_id), str(o.category), len(o.output_ids),
                         len(o.prompt_ids)) for o in rec.outputs.sort_values(
                             "request_id", key=lambda ids: ids.map(served_order(r)))
                        .itertuples()])
