"""The benchmark script runs its methods and checks they agree token for token."""

from __future__ import annotations

import json
from pathlib import Path

from specedge.bench import main


def test_spec_bench_reports_exact_methods(tmp_path: Path, micro_pair: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["spec", f"model.target={micro_pair / 'target'}",
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
    code = main(["edge", f"model.target={micro_pair / 'target'}",
                 f"model.draft={micro_pair / 'draft'}", "dataset.max_requests=4",
                 "generation.max_new_tokens=8", "edge.proactive.type=excluded",
                 "hardware.nodes={localhost:[{device:cpu},{device:cpu}]}",
                 "server.num_clients=2", "server.max_batch_size=1", "--out", str(out)])
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
