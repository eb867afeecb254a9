"""Faults injected into real SpecEdge runs: an edge killed (restarted, or given up), the run
stopped, an edge started while the server is down. (The server killed and restarted is the chaos
test's, on the real pair: tests/test_smollm2.py.)

Each test starts `python -m specedge.run baseline=specedge` (server and edges as processes,
gRPC over loopback) on the micro pair, waits until the edges have done some rounds, and then
kills a process for real.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from specedge import PROJECT_ROOT
from specedge.base.records import OUTPUTS_FILE, edge_outputs_file
from specedge.serving.remote import edge_command
from tests.serving import (
    assert_outputs_exact,
    cpu_edges,
    live_server,
    read_records,
    run_command,
    write_run_config,
)

pytestmark = pytest.mark.slow  # end to end: real processes, pipelines or builds

MAX_NEW = 48
# two edges, not the CPU hardware's four: each is a process that spends most of its time
# importing; a fault on one beside one other that must not wait for it shows what four would
TWO_EDGES = cpu_edges(2)


def _start(run_dir: Path, pair: Path, *overrides: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        run_command(run_dir, pair, "baseline=specedge", "dataset.max_requests=8",
                    f"generation.max_new_tokens={MAX_NEW}", "server.client_timeout_s=3",
                    *TWO_EDGES, *overrides),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_for_rounds(run: subprocess.Popen[str], path: Path, rounds: int) -> None:
    deadline = time.monotonic() + 180
    while _lines(path) < rounds:
        assert run.poll() is None, run.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no {rounds} rounds in {path}"
        time.sleep(0.05)


def _pids(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(p) for p in found.stdout.split()]


def _run_and_kill(run_dir: Path, pair: Path, jsonl: str, pattern: str, *overrides: str
                  ) -> subprocess.Popen[str]:
    """Start a run and SIGKILL the one process matching ``pattern`` after 3 rounds in
    ``jsonl``."""
    run = _start(run_dir, pair, *overrides)
    _wait_for_rounds(run, run_dir / jsonl, 3)
    (victim,) = _pids(pattern)
    os.kill(victim, signal.SIGKILL)
    return run


def _served_all_exactly(run: subprocess.Popen[str], run_dir: Path, pair: Path) -> list[dict]:
    """The run succeeded and every one of its 8 requests is the target's greedy decode."""
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    outputs = read_records(run_dir / OUTPUTS_FILE)
    assert [o["request_id"] for o in outputs] == list(range(8))
    assert_outputs_exact(outputs, pair, MAX_NEW)
    return outputs


def _max_idle_while_others_work(steps: list[dict], dead: int) -> float:
    """The longest the server sat idle while edges other than ``dead`` still had work."""
    others_end = max(s["t_end"] for s in steps if set(s["clients"]) - {dead})
    return max(b["t_start"] - a["t_end"] for a, b in pairwise(steps)
               if b["t_start"] <= others_end)


def test_a_killed_edge_is_restarted_and_resumes_every_request_exactly(
        tmp_path: Path, micro_pair: Path) -> None:
    """(With the speculation cache and adaptive trees: the restarted edge has neither its
    cached sub-trees nor its planner's estimates, and must still resume exactly.)"""
    run_dir = tmp_path / "run"
    run = _run_and_kill(run_dir, micro_pair, "edge-1.jsonl",
                        f"specedge.serving.edge {run_dir} --client-id 1 ",
                        "edge.proactive.type=cache",
                        "edge.tree_policy=adaptive")
    outputs = _served_all_exactly(run, run_dir, micro_pair)
    assert "edge 1 exited with code -9" in (run_dir / "run.log").read_text()
    edge_log = (run_dir / "edge-1.log").read_text()
    assert "resuming request 1 from" in edge_log  # mid-request, from its committed tokens
    rounds = read_records(run_dir / "edge-1.jsonl", cut_ok=True)
    resumed = [r for r in rounds if r["request_id"] == 1 and r["prefill"]]
    assert len(resumed) == 2 and resumed[1]["round"] >= 3  # the restart prefilled again
    summary = json.loads((run_dir / "summary.json").read_text())
    assert not summary["partial"] and summary["tokens"] == sum(
        len(o["output_ids"]) for o in outputs)
    idle = _max_idle_while_others_work(read_records(run_dir / "server.jsonl"), dead=1)
    assert idle < 1.0, idle  # no step waited for the dead edge (max_wait_ms is 2 s)
    assert not _pids(f"specedge.* {run_dir}")


def test_an_edge_killed_past_its_restarts_is_reported_and_the_others_finish_exactly(
        tmp_path: Path, micro_pair: Path) -> None:
    run_dir = tmp_path / "run"
    run = _run_and_kill(run_dir, micro_pair, "edge-1.jsonl",
                        f"specedge.serving.edge {run_dir} --client-id 1 ", "edge.max_restarts=0")
    _, stderr = run.communicate(timeout=300)  # it must not hang
    assert run.returncode == 2, stderr[-3000:]
    assert "edges [1] failed" in stderr
    lost = json.loads((run_dir / "lost_edges.json").read_text())
    assert list(lost["lost_edges"]) == ["1"] and lost["lost_edges"]["1"] == -signal.SIGKILL
    outputs = read_records(run_dir / OUTPUTS_FILE)
    done = {o["request_id"] for o in outputs}
    assert set(lost["unfinished_requests"]) == {1, 3, 5, 7} - done  # edge 1's requests
    assert {0, 2, 4, 6} <= done
    assert_outputs_exact(outputs, micro_pair, MAX_NEW)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["partial"] and summary["unfinished_requests"] == lost["unfinished_requests"]
    assert summary["lost_edges"] == {"1": -signal.SIGKILL}
    # the launcher told the server at once: its request freed, no batch waited for it
    assert "client 1 lost (the launcher saw its process exit)" in (
        run_dir / "server.log").read_text()
    idle = _max_idle_while_others_work(read_records(run_dir / "server.jsonl"), dead=1)
    assert idle < 1.0, idle  # no step waited for the dead edge (max_wait_ms is 2 s)
    assert not _pids(f"specedge.* {run_dir}")  # nothing left running


def test_sigterm_stops_the_run_and_every_process(tmp_path: Path, micro_pair: Path) -> None:
    run_dir = tmp_path / "run"
    run = _start(run_dir, micro_pair)
    _wait_for_rounds(run, run_dir / "edge-1.jsonl", 2)
    assert len(_pids(f"specedge.serving.(edge|server) {run_dir} ")) == 3
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr
    deadline = time.monotonic() + 30
    while _pids(f"specedge.serving.(edge|server) {run_dir} ") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pids(f"specedge.serving.(edge|server) {run_dir} ")  # no orphans
    summary = json.loads((run_dir / "summary.json").read_text())  # what there was, kept
    assert summary["partial"] and summary["rounds"] > 0


def test_an_edge_started_while_the_server_is_down_waits_for_it(tmp_path: Path,
                                                              micro_pair: Path) -> None:
    """What a restarted edge meets when the server is killed or restarting at the same time:
    its first call (Sync) finds no server; it must retry for server.reconnect_s, not exit
    (which would spend its restarts on the server's outage)."""
    write_run_config(tmp_path, micro_pair, "server.num_clients=1", "server.max_batch_size=1",
                     "dataset.max_requests=1",
                     "generation.max_new_tokens=8",
                     "hardware.nodes={localhost:[{device:cpu}]}")
    with socket.socket() as s:  # a port nothing listens on, yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path / "edge-0.log"
    with log_path.open("wb") as log:
        edge = subprocess.Popen(edge_command(sys.executable, tmp_path, 0, f"127.0.0.1:{port}",
                                             "cpu", False),
                                cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "server unavailable" not in log_path.read_text():
            assert edge.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the edge never tried the server"
            time.sleep(0.1)
        with live_server(tmp_path, port):
            assert edge.wait(timeout=120) == 0, log_path.read_text()[-3000:]
    finally:
        if edge.poll() is None:
            edge.kill()
    outputs = [json.loads(line) for line in edge_outputs_file(tmp_path, 0).read_text().splitlines()]
    assert len(outputs) == 1
    assert_outputs_exact(outputs, micro_pair, 8)
