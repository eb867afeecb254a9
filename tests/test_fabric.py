"""Edges on another node are launched over SSH with Fabric: a real sshd on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from specedge import PROJECT_ROOT
from specedge.base.records import OUTPUTS_FILE
from tests.serving import assert_outputs_exact, read_records, run_command

pytestmark = pytest.mark.slow  # end to end: real processes, pipelines or builds

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A private sshd on 127.0.0.1 accepting one generated key; yields (node, its folder)."""
    if not Path(SSHD).exists():
        if os.environ.get("CI"):
            pytest.fail("openssh-server is missing: .ci/setup installs it")
        pytest.skip("no sshd on this machine (apt-get install openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True)
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"sshd did not start: {out}")
            time.sleep(0.1)
    user = os.environ.get("USER") or "root"
    # Nodes are SSH host names, as in upstream: an ssh_config entry says where each one is.
    (d / "ssh_config").write_text(
        f"Host edge-over-ssh\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n")
    yield "edge-over-ssh", d
    proc.terminate()
    proc.wait(timeout=10)


def _hardware(conf: Path, node: str, sshd_dir: Path | None) -> None:
    key = sshd_dir / "client_key" if sshd_dir else None
    ssh_config = sshd_dir / "ssh_config" if sshd_dir else None
    (conf / "hardware").mkdir(parents=True, exist_ok=True)
    (conf / "hardware" / "ssh_test.yaml").write_text(
        "defaults:\n  - base_hardware\n  - _self_\n\nname: ssh_test\n"
        "prices: {server_gpu: CPU, server_per_hour: 0.05, edge_gpu: CPU, edge_per_hour: 0.05}\n"
        f"ssh:\n  key: {json.dumps(str(key)) if key else 'null'}\n"
        f"  config: {json.dumps(str(ssh_config)) if ssh_config else 'null'}\n"
        f"nodes:\n  localhost:\n    - device: cpu\n  {json.dumps(node)}:\n    - device: cpu\n")


def _command(tmp_path: Path, pair: Path, max_new: int = 10) -> list[str]:
    return run_command(tmp_path / "run", pair, f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
                       "hardware=ssh_test", "server.num_clients=2", "server.max_batch_size=1",
                       "dataset.max_requests=4", f"generation.max_new_tokens={max_new}")


def _run(tmp_path: Path, pair: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(tmp_path, pair), cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def test_edge_over_ssh_is_exact_and_its_jsonl_comes_back(
        tmp_path: Path, micro_pair: Path, sshd: tuple[str, Path]) -> None:
    node, sshd_dir = sshd
    _hardware(tmp_path / "conf", node, sshd_dir)
    result = _run(tmp_path, micro_pair)
    run_dir = tmp_path / "run"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (run_dir / "edge-1.jsonl").stat().st_size > 0  # the SSH edge's rounds
    assert "edge 1 done" in (run_dir / "edge-1.log").read_text()
    outputs = read_records(run_dir / OUTPUTS_FILE)
    assert [o["request_id"] for o in outputs] == [0, 1, 2, 3]
    assert_outputs_exact(outputs, micro_pair, 10)


def test_a_killed_ssh_edge_is_restarted_over_ssh_and_resumes_exactly(
        tmp_path: Path, micro_pair: Path, sshd: tuple[str, Path]) -> None:
    node, sshd_dir = sshd
    _hardware(tmp_path / "conf", node, sshd_dir)
    run_dir = tmp_path / "run"
    run = subprocess.Popen(_command(tmp_path, micro_pair, max_new=40), cwd=PROJECT_ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rounds, deadline = run_dir / "edge-1.jsonl", time.monotonic() + 180
    while not (rounds.exists() and len(rounds.read_text().splitlines()) >= 3):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1][-3000:]
        time.sleep(0.05)
    os.kill(int((run_dir / "edge-1.pid").read_text()), signal.SIGKILL)  # the SSH edge
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    assert "restarting it (1/2)" in (run_dir / "run.log").read_text()
    assert "resuming request 1 from" in (run_dir / "edge-1.log").read_text()
    outputs = read_records(run_dir / OUTPUTS_FILE)
    assert [o["request_id"] for o in outputs] == [0, 1, 2, 3]
    assert_outputs_exact(outputs, micro_pair, 40)


def test_ssh_node_without_key_is_refused(tmp_path: Path, micro_pair: Path) -> None:
    _hardware(tmp_path / "conf", "edge-without-key", None)
    result = _run(tmp_path, micro_pair)
    assert result.returncode == 2
    assert "hardware.ssh.key = None is not accepted" in result.stderr


def test_a_remote_edge_is_stopped_by_its_process_id_not_by_name(
        tmp_path: Path, micro_pair: Path, sshd: tuple[str, Path]) -> None:
    """stop() on a running SSH edge ends that process; a process on the node whose command
    line looks the same (another user's run, say) is left alone."""
    from concurrent.futures import ThreadPoolExecutor

    from fabric import Config as FabricConfig
    from fabric import Connection

    from specedge.base.records import edge_file, edge_pid_file
    from specedge.serving.remote import RemoteEdge, run_remote_edge
    from tests.serving import live_server, write_run_config

    node, sshd_dir = sshd
    run_dir = tmp_path / "run"
    write_run_config(run_dir, micro_pair, "server.num_clients=1", "server.max_batch_size=1",
                     "hardware.nodes={localhost:[{device:cpu}]}",
                     "dataset.max_requests=64", "generation.max_new_tokens=200")
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                              "-m", "specedge.serving.edge", str(run_dir), "--client-id", "0",
                              "--server", "elsewhere:1"])
    conn = Connection(node, config=FabricConfig(runtime_ssh_path=str(sshd_dir / "ssh_config")),
                      connect_kwargs={"key_filename": str(sshd_dir / "client_key")})
    try:
        with live_server(run_dir) as (_, port), ThreadPoolExecutor(1) as pool:
            future = pool.submit(run_remote_edge, conn, str(PROJECT_ROOT), run_dir, 0,
                                 f"127.0.0.1:{port}", "cpu", False)
            deadline = time.monotonic() + 120
            rounds = edge_file(run_dir, 0)
            while not (rounds.exists() and rounds.stat().st_size > 0):
                assert not future.done(), future.exception() or future.result()
                assert time.monotonic() < deadline, "the remote edge never started a round"
                time.sleep(0.2)
            edge = RemoteEdge(future, node, run_dir / "edge-0.log", conn,
                              edge_pid_file(run_dir, 0))
            edge.stop()
            assert future.result(timeout=60) != 0  # terminated, not finished
        assert decoy.poll() is None  # same name, same run directory, other process: alive
    finally:
        decoy.kill()
        decoy.wait()
        conn.close()
