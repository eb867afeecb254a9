"""A run directory: every file name in it, the JSONL record schemas, and the one reader.

Files in a run directory:

- ``run_config.yaml``: the composed configuration; ``run.json``: what ran (command, versions).
- ``summary.json``: the metrics (:mod:`specedge.analysis.metrics`).
- ``server.port``, ``server_stats.json``, ``lost_edges.json``: the SpecEdge server's port, its
  peak RSS at shutdown, and the edges a run lost (with the requests they left undone).

- ``steps.jsonl``: one :class:`StepRecord` per request per step of the server-side loop
  (server-only and auto-batch baselines).
- ``server.jsonl``: one :class:`ServerStepRecord` per target forward of the SpecEdge server.
- ``edge-<client>.jsonl``: one :class:`EdgeRoundRecord` per round of each SpecEdge edge, and
  ``outputs-edge-<client>.jsonl`` its finished requests (merged into ``outputs.jsonl``).
- ``outputs.jsonl``: one :class:`OutputRecord` per request, whatever the baseline, so anyone
  can check a run's text against the target's own decode.

Each line is flushed as soon as it is written: a run that dies keeps every finished step.
A field added to a schema later gets, in :data:`LATER_FIELDS`, the value that older runs mean
by its absence, so runs made before an upgrade stay readable.
Timestamps are Unix seconds (``time.time()``); durations are seconds (``perf_counter``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import IO, Any

RUN_CONFIG_FILE = "run_config.yaml"
RUN_INFO_FILE = "run.json"
SUMMARY_FILE = "summary.json"
STEPS_FILE = "steps.jsonl"
SERVER_FILE = "server.jsonl"
OUTPUTS_FILE = "outputs.jsonl"
EDGE_FILES = "edge-*.jsonl"
PORT_FILE = "server.port"
STATS_FILE = "server_stats.json"
LOST_FILE = "lost_edges.json"
DTYPE_FILE = "dtype.json"  # the dtype the target ran in, and why (model.dtype=auto)


def run_dtype(run_dir: Path, asked: str) -> str:
    """The dtype the run's target ran in (``dtype.json``, written where it was loaded: the
    rule of ``model.dtype=auto`` depends on that machine); ``asked`` where it has none."""
    path = Path(run_dir) / DTYPE_FILE
    return str(json.loads(path.read_text())["dtype"]) if path.is_file() else asked


def edge_file(run_dir: Path, client_id: int) -> Path:
    """An edge's rounds."""
    return Path(run_dir) / f"edge-{client_id}.jsonl"


def edge_pid_file(run_dir: Path, client_id: int) -> Path:
    """A remote edge's process id on its node, written as it starts (to stop it by id)."""
    return Path(run_dir) / f"edge-{client_id}.pid"


def edge_outputs_file(run_dir: Path, client_id: int) -> Path:
    """An edge's finished requests, before the launcher merges them into outputs.jsonl."""
    return Path(run_dir) / f"outputs-edge-{client_id}.jsonl"


class RecordsError(ValueError):
    """A records file is missing or holds no record; the message names it."""


@dataclass
class StepRecord:
    baseline: str  # specedge | server_only | auto_batch
    step: int  # index of the batched step in the run
    request_id: int  # dataset index of the request
    category: str
    batch_size: int  # requests in this step's target forward
    prefill: bool  # this step also ran the request's prompt (its first step)
    draft_s: float  # draft time of this request's tree (0 for auto-batch)
    target_s: float  # the step's batched target forward (shared by the batch)
    tree_size: int  # nodes the target verified, root included
    accepted: int  # drafted tokens accepted (bonus token excluded)
    new_tokens: int  # tokens appended to the output this step (after EOS / length cut)
    draft_forwards: int  # draft model calls spent on this request's tree
    t_start: float  # when the step began
    t_end: float  # when the step ended
    finished: bool  # the request ended with this step
    prefix: int = 0  # tokens in the request's target KV before the step (what it attends to)
    tree_budget: int = 0  # the node budget and depth this round's shape allowed (tree policy;
    tree_depth: int = 0  # 0: auto-batch, or a run from before tree policies)
    drafted_nodes: int = 0  # of the request's tree, root included (tree_size: those verified;
    # fewer under server.verify_budget=goodput)
    # The drafted tree as a goodput budget would rank it, so the simulator replays pruning
    # (specedge.algorithm.goodput): each node's survival as the wire encodes it (hex, a byte a
    # node, root included), each node's parent, and the accepted path (node indices, root
    # excluded, in the tree as drafted). Empty: not recorded (auto-batch, older runs).
    survival: str = ""
    parents: list[int] = field(default_factory=list)
    path: list[int] = field(default_factory=list)


@dataclass
class ServerStepRecord:
    """One target forward of the SpecEdge server (``server.jsonl``)."""

    step: int
    clients: list[int]  # edges whose trees were verified together
    batch_size: int
    prefill_count: int  # how many of them were a request's first round
    tree_nodes: int  # nodes verified, roots included
    queue_wait_s: float  # the longest any of these calls waited for the forward
    forward_s: float  # the batched target forward
    t_start: float
    t_end: float
    prefix_tokens: int = 0  # the batch's tokens in the target KV before the forward
    # the goodput budget (server.verify_budget=goodput): nodes the edges sent (tree_nodes: of
    # them, those verified), the tokens the budget expected, and those the step emitted
    # (accepted plus bonus, every row)
    sent_nodes: int = 0
    expected_tokens: float = 0.0
    emitted_tokens: int = 0
    free_s: float = 0.0  # how long the server would have idled after the step anyway (the
    # next pipeline group not back yet): a step that short cost the budget nothing more


@dataclass
class EdgeRoundRecord:
    """One draft-verify round of an edge (``edge-<client>.jsonl``)."""

    client_id: int
    request_id: int
    category: str
    round: int  # index of the round within the request
    prefill: bool
    draft_s: float  # drafting this round's tree
    wait_s: float  # from sending the tree to the reply's arrival (network + queue + verify)
    late_s: float  # from the reply's arrival until the edge took it (still drafting proactively)
    server_queue_s: float  # of wait_s: queued at the server (the server's own clock)
    server_verify_s: float  # of wait_s: the batched target forward that verified this tree
    request_bytes: int  # serialized Validate request (the last one sent, when retried)
    reply_bytes: int
    retries: int  # calls repeated: server unreachable, or it lost the request (re-prefilled)
    tree_size: int  # nodes sent, root included
    accepted: int  # drafted tokens accepted (bonus excluded)
    new_tokens: int  # tokens appended after EOS / length cut
    # draft model calls spent on this tree, and proactive ones while it was verified (those of
    # them are in proactive_forwards: they overlap wait_s, the rest came before the send)
    draft_forwards: int
    proactive_drafted: bool  # a proactive tree was grown while this round was verified
    proactive_hit: bool  # ... and the server stopped where it guessed: it is the next tree
    from_proactive: bool  # this round's tree was adopted from the previous round's guess
    proactive_s: float  # time spent drafting proactively (overlaps wait_s)
    t_start: float  # drafting began
    t_sent: float  # the request left
    t_end: float  # the reply was applied
    finished: bool
    tokens: list[int]  # the tokens this round committed: a restarted edge resumes from them
    tree_budget: int = 0  # the node budget and depth this round's shape allowed (tree policy)
    tree_depth: int = 0
    proactive_guesses: int = 0  # sub-trees drafted for guessed verification outcomes
    proactive_hit_rank: int = -1  # which guess (likeliest first) was the outcome; -1: none
    proactive_hit_p: float = 0.0  # that outcome's estimated probability
    proactive_guessed_p: float = 0.0  # estimated probability that some guess hits
    proactive_forwards: int = 0  # of draft_forwards: while the tree was being verified
    verified_nodes: int = 0  # of tree_size - 1: the drafted nodes the server verified (its
    # goodput budget's share, server.verify_budget=goodput; all of them when fixed; -1: a run
    # from before the budget, which verified them all)
    # The drafted tree as a goodput budget would rank it, so the simulator replays pruning
    # (specedge.algorithm.goodput): each node's survival as the wire encodes it (hex, a byte a
    # node, root included), each node's parent, and the accepted path (node indices, root
    # excluded, in the tree as drafted). Empty: not recorded (auto-batch, older runs).
    survival: str = ""
    parents: list[int] = field(default_factory=list)
    path: list[int] = field(default_factory=list)


@dataclass
class OutputRecord:
    request_id: int  # dataset index
    category: str
    prompt: str  # exactly what was tokenized (after any chat template)
    prompt_ids: list[int]
    output_ids: list[int]  # generated tokens, EOS included when produced
    text: str  # decoded output_ids
    subcategory: str  # the dataset file's own label (category: its Spec-Bench subset)


class JsonlWriter:
    """Append dataclass records to a JSONL file, one flushed line each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = path.open("a", encoding="utf-8")
        # A process killed mid-line (one a restarted edge appends to) leaves a line without
        # its newline: end it, so the cut line stays one skipped line, not two spoiled ones.
        if path.stat().st_size and not _ends_with_newline(path):
            self._fh.write("\n")

    def write(self, record: Any) -> None:
        self._fh.write(json.dumps(asdict(record), separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


# Fields added to a record schema after runs were made with it, and what older runs mean by
# their absence, so that upgrading never makes a finished run unreadable.
LATER_FIELDS: dict[type, dict[str, Any]] = {
    EdgeRoundRecord: {"server_queue_s": math.nan, "server_verify_s": math.nan, "late_s": 0.0,
                      "retries": 0, "tokens": [], "tree_budget": 0, "tree_depth": 0,
                      "proactive_guesses": 0, "proactive_hit_rank": -1, "proactive_hit_p": 0.0,
                      "proactive_guessed_p": 0.0, "proactive_forwards": 0,
                      "verified_nodes": -1, "survival": "", "parents": [], "path": []},
    StepRecord: {"prefix": 0, "tree_budget": 0, "tree_depth": 0, "drafted_nodes": 0,
                 "survival": "", "parents": [], "path": []},
    OutputRecord: {"subcategory": ""},  # older runs: the category was the file's label
    # runs before the goodput budget (0: not recorded; every node sent was verified)
    ServerStepRecord: {"prefix_tokens": 0, "sent_nodes": 0, "expected_tokens": 0.0,
                       "emitted_tokens": 0, "free_s": 0.0},
}


def read_jsonl(path: Path, schema: type, problems: list[str],
               missing_ok: bool = False) -> list[dict[str, Any]]:
    """The records of one file, as dicts with every field of ``schema``. Lines that are not
    JSON objects with the schema's fields (a line cut short by a dying process) are skipped and
    named (``FILE:LINE: why``) in ``problems``. A missing or empty file is an error unless
    ``missing_ok``."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return []
        raise RecordsError(f"{path}: missing")
    later = LATER_FIELDS.get(schema, {})
    wanted = {f.name for f in fields(schema)} - later.keys()
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{lineno}: skipped, not valid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict) or wanted - row.keys():
            missing = sorted(wanted - row.keys()) if isinstance(row, dict) else "all"
            problems.append(f"{path}:{lineno}: skipped, not a {schema.__name__} "
                            f"(missing fields: {missing})")
            continue
        rows.append(later | row)
    if not rows and not missing_ok:
        raise RecordsError(f"{path}: holds no records")
    return rows
