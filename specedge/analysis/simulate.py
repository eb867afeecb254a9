"""A discrete-event model (SimPy) of the three systems, driven by latency profiles and traces.

``python -m specedge.simulate --validate RUN_DIR... [--out DIR]`` re-simulates real runs from
their own config, a latency model fitted on their own forwards and their own rounds (each
request's, replayed in order), and prints measured vs simulated.

``python -m specedge.simulate simulate.trace=RUN_DIR [HYDRA_OVERRIDES...]`` (``-m`` for sweeps,
indexed like real ones) simulates the composed configuration: rounds drawn from the trace run;
latencies from ``simulate.profile`` (a ``specedge.analysis.profile`` JSON: the target's forward,
and a round's draft forwards times the draft's) or, without one, the trace run's own; any number of
edges (``simulate.edges``). With a profile, the trace machine's own overheads (its gRPC stack, its
shared cores) are left out: only the emulated link and the profiled forwards remain.

The model is the real system's structure, each piece a SimPy process:

- SpecEdge: every edge drafts (a duration drawn from the trace), sends its tree over the
  emulated link (``hardware.link``: one-way delay, jitter, bandwidth; the round's bytes from the
  trace), and waits; the server forms batches with the real scheduler policies
  (:mod:`specedge.serving.scheduler`: pipeline-aware groups, static, dynamic, ``max_wait_ms``) and
  verifies a batch in the target's modelled latency; the reply crosses the link back. Rounds
  adopted from a proactive guess draw from the trace's adopted rounds, at its hit rate.
- server-only: one loop drafts every active request's tree together (one batched draft forward
  per level, at that batch), then verifies them in one batched forward.
- auto-batch: one loop decodes one token per active request per batched forward.

Requests keep their traced output lengths. The simulation writes the same JSONL records a real run
writes, so :mod:`specedge.analysis.metrics` computes its ``summary.json`` exactly as for a run; the
summary is marked simulated and names the latency model and the trace it used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from specedge.analysis.run_records import MetricsError
from specedge.analysis.simulation.events import simulate
from specedge.analysis.simulation.latency import SimulationError
from specedge.analysis.simulation.plan import plan_of_config
from specedge.analysis.simulation.systems import with_edges
from specedge.analysis.simulation.validation import validate
from specedge.base.config.checks import ConfigError
from specedge.base.config.preflight import checked_run_config
from specedge.base.records import SUMMARY_FILE


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def simulate_config(composed: DictConfig) -> None:
    """One simulated run of the composed configuration into the Hydra run directory."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        with_edges(composed)
        cfg = checked_run_config(composed)
        summary = simulate(plan_of_config(cfg), out_dir)
    except (ConfigError, SimulationError, MetricsError) as exc:
        print(f"specedge: error: {exc}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        sys.exit(2)
    print(f"simulated {summary['baseline']}: {summary['tokens']} tokens, "
          f"{summary['throughput_tok_s']:.1f} tokens/s ({summary['accounting']}), ITL "
          f"{summary['itl_ms']['mean']:.1f} ms, ${summary['usd_per_mtok']:.3f} per M tokens "
          f"-> {out_dir / SUMMARY_FILE}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--validate" not in argv:
        sys.argv = [sys.argv[0], *argv]
        simulate_config()
        return 0
    parser = argparse.ArgumentParser(prog="specedge simulate --validate",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--validate", action="store_true", required=True,
                        help="print measured vs simulated for every run")
    parser.add_argument("--out", type=Path, default=Path("results/simulated"),
                        help="where simulated runs are written (one folder per run)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        rows = validate(args.runs, args.out, args.seed)
    except (SimulationError, MetricsError) as exc:
        print(f"specedge: error: {exc}", file=sys.stderr)
        return 2
    width = max(len(r["run"]) for r in rows)
    print(f"{'run':<{width}}  {'baseline':<11} {'metric':<36} {'measured':>10} "
          f"{'simulated':>10} {'error':>8}")
    for r in rows:
        print(f"{r['run']:<{width}}  {r['baseline']:<11} {r['metric']:<36} "
              f"{r['measured']:>10.2f} {r['simulated']:>10.2f} {r['error']:>+8.1%}")
    (args.out / "validation.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
