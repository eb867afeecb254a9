"""The JSONL record schemas every run writes, in one place; metrics and reports read these.

Files in a run directory:

- ``steps.jsonl``: one :class:`StepRecord` per request per step of the server-side loop
  (server-only and auto-batch baselines).
- ``outputs.jsonl``: one :class:`OutputRecord` per request, whatever the baseline, so anyone
  can check a run's text against the target's own decode.

Each line is flushed as soon as it is written: a run that dies keeps every finished step.
Timestamps are Unix seconds (``time.time()``); durations are seconds (``perf_counter``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

STEPS_FILE = "steps.jsonl"
OUTPUTS_FILE = "outputs.jsonl"


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
    tree_size: int  # nodes sent to the target, root included
    accepted: int  # drafted tokens accepted (bonus token excluded)
    new_tokens: int  # tokens appended to the output this step (after EOS / length cut)
    draft_forwards: int  # draft model calls spent on this request's tree
    t_start: float  # when the step began
    t_end: float  # when the step ended
    finished: bool  # the request ended with this step


@dataclass
class OutputRecord:
    request_id: int  # dataset index
    category: str
    prompt: str  # exactly what was tokenized (after any chat template)
    prompt_ids: list[int]
    output_ids: list[int]  # generated tokens, EOS included when produced
    text: str  # decoded output_ids


class JsonlWriter:
    """Append dataclass records to a JSONL file, one flushed line each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = path.open("a", encoding="utf-8")

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
