"""Latency models of the simulator: what a batched forward costs, fitted on a run's own
forwards (:class:`LatencyModel`) or interpolated in a profile (:class:`ProfileLatency`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from specedge.analysis.run_records import read_frame
from specedge.base.config.checks import project_file
from specedge.base.records import SERVER_FILE, STEPS_FILE, ServerStepRecord, StepRecord
from specedge.base.roofline import plain_name


class SimulationError(ValueError):
    """A run or trace cannot be simulated; the message says what is missing."""




@dataclass(frozen=True)
class LatencyModel:
    """Seconds of one batched forward fitted on a run's own forwards:
    ``a + b * tokens + c * context`` (tokens: every new token of the batch, tree nodes and
    catch-up tokens; context: the tokens already in the batch's KV). Least squares over the
    terms that come out >= 0."""

    a_s: float
    b_s: float
    source: str  # where the numbers come from (a run's records)
    c_s: float = 0.0

    def seconds(self, tokens: int, batch: int = 1, context: int = 0) -> float:
        return self.a_s + self.b_s * tokens + self.c_s * context

    def describe(self) -> dict[str, Any]:
        return {"kind": "linear fit", "a_ms": self.a_s * 1e3, "b_ms_per_token": self.b_s * 1e3,
                "c_ms_per_context_token": self.c_s * 1e3, "source": self.source}

    @classmethod
    def fit(cls, tokens: np.ndarray, seconds: np.ndarray, source: str,
            context: np.ndarray | None = None) -> LatencyModel:
        if len(tokens) == 0:
            raise SimulationError(f"{source}: no forwards to fit a latency model on")
        context = np.zeros_like(tokens) if context is None else context
        columns = [np.ones(len(tokens)), tokens.astype(float), context.astype(float)]
        y = seconds.astype(float)
        best = (float(np.mean(y)), 0.0, 0.0)  # a constant, when nothing else fits
        best_err = float(np.sum((y - best[0]) ** 2))
        # Every subset of the terms (with the constant or not); the best fit whose
        # coefficients are all >= 0 wins: a least squares with non-negative coefficients.
        for terms in ((0, 1, 2), (0, 1), (1, 2), (0, 2), (1,), (2,)):
            x = np.stack([columns[t] for t in terms], axis=1)
            if np.linalg.matrix_rank(x) < len(terms):
                continue
            coef, *_ = np.linalg.lstsq(x, y, rcond=None)
            if (coef < 0).any():
                continue
            err = float(np.sum((x @ coef - y) ** 2))
            if err < best_err - 1e-15:
                full = [0.0, 0.0, 0.0]
                for t, c in zip(terms, coef, strict=True):
                    full[t] = float(c)
                best, best_err = (full[0], full[1], full[2]), err
        return cls(best[0], best[1], source, best[2])




def _brackets(axis: np.ndarray, x: float) -> list[tuple[int, float]]:
    """Indices and weights that interpolate ``x`` on a sorted axis: linear between grid
    points, linear extrapolation past the last one (a roofline grows linearly there), clamped
    below the first."""
    if len(axis) == 1 or x <= axis[0]:
        return [(0, 1.0)]
    hi = min(int(np.searchsorted(axis, x)), len(axis) - 1)
    lo = hi - 1
    w = (x - axis[lo]) / (axis[hi] - axis[lo])
    return [(lo, 1.0 - w), (hi, w)]




@dataclass(frozen=True)
class ProfileLatency:
    """Seconds of one batched forward read from a profile's grid (batch x new tokens per
    sequence x prefix), interpolated at the batch's size and its sequences' mean tokens and
    prefix."""

    batches: np.ndarray
    nodes: np.ndarray
    prefixes: np.ndarray
    ms: np.ndarray  # [batch, nodes, prefix]
    source: str

    def seconds(self, tokens: int, batch: int = 1, context: int = 0) -> float:
        ms = sum(wb * wn * wp * self.ms[b, n, p]
                 for b, wb in _brackets(self.batches, batch)
                 for n, wn in _brackets(self.nodes, tokens / batch)
                 for p, wp in _brackets(self.prefixes, context / batch))
        return max(0.0, float(ms)) / 1e3

    def describe(self) -> dict[str, Any]:
        return {"kind": "profile", "source": self.source}

    @classmethod
    def of(cls, rows: pd.DataFrame, source: str) -> ProfileLatency:
        if "prefix" not in rows:  # a profile of one prefix length that does not say which
            rows = rows.assign(prefix=0)
        axes = [np.array(sorted(set(rows[k]))) for k in ("batch", "nodes", "prefix")]
        grid = rows.pivot_table(index=["batch", "nodes", "prefix"], values="ms_median")
        if len(grid) != math.prod(len(a) for a in axes):
            raise SimulationError(f"{source}: the rows are not a full batch x nodes x prefix "
                                  "grid")
        ms = grid["ms_median"].to_numpy().reshape([len(a) for a in axes])
        return cls(*axes, ms, source)




Latency = LatencyModel | ProfileLatency




def profile_latencies(path: str | Path, names: dict[str, str]) -> dict[str, ProfileLatency]:
    """Latencies of the named models from a profile JSON (``specedge.analysis.profile``'s, or a
    derived one of :mod:`specedge.base.roofline`). Rows are found by role ("target", "draft", as
    ``specedge.analysis.profile`` writes them) or by architecture name (a profile of many models:
    ``qwen3-14b`` matches ``Qwen/Qwen3-14B``)."""
    try:
        data = json.loads(project_file(str(path)).read_text())
        rows = pd.DataFrame(data["rows"])
    except (OSError, ValueError, KeyError) as exc:
        raise SimulationError(f"profile {str(path)!r}: not a specedge.analysis.profile JSON "
                              f"({exc})") from None
    latencies = {}
    for role, name in names.items():
        r = rows[rows["model"] == role]
        if r.empty:
            r = rows[rows["model"].map(plain_name) == plain_name(name)]
        if r.empty:
            raise SimulationError(
                f"profile {str(path)!r} has no rows for the {role} ({name!r}): it holds "
                f"{', '.join(sorted(set(rows['model'])))}")
        kind = "derived" if data.get("derived") else "measured"
        source = (f"{path} ({r['model'].iloc[0]}, {data.get('device_name', '?')}, "
                  f"{data.get('forward_path')}, {kind})")
        latencies[role] = ProfileLatency.of(r, source)
    return latencies




@dataclass(frozen=True)
class ServerFit:
    """What a run's own server records say about its target forwards and steps."""

    target: LatencyModel
    prefill_extra_s: float  # a prefill forward's mean excess over the model (the prompt)
    step_overhead_s: float  # server-side loops: a step's time outside drafting and forward
    step_gap_s: float  # server-side loops: time between one step's end and the next's start


def fit_server(run_dir: Path) -> ServerFit:
    """The target's latency fitted on a run's own forwards (what the server timed)."""
    problems: list[str] = []
    overhead = gap = 0.0
    if (run_dir / SERVER_FILE).exists():
        steps = read_frame(run_dir / SERVER_FILE, ServerStepRecord, problems)
        tokens, seconds = steps["tree_nodes"].to_numpy(), steps["forward_s"].to_numpy()
        prefill, context = steps["prefill_count"].to_numpy(), steps["prefix_tokens"].to_numpy()
    else:
        steps = read_frame(run_dir / STEPS_FILE, StepRecord, problems)
        per = steps.groupby("step").agg(tokens=("tree_size", "sum"),
                                        seconds=("target_s", "first"),
                                        prefill=("prefill", "sum"), draft=("draft_s", "max"),
                                        t_start=("t_start", "first"), t_end=("t_end", "first"),
                                        context=("prefix", "sum"))
        tokens, seconds = per["tokens"].to_numpy(), per["seconds"].to_numpy()
        prefill, context = per["prefill"].to_numpy(), per["context"].to_numpy()
        overhead = float((per["t_end"] - per["t_start"] - per["draft"] - per["seconds"])
                         .clip(lower=0).mean())
        order = per.sort_values("t_start")
        gap = float((order["t_start"].shift(-1) - order["t_end"]).clip(lower=0).mean() or 0.0)
    # Prefill forwards also run the prompt, which the tree sizes do not count: fit the rest,
    # and charge a prefill its mean excess.
    plain = prefill == 0
    keep = plain if plain.sum() >= 2 else np.ones_like(plain, dtype=bool)
    model = LatencyModel.fit(tokens[keep], seconds[keep], f"fitted on {run_dir}",
                             context[keep])
    excess = [(s - model.seconds(int(t), 1, int(c))) / n
              for t, s, n, c in zip(tokens, seconds, prefill, context, strict=True) if n > 0]
    return ServerFit(model, max(0.0, float(np.mean(excess))) if excess else 0.0, overhead,
                     gap)
