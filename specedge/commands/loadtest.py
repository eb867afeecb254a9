"""Load test of the serving path: many edges, many requests, one server, loopback only.

``python -m specedge.loadtest [--edges 16] [--requests 64] [HYDRA_OVERRIDES...]`` runs one
SpecEdge run (a real server process and ``--edges`` edge processes) on ``--requests`` prompts
(the built-in set, cycled and numbered so every prompt is distinct), bounded by ``--timeout``
seconds, then checks every output against the target's own greedy decode and prints: failed
requests, exact outputs, lost records (requests whose rounds' committed tokens are not exactly
their output), peak RSS, wall time, throughput and inter-token latency. It exits non-zero unless
every request finished, exact, with every record.

``--chaos`` makes it a fault benchmark: the link loses 2 % of messages with 5 +- 5 ms delay,
one edge is SIGKILLed once it has done a few rounds (the launcher restarts it and it resumes),
and the server is SIGKILLed once later (the launcher restarts it and edges re-prefill).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from specedge import DATA_DIR
from specedge.algorithm.verification import greedy_reference
from specedge.base.config.run import load_run_config
from specedge.base.records import (
    EDGE_FILES,
    OUTPUTS_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    EdgeRoundRecord,
    OutputRecord,
    read_jsonl,
)
from specedge.engine.models import load_model

BUILTIN = DATA_DIR / "builtin_prompts.jsonl"
CHAOS_OVERRIDES = ["hardware.link.loss=0.02", "hardware.link.delay_ms=5",
                   "hardware.link.jitter_ms=5"]


def write_prompts(path: Path, n: int) -> Path:
    """``n`` distinct Spec-Bench style prompts: the built-in ones, cycled and numbered."""
    base = [json.loads(line) for line in BUILTIN.read_text().splitlines()]
    with path.open("w") as fh:
        for i in range(n):
            q = base[i % len(base)]
            turn = q["turns"][0] if i < len(base) else f"(Request {i}.) {q['turns'][0]}"
            fh.write(json.dumps({"question_id": i, "category": q["category"],
                                 "turns": [turn]}) + "\n")
    return path


@torch.inference_mode()
def count_exact(run_dir: Path, outputs: list[dict[str, Any]]) -> int:
    cfg = load_run_config(run_dir)
    target = load_model(cfg.model.target, cfg.model.dtype, "cpu", cfg.model.attn_implementation)
    exact = 0
    for out in outputs:
        exact += out["output_ids"] == greedy_reference(target, out["prompt_ids"],
                                                       cfg.generation.max_new_tokens)
    return exact


def lost_records(rounds: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> list[int]:
    """Requests whose round records (every edge's, in file order), their committed tokens in
    order, are not exactly their output: a round's record went missing (or was written twice)."""
    committed: dict[int, list[int]] = defaultdict(list)
    for r in rounds:
        committed[r["request_id"]] += r["tokens"]
    return [o["request_id"] for o in outputs if committed[o["request_id"]] != o["output_ids"]]


def _pids(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(p) for p in found.stdout.split()]


def _rounds(run_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in run_dir.glob(EDGE_FILES))


def _chaos(run: subprocess.Popen[str], run_dir: Path, kills: list[str]) -> None:
    """SIGKILL edge 1 once the edges have done 100 rounds, then the server at 500 (of about
    1,600 in the default 16 x 64 run); ``kills`` says what was killed and when."""
    t0 = time.monotonic()
    for pattern, rounds in ((f"specedge.serving.edge {run_dir} --client-id 1 ", 100),
                            (f"specedge.serving.server {run_dir} ", 500)):
        while run.poll() is None and _rounds(run_dir) < rounds:
            time.sleep(0.2)
        for pid in _pids(pattern):
            os.kill(pid, signal.SIGKILL)
            kills.append(f"{pattern.split()[0]} (pid {pid}) after {_rounds(run_dir)} rounds, "
                         f"{time.monotonic() - t0:.0f} s")


def run_load(edges: int, requests: int, overrides: list[str], out_dir: Path,
             timeout_s: float, chaos: bool = False) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts = write_prompts(out_dir / "prompts.jsonl", requests)
    run_dir = out_dir / "run"
    nodes = "{localhost:[" + ",".join(["{device:cpu}"] * edges) + "]}"
    cmd = [sys.executable, "-m", "specedge.run", "baseline=specedge", f"hydra.run.dir={run_dir}",
           "dataset=specbench", f"dataset.path={prompts}", f"hardware.nodes={nodes}",
           f"server.num_clients={edges}", f"server.max_batch_size={max(1, edges // 2)}",
           *(CHAOS_OVERRIDES if chaos else []), *overrides]
    t0 = time.perf_counter()
    kills: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as run:
        chaos_thread = threading.Thread(target=_chaos, args=(run, run_dir, kills), daemon=True)
        if chaos:
            chaos_thread.start()
        _, stderr = run.communicate(timeout=timeout_s)
    wall_s = time.perf_counter() - t0
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    outputs = read_jsonl(run_dir / OUTPUTS_FILE, OutputRecord, [], missing_ok=True)
    stats_path = run_dir / STATS_FILE
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    rounds = [r for p in sorted(run_dir.glob(EDGE_FILES))
              for r in read_jsonl(p, EdgeRoundRecord, [], missing_ok=True)]
    return {"edges": edges, "requests": requests, "chaos": chaos, "kills": kills,
            "exit_code": run.returncode, "finished": len(outputs),
            "failed": requests - len(outputs), "exact": count_exact(run_dir, outputs),
            "lost_records": lost_records(rounds, outputs),
            "retries": sum(r["retries"] for r in rounds),
            "lost_edges": summary.get("lost_edges", {}),
            "server_peak_rss_mib": stats.get("peak_rss_mib"),
            # the largest process of the run (server, an edge, or the launcher); Linux: KiB
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "wall_s": wall_s,
            "tokens": summary["tokens"], "throughput_tok_s": summary["throughput_tok_s"],
            "itl_ms": summary["itl_ms"]["mean"], "mean_batch": summary["mean_batch_size"],
            "stderr_tail": stderr[-2000:] if run.returncode else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specedge.loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the run")
    parser.add_argument("--edges", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds, whole run")
    parser.add_argument("--out", type=Path, default=Path("results/loadtest"))
    parser.add_argument("--chaos", action="store_true", help="2 %% message loss and jitter; "
                        "kill one edge and the server once each, mid-run")
    args = parser.parse_args(argv)
    r = run_load(args.edges, args.requests, args.overrides, args.out, args.timeout, args.chaos)
    kind = "chaos" if r["chaos"] else "loopback"
    table = Table(title=f"Load test: {r['edges']} edges, {r['requests']} requests ({kind})")
    table.add_column("")
    table.add_column("", justify="right")
    server_rss = f"{r['server_peak_rss_mib']:.0f}" if r["server_peak_rss_mib"] else "-"
    for name, value in (
            ("finished / failed", f"{r['finished']} / {r['failed']}"),
            ("exact outputs", str(r["exact"])), ("lost records", str(len(r["lost_records"]))),
            ("retries", str(r["retries"])), ("lost edges", str(len(r["lost_edges"]))),
            ("peak RSS MiB (server / largest process)", f"{server_rss} / {r['peak_rss_mib']:.0f}"),
            ("wall s", f"{r['wall_s']:.1f}"), ("tokens", str(r["tokens"])),
            ("tokens/s (server time)", f"{r['throughput_tok_s']:.1f}"),
            ("ITL ms", f"{r['itl_ms']:.1f}"), ("mean batch", f"{r['mean_batch']:.2f}")):
        table.add_row(name, value)
    Console().print(table)
    for kill in r["kills"]:
        print(f"killed: {kill}")
    (args.out / "loadtest.json").write_text(json.dumps(r, indent=2) + "\n")
    if r["stderr_tail"]:
        print(r["stderr_tail"], file=sys.stderr)
    ok = r["failed"] == 0 and r["exact"] == r["requests"] and not r["lost_records"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
