"""The benchmark script runs its three methods and checks they agree token for token."""

from __future__ import annotations

import json
from pathlib import Path

from specedge.bench import main


def test_spec_bench_reports_three_exact_methods(tmp_path: Path, micro_pair: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["spec", f"model.target={micro_pair / 'target'}",
                 f"model.draft={micro_pair / 'draft'}", "dataset.max_requests=2",
                 "generation.max_new_tokens=8", "--repeats", "1", "--out", str(out)])
    table = json.loads(out.read_text())
    assert code == 0
    methods = {r["method"]: r for r in table["results"]}
    assert set(methods) == {"target greedy", "HF assisted", "SpecExec (ours)"}
    assert all(r["exact"] for r in methods.values())
    assert methods["target greedy"]["tokens_per_forward"] == 1.0
    assert methods["SpecExec (ours)"]["tokens"] == methods["target greedy"]["tokens"] == 16
