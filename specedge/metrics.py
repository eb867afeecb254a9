"""Per-run metrics from the JSONL records (schemas in :mod:`specedge.records`).

Server time is counted two ways: ``busy`` (the sum of the server's step times) and ``wall``
(first to last server record, idle included). Upstream charges SpecEdge by wall time and the
server-side baselines by busy time; both are reported so either comparison can be made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from specedge.records import OUTPUTS_FILE, STEPS_FILE


class MetricsError(ValueError):
    """A run directory holds no usable records; the message says which file."""


def read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise MetricsError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    if not rows:
        raise MetricsError(f"{path}: holds no records")
    return pd.DataFrame(rows)


@dataclass
class RunMetrics:
    baseline: str
    tokens: int
    server_busy_s: float
    server_wall_s: float
    itl_ms: float  # mean inter-token latency over non-prefill rounds (ms per token)
    bytes_per_round: float  # Validate request + reply (0 when nothing travels)
    proactive_hit_rate: float  # hits per proactively drafted round (nan when none)

    @property
    def throughput_busy(self) -> float:
        return self.tokens / self.server_busy_s

    @property
    def throughput_wall(self) -> float:
        return self.tokens / self.server_wall_s


def run_metrics(run_dir: Path) -> RunMetrics:
    tokens = int(read_jsonl(run_dir / OUTPUTS_FILE)["output_ids"].map(len).sum())
    if (run_dir / "server.jsonl").exists():  # SpecEdge: server steps and edge rounds
        server = read_jsonl(run_dir / "server.jsonl")
        edge_files = sorted(run_dir.glob("edge-*.jsonl"))
        if not edge_files:
            raise MetricsError(f"{run_dir}: a SpecEdge run without edge-*.jsonl records")
        rounds = pd.concat([read_jsonl(p) for p in edge_files], ignore_index=True)
        later = rounds[~rounds["prefill"]]
        drafted = rounds[rounds["proactive_drafted"]]
        return RunMetrics(
            baseline="specedge", tokens=tokens, server_busy_s=float(server["forward_s"].sum()),
            server_wall_s=float(server["t_end"].max() - server["t_start"].min()),
            itl_ms=float(((later["t_end"] - later["t_start"]) / later["new_tokens"]).mean()
                         * 1e3),
            bytes_per_round=float((rounds["request_bytes"] + rounds["reply_bytes"]).mean()),
            proactive_hit_rate=float(drafted["proactive_hit"].mean()) if len(drafted)
            else float("nan"))
    steps = read_jsonl(run_dir / STEPS_FILE)
    per_step = steps.groupby("step").agg(t_start=("t_start", "first"), t_end=("t_end", "first"))
    later = steps[~steps["prefill"]]
    return RunMetrics(
        baseline=str(steps["baseline"].iloc[0]), tokens=tokens,
        server_busy_s=float((per_step["t_end"] - per_step["t_start"]).sum()),
        server_wall_s=float(per_step["t_end"].max() - per_step["t_start"].min()),
        itl_ms=float(((later["t_end"] - later["t_start"]) / later["new_tokens"]).mean() * 1e3),
        bytes_per_round=0.0, proactive_hit_rate=float("nan"))
