"""Run metrics from JSONL: accounting, cost, skipping and naming bad lines, refusing empty runs.

Records are written with the real record dataclasses, so a schema change breaks these tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from specedge import PROJECT_ROOT
from specedge.analysis.metrics import summarize
from specedge.analysis.pricing import Accounting, Prices, hardware_prices
from specedge.analysis.run_records import MetricsError, load_records
from specedge.base.records import EdgeRoundRecord, OutputRecord, ServerStepRecord, StepRecord

PRICES = Prices("test", "S", 3.6, "E", 0.36)  # $0.001 per server second, $0.0001 per edge s


def _write(path: Path, records: list) -> None:
    path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))


def _step(step: int, rid: int, t0: float, t1: float, new: int, prefill: bool) -> StepRecord:
    return StepRecord(baseline="server_only", step=step, request_id=rid, category="c" + str(rid),
                      batch_size=2, prefill=prefill, draft_s=0.05, target_s=0.1, tree_size=5,
                      accepted=new - 1, new_tokens=new, draft_forwards=3, t_start=t0, t_end=t1,
                      finished=step == 1)


def _output(rid: int, n: int) -> OutputRecord:
    return OutputRecord(request_id=rid, category="c" + str(rid), prompt="p", prompt_ids=[1],
                        output_ids=list(range(n)), text="t", subcategory="s" + str(rid % 2))


def _server_side_run(run_dir: Path) -> None:
    _write(run_dir / "outputs.jsonl", [_output(0, 4), _output(1, 2)])
    _write(run_dir / "steps.jsonl", [
        _step(0, 0, 10.0, 10.5, 2, True), _step(0, 1, 10.0, 10.5, 1, True),
        _step(1, 0, 11.0, 11.2, 2, False), _step(1, 1, 11.0, 11.2, 1, False)])


def test_server_side_run_counts_each_batched_step_once(tmp_path: Path) -> None:
    _server_side_run(tmp_path)
    s = summarize(load_records(tmp_path), PRICES)
    assert s["tokens"] == 6 and s["requests"] == 2 and not s["partial"]
    assert s["server_busy_s"] == pytest.approx(0.7)  # two steps, not four records
    assert s["server_wall_s"] == pytest.approx(1.2)
    assert s["accounting"] == "busy" and s["server_time_s"] == pytest.approx(0.7)
    assert s["itl_ms"]["mean"] == pytest.approx((100 + 200) / 2)  # 0.2 s / 2, / 1
    assert s["server_cost_usd"] == pytest.approx(0.0007) and s["edge_cost_usd"] == 0
    assert s["usd_per_mtok"] == pytest.approx(0.0007 / 6 * 1e6)
    assert s["cost_efficiency_ktok_per_usd"] == pytest.approx(6 / 1e3 / 0.0007)
    assert s["by_category"]["c0"]["tokens"] == 4
    # the file's own labels (Spec-Bench's MT-bench ones) are kept as subcategories
    assert {k: v["tokens"] for k, v in s["by_subcategory"].items()} == {"s0": 4, "s1": 2}
    wall = summarize(load_records(tmp_path), PRICES, Accounting.wall)
    assert wall["server_time_s"] == pytest.approx(1.2) and wall["accounting"] == "wall"


def _round(rid: int, rnd: int, t0: float, new: int, **kw: object) -> EdgeRoundRecord:
    fields = dict(client_id=0, request_id=rid, category="x", round=rnd, prefill=rnd == 0,
                  draft_s=0.1, wait_s=0.3, late_s=0.05, retries=0, server_queue_s=0.05,
                  server_verify_s=0.2,
                  request_bytes=40, reply_bytes=8, tree_size=8, accepted=new - 1,
                  new_tokens=new, draft_forwards=4, proactive_drafted=True, proactive_hit=False,
                  from_proactive=False, proactive_s=0.2, t_start=t0, t_sent=t0 + 0.1,
                  t_end=t0 + 0.45, finished=False, tokens=list(range(new)))
    fields.update(kw)
    return EdgeRoundRecord(**fields)  # type: ignore[arg-type]


def test_specedge_run_is_charged_wall_time_and_edge_busy_time(tmp_path: Path) -> None:
    _write(tmp_path / "server.jsonl", [
        ServerStepRecord(step=i, clients=[0], batch_size=1, prefill_count=int(i == 0),
                         tree_nodes=8, queue_wait_s=0.05, forward_s=0.2, t_start=t,
                         t_end=t + 0.2) for i, t in enumerate((100.15, 101.15))])
    _write(tmp_path / "edge-0.jsonl", [_round(7, 0, 100.0, 3),
                                       _round(7, 1, 101.0, 4, proactive_hit=True,
                                              from_proactive=True)])
    _write(tmp_path / "outputs.jsonl", [_output(7, 7)])
    s = summarize(load_records(tmp_path), PRICES)
    assert s["baseline"] == "specedge" and s["accounting"] == "wall"
    assert s["server_time_s"] == pytest.approx(1.2)  # 100.15 .. 101.35, idle included
    assert s["server_busy_s"] == pytest.approx(0.4)
    assert s["edge_busy_s"] == pytest.approx(2 * (0.1 + 0.2))  # drafting + proactive drafting
    assert s["edge_cost_usd"] == pytest.approx(0.6 * 0.0001)
    assert s["proactive_ratio"] == 1.0 and s["proactive_hit_rate"] == 0.5
    assert s["breakdown_s"]["network"] == pytest.approx(2 * 0.05)  # wait - queue - verify
    assert s["bytes_per_node"] == pytest.approx(48 / 8)
    assert s["breakdown_s"]["late"] == pytest.approx(2 * 0.05)  # reply waited for the edge
    assert s["breakdown_s"]["other"] == pytest.approx(0)
    assert s["latency"]["proactive"]["target_ms"]["mean"] == pytest.approx(350)
    assert s["itl_ms"]["mean"] == pytest.approx(450 / 4)


def test_malformed_and_truncated_lines_are_named_and_skipped(tmp_path: Path) -> None:
    _server_side_run(tmp_path)
    with (tmp_path / "steps.jsonl").open("a") as fh:
        fh.write('{"step": 2}\n[1, 2]\n{"baseline": "server_only", "st')  # truncated last line
    rec = load_records(tmp_path)
    assert len(rec.rounds) == 4
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in rec.problems] == ["5", "6", "7"]
    assert "missing fields" in rec.problems[0] and "not valid JSON" in rec.problems[2]
    assert summarize(rec, PRICES)["problems"] == rec.problems


def test_unfinished_requests_make_the_summary_partial(tmp_path: Path) -> None:
    _server_side_run(tmp_path)
    _write(tmp_path / "outputs.jsonl", [_output(0, 4)])
    s = summarize(load_records(tmp_path), PRICES)
    assert s["partial"] and s["unfinished_requests"] == [1]
    # request 1's two tokens reached nobody: they are not counted as served
    assert s["tokens"] == 4 and s["unfinished_tokens"] == 2


def test_empty_run_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "steps.jsonl").write_text("")
    with pytest.raises(MetricsError, match="holds no records"):
        load_records(tmp_path)
    with pytest.raises(MetricsError, match="not a run directory"):
        load_records(tmp_path / "nowhere")


def test_hardware_prices_come_from_the_hardware_group() -> None:
    assert hardware_prices("a100_80").server_per_hour == 5.05
    with pytest.raises(MetricsError, match="not a hardware option: one of a100_40, a100_80"):
        hardware_prices("h100")


def test_metrics_command_reprices_a_run(tmp_path: Path) -> None:
    _server_side_run(tmp_path)
    cmd = [sys.executable, "-m", "specedge.analysis.metrics", str(tmp_path), "--hardware",
           "a100_40", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    s = json.loads(done.stdout)
    assert s["prices"]["server_per_hour"] == 4.05
    assert s["server_cost_usd"] == pytest.approx(0.7 / 3600 * 4.05)
    cmd[-3:] = []  # no prices and no run config: a clear error
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, check=False)
    assert done.returncode == 2 and "name them with --hardware" in done.stderr


def test_records_from_before_a_schema_addition_still_read(tmp_path: Path) -> None:
    _write(tmp_path / "server.jsonl", [
        ServerStepRecord(step=0, clients=[0], batch_size=1, prefill_count=1, tree_nodes=8,
                         queue_wait_s=0.0, forward_s=0.2, t_start=100.1, t_end=100.3)])
    old = asdict(_round(7, 0, 100.0, 3))
    for later in ("late_s", "retries", "server_queue_s", "server_verify_s"):
        del old[later]
    (tmp_path / "edge-0.jsonl").write_text(json.dumps(old) + "\n")
    rec = load_records(tmp_path)
    assert rec.problems == [] and len(rec.rounds) == 1
    assert rec.rounds["late_s"].iloc[0] == 0.0


def test_upstream_definitions_stand_beside_ours(tmp_path: Path) -> None:
    """ITL as a ratio of sums, server-only throughput without prefill steps, and (SpecEdge)
    an edge billed for its whole round."""
    _server_side_run(tmp_path)
    s = summarize(load_records(tmp_path), PRICES)
    up = s["upstream"]
    assert up["itl_ms"] == pytest.approx(0.2 * 2 / 3 * 1e3)  # (0.2 + 0.2) s / 3 tokens
    assert s["itl_ms"]["mean"] != pytest.approx(up["itl_ms"])
    assert up["throughput_tok_s"] == pytest.approx(3 / 0.2)  # the one step without prefill
    assert up["edge_cost_usd"] == 0 and set(up["definitions"]) == {
        "itl_ms", "edge_cost_usd", "throughput_tok_s"}
    run = tmp_path / "specedge"
    run.mkdir()
    _write(run / "server.jsonl", [ServerStepRecord(
        step=i, clients=[0], batch_size=1, prefill_count=int(i == 0), tree_nodes=8,
        queue_wait_s=0.0, forward_s=0.2, t_start=10.0 + i, t_end=10.2 + i) for i in range(2)])
    _write(run / "edge-0.jsonl", [_round(0, 0, 10.0, 2), _round(0, 1, 11.0, 3)])
    _write(run / "outputs.jsonl", [_output(0, 5)])
    s = summarize(load_records(run), PRICES)
    # ours: drafting + proactive drafting (0.3 s a round); upstream: the whole round (0.45 s)
    assert s["edge_cost_usd"] == pytest.approx(2 * 0.3 * 0.0001)
    assert s["upstream"]["edge_cost_usd"] == pytest.approx(2 * 0.45 * 0.0001)
