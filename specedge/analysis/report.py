"""Cost-normalized HTML reports: one self-contained file per comparison or sweep, and an index.

Figures are seaborn/matplotlib PNGs embedded as data URIs and the CSS is inline, so a report
opens anywhere without a network. Numbers come from :mod:`specedge.analysis.metrics` (the runs'
``summary.json``) and, for distributions and the timeline, from the runs' JSONL records.

    python -m specedge.report comparison RUN_DIR... --out reports/comparison.html
    python -m specedge.report sweep SWEEP_DIR --out reports/sweep-budget.html
    python -m specedge.report projection SIM_RUN... --sweep DIR... --validation JSON
        [--ablation RUN... --ablation-setup SIM_RUN...] [--scenarios DIR] --out ...
    python -m specedge.report index reports/comparison.html ... [--scenarios DIR] --out ...
    python -m specedge.report figures RUN_DIR... --validation JSON [--heldout JSON...]
        --scenarios DIR --out docs/figures.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from specedge.analysis.pages.comparison import comparison_report
from specedge.analysis.pages.figures import figures_table
from specedge.analysis.pages.index import index_page
from specedge.analysis.pages.page import ReportError
from specedge.analysis.pages.projection import projection_report
from specedge.analysis.pages.sweep import sweep_report
from specedge.analysis.run_records import MetricsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specedge report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    comp = sub.add_parser("comparison", help="compare runs (SpecEdge, server-only, auto-batch)")
    comp.add_argument("run_dirs", nargs="+", type=Path)
    comp.add_argument("--bench", type=Path, help="results of python -m specedge.bench spec")
    sweep = sub.add_parser("sweep", help="one Hydra multirun sweep")
    sweep.add_argument("sweep_dir", type=Path)
    proj = sub.add_parser("projection", help="the performance model: validation, paper setup")
    proj.add_argument("setup_dirs", nargs="+", type=Path,
                      help="simulated runs of the paper's setup (one per baseline)")
    proj.add_argument("--sweep", type=Path, nargs="+", required=True,
                      help="the edges-per-server multiruns (one per proactive rule)")
    proj.add_argument("--ablation", type=Path, nargs="*", default=[],
                      help="real runs to compare side by side (proactive rule, tree policy)")
    proj.add_argument("--ablation-setup", type=Path, nargs="*", default=[],
                      help="the paper's setup simulated from each --ablation run, same order")
    proj.add_argument("--validation", type=Path, required=True,
                      help="validation.json of python -m specedge.simulate --validate")
    proj.add_argument("--heldout", type=Path, nargs="*", default=[],
                      help="validation.json of each held-out draw (results/heldout/simulated/"
                           "<draw>/validation.json)")
    idx = sub.add_parser("index", help="the page linking the reports")
    idx.add_argument("reports", nargs="+", type=Path)
    fig = sub.add_parser("figures", help="the one markdown table of a main job's figures")
    fig.add_argument("run_dirs", nargs="+", type=Path, help="the comparison's runs")
    fig.add_argument("--validation", type=Path, required=True)
    fig.add_argument("--heldout", type=Path, nargs="*", default=[])
    fig.add_argument("--scenarios", type=Path, required=True)
    fig.add_argument("--out", type=Path, required=True)
    for p in (proj, idx):
        p.add_argument("--scenarios", type=Path, default=None,
                       help="python -m specedge.analysis.projection's out_dir: the protocol, "
                            "maps and sensitivity")
    for p in (comp, sweep, proj, idx):
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        if args.what == "comparison":
            comparison_report(args.run_dirs, args.out,
                              args.title or "SpecEdge vs server-only vs auto-batch", args.bench)
        elif args.what == "sweep":
            sweep_report(args.sweep_dir, args.out, args.title or f"Sweep {args.sweep_dir.name}")
        elif args.what == "projection":
            projection_report(args.setup_dirs, args.sweep, args.validation, args.out,
                              args.title or "Performance model: validation and projection",
                              args.ablation, args.ablation_setup, args.scenarios,
                              args.heldout)
        elif args.what == "figures":
            figures_table(args.run_dirs, args.validation, args.heldout, args.scenarios,
                          args.out)
        else:
            index_page(args.reports, args.out, args.scenarios)
    except (ReportError, MetricsError, OSError) as exc:
        print(f"specedge.analysis.report: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
