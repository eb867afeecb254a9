"""Launch one SpecEdge run: the server process, then the edge processes, then clean up.

The server and every edge are separate processes talking gRPC over the network stack, exactly
as in a deployment. Edges on ``localhost`` are local processes, which on one machine can be
pinned apart from the server (``hardware.server_cores`` / ``hardware.edge_cores``); edges on any
other node of ``hardware.nodes`` are started over SSH with Fabric, key-based only
(``hardware.ssh.key``), in the same absolute project path (``hardware.ssh.project_path``), and their
JSONL is fetched back. The server is always stopped in a ``finally``, so a failed edge never
leaves it running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from specedge import PROJECT_ROOT
from specedge.base.config.checks import ConfigError
from specedge.base.config.hardware import LOOPBACK, LauncherName
from specedge.base.config.run import RunConfig
from specedge.base.records import (
    LOST_FILE,
    OUTPUTS_FILE,
    PORT_FILE,
    OutputRecord,
    edge_outputs_file,
    edge_pid_file,
    read_jsonl,
)
from specedge.engine.datasets import edge_share
from specedge.serving.protocol import pb, rpc
from specedge.serving.remote import (
    LaunchError,
    RemoteEdge,
    connect,
    edge_command,
    run_remote_edge,
    slurm_placements,
    srun_command,
)
from specedge.serving.security import call_metadata, open_channel

log = logging.getLogger("specedge.serving.launcher")


def cores_to_pin(cores: Sequence[int], key: str) -> set[int]:
    """The cores of ``key`` (hardware.server_cores / edge_cores) this machine has; an error
    names the key when it has none of them."""
    allowed = set(os.sched_getaffinity(0))
    wanted = set(cores) & allowed
    if not wanted:
        raise ConfigError(f"{key} = {list(cores)} are not available here (allowed: "
                          f"{sorted(allowed)})")
    return wanted


def _pinned(cores: Sequence[int] | None, key: str) -> Callable[[], None] | None:
    if not cores:
        return None
    wanted = cores_to_pin(cores, key)
    return lambda: os.sched_setaffinity(0, wanted)


def _start(cmd: list[str], log_path: Path, cores: Sequence[int] | None,
           key: str) -> subprocess.Popen[bytes]:
    handle = log_path.open("ab")
    return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT,
                            preexec_fn=_pinned(cores, key), start_new_session=True)


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0, step: str | None = None) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``. An srun client (``step``: its step's name) is
    not signalled itself: srun answers SIGTERM by cancelling its step with SIGKILL, which
    would leave the task no time to shut down (the server writes its stats then)."""
    if proc.poll() is not None:
        return
    if step is None or not _signal_step(step):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _signal_step(name: str) -> bool:
    """SIGTERM to the tasks of the current allocation's steps called ``name``; whether any."""
    found = subprocess.run(["squeue", "-h", "-s", "-j", os.environ.get("SLURM_JOB_ID", ""),
                            "-o", "%i %j"], capture_output=True, text=True, check=False)
    steps = [line.split()[0] for line in found.stdout.splitlines() if line.split()[1:] == [name]]
    for step in steps:
        subprocess.run(["scancel", "--signal=TERM", step], capture_output=True, check=False)
    return bool(steps)


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


class LocalEdge:
    """An edge process on this machine, or the srun client of an edge's step (``step``)."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path,
                 step: str | None = None) -> None:
        self.proc, self.log_path, self.step = proc, log_path, step

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        _stop(self.proc, step=self.step)


def report_lost(cfg: RunConfig, address: str, client_id: int) -> None:
    """Tell the server an edge died, so that it frees the edge's request and no batch waits
    for it (without this it would wait ``server.client_timeout_s``). Best effort: a server
    that cannot be told still frees it after that timeout."""
    async def tell() -> None:
        async with open_channel(cfg.server, address) as channel:
            await rpc.VerifierStub(channel).Finish(
                pb.FinishRequest(client_id=client_id, lost=True), timeout=10,
                metadata=call_metadata(cfg.server))
    try:
        asyncio.run(tell())
    except grpc.RpcError as exc:
        log.warning("could not tell the server that edge %d is lost (%s); it frees it after "
                    "server.client_timeout_s", client_id, exc)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _count_lines(path: Path) -> int:
    return sum(1 for _ in path.open()) if path.exists() else 0


def launch(cfg: RunConfig, run_dir: Path, request_ids: list[int]) -> None:
    """Run the server and the edges; ``request_ids`` are the dataset indices of the run's
    requests, in order (edge k takes every num_clients-th from position k)."""
    run = _Processes(cfg, run_dir)
    # SIGTERM (a scheduler, `kill`) must stop the server and edges like Ctrl-C does: the
    # finally below runs for a KeyboardInterrupt, never for Python's default SIGTERM exit.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run.start()
        columns = (TextColumn("specedge"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns) as progress:
            task = progress.add_task("requests", total=len(request_ids))
            while not run.edges_done():
                run.keep_server()
                progress.update(task, completed=run.finished_requests())
                time.sleep(0.2)
            progress.update(task, completed=len(request_ids) - len(
                _unfinished(cfg, run_dir, run.lost, request_ids)))
    finally:
        signal.signal(signal.SIGTERM, previous)
        run.stop()
        _merge_outputs(run_dir, len(run.placements))  # also after a failure: keep what finished
    if run.lost:
        unfinished = _unfinished(cfg, run_dir, run.lost, request_ids)
        (run_dir / LOST_FILE).write_text(json.dumps(
            {"lost_edges": {str(c): code for c, code in run.lost.items()},
             "unfinished_requests": unfinished}, indent=2) + "\n")
        raise LaunchError(f"edges {sorted(run.lost)} failed (see their logs in {run_dir}) and "
                          f"were not restarted again (edge.max_restarts = "
                          f"{cfg.edge.max_restarts}); the other edges finished; requests not "
                          f"finished: {unfinished}")


class _Processes:
    """A run's server and edges: started, watched (a dead edge is reported to the server and
    restarted, a dead server restarted, each up to its max_restarts), and stopped.

    With ``hardware.launcher=ssh`` the edges are those of ``hardware.nodes``: local processes,
    or Fabric over SSH. With ``slurm`` every process is an ``srun`` step of the allocation the
    run is in (the server on its first node, ``hardware.slurm.edges_per_node`` edges on each);
    the srun clients are local processes, so logs, restarts and cleanup are the local ones."""

    def __init__(self, cfg: RunConfig, run_dir: Path) -> None:
        self.cfg, self.run_dir = cfg, run_dir
        self.slurm = cfg.hardware.launcher == LauncherName.slurm
        self.server_node = "localhost"
        if self.slurm:
            self.server_node, self.placements = slurm_placements(cfg)
        else:
            self.placements = [(node, edge) for node, edges in cfg.hardware.nodes.items()
                               for edge in edges]
        remote = [] if self.slurm else [n for n in cfg.hardware.nodes if n not in LOOPBACK]
        self.connections = {node: connect(cfg, node) for node in remote}
        self.port_file = run_dir / PORT_FILE
        self.server_log = run_dir / "server.log"
        self.server_cmd = [sys.executable, "-m", "specedge.serving.server", str(run_dir),
                           str(self.port_file)]
        self.server: subprocess.Popen[bytes] | None = None
        self.server_step = "specedge-server" if self.slurm else None
        self.server_restarts = 0
        self.port, self.address = 0, ""
        self.edges: list[LocalEdge | RemoteEdge] = []
        self.edge_restarts = [0] * len(self.placements)
        self.lost: dict[int, int | None] = {}  # edge -> exit code, for edges given up on
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(self.placements)))

    def start(self) -> None:
        self.port_file.unlink(missing_ok=True)
        self.server = self._start_server(self.server_cmd)
        self.port = _wait_for_port(self.server, self.port_file, self.server_log)
        host = self.cfg.server.host
        if self.slurm and host not in LOOPBACK:  # edges reach the server's node
            host = self.server_node
        self.address = f"{host}:{self.port}"
        log.info("server ready at %s; starting %d edges", self.address, len(self.placements))
        self.edges = [self._edge(cid, resume=False) for cid in range(len(self.placements))]

    def _edge(self, cid: int, resume: bool) -> LocalEdge | RemoteEdge:
        node, placement = self.placements[cid]
        log_path = self.run_dir / f"edge-{cid}.log"
        if node in self.connections:
            conn = self.connections[node]
            project = self.cfg.hardware.ssh.project_path or str(PROJECT_ROOT)
            future = self.pool.submit(run_remote_edge, conn, project, self.run_dir, cid,
                                      self.address, placement.device, resume)
            return RemoteEdge(future, node, log_path, conn, edge_pid_file(self.run_dir, cid))
        cmd = edge_command(sys.executable, self.run_dir, cid, self.address, placement.device,
                           resume)
        step = f"specedge-edge-{cid}" if self.slurm else None
        if step is not None:
            cmd = srun_command(self.cfg, node, step, self.cfg.hardware.slurm.gpus_per_edge, cmd)
        return LocalEdge(_start(cmd, log_path, self.cfg.hardware.edge_cores,
                                "hardware.edge_cores"), log_path, step)

    def edges_done(self) -> bool:
        """Whether every edge has exited for good; a dead one is reported and restarted."""
        done = True
        for cid, edge in enumerate(self.edges):
            code = edge.poll()
            if code is None:
                done = False
            elif code != 0 and cid not in self.lost:
                report_lost(self.cfg, self.address, cid)
                if self.edge_restarts[cid] < self.cfg.edge.max_restarts:
                    self.edge_restarts[cid] += 1
                    log.warning("edge %d exited with code %s (see %s); restarting it (%d/%d): "
                                "it resumes its unfinished requests", cid, code, edge.log_path,
                                self.edge_restarts[cid], self.cfg.edge.max_restarts)
                    self.edges[cid] = self._edge(cid, resume=True)
                    done = False
                else:
                    self.lost[cid] = code
                    log.warning("edge %d exited with code %s (see %s); the others go on",
                                cid, code, edge.log_path)
        return done

    def keep_server(self) -> None:
        """Restart a server that died (on its port, so edges reconnect), or fail the run."""
        assert self.server is not None
        if self.server.poll() is None:
            return
        if self.server_restarts >= self.cfg.server.max_restarts:
            raise LaunchError(f"the server exited with code {self.server.returncode} while "
                              f"edges were running (restarts used: {self.server_restarts}); "
                              f"see {self.server_log}")
        self.server_restarts += 1
        log.warning("the server exited with code %s; restarting it on port %d (%d/%d); edges "
                    "reconnect and prefill again", self.server.returncode, self.port,
                    self.server_restarts, self.cfg.server.max_restarts)
        self.port_file.unlink(missing_ok=True)
        self.server = self._start_server([*self.server_cmd, "--port", str(self.port)])
        _wait_for_port(self.server, self.port_file, self.server_log)

    def _start_server(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        if self.server_step is not None:
            cmd = srun_command(self.cfg, self.server_node, self.server_step,
                               self.cfg.hardware.slurm.server_gpus, cmd)
        return _start(cmd, self.server_log, self.cfg.hardware.server_cores,
                      "hardware.server_cores")

    def finished_requests(self) -> int:
        return sum(_count_lines(edge_outputs_file(self.run_dir, c))
                   for c in range(len(self.edges)))

    def stop(self) -> None:
        for e in self.edges:
            e.stop()
        if self.server is not None:
            _stop(self.server, step=self.server_step)
        self.pool.shutdown(wait=False, cancel_futures=True)
        for conn in self.connections.values():
            conn.close()


def _unfinished(cfg: RunConfig, run_dir: Path, lost: dict[int, int | None],
                request_ids: list[int]) -> list[int]:
    """Requests a lost edge was given but did not finish (edge k takes every num_clients-th
    request from position k, see specedge.serving.edge)."""
    out = []
    for c in lost:
        done = {r["request_id"] for r in _read_outputs(edge_outputs_file(run_dir, c))}
        out += [i for i in edge_share(request_ids, c, cfg.server.num_clients) if i not in done]
    return sorted(out)


def _read_outputs(path: Path) -> list[dict[str, object]]:
    """An edge's output records; a line cut short by a dying edge is skipped and logged."""
    problems: list[str] = []
    records = read_jsonl(path, OutputRecord, problems, missing_ok=True)
    for problem in problems:
        log.warning("%s (cut short?)", problem)
    return records


def _merge_outputs(run_dir: Path, n_edges: int) -> None:
    """Every edge's outputs in one ``outputs.jsonl``, ordered by request id."""
    records = []
    for cid in range(n_edges):
        records += _read_outputs(edge_outputs_file(run_dir, cid))
    records.sort(key=lambda r: int(str(r["request_id"])))
    with (run_dir / OUTPUTS_FILE).open("w") as fh:
        for r in records:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
