"""The benchmark script runs its methods and checks they agree token for token."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from specedge import PROJECT_ROOT
from specedge.analysis.pages.comparison import comparison_report
from specedge.analysis.profile import main as profile_main
from specedge.commands.bench import main, summary
from tests.serving import cpu_edges

pytestmark = pytest.mark.slow  # end to end: real processes, pipelines or builds


def test_spec_bench_reports_exact_methods(tmp_path: Path, micro_pair: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["spec", "model=tiny", f"model.target={micro_pair / 'target'}",
                 f"model.draft={micro_pair / 'draft'}", "dataset.max_requests=2",
                 "generation.max_new_tokens=8", "model.compile=static", "--repeats", "1",
                 "--out", str(out)])
    table = json.loads(out.read_text())
    assert code == 0
    assert table["forward_path"] == "static" and table["device_name"].startswith("CPU")
    methods = {r["method"]: r for r in table["results"]}
    assert set(methods) == {"HF generate", "target greedy", "HF assisted", "SpecExec (ours)"}
    assert all(r["exact"] for r in methods.values())
    assert methods["target greedy"]["tokens_per_forward"] == 1.0
    assert methods["SpecExec (ours)"]["tokens"] == methods["target greedy"]["tokens"] == 16


def test_edge_bench_compares_real_runs(tmp_path: Path, micro_pair: Path) -> None:
    """SpecEdge with and without proactive drafting, and server-only, each a real run; every
    run's output equals server-only's, and the JSON carries what the table prints."""
    out = tmp_path / "edge.json"
    code = main(["edge", "model=tiny", f"model.target={micro_pair / 'target'}",
                 f"model.draft={micro_pair / 'draft'}", "dataset.max_requests=4",
                 "generation.max_new_tokens=8", "edge.proactive.type=excluded",
                 *cpu_edges(2), "server.max_batch_size=1", "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert [r["variant"] for r in results] == ["SpecEdge", "SpecEdge, no proactive",
                                               "server-only"]
    assert [r["baseline"] for r in results] == ["specedge", "specedge", "server_only"]
    assert [r["proactive"] for r in results] == ["excluded", "disabled", "excluded"]
    assert all(r["identical_to_server_only"] and r["tokens"] == 32 for r in results)
    assert results[0]["proactive_hit_rate"] >= 0.0  # measured, not NaN, when proactive is on
    assert all(r["server_busy_s"] > 0 for r in results)
    assert (tmp_path / "edge-runs" / "specedge-no-proactive" / "summary.json").is_file()


def test_paths_bench_compares_eager_with_the_static_path(tmp_path: Path, micro_pair: Path,
                                                         capsys) -> None:
    """The eager and static paths decode the same random prompts to the same tokens, batched
    and with SpecExec trees; the JSON gives each request's first difference (none)."""
    out = tmp_path / "paths.json"
    code = main(["paths", "model=tiny", f"model.target={micro_pair / 'target'}",
                 f"model.draft={micro_pair / 'draft'}", "model.compile=static",
                 "generation.max_new_tokens=12", "--out", str(out)])
    result = json.loads(out.read_text())
    assert code == 0 and result["path"] == "static"
    assert result["first_difference"] == {"auto_batch": [None] * 4, "server_only": [None] * 4}
    assert "identical" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"set model\.compile to static or graphs"):
        main(["paths", "model=tiny", f"model.target={micro_pair / 'target'}",
              f"model.draft={micro_pair / 'draft'}", "model.compile=eager"])

    # What gpu_check.sh sums up, here on the CPU's static path: profiles beside paths.json.
    for path in ("static", "eager"):
        assert profile_main(["model=tiny", f"model.target={micro_pair / 'target'}",
                             f"model.draft={micro_pair / 'draft'}", f"model.compile={path}",
                             "profile.batches=[1,8]", "profile.nodes=[1,16,64]",
                             "profile.prefixes=[32]", "profile.repeats=1", "profile.warmup=0",
                             "profile.bandwidth_gbs=100",
                             f"profile.out={tmp_path / f'profile-{path}.json'}"]) == 0
    table, lines = summary(tmp_path)
    assert table.row_count == 12 and "eager vs static" in str(table.title)
    assert any(line.startswith("on CPU") and "one-token step, batch 1 / its bandwidth floor: "
               in line and ("meets" in line or "misses" in line) for line in lines)
    assert any("8 trees of 16 nodes / one-token step (batch 1): " in line for line in lines)
    assert any("SpecExec wall speed-up over plain greedy (bench spec's pair): not measured"
               in line for line in lines)
    assert any("eager vs static, tiny server_only (fp32): 4/4 requests identical" in line
               for line in lines)


def test_gpu_check_fits_the_device_and_runs_on_the_cpu(tmp_path: Path, micro_pair: Path) -> None:
    """The GPU check's plumbing, here with --cpu (the micro pair for Qwen3, static for graphs):
    its limits fit one device command, and what comes back is one tarball and summary.txt."""
    script = ["bash", str(PROJECT_ROOT / "workflow" / "scripts" / "gpu_check.sh")]
    limits = subprocess.run([*script, "--limits"], capture_output=True, text=True, check=True)
    assert 0 < int(limits.stdout) <= 480
    out = tmp_path / "out"
    done = subprocess.run([*script, str(out), "--cpu", "--pair", str(micro_pair), "--python",
                           sys.executable, "--steps", "profile,paths-fp32,spec-4"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.tar.gz", "summary.txt"]
    text = (out / "summary.txt").read_text()
    for step in ("profile-static", "profile-eager", "paths-fp32", "spec-4"):
        assert f"{step}: rc 0 in" in text
    assert "paths: rc" not in text and "edge-8" not in text  # --steps left them out
    assert "eager vs static, micro server_only (fp32): 4/4 requests identical" in text
    assert "bench spec, micro (fp32, eager), 4 requests: HF generate 4/4 exact" in text
    with tarfile.open(out / "gpu-check.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"profile-static.json", "profile-eager.json", "paths-fp32.json", "spec-4.json",
            "spec-4.log", "summary.txt", "device.txt"} <= names
    wrong = subprocess.run([*script, str(out), "--gpu"], capture_output=True, text=True,
                           check=False)
    assert wrong.returncode == 2 and "unknown argument --gpu (accepted: --cpu" in wrong.stderr


def test_drafting_bench_compares_batched_with_in_turn_drafting(tmp_path: Path,
                                                               micro_pair: Path) -> None:
    """Server-only at batch 4 and 8 as real runs: drafting the batch together gives the same
    outputs with a step's draft forwards its deepest tree's, not the sum over its requests."""
    out = tmp_path / "drafting.json"
    code = main(["drafting", "model=tiny", f"model.target={micro_pair / 'target'}",
                 f"model.draft={micro_pair / 'draft'}", "dataset.max_requests=8",
                 "generation.max_new_tokens=8", "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert [(r["batch"], r["batch_drafting"]) for r in results] == [
        (4, True), (4, False), (8, True), (8, False)]
    assert all(r["same_outputs_as_batched"] == r["requests"] == 8 for r in results)
    for batched, in_turn in zip(results[::2], results[1::2], strict=True):
        assert batched["tokens"] == in_turn["tokens"] == 64
        assert batched["draft_forwards_per_step"] < in_turn["draft_forwards_per_step"]


def test_budget_bench_sets_the_goodput_budget_beside_fixed_trees(tmp_path: Path,
                                                                micro_pair: Path) -> None:
    """Fixed trees and the server's goodput budget with the same edges, real runs: the same
    outputs as server-only, the budget's steps by batch size in the JSON."""
    out = tmp_path / "budget.json"
    code = main(["budget", "model=tiny", f"model.target={micro_pair / 'target'}",
                 f"model.draft={micro_pair / 'draft'}", "dataset.max_requests=4",
                 "generation.max_new_tokens=8", "edge.proactive.type=disabled",
                 "--edges", "2", "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert [r["variant"] for r in results] == [
        "SpecEdge, 2 edges, fixed", "SpecEdge, 2 edges, goodput",
        "SpecEdge, 2 edges, goodput, groups by goodput", "server-only"]
    assert all(r["identical_to_server_only"] and r["tokens"] == 32 for r in results)
    fixed, budgeted = results[0], results[1]
    assert fixed["budget_steps"] == [] and budgeted["budget_steps"]
    assert fixed["verified_size_mean"] == fixed["tree_size_mean"]
    assert budgeted["verified_size_mean"] <= budgeted["tree_size_mean"]
    steps = budgeted["budget_steps"]
    assert all(b["batch"] == 1 and b["kept_per_step"] <= b["sent_per_step"] for b in steps)
    assert sum(b["steps"] for b in steps) == budgeted["rounds"]  # a tree a step
    assert sum(b["emitted_tokens"] for b in steps) >= budgeted["tokens"]  # cut at the length
    runs = tmp_path / "budget-runs"
    page = comparison_report([runs / "specedge-2-edges-goodput", runs / "server-only"],
                             tmp_path / "budget.html", "budget").read_text()
    assert "K against batch and load" in page and "of the drafted nodes sent" in page
    fixed_page = comparison_report([runs / "specedge-2-edges-fixed"], tmp_path / "f.html", "f")
    assert "K against batch and load" not in fixed_page.read_text()
    with pytest.raises(SystemExit):
        main(["budget", "--edges", "3"])
