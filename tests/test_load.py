"""The load test in reduced form: 8 edges, 16 requests, one server, loopback only."""

from __future__ import annotations

from pathlib import Path

from specedge.commands.loadtest import run_load


def test_load_with_many_edges_loses_nothing_and_stays_exact(tmp_path: Path,
                                                            micro_pair: Path) -> None:
    result = run_load(edges=8, requests=16, out_dir=tmp_path, timeout_s=600, overrides=[
        "model=tiny", f"model.target={micro_pair / 'target'}",
        f"model.draft={micro_pair / 'draft'}",
        "generation.max_new_tokens=12"])
    assert result["exit_code"] == 0, result["stderr_tail"]
    assert result["failed"] == 0 and result["lost_edges"] == {}
    assert result["exact"] == 16 and result["lost_records"] == []
    assert 0 < result["server_peak_rss_mib"] < 4096  # bounded; the micro server is small
