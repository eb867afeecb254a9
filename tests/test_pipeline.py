"""`snakemake reports/all` end to end on the micro recipe, and the reports in a real Chromium.

The workflow runs in a fresh directory with a config that shrinks the model build and the runs
to seconds; everything else (rules, Hydra runs, the SpecEdge server and edges, the sweep, the
reports) is what `snakemake --cores 1 reports/all` does on the default pair.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from specedge import PROJECT_ROOT
from tests.chromium import check_page, find_chromium
from tests.conftest import micro_build_overrides
from tests.serving import cpu_edges

pytestmark = pytest.mark.slow  # end to end: real processes, pipelines or builds

RUNS = ["dataset.max_requests=4", "generation.max_new_tokens=8"]
# SpecEdge with fewer edges than the CPU hardware's four: each edge is a process that spends
# about 5 s importing torch and transformers, which is most of a micro run's time
ONE_EDGE = [*cpu_edges(1), "server.max_batch_size=1"]
TWO_EDGES = cpu_edges(2)


def _config(path: Path, server_only: list[str]) -> Path:
    path.write_text(yaml.safe_dump({
        "models": {"pair": "tiny",
                   "build_overrides": micro_build_overrides(PROJECT_ROOT / "models" / "corpus")},
        "runs": {"overrides": RUNS, "baselines": {"specedge": TWO_EDGES,
                                                  "server_only": server_only,
                                                  "auto_batch": []}},
        "sweeps": {"budget": {"params": ["baseline=server_only,specedge",
                                         "edge.max_budget=8,12"], "overrides": ONE_EDGE}},
        "validation": {"overrides": [], "runs": {
            "server_only": ["baseline=server_only"], "specedge-2e": TWO_EDGES,
            "specedge-2e-cache": [*TWO_EDGES, "edge.proactive.type=cache",
                                  "edge.tree_policy=adaptive"]},
            "ablation": ["specedge-2e", "specedge-2e-cache"]},
        "projection": {"overrides": ["hardware=a100_80", "model=qwen3_14b",
                                     "hardware.link.delay_ms=7", "simulate.requests=8"],
                       "concurrency": 2, "edges": [1, 4], "max_batch_size": 4,
                       "edge_traces": {"excluded": "specedge-2e",
                                       "cache": "specedge-2e-cache"},
                       "scenario_runs": ["specedge-2e"],
                       "scenario_overrides": [
                           "scenarios=[{name:real,label:micro pair,source:this test,"
                           "trace:results/validation/specedge-2e}]", "main_scenario=real",
                           "batch_sizes=[1,2]", "headline_batch=2", "requests_per_slot=1",
                           "maps.hardware=[a100_80]", "maps.concurrency=[1,4]",
                           "maps.tokens_per_round=[2.5]", "maps.rtt_ms=[0,14]"]}}))
    return path


def _snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args, "--cores", "1", "--directory", str(workdir),
         "--snakefile", str(PROJECT_ROOT / "Snakefile"), "--configfile", str(config)],
        capture_output=True, text=True, timeout=900, check=False)


def test_reports_all_builds_runs_reports_and_is_incremental(tmp_path: Path,
                                                             micro_pair: Path) -> None:
    # micro_pair has fetched the corpus into models/corpus, which the build here reads
    work = tmp_path / "work"
    config = _config(tmp_path / "config.yaml", server_only=[])
    done = _snakemake(work, config, "reports/all")
    assert done.returncode == 0, done.stderr[-4000:]
    reports = work / "reports"
    assert {p.name for p in reports.glob("*.html")} == {"index.html", "comparison.html",
                                                         "sweep-budget.html", "projection.html"}
    jobs = ["build_models", "runs/specedge", "runs/server_only", "runs/auto_batch",
            "sweeps/budget", "reports/comparison", "reports/sweep-budget",
            "reports/index", "validation/server_only", "validation/specedge-2e",
            "validation/validate", "projection/setup-specedge", "projection/edges",
            "projection/ablation-specedge-2e-cache", "projection/scenarios",
            "reports/projection"]
    for job in jobs:  # every rule has a log and a benchmark record
        assert (work / "logs" / f"{job}.log").exists(), job
        assert (work / "benchmarks" / f"{job}.tsv").exists(), job
    index = (reports / "index.html").read_text()
    assert 'href="comparison.html"' in index and 'href="sweep-budget.html"' in index
    assert "cannot show" in index and 'href="projection.html#headline"' in index
    comparison = (reports / "comparison.html").read_text()
    for label in ("Autoregressive", "Server-only", "SpecEdge", "Timeline of a SpecEdge run",
                  "wall", "busy", "Prompts and replies", "same as greedy", "--- prompt"):
        assert label in comparison
    assert "http://" not in comparison and "https://" not in comparison  # self-contained
    projection = (reports / "projection.html").read_text()
    for label in ("measured vs simulated", "specedge-2e", "/ server-only",
                  "The paper&#39;s setup at equal concurrency (SIMULATED)",
                  "Edges per server (SIMULATED)", "micro pair", "break-even",
                  "Headline: the paper&#39;s protocol (SIMULATED)", "Sensitivity",
                  "Ablation: proactive drafting and tree policy", "expected hit rate",
                  "adaptive", "<td>cache</td>"):
        assert label in projection, label

    again = _snakemake(work, config, "-n", "reports/all")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    changed = _config(tmp_path / "changed.yaml", server_only=["edge.max_budget=12"])
    plan = _snakemake(work, changed, "-n", "reports/all")
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = plan.stdout + plan.stderr
    assert "results/runs/server_only/summary.json" in jobs
    for untouched in ("build_models", "results/runs/specedge", "results/runs/auto_batch",
                      "run_sweep"):
        assert f"rule {untouched}" not in jobs and f"output: {untouched}" not in jobs, untouched

    chromium = find_chromium()
    assert chromium, "the report test needs Debian's chromium package (.ci/setup installs it)"
    for page in ("index.html", "comparison.html", "sweep-budget.html", "projection.html"):
        seen = check_page(chromium, reports / page)
        assert seen.console_errors == [], (page, seen.console_errors)
        assert (seen.image_widths and all(w > 0 for w in seen.image_widths)) or \
            page == "index.html", (page, seen.image_widths)
        assert seen.screenshot.startswith(b"\x89PNG")
        (tmp_path / f"{page}.png").write_bytes(seen.screenshot)


def test_browser_check_sees_console_errors_and_broken_images(tmp_path: Path) -> None:
    chromium = find_chromium()
    assert chromium, "the report test needs Debian's chromium package (.ci/setup installs it)"
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="missing.png"><script>console.error("boom")</script>'
                    "</body></html>")
    seen = check_page(chromium, page)
    assert any("boom" in e for e in seen.console_errors)
    assert seen.image_widths == [0]
