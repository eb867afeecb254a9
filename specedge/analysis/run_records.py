"""A run's JSONL records (schemas in :mod:`specedge.base.records`) brought to one shape for
every baseline: a table of *rounds* (one draft-verify round, or one decoding step, of one
request) and a table of *server steps* (one target forward, or one batched step of the
server-side loop), which every metric, figure and simulation reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from specedge.base.records import (
    EDGE_FILES,
    OUTPUTS_FILE,
    SERVER_FILE,
    STEPS_FILE,
    EdgeRoundRecord,
    OutputRecord,
    RecordsError,
    ServerStepRecord,
    StepRecord,
    read_jsonl,
)


class MetricsError(RecordsError):
    """A run directory holds no usable records; the message says which file."""



def read_frame(path: Path, schema: type, problems: list[str]) -> pd.DataFrame:
    """:func:`specedge.base.records.read_jsonl` as a frame; a file without records is an error."""
    try:
        return pd.DataFrame(read_jsonl(path, schema, problems))
    except RecordsError as exc:
        raise MetricsError(str(exc)) from None


@dataclass
class RunRecords:
    """A run's records in the common shape every metric and figure reads."""

    run_dir: Path
    baseline: str
    rounds: pd.DataFrame  # one row per round (see _rounds_* for the columns)
    # one row per server step: t_start, t_end, busy_s, batch_size, and the goodput budget's
    # sent, verified, expected_tokens, emitted_tokens, free_s
    server: pd.DataFrame
    outputs: pd.DataFrame | None  # None when the run wrote none (it ended early)
    problems: list[str] = field(default_factory=list)


def _rounds_server_side(steps: pd.DataFrame) -> pd.DataFrame:
    latency = steps["t_end"] - steps["t_start"]
    return pd.DataFrame({
        "client_id": -1, "request_id": steps["request_id"], "category": steps["category"],
        "prefill": steps["prefill"].astype(bool), "draft_s": steps["draft_s"],
        "target_s": steps["target_s"], "latency_s": latency, "network_s": 0.0,
        "queue_s": 0.0, "verify_s": steps["target_s"], "late_s": 0.0,
        # the rest of the step: the other requests' drafting and bookkeeping
        "other_s": (latency - steps["draft_s"] - steps["target_s"]).clip(lower=0),
        "accepted": steps["accepted"], "new_tokens": steps["new_tokens"],
        "tree_size": steps["tree_size"], "draft_forwards": steps["draft_forwards"],
        "verified_size": steps["tree_size"], "proactive_forwards": 0,
        "proactive_drafted": False, "proactive_hit": False,
        "from_proactive": False, "proactive_s": 0.0, "proactive_guessed_p": 0.0, "bytes": 0,
        "tree_depth": steps["tree_depth"], "t_start": steps["t_start"],
        "t_sent": steps["t_start"], "t_end": steps["t_end"], **_replay_columns(steps)})


def _rounds_specedge(edge: pd.DataFrame) -> pd.DataFrame:
    latency = edge["t_end"] - edge["t_start"]
    network = (edge["wait_s"] - edge["server_queue_s"] - edge["server_verify_s"]).clip(lower=0)
    return pd.DataFrame({
        "client_id": edge["client_id"], "request_id": edge["request_id"],
        "category": edge["category"], "prefill": edge["prefill"].astype(bool),
        "draft_s": edge["draft_s"], "target_s": edge["wait_s"] + edge["late_s"],
        "latency_s": latency,
        "network_s": network, "queue_s": edge["server_queue_s"],
        "verify_s": edge["server_verify_s"],
        "late_s": edge["late_s"],
        "other_s": (latency - edge["draft_s"] - edge["wait_s"] - edge["late_s"]).clip(lower=0),
        "accepted": edge["accepted"], "new_tokens": edge["new_tokens"],
        "tree_size": edge["tree_size"], "draft_forwards": edge["draft_forwards"],
        "proactive_forwards": edge["proactive_forwards"],
        "proactive_drafted": edge["proactive_drafted"],
        "proactive_hit": edge["proactive_hit"], "from_proactive": edge["from_proactive"],
        "proactive_s": edge["proactive_s"], "proactive_guessed_p": edge["proactive_guessed_p"],
        "bytes": edge["request_bytes"] + edge["reply_bytes"], "tree_depth": edge["tree_depth"],
        "verified_size": edge["tree_size"].where(edge["verified_nodes"] < 0,
                                                 edge["verified_nodes"] + 1),
        "t_start": edge["t_start"], "t_sent": edge["t_sent"], "t_end": edge["t_end"],
        **_replay_columns(edge)})


def _replay_columns(records: pd.DataFrame) -> dict[str, pd.Series]:
    """The drafted tree's survivals, parents and accepted path (what the simulator replays a
    goodput budget on); empty for auto-batch's steps and older runs."""
    return {k: records[k] for k in ("survival", "parents", "path")}


def load_records(run_dir: Path) -> RunRecords:
    run_dir = Path(run_dir)
    problems: list[str] = []
    if (run_dir / SERVER_FILE).exists():
        server = read_frame(run_dir / SERVER_FILE, ServerStepRecord, problems)
        edge_files = sorted(run_dir.glob(EDGE_FILES))
        if not edge_files:
            raise MetricsError(f"{run_dir}: a SpecEdge run without edge-*.jsonl records")
        edges = []
        for path in edge_files:
            try:
                edges.append(read_frame(path, EdgeRoundRecord, problems))
            except MetricsError as exc:  # an edge that never finished a round
                problems.append(str(exc))
        if not edges:
            first = f"; first problem: {problems[0]}" if problems else ""
            raise MetricsError(f"{run_dir}: no usable edge round records "
                               f"({len(problems)} problems){first}")
        baseline = "specedge"
        rounds = _rounds_specedge(pd.concat(edges, ignore_index=True))
        # the goodput budget's choice: drafted nodes sent and verified, the tokens it expected
        # (0: a fixed budget) and those the step emitted, the idle time it counted as free
        steps = pd.DataFrame({"t_start": server["t_start"], "t_end": server["t_end"],
                              "busy_s": server["forward_s"],
                              "batch_size": server["batch_size"],
                              "sent": server["sent_nodes"] - server["batch_size"],
                              "verified": server["tree_nodes"] - server["batch_size"],
                              "expected_tokens": server["expected_tokens"],
                              "emitted_tokens": server["emitted_tokens"],
                              "free_s": server["free_s"]})
    elif (run_dir / STEPS_FILE).exists():
        records = read_frame(run_dir / STEPS_FILE, StepRecord, problems)
        baseline = str(records["baseline"].iloc[0])
        rounds = _rounds_server_side(records)
        records = records.assign(sent=(records["drafted_nodes"] - 1).clip(lower=0),
                                 verified=records["tree_size"] - 1,
                                 emitted=records["accepted"] + 1)
        steps = records.groupby("step").agg(t_start=("t_start", "first"),
                                            t_end=("t_end", "first"),
                                            batch_size=("batch_size", "first"),
                                            sent=("sent", "sum"), verified=("verified", "sum"),
                                            emitted_tokens=("emitted", "sum"))
        steps["busy_s"] = steps["t_end"] - steps["t_start"]
        steps["expected_tokens"], steps["free_s"] = 0.0, 0.0  # a server-side loop: none
        steps = steps.reset_index(drop=True)
    else:
        raise MetricsError(f"{run_dir}: no {STEPS_FILE} or {SERVER_FILE}: not a run directory "
                           "or the run wrote nothing")
    outputs = None
    if (run_dir / OUTPUTS_FILE).exists():
        try:
            outputs = read_frame(run_dir / OUTPUTS_FILE, OutputRecord, problems)
        except MetricsError as exc:
            problems.append(str(exc))
    return RunRecords(run_dir, baseline, rounds.sort_values("t_start", ignore_index=True),
                      steps.sort_values("t_start", ignore_index=True), outputs, problems)
