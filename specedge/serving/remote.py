"""Edges away from the launcher's machine: on other nodes over SSH with Fabric (key-based
only, in the same absolute project path, their JSONL fetched back), or as steps of the SLURM
allocation the run is in; and the one command line every edge process starts with."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
from concurrent.futures import Future
from pathlib import Path

from fabric import Config as FabricConfig
from fabric import Connection

from specedge.base.config.checks import ConfigError
from specedge.base.config.hardware import LOOPBACK, EdgePlacement
from specedge.base.config.run import RunConfig
from specedge.base.records import (
    RUN_CONFIG_FILE,
    edge_file,
    edge_outputs_file,
    edge_pid_file,
)


class LaunchError(RuntimeError):
    """A process of the run failed; the message names it and where its log is."""


class RemoteEdge:
    """An edge on another node, run over SSH in a worker thread."""

    def __init__(self, future: Future[int], node: str, log_path: Path, conn: Connection,
                 pid_file: Path) -> None:
        self.future, self.node, self.log_path = future, node, log_path
        self.conn, self.pid_file = conn, pid_file

    def poll(self) -> int | None:
        if not self.future.done():
            return None
        exc = self.future.exception()
        if exc is not None:
            raise LaunchError(f"could not run the edge on node {self.node!r} over SSH: "
                              f"{type(exc).__name__}: {exc}")
        return self.future.result()

    def stop(self) -> None:
        """An edge still running when the run stops (interrupted, or another process failed)
        is terminated on its node, so it does not keep retrying a stopped server. It is found
        by the process id it recorded at start, never by name (a shared node runs other
        people's processes), and only while that id is still this run's edge."""
        if self.future.done():
            return
        with contextlib.suppress(Exception):  # the node may be unreachable by now
            self.conn.run(remote_kill_command(self.pid_file), warn=True, hide=True, timeout=30,
                          in_stream=False)


def remote_kill_command(pid_file: Path) -> str:
    """SIGTERM to the process whose id ``pid_file`` holds, if that process is still the edge
    the file belongs to (its command line names the file's run directory)."""
    pid, run_dir = shlex.quote(str(pid_file)), str(pid_file.parent)
    return (f"pid=$(cat {pid} 2>/dev/null) && [ -n \"$pid\" ] && "
            f"tr '\\0' ' ' < /proc/$pid/cmdline | grep -qF -- {shlex.quote(run_dir)} && "
            "kill -TERM $pid")


def fetch(conn: Connection, path: Path) -> None:
    # Via a temporary name: when the "remote" is this very machine and path, a direct get
    # would truncate the file it is reading.
    tmp = path.with_name(path.name + ".fetch")
    conn.get(str(path), local=str(tmp))
    os.replace(tmp, path)


def run_remote_edge(conn: Connection, project: str, run_dir: Path, cid: int, address: str,
                     device: str, resume: bool) -> int:
    config = run_dir / RUN_CONFIG_FILE
    conn.run(f"mkdir -p {shlex.quote(str(run_dir))}", hide=True, in_stream=False)
    conn.put(str(config), remote=str(config) + ".incoming")
    conn.run(f"mv {shlex.quote(str(config))}.incoming {shlex.quote(str(config))}", hide=True,
             in_stream=False)
    log_path = run_dir / f"edge-{cid}.log"
    # `exec` keeps the shell's process id, which is recorded first: stop() kills by it.
    pid_file = shlex.quote(str(edge_pid_file(run_dir, cid)))
    edge = shlex.join(edge_command(".venv/bin/python", run_dir, cid, address, device, resume))
    cmd = (f"cd {shlex.quote(project)} && echo $$ > {pid_file} && "
           f"exec {edge} >> {shlex.quote(str(log_path))} 2>&1")
    result = conn.run(cmd, warn=True, hide=True, in_stream=False)  # never our stdin
    for path in (edge_file(run_dir, cid), edge_outputs_file(run_dir, cid), log_path):
        with contextlib.suppress(FileNotFoundError, OSError):
            fetch(conn, path)
    return int(result.exited)


def connect(cfg: RunConfig, node: str) -> Connection:
    if not cfg.hardware.ssh.key:
        raise ConfigError(f"hardware.ssh.key = None is not accepted: node {node!r} is reached "
                          "over SSH, which needs a key file (passwords are never used)")
    key = str(Path(cfg.hardware.ssh.key).expanduser())
    if not Path(key).is_file():
        raise ConfigError(f"hardware.ssh.key = {key!r} is not accepted: no such key file")
    config = None
    if cfg.hardware.ssh.config:  # else Fabric reads ~/.ssh/config, as ssh itself would
        config = FabricConfig(runtime_ssh_path=str(Path(cfg.hardware.ssh.config).expanduser()))
    return Connection(node, config=config, connect_kwargs={
        "key_filename": [key], "look_for_keys": False, "allow_agent": False})


def allocation_nodes() -> list[str]:
    """The nodes of the SLURM allocation this process runs in (salloc, sbatch)."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST")
    if not os.environ.get("SLURM_JOB_ID") or not nodelist:
        raise ConfigError("hardware.launcher=slurm is accepted only inside a SLURM allocation "
                          "(run it under salloc or sbatch): SLURM_JOB_ID is not set here; "
                          "outside one, use hardware.launcher=ssh")
    found = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                           text=True, check=False)
    if found.returncode != 0 or not found.stdout.split():
        raise LaunchError(f"scontrol could not expand SLURM_JOB_NODELIST={nodelist!r}: "
                          f"{found.stderr.strip()}")
    return found.stdout.split()


def slurm_placements(cfg: RunConfig) -> tuple[str, list[tuple[str, EdgePlacement]]]:
    """The server's node and every edge's (node, device) in this allocation; the allocation
    must hold exactly ``server.num_clients`` edges."""
    nodes = allocation_nodes()
    per_node = cfg.hardware.slurm.edges_per_node
    placements = [(node, EdgePlacement(cfg.hardware.slurm.edge_device))
                  for node in nodes for _ in range(per_node)]
    if len(placements) != cfg.server.num_clients:
        raise ConfigError(f"server.num_clients = {cfg.server.num_clients} is not accepted: this "
                          f"allocation has {len(nodes)} node(s) x hardware.slurm.edges_per_node "
                          f"= {per_node}, that is {len(placements)} edges")
    here = socket.gethostname().split(".")[0]
    if cfg.server.host in LOOPBACK and set(nodes) != {here}:
        raise ConfigError(f"server.host = {cfg.server.host!r} is not accepted for an allocation "
                          f"on {nodes} launched from {here!r}: loopback reaches only this node; "
                          "set server.host=0.0.0.0 (edges then connect to the server's node)")
    return nodes[0], placements


def srun_command(cfg: RunConfig, node: str, name: str, gpus: int, cmd: list[str]) -> list[str]:
    """``cmd`` as one task of a step of the current allocation, on ``node``. Steps overlap:
    the server and the edges share the allocation's CPUs and run at once."""
    return ["srun", "--nodes=1", "--ntasks=1", f"--nodelist={node}", "--overlap",
            f"--job-name={name}", *([f"--gpus-per-task={gpus}"] if gpus else []),
            *cfg.hardware.slurm.srun_args, *cmd]


def edge_command(python: str, run_dir: Path, cid: int, address: str, device: str,
                 resume: bool) -> list[str]:
    """The command line of edge ``cid`` (``--resume`` when it is restarted)."""
    return [python, "-m", "specedge.serving.edge", str(run_dir), "--client-id", str(cid),
            "--server", address, "--device", device, *(["--resume"] if resume else [])]
