"""The cluster path on a real one-node SLURM (tests/slurm_cluster.py): SpecEdge edges placed by
srun inside an allocation, a Hydra submitit sweep through sbatch, and the Snakemake SLURM
profile, each with the commands docs/cluster-and-gpus.md gives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from specedge import PROJECT_ROOT
from specedge.base.records import OUTPUTS_FILE
from tests.serving import assert_outputs_exact, read_records, run_command
from tests.slurm_cluster import PARTITION, OneNodeCluster, missing_daemons, one_node_cluster

# one SLURM cluster at a time (it links /etc/slurm/slurm.conf): these tests share a worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm"), pytest.mark.skipif(
    bool(missing_daemons()) or os.geteuid() != 0,
    reason=f"needs root and the SLURM daemons (.ci/setup installs them): missing "
           f"{missing_daemons()}")]

MICRO = ["dataset.max_requests=4", "generation.max_new_tokens=12"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneNodeCluster]:
    with one_node_cluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def _run(cluster: OneNodeCluster, cmd: list[str], cwd: Path = PROJECT_ROOT,
         timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=cluster.env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_edges_placed_by_srun_in_an_allocation_serve_exactly(
        tmp_path: Path, micro_pair: Path, cluster: OneNodeCluster) -> None:
    run_dir = tmp_path / "run"
    done = _run(cluster, ["salloc", "--nodes=1", "--cpus-per-task=2", *run_command(
        run_dir, micro_pair, "baseline=specedge", "hardware=slurm", "server.num_clients=2",
        "server.max_batch_size=2", *MICRO)])
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = read_records(run_dir / OUTPUTS_FILE)
    assert [o["request_id"] for o in outputs] == [0, 1, 2, 3]
    assert_outputs_exact(outputs, micro_pair, 12)
    job = done.stderr.split("Granted job allocation ")[1].split()[0]
    done_steps = {"specedge-server|COMPLETED|0:0", "specedge-edge-0|COMPLETED|0:0",
                  "specedge-edge-1|COMPLETED|0:0"}
    steps = cluster.accounting("-j", job, "-o", "JobName,State,ExitCode",
                               until=lambda rows: done_steps <= set(rows))
    assert done_steps <= set(steps), steps
    # the server was stopped, not killed: it wrote its stats on the way out
    assert json.loads((run_dir / "server_stats.json").read_text())["peak_rss_mib"] > 0
    # outside an allocation the slurm launcher says where it runs
    outside = _run(cluster, run_command(tmp_path / "outside", micro_pair, "hardware=slurm",
                                        "server.num_clients=2", *MICRO))
    assert outside.returncode == 2 and "only inside a SLURM allocation" in outside.stderr


def test_a_hydra_sweep_runs_as_sbatch_jobs_through_submitit(
        tmp_path: Path, micro_pair: Path, cluster: OneNodeCluster) -> None:
    sweep_dir = tmp_path / "sweep"
    done = _run(cluster, [
        sys.executable, "-m", "specedge.run", "-m", "hydra/launcher=submitit_slurm",
        f"hydra.launcher.partition={PARTITION}", f"hydra.sweep.dir={sweep_dir}",
        "model=tiny", f"model.target={micro_pair / 'target'}",
        f"model.draft={micro_pair / 'draft'}",
        "baseline=server_only", *MICRO, "edge.max_budget=8,12"])
    assert done.returncode == 0, done.stderr[-3000:]
    index = json.loads((sweep_dir / "index.json").read_text())
    assert [(j["params"]["edge.max_budget"], j["status"]) for j in index["jobs"]] == \
        [(8, "completed"), (12, "completed")]
    names = cluster.accounting("-X", "-o", "JobName,State",
                               until=lambda rows: rows.count("run|COMPLETED") >= 2)
    assert names.count("run|COMPLETED") >= 2, names  # two sbatch jobs, accounted


def test_the_snakemake_slurm_profile_runs_a_baseline_as_a_job(
        tmp_path: Path, micro_pair: Path, cluster: OneNodeCluster) -> None:
    if not cluster.system_conf:
        pytest.skip("this machine has a SLURM configuration of its own in /etc/slurm: "
                    "Snakemake's job steps would use that cluster")
    work = tmp_path / "work"
    shutil.copytree(micro_pair, work / "models" / "tiny")  # built: build_models is not rerun
    config = tmp_path / "config.yaml"
    with (PROJECT_ROOT / "workflow" / "config.yaml").open() as fh:
        settings = yaml.safe_load(fh)
    settings["runs"]["overrides"] = MICRO
    settings["models"]["pair"] = "tiny"
    config.write_text(yaml.safe_dump(settings))
    done = _run(cluster, [
        sys.executable, "-m", "snakemake", "--profile",
        str(PROJECT_ROOT / "workflow" / "profiles" / "slurm"), "--snakefile",
        str(PROJECT_ROOT / "Snakefile"), "--configfile", str(config), "--directory", str(work),
        "--config", f"slurm={{partition: {PARTITION}, cpus_per_task: 1, mem_mb: 1000}}",
        "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5",
        "results/runs/server_only/summary.json"], cwd=work, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    summary = json.loads((work / "results" / "runs" / "server_only" / "summary.json").read_text())
    assert summary["requests"] == 4 and not summary["partial"]
    def snakemake_job_done(rows: list[str]) -> bool:
        return any(j.endswith(f"|{PARTITION}|COMPLETED")
                   and not j.startswith(("run|", "interactive")) for j in rows)

    jobs = cluster.accounting("-X", "-o", "JobName,Partition,State", until=snakemake_job_done)
    assert snakemake_job_done(jobs), jobs
