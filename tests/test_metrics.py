"""Run metrics from JSONL: server-side baselines, and refusing unusable records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specedge.metrics import MetricsError, run_metrics


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _step(step: int, rid: int, t0: float, t1: float, new: int, prefill: bool) -> dict:
    return {"baseline": "server_only", "step": step, "request_id": rid, "prefill": prefill,
            "t_start": t0, "t_end": t1, "new_tokens": new}


def test_server_side_run_counts_each_batched_step_once(tmp_path: Path) -> None:
    _write(tmp_path / "outputs.jsonl", [{"output_ids": [1, 2, 3, 4]}, {"output_ids": [5, 6]}])
    _write(tmp_path / "steps.jsonl", [
        _step(0, 0, 10.0, 10.5, 2, True), _step(0, 1, 10.0, 10.5, 1, True),
        _step(1, 0, 11.0, 11.2, 2, False), _step(1, 1, 11.0, 11.2, 1, False)])
    m = run_metrics(tmp_path)
    assert m.tokens == 6
    assert m.server_busy_s == pytest.approx(0.7)  # two steps, not four records
    assert m.server_wall_s == pytest.approx(1.2)
    assert m.itl_ms == pytest.approx((100 + 200) / 2)  # non-prefill rounds: 0.2 s / 2, / 1


def test_malformed_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "outputs.jsonl").write_text('{"output_ids": [1]}\n{"output_ids": [\n')
    with pytest.raises(MetricsError, match=r"outputs\.jsonl:2: not valid JSON"):
        run_metrics(tmp_path)


def test_empty_run_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "outputs.jsonl").write_text("")
    with pytest.raises(MetricsError, match="holds no records"):
        run_metrics(tmp_path)
