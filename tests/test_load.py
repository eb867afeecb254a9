"""The load test in reduced form: 8 edges, 16 requests, one server, loopback only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specedge.commands.loadtest import main, run_load

pytestmark = pytest.mark.slow  # end to end: real processes, pipelines or builds


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


def _micro(micro_pair: Path) -> list[str]:
    return ["model=tiny", f"model.target={micro_pair / 'target'}",
            f"model.draft={micro_pair / 'draft'}"]


def test_chaos_fails_when_its_faults_cannot_happen(tmp_path: Path, micro_pair: Path) -> None:
    """One request of one token: it ends in its first round, so the run's progress jumps
    past every fault's point to its end, and no fault can happen: --chaos says so."""
    code = main(["--edges", "1", "--requests", "1", "--chaos", "--out", str(tmp_path),
                 *_micro(micro_pair), "generation.max_new_tokens=1"])
    assert code == 1
    result = json.loads((tmp_path / "loadtest.json").read_text())
    assert result["finished"] == result["exact"] == 1  # the run itself was fine
    assert [f["happened_s"] for f in result["faults"]] == [None] * 5
    assert all("never happened (the run ended first)" in f["problem"]
               for f in result["faults"])
