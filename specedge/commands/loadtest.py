"""Load test of the serving path: many edges, many requests, one server, loopback only.

``python -m specedge.loadtest [--edges 16] [--requests 64] [HYDRA_OVERRIDES...]`` runs one
SpecEdge run (a real server process and ``--edges`` edge processes) on ``--requests`` prompts
(the built-in set, cycled and numbered so every prompt is distinct), bounded by ``--timeout``
seconds, then checks every output against the target's own greedy decode and prints: failed
requests, exact outputs, lost records (requests whose rounds' committed tokens are not exactly
their output), peak RSS, wall time, throughput and inter-token latency. It exits non-zero unless
every request finished, exact, with every record.

``--chaos`` makes it a fault benchmark: the link loses 2 % of messages with 5 +- 5 ms delay,
and the faults of :func:`plan_faults` happen at fixed points of the run's progress (its
committed tokens over requests x ``generation.max_new_tokens``), so any size of run meets them:
an edge is SIGKILLed (the launcher restarts it and it resumes), another edge's link drops for
a second (SIGUSR1: every message lost until it is back), the server is SIGKILLed (restarted;
edges re-prefill), the server is restarted while it verifies (SIGTERM: it finishes in-flight
calls within its grace, exits, and the launcher starts it again), and an edge is stopped
(SIGSTOP) for longer than the server's client timeout, then continued. An edge's fault hits
the edge with the most tokens left when it happens (one not hit before where there is one): a
fixed edge may have served its share and exited by then. Each fault is reported
with when it happened and how the run recovered; a planned fault that did not happen, after
which its process never served again, or (the mid-batch restart) with no round in flight,
fails the run, named.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from rich.console import Console
from rich.table import Table

from specedge import CONF_DIR, DATA_DIR
from specedge.algorithm.verification import greedy_reference
from specedge.base.config.run import load_run_config
from specedge.base.records import (
    EDGE_FILES,
    OUTPUTS_FILE,
    SERVER_FILE,
    STATS_FILE,
    SUMMARY_FILE,
    EdgeRoundRecord,
    OutputRecord,
    ServerStepRecord,
    read_jsonl,
)
from specedge.engine.models import load_model
from specedge.serving.scheduler import FORWARD_THREAD

BUILTIN = DATA_DIR / "builtin_prompts.jsonl"
CLIENT_TIMEOUT_S = 5.0  # the server's, under --chaos: the stalled edge outlasts it
STALL_S = CLIENT_TIMEOUT_S + 1.5
DROP_S = 1.0  # a dropped link's outage
CHAOS_OVERRIDES = ["hardware.link.loss=0.02", "hardware.link.delay_ms=5",
                   "hardware.link.jitter_ms=5", f"hardware.link.drop_s={DROP_S}",
                   f"server.client_timeout_s={CLIENT_TIMEOUT_S}",
                   "server.max_restarts=2"]  # the server is killed once and restarted once
SIGNALS = {"kill": signal.SIGKILL, "stall": signal.SIGSTOP, "restart": signal.SIGTERM,
           "drop": signal.SIGUSR1}


class RunFailed(RuntimeError):
    pass  # the run under test ended without its summary: nothing to check


@dataclass
class Fault:
    """A planned fault, and what happened: ``at`` is the run's progress (committed tokens
    over requests x max_new_tokens) from which it is injected, while requests remain."""

    name: str
    at: float
    # kill: SIGKILL; stall: SIGSTOP for STALL_S, then SIGCONT; restart: SIGTERM while the
    # server verifies (it finishes in-flight calls for its grace, exits, and is restarted);
    # drop: SIGUSR1, the edge's link is down for DROP_S
    kind: str
    process: str  # "server", or "edge": "edge N" once it happened, the edge with most left
    happened_s: float | None = None  # since the run started
    progress: float | None = None  # when it happened
    pids: list[int] = field(default_factory=list)
    t_wall: float | None = None  # when it happened (time.time(), the records' clock)
    t_back: float | None = None  # when the process could serve again (stall: continued)
    recovered_s: float | None = None  # until its process served a round again
    requests_resumed: int = 0  # requests served before and after it
    in_flight: int = 0  # rounds sent and not yet answered when it happened
    rounds_retried: int = 0  # rounds with a repeated call, from it to the next fault

    @property
    def problem(self) -> str | None:
        if self.happened_s is None:
            return (f"{self.name}: planned at {self.at:.0%} of the run's tokens, it never "
                    "happened (the run ended first)")
        if self.recovered_s is None:
            return f"{self.name}: its process never served again"
        if self.kind == "restart" and self.in_flight == 0:
            return f"{self.name}: no round was in flight when it happened"
        return None


def plan_faults() -> list[Fault]:
    """Kill an edge at 10 % of the run, drop another's link for a second at 25 %, kill the
    server at 40 %, restart it while it verifies at 55 %, stall an edge at 70 %."""
    return [Fault("an edge killed", 0.10, "kill", "edge"),
            Fault(f"an edge's link dropped {DROP_S:.0f} s", 0.25, "drop", "edge"),
            Fault("server killed", 0.40, "kill", "server"),
            Fault("server restarted mid-batch", 0.55, "restart", "server"),
            Fault(f"an edge stalled {STALL_S:.1f} s", 0.70, "stall", "edge")]


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


def _rounds(run_dir: Path) -> list[dict[str, Any]]:
    """Every edge's round records so far (a line being written is skipped)."""
    return [r for p in sorted(run_dir.glob(EDGE_FILES))
            for r in read_jsonl(p, EdgeRoundRecord, [], missing_ok=True)]


def _pattern(run_dir: Path, process: str) -> str:
    if process == "server":
        return f"specedge.serving.server {run_dir}( |$)"
    return f"specedge.serving.edge {run_dir} --client-id {process.split()[1]}( |$)"


def _edge_with_most_left(run_dir: Path, rounds: list[dict[str, Any]], shares: list[int],
                         hit: set[str]) -> str | None:
    """The running edge with the most tokens left to commit, preferring one no fault hit."""
    left = list(shares)
    for r in rounds:
        left[r["client_id"]] -= r["new_tokens"]
    ranked = sorted((c for c in range(len(left)) if left[c] > 0),
                    key=lambda c: (f"edge {c}" not in hit, left[c], -c), reverse=True)
    return next((f"edge {c}" for c in ranked if _pids(_pattern(run_dir, f"edge {c}"))), None)


def _chaos(run: subprocess.Popen[str], run_dir: Path, shares: list[int],
           faults: list[Fault]) -> None:
    """Inject each fault once the run's progress reaches its point, while requests remain;
    ``shares``: each edge's share of the run's tokens."""
    t0, total_tokens = time.monotonic(), sum(shares)
    while run.poll() is None and any(f.happened_s is None for f in faults):
        rounds = _rounds(run_dir)
        progress = sum(r["new_tokens"] for r in rounds) / total_tokens
        for f in faults:
            if f.happened_s is not None or not f.at <= progress < 1.0:
                continue
            hit = {g.process for g in faults if g.happened_s is not None}
            process = f.process if f.process != "edge" else (
                _edge_with_most_left(run_dir, rounds, shares, hit) or "")
            pids = _pids(_pattern(run_dir, process)) if process else []
            if not pids:
                continue  # between a restart and its process: the next poll
            if f.kind == "restart" and not _verifying(pids[0]):
                continue  # idle: no batch in flight (the records then say whether one was)
            for pid in pids:
                os.kill(pid, SIGNALS[f.kind])
            f.t_wall, f.happened_s = time.time(), time.monotonic() - t0
            f.progress, f.pids, f.process = progress, pids, process
            f.t_back = f.t_wall
            if f.kind == "stall":
                time.sleep(STALL_S)
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
                f.t_back = time.time()
            elif f.kind == "drop":
                f.t_back = f.t_wall + DROP_S
            elif f.kind == "restart":  # served again: by the process started after this one
                while any(_alive(pid) for pid in pids):
                    time.sleep(0.02)
                f.t_back = time.time()
        time.sleep(0.05)


def _verifying(pid: int, within_s: float = 2.0) -> bool:
    """Whether the server ``pid`` is seen running a forward (its forward thread, named
    FORWARD_THREAD, in state R) within ``within_s``, looked at every millisecond: a CPU-time
    sample over a window could miss a micro model's 3 ms forwards and restart it between
    rounds."""
    threads = [t for t in Path(f"/proc/{pid}/task").glob("*")
               if _read(t / "comm").strip() == FORWARD_THREAD]
    deadline = time.monotonic() + within_s
    while threads and time.monotonic() < deadline:
        if any(_state(t / "stat") == "R" for t in threads):
            return True
        time.sleep(0.001)
    return False


def _read(path: Path) -> str:
    """A /proc file's text; empty once its process or thread is gone."""
    try:
        return path.read_text()
    except OSError:
        return ""


def _state(stat: Path) -> str:
    """The state letter (R, S, Z, ...) in a /proc stat file; empty once it is gone."""
    fields = _read(stat).rsplit(")", 1)[-1].split()
    return fields[0] if fields else ""


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, exited but not yet reaped, does not)."""
    return _state(Path(f"/proc/{pid}/stat")) not in ("", "Z")


def _recovery(faults: list[Fault], rounds: list[dict[str, Any]], steps: list[dict[str, Any]]
              ) -> None:
    """From the records: when each fault's process served again, the requests it carried on,
    and the rounds that had to repeat a call until the next fault."""
    happened = sorted((f for f in faults if f.t_wall is not None), key=lambda f: f.t_wall or 0)
    for i, f in enumerate(happened):
        nxt = happened[i + 1] if i + 1 < len(happened) else None
        assert f.t_wall is not None and f.t_back is not None
        if f.process == "server":
            after = [s["t_start"] for s in steps if s["t_start"] > f.t_back]
            mine = rounds
        else:
            client = int(f.process.split()[1])
            mine = [r for r in rounds if r["client_id"] == client]
            after = [r["t_end"] for r in mine if r["t_end"] > f.t_back]
        f.recovered_s = min(after) - f.t_wall if after else None
        f.in_flight = sum(r["t_sent"] < f.t_wall < r["t_end"] for r in mine)
        before = {r["request_id"] for r in mine if r["t_end"] <= f.t_wall}
        f.requests_resumed = len(before & {r["request_id"] for r in mine
                                           if r["t_end"] > f.t_back})
        end = nxt.t_wall if nxt is not None and nxt.t_wall is not None else float("inf")
        f.rounds_retried = sum(r["retries"] > 0 for r in rounds if f.t_wall < r["t_end"] <= end)


def _max_new_tokens(overrides: list[str]) -> int:
    """The run's generation.max_new_tokens, as its overrides compose it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[o for o in overrides
                                                       if not o.startswith("hydra.")])
    return int(cfg.generation.max_new_tokens)


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
    faults = plan_faults() if chaos else []
    max_new = _max_new_tokens(overrides)
    shares = [len(range(c, requests, edges)) * max_new for c in range(edges)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as run:
        chaos_thread = threading.Thread(target=_chaos, args=(run, run_dir, shares,
                                                             faults), daemon=True)
        if chaos:
            chaos_thread.start()
        _, stderr = run.communicate(timeout=timeout_s)
        if chaos:
            chaos_thread.join(timeout=STALL_S + 5)
    wall_s = time.perf_counter() - t0
    if not (run_dir / SUMMARY_FILE).exists():
        raise RunFailed(f"the run exited with code {run.returncode} before it wrote "
                        f"{run_dir / SUMMARY_FILE}; its stderr ends:\n{stderr[-2000:]}")
    summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    outputs = read_jsonl(run_dir / OUTPUTS_FILE, OutputRecord, [], missing_ok=True)
    stats_path = run_dir / STATS_FILE
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    rounds = _rounds(run_dir)
    steps = read_jsonl(run_dir / SERVER_FILE, ServerStepRecord, [], missing_ok=True)
    _recovery(faults, rounds, steps)
    return {"edges": edges, "requests": requests, "chaos": chaos,
            "faults": [dataclasses.asdict(f) | {"problem": f.problem} for f in faults],
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
    parser = argparse.ArgumentParser(prog="specedge loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the run")
    parser.add_argument("--edges", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds, whole run")
    parser.add_argument("--out", type=Path, default=Path("results/loadtest"))
    parser.add_argument("--chaos", action="store_true", help="2 %% message loss and jitter; "
                        "kill an edge, drop another's link for a second, kill the server, "
                        "restart it mid-batch, stall an edge, at fixed points of the run's "
                        "progress; fails if a planned fault did not happen or recover")
    args = parser.parse_args(argv)
    try:
        r = run_load(args.edges, args.requests, args.overrides, args.out, args.timeout,
                     args.chaos)
    except RunFailed as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 1
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
    if r["faults"]:
        faults = Table(title="Faults (planned at a share of the run's tokens)")
        for col in ("fault", "process", "planned", "happened", "after s",
                    "served again after s",
                    "rounds in flight", "requests resumed", "rounds retried"):
            faults.add_column(col, justify="left" if col == "fault" else "right")
        for f in r["faults"]:
            faults.add_row(f["name"], f["process"], f"{f['at']:.0%}",
                           "no" if f["progress"] is None else f"at {f['progress']:.0%}",
                           "-" if f["happened_s"] is None else f"{f['happened_s']:.1f}",
                           "-" if f["recovered_s"] is None else f"{f['recovered_s']:.2f}",
                           str(f["in_flight"]), str(f["requests_resumed"]),
                           str(f["rounds_retried"]))
        Console(width=140).print(faults)
    (args.out / "loadtest.json").write_text(json.dumps(r, indent=2) + "\n")
    if r["stderr_tail"]:
        print(r["stderr_tail"], file=sys.stderr)
    problems = [f["problem"] for f in r["faults"] if f["problem"]]
    for problem in problems:
        print(f"chaos: {problem}", file=sys.stderr)
    ok = r["failed"] == 0 and r["exact"] == r["requests"] and not r["lost_records"]
    return 0 if ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
