"""Load test of the serving path: many edges, many requests, one server, loopback only.

``python -m specedge.loadtest [--edges 16] [--requests 64] [HYDRA_OVERRIDES...]`` runs one
SpecEdge run (a real server process and ``--edges`` edge processes) on ``--requests`` prompts
(the built-in set, cycled and numbered so every prompt is distinct), bounded by ``--timeout``
seconds, then checks every output against the target's own greedy decode and prints: failed
requests, exact outputs, server peak RSS, throughput and inter-token latency. It exits non-zero
unless every request finished and every output is exact.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from specedge.config import load_run_config
from specedge.models import load_model
from specedge.records import OUTPUTS_FILE, STATS_FILE, SUMMARY_FILE, OutputRecord, read_jsonl
from specedge.verification import greedy_reference

BUILTIN = Path(__file__).parent / "data" / "builtin_prompts.jsonl"


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


def run_load(edges: int, requests: int, overrides: list[str], out_dir: Path,
             timeout_s: float) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts = write_prompts(out_dir / "prompts.jsonl", requests)
    run_dir = out_dir / "run"
    nodes = "{localhost:[" + ",".join(["{device:cpu}"] * edges) + "]}"
    cmd = [sys.executable, "-m", "specedge.run", "baseline=specedge", f"hydra.run.dir={run_dir}",
           "dataset=specbench", f"dataset.path={prompts}", f"hardware.nodes={nodes}",
           f"server.num_clients={edges}", f"server.max_batch_size={max(1, edges // 2)}",
           *overrides]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    wall_s = time.perf_counter() - t0
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    outputs = read_jsonl(run_dir / OUTPUTS_FILE, OutputRecord, [], missing_ok=True)
    stats_path = run_dir / STATS_FILE
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    return {"edges": edges, "requests": requests, "exit_code": done.returncode,
            "finished": len(outputs), "failed": requests - len(outputs),
            "exact": count_exact(run_dir, outputs), "lost_edges": summary.get("lost_edges", {}),
            "server_peak_rss_mib": stats.get("peak_rss_mib"), "wall_s": wall_s,
            "tokens": summary["tokens"], "throughput_tok_s": summary["throughput_tok_s"],
            "itl_ms": summary["itl_ms"]["mean"], "mean_batch": summary["mean_batch_size"],
            "stderr_tail": done.stderr[-2000:] if done.returncode else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specedge.loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the run")
    parser.add_argument("--edges", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds, whole run")
    parser.add_argument("--out", type=Path, default=Path("results/loadtest"))
    args = parser.parse_args(argv)
    r = run_load(args.edges, args.requests, args.overrides, args.out, args.timeout)
    table = Table(title=f"Load test: {r['edges']} edges, {r['requests']} requests (loopback)")
    for col in ("finished", "failed", "exact", "lost edges", "server peak RSS MiB", "wall s",
                "tokens", "tok/s (server)", "ITL ms", "mean batch"):
        table.add_column(col, justify="right")
    table.add_row(str(r["finished"]), str(r["failed"]), str(r["exact"]),
                  str(len(r["lost_edges"])), f"{r['server_peak_rss_mib']:.0f}"
                  if r["server_peak_rss_mib"] else "-", f"{r['wall_s']:.1f}", str(r["tokens"]),
                  f"{r['throughput_tok_s']:.1f}", f"{r['itl_ms']:.1f}", f"{r['mean_batch']:.2f}")
    Console().print(table)
    (args.out / "loadtest.json").write_text(json.dumps(r, indent=2) + "\n")
    if r["stderr_tail"]:
        print(r["stderr_tail"], file=sys.stderr)
    return 0 if r["failed"] == 0 and r["exact"] == r["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
