"""Helpers for tests that talk to a real verification server process over loopback gRPC."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import subprocess
import sys
import time
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import grpc
import torch
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hydra import compose, initialize_config_dir

from specedge import CONF_DIR, PROJECT_ROOT
from specedge.algorithm.verification import greedy_reference
from specedge.base import records
from specedge.base.config.run import RunConfig, load_run_config, save_run_config
from specedge.base.records import (
    EDGE_FILES,
    OUTPUTS_FILE,
    SERVER_FILE,
    STEPS_FILE,
    EdgeRoundRecord,
    OutputRecord,
    ServerStepRecord,
    StepRecord,
)
from specedge.engine.models import load_model
from specedge.serving.protocol import pb, rpc


def run_command(run_dir: Path, pair: Path, *overrides: str) -> list[str]:
    """``python -m specedge.run`` on ``pair`` into ``run_dir`` (later overrides win)."""
    return [sys.executable, "-m", "specedge.run", "model=tiny", f"model.target={pair / 'target'}",
            f"model.draft={pair / 'draft'}", f"hydra.run.dir={run_dir}", *overrides]


def cpu_edges(n: int) -> list[str]:
    """Overrides for ``n`` SpecEdge edges on this machine's CPU, one client each (the CPU
    hardware has four)."""
    nodes = ",".join("{device:cpu}" for _ in range(n))
    return [f"hardware.nodes={{localhost:[{nodes}]}}", f"server.num_clients={n}"]


def read_records(path: Path, cut_ok: bool = False) -> list[dict]:
    """A run file's records through the project's one reader (the schema from the file's
    name); every line must be a record unless ``cut_ok`` (a killed process's file)."""
    if fnmatch(path.name, EDGE_FILES):
        schema: type = EdgeRoundRecord
    else:
        schema = {OUTPUTS_FILE: OutputRecord, SERVER_FILE: ServerStepRecord,
                  STEPS_FILE: StepRecord}[path.name]
    problems: list[str] = []
    rows = records.read_jsonl(path, schema, problems)
    assert cut_ok or not problems, problems
    return rows


@torch.inference_mode()
def assert_outputs_exact(outputs: list[dict], pair: Path, max_new: int) -> None:
    """Every record of an ``outputs.jsonl`` is the target's own ``generate`` greedy decode."""
    target = load_model(str(pair / "target"))
    for out in outputs:
        assert out["output_ids"] == greedy_reference(target, out["prompt_ids"], max_new), \
            out["request_id"]


def write_run_config(run_dir: Path, pair: Path, *overrides: str) -> RunConfig:
    """A run directory's config for a live server the test drives by hand: its trees carry
    no survivals, so the server verifies every node in two groups; and one caller seldom fills
    a batch, so a batch waits 50 ms for others, not 2 s (``overrides`` may say otherwise)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["model=tiny", f"model.target={pair / 'target'}",
                                           f"model.draft={pair / 'draft'}",
                                           "server.verify_budget=fixed",
                                           "server.pipeline_groups=split",
                                           "server.max_wait_ms=50", *overrides])
    save_run_config(cfg, run_dir)
    return load_run_config(run_dir)


@contextlib.contextmanager
def live_server(run_dir: Path, port: int | None = None) -> Iterator[tuple[subprocess.Popen[bytes],
                                                                           int]]:
    """``python -m specedge.serving.server`` on the run dir's config; yields the process and its
    port."""
    port_file = run_dir / "server.port"
    port_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "specedge.serving.server", str(run_dir), str(port_file)]
    if port is not None:
        cmd += ["--port", str(port)]
    with (run_dir / "server.log").open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists():
            assert proc.poll() is None, (run_dir / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield proc, int(port_file.read_text())
    finally:
        stop_process(proc, 20)


def stop_process(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, and SIGKILL after ``grace_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@torch.inference_mode()
def argmax_continuation(pair: Path, prompt: list[int], n: int) -> list[int]:
    """The target's own greedy continuation (EOS not special: the server never stops)."""
    target = load_model(str(pair / "target"))
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(target(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


def decode_through(stub: rpc.VerifierStub, client_id: int, request_id: int, prompt: list[int],
                   n: int, children: list[list[int]] | None = None,
                   metadata: tuple[tuple[str, str], ...] = ()) -> list[int]:
    """Generate ``n`` tokens as an honest edge would: each round a root (the last committed
    token) with the given children tokens as a one-level tree; returns the committed tokens."""
    committed = list(prompt)
    generated: list[int] = []
    rnd = 0
    while len(generated) < n:
        kids = (children or [[]])[rnd % len(children or [[]])]
        reply = stub.Validate(pb.ValidateRequest(
            client_id=client_id, request_id=request_id, prefill=rnd == 0,
            prompt=committed if rnd == 0 else [], tokens=[committed[-1], *kids],
            parents=[0] * len(kids), round=rnd), timeout=60, metadata=metadata)
        new = [kids[i - 1] for i in reply.accepted] + [reply.bonus]
        committed += new
        generated += new
        rnd += 1
    return generated[:n]


def self_signed(dir_: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = dir_ / f"{name}.crt", dir_ / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def channel(port: int) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{port}")
