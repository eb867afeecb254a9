"""The Snakemake workflow parses, plans every rule, and validates its config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from specedge import PROJECT_ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_dry_run_plans_models_runs_sweeps_and_reports(tmp_path: Path) -> None:
    # A fresh directory: nothing built yet, so every rule must appear in the plan.
    result = _snakemake("-n", "--forceall", "reports/all", "--directory", str(tmp_path),
                        "--snakefile", str(PROJECT_ROOT / "Snakefile"),
                        "--configfile", str(PROJECT_ROOT / "workflow" / "config.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    for rule in ("convert_model", "draft_model", "run_baseline", "run_sweep",
                 "report_comparison", "report_sweep", "report_index", "figures_table",
                 "reports_all"):
        assert rule in result.stdout
    assert "build_models" not in result.stdout  # the default pair is SmolLM2's
    tiny = _snakemake("-n", "--forceall", "reports/all", "--directory", str(tmp_path),
                      "--snakefile", str(PROJECT_ROOT / "Snakefile"),
                      "--configfile", str(PROJECT_ROOT / "workflow" / "config.yaml"),
                      "--config", "models={pair: tiny}")
    assert tiny.returncode == 0 and "build_models" in tiny.stdout, tiny.stderr
    assert "draft_model" not in tiny.stdout
    assert "distill_draft" not in result.stdout  # the draft is shipped: distilled on request
    bench = _snakemake("-n", "--forceall", "bench", "--directory", str(tmp_path),
                       "--snakefile", str(PROJECT_ROOT / "Snakefile"),
                       "--configfile", str(PROJECT_ROOT / "workflow" / "config.yaml"))
    assert bench.returncode == 0 and "results/bench/spec.json" in bench.stdout, bench.stderr
    assert "results/bench/edge.json" in bench.stdout
    assert "results/bench/spec.json" not in result.stdout  # apart from reports/all unless asked
    extra = tmp_path / "with_bench.yaml"
    extra.write_text("reports: {include_bench: true}\n")
    with_bench = _snakemake("-n", "--forceall", "reports/all", "--directory", str(tmp_path),
                            "--snakefile", str(PROJECT_ROOT / "Snakefile"), "--configfile",
                            str(PROJECT_ROOT / "workflow" / "config.yaml"), str(extra))
    assert with_bench.returncode == 0 and "results/bench/spec.json" in with_bench.stdout, \
        with_bench.stderr
    bare = _snakemake("-n", "--forceall", "--directory", str(tmp_path),
                      "--snakefile", str(PROJECT_ROOT / "Snakefile"),
                      "--configfile", str(PROJECT_ROOT / "workflow" / "config.yaml"))
    assert bare.returncode == 0 and "report_index" in bare.stdout, bare.stderr  # rule all


def test_config_schema_rejects_unknown_baseline(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {build_overrides: []}\nruns: {baselines: {nope: []}}\n")
    result = _snakemake("-n", "reports/all", "--configfile", str(bad))
    assert result.returncode != 0
    assert "nope" in result.stdout + result.stderr


def test_config_schema_rejects_an_override_without_a_value(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: {build_overrides: []}\nruns: {baselines: {specedge: [max_budget]}}\n")
    result = _snakemake("-n", "reports/all", "--configfile", str(bad))
    assert result.returncode != 0
    assert "max_budget" in result.stdout + result.stderr


def test_an_ablation_of_runs_that_are_not_validation_runs_is_refused(tmp_path: Path) -> None:
    cfg = yaml.safe_load((PROJECT_ROOT / "workflow" / "config.yaml").read_text())
    cfg["validation"]["ablation"] = ["specedge-4e", "specedge-9e"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    result = _snakemake("-n", "reports/all", "--configfile", str(bad))
    assert result.returncode != 0
    assert "validation.ablation names ['specedge-9e'], which are not validation runs" in \
        result.stdout + result.stderr


def test_slurm_profile_plans_the_same_workflow(tmp_path: Path) -> None:
    # the documented way to leave this machine: the SLURM executor plugin and our profile
    result = _snakemake("-n", "--forceall", "reports/all", "--directory", str(tmp_path),
                        "--snakefile", str(PROJECT_ROOT / "Snakefile"),
                        "--profile", str(PROJECT_ROOT / "workflow" / "profiles" / "slurm"),
                        "--configfile", str(PROJECT_ROOT / "workflow" / "config.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run_sweep" in result.stdout and "draft_model" in result.stdout
    assert "gpu=" not in result.stdout  # the default pair: a CPU cluster, the site's partition
    # a GPU cluster: its settings in one place, `slurm:` of the workflow config
    gpu = _snakemake("-n", "--forceall", "results/runs/specedge/summary.json", "--directory",
                     str(tmp_path), "--snakefile", str(PROJECT_ROOT / "Snakefile"), "--profile",
                     str(PROJECT_ROOT / "workflow" / "profiles" / "slurm"), "--configfile",
                     str(PROJECT_ROOT / "workflow" / "config.yaml"), "--config",
                     "slurm={partition: gpu, account: proj, gpus: 1, mem_mb: 32000}")
    assert gpu.returncode == 0, gpu.stdout + gpu.stderr
    run_job = gpu.stdout.split("rule run_baseline:")[1].split("\n[")[0]
    for resource in ("slurm_partition=gpu", "slurm_account=proj", "gpu=1", "mem_mb=32000"):
        assert resource in run_job, run_job
    build_job = gpu.stdout.split("rule draft_model:")[1].split("\n[")[0]
    assert "gpu=" not in build_job and "runtime=60" in build_job
