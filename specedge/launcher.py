"""Launch one SpecEdge run: the server process, then the edge processes, then clean up.

The server and every edge are separate processes talking gRPC over the network stack, exactly
as in a deployment; on one machine they can be pinned to separate CPU cores
(``hardware.server_cores`` / ``hardware.edge_cores``). The server is always stopped in a
``finally``, so a failed edge never leaves it running.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from specedge.config import ConfigError, RunConfig
from specedge.edge import edge_files
from specedge.records import OUTPUTS_FILE

log = logging.getLogger("specedge.launcher")
PORT_FILE = "server.port"
LOCAL_NODES = ("localhost", "127.0.0.1")


class LaunchError(RuntimeError):
    """A process of the run failed; the message names it and where its log is."""


def _pinned(cores: Sequence[int] | None):  # type: ignore[no-untyped-def]
    if not cores:
        return None
    allowed = set(os.sched_getaffinity(0))
    wanted = set(cores) & allowed
    if not wanted:
        raise ConfigError(f"CPU cores {list(cores)} are not available here (allowed: "
                          f"{sorted(allowed)})")
    return lambda: os.sched_setaffinity(0, wanted)


def _start(cmd: list[str], log_path: Path, cores: Sequence[int] | None) -> subprocess.Popen[bytes]:
    handle = log_path.open("ab")
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT,
                            preexec_fn=_pinned(cores), start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_for_port(server: subprocess.Popen[bytes], port_file: Path, log_path: Path,
                   timeout_s: float = 300.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text())
        if server.poll() is not None:
            raise LaunchError(f"the server exited with code {server.returncode} before it was "
                              f"ready; see {log_path}")
        time.sleep(0.1)
    raise LaunchError(f"the server was not ready after {timeout_s:.0f} s; see {log_path}")


def _count_lines(path: Path) -> int:
    return sum(1 for _ in path.open()) if path.exists() else 0


def launch(cfg: RunConfig, run_dir: Path, n_requests: int) -> None:
    remote = [n for n in cfg.hardware.nodes if n not in LOCAL_NODES]
    if remote:
        raise ConfigError(f"hardware.nodes lists {remote}: only local edges ('localhost') can "
                          "be launched in this version")
    slots = [slot for node in cfg.hardware.nodes.values() for slot in node]
    port_file = run_dir / PORT_FILE
    port_file.unlink(missing_ok=True)
    server_log = run_dir / "server.log"
    server = _start([sys.executable, "-m", "specedge.server", str(run_dir), str(port_file)],
                    server_log, cfg.hardware.server_cores)
    edges: list[subprocess.Popen[bytes]] = []
    try:
        port = _wait_for_port(server, port_file, server_log)
        address = f"{cfg.server.host}:{port}"
        log.info("server ready at %s; starting %d edges", address, len(slots))
        for cid, slot in enumerate(slots):
            edges.append(_start(
                [sys.executable, "-m", "specedge.edge", str(run_dir), "--client-id", str(cid),
                 "--server", address, "--device", slot.device],
                run_dir / f"edge-{cid}.log", cfg.hardware.edge_cores))
        columns = (TextColumn("specedge"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns) as progress:
            task = progress.add_task("requests", total=n_requests)
            while any(e.poll() is None for e in edges):
                done = sum(_count_lines(edge_files(run_dir, c)[1]) for c in range(len(slots)))
                progress.update(task, completed=done)
                failed = [c for c, e in enumerate(edges) if e.poll() not in (None, 0)]
                if failed:
                    raise LaunchError(f"edge {failed[0]} exited with code "
                                      f"{edges[failed[0]].returncode}; see "
                                      f"{run_dir / f'edge-{failed[0]}.log'}")
                if server.poll() is not None:
                    raise LaunchError(f"the server exited with code {server.returncode} while "
                                      f"edges were running; see {server_log}")
                time.sleep(0.2)
            progress.update(task, completed=n_requests)
        failed = [c for c, e in enumerate(edges) if e.returncode != 0]
        if failed:
            raise LaunchError(f"edge {failed[0]} exited with code {edges[failed[0]].returncode}; "
                              f"see {run_dir / f'edge-{failed[0]}.log'}")
    finally:
        for e in edges:
            _stop(e)
        _stop(server)
    _merge_outputs(run_dir, len(slots))


def _merge_outputs(run_dir: Path, n_edges: int) -> None:
    """Every edge's outputs in one ``outputs.jsonl``, ordered by request id."""
    records = []
    for cid in range(n_edges):
        path = edge_files(run_dir, cid)[1]
        records += [json.loads(line) for line in path.read_text().splitlines()]
    records.sort(key=lambda r: r["request_id"])
    with (run_dir / OUTPUTS_FILE).open("w") as fh:
        for r in records:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
