"""SpecEdge end to end: a real server process and real edge processes over loopback gRPC."""

from __future__ import annotations

import json
import math
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest

from specedge import PROJECT_ROOT
from specedge.algorithm.goodput import SHARE_FLOOR, SHARE_HEADROOM
from specedge.base.records import OUTPUTS_FILE, SERVER_FILE, EdgeRoundRecord, ServerStepRecord
from tests.serving import assert_outputs_exact, cpu_edges, read_records, run_command

pytestmark = pytest.mark.slow  # end to end: real processes, pipelines or builds

MAX_NEW = 12


def _run(run_dir: Path, pair: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        run_command(run_dir, pair, "dataset.max_requests=6",
                    f"generation.max_new_tokens={MAX_NEW}", *overrides),
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=False)


def _specedge(run_dir: Path, pair: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return _run(run_dir, pair, "baseline=specedge", *cpu_edges(2), "server.max_batch_size=1",
                *overrides)


def _auto_batch(run_dir: Path, pair: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return _run(run_dir, pair, "baseline=auto_batch", *overrides)


FIXED = ["server.verify_budget=fixed", "server.pipeline_groups=split"]  # every node, 2 groups
FOUR_EDGES = [*cpu_edges(4), "server.max_batch_size=2"]
# the server's goodput budget and group count, eager forwards: the sampled test's run
GOODPUT = ["server.scheduler=pipeline", *FOUR_EDGES, "server.verify_budget=goodput",
           "server.pipeline_groups=goodput"]


# the pipeline with proactive drafting (excluded, the default) is the 4-edge static run's;
# 5 % of messages lost both ways (resent, or asked for again and answered idempotently) is the
# dynamic batch's, behind its 15-ms link
@pytest.mark.parametrize("scheduling", [
    ["server.scheduler=batch", "server.batch_type=dynamic", "hardware.link.delay_ms=15",
     "hardware.link.loss=0.05", "hardware.link.loss_timeout_ms=5", "seed=3",
     "edge.proactive.type=included", *FIXED],
    ["server.scheduler=batch", "server.batch_type=static", "server.max_batch_size=2",
     "edge.proactive.type=disabled", "server.cache_prefill=true", "model.compile=static",
     "model.token_buckets=[1,2,4,8,16,32]", *FIXED],
    ["server.scheduler=pipeline", *FOUR_EDGES, "edge.proactive.type=excluded",
     "model.compile=static", "model.token_buckets=[1,2,4,8,16,32]", *FIXED],
], ids=["dynamic-lossy-link-included", "static-batch-prefill-cache-static-path",
        "pipeline-4-edges-static-path"])
def test_specedge_is_lossless_over_grpc(tmp_path: Path, micro_pair: Path,
                                        scheduling: list[str]) -> None:
    run_dir = tmp_path / "run"
    result = _specedge(run_dir, micro_pair, *scheduling,
                       f"server.prefill_cache_dir={tmp_path / 'prefill'}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    outputs = read_records(run_dir / OUTPUTS_FILE)
    assert [o["request_id"] for o in outputs] == list(range(6))
    assert_outputs_exact(outputs, micro_pair, MAX_NEW)
    rounds = _check_records(run_dir, outputs, scheduling)
    if "server.cache_prefill=true" in scheduling:  # prompts never travelled: ids only
        assert all(r["request_bytes"] < 200 for r in rounds if r["prefill"])
        assert len(list((tmp_path / "prefill").glob("*/*.pt"))) == 6
        again = _specedge(tmp_path / "again", micro_pair, *scheduling,
                          f"server.prefill_cache_dir={tmp_path / 'prefill'}")
        assert again.returncode == 0, again.stderr[-2000:]
        assert "(0 computed, 6 from disk)" in (tmp_path / "again" / "server.log").read_text()
        assert read_records(tmp_path / "again" / OUTPUTS_FILE) == outputs
    if "hardware.link.loss=0.05" in scheduling:  # lost messages resent, replies asked again
        assert sum(r["retries"] for r in rounds) > 0


def _check_records(run_dir: Path, outputs: list[dict], scheduling: list[str]) -> list[dict]:
    """What a SpecEdge run's edge, server and summary records must say of one another, and of
    its scheduling and budget; returns its edges' rounds."""
    n_edges = 4 if "server.num_clients=4" in scheduling else 2
    rounds = [r for c in range(n_edges) for r in read_records(run_dir / f"edge-{c}.jsonl")]
    assert set(rounds[0]) == set(EdgeRoundRecord.__dataclass_fields__)
    assert {r["request_id"] for r in rounds} == set(range(6))
    assert sum(r["new_tokens"] for r in rounds) == sum(len(o["output_ids"]) for o in outputs)
    proactive = "edge.proactive.type=disabled" not in scheduling
    if "server.verify_budget=goodput" in scheduling:  # a reply can beat its first forward
        assert any(r["proactive_drafted"] for r in rounds)
    else:
        assert all(r["proactive_drafted"] == proactive for r in rounds)
    assert sum(r["from_proactive"] for r in rounds) == sum(
        r["proactive_hit"] and not r["finished"] for r in rounds)
    nodes = sum(r["tree_size"] for r in rounds if not r["prefill"])
    wire = sum(r["request_bytes"] + r["reply_bytes"] for r in rounds if not r["prefill"])
    limit = 9 if "server.verify_budget=goodput" in scheduling else 8  # + a survival byte
    assert wire / nodes < limit, f"{wire / nodes:.2f} bytes per tree node on the wire"

    if "hardware.link.delay_ms=15" in scheduling:  # the emulated link is paid both ways
        assert min(r["wait_s"] for r in rounds) >= 0.030

    summary = json.loads((run_dir / "summary.json").read_text())  # written by the run
    assert summary["tokens"] == sum(len(o["output_ids"]) for o in outputs)
    assert not summary["partial"] and not summary["problems"]
    assert 0 < summary["server_busy_s"] <= summary["server_wall_s"]
    assert summary["itl_ms"]["mean"] > 0 and summary["accounting"] == "wall"
    for r in rounds:  # the server's timings arrive with each reply and fit inside the wait
        assert r["server_verify_s"] > 0 and r["server_queue_s"] + r["server_verify_s"] \
            <= r["wait_s"] + 1e-3

    for r in rounds:  # the tree as drafted, for the simulator's budget replay
        assert len(r["parents"]) == r["tree_size"] == len(bytes.fromhex(r["survival"]))
        assert len(r["path"]) == r["accepted"]
        assert all(r["parents"][b] == a for a, b in pairwise([0, *r["path"]]))

    steps = read_records(run_dir / "server.jsonl")
    assert set(steps[0]) == set(ServerStepRecord.__dataclass_fields__)
    assert sum(s["batch_size"] for s in steps) == len(rounds)
    assert sum(s["sent_nodes"] for s in steps) == sum(r["tree_size"] for r in rounds)
    assert sum(s["emitted_tokens"] for s in steps) == sum(r["accepted"] + 1 for r in rounds)
    if "server.verify_budget=goodput" in scheduling:  # each step verified its budget's nodes
        assert all(r["verified_nodes"] <= r["tree_size"] - 1 for r in rounds)
        assert all(r["accepted"] <= r["verified_nodes"] for r in rounds)
        assert sum(s["tree_nodes"] for s in steps) == sum(r["verified_nodes"] + 1
                                                          for r in rounds)
        assert all(s["expected_tokens"] >= s["batch_size"] for s in steps)
        for c in range(n_edges):  # each edge drafts about the share it last got
            mine = read_records(run_dir / f"edge-{c}.jsonl")
            assert all(b["tree_size"] - 1 <= max(SHARE_FLOOR,
                                                 math.ceil(SHARE_HEADROOM * a["verified_nodes"]))
                       for a, b in pairwise(mine)), [(r["tree_size"], r["verified_nodes"])
                                                     for r in mine]
    else:
        assert all(r["verified_nodes"] == r["tree_size"] - 1 for r in rounds)
        assert all(s["tree_nodes"] == s["sent_nodes"] for s in steps)
    assert sum(s["prefill_count"] for s in steps) == 6
    if "server.pipeline_groups=goodput" in scheduling:  # one group of 4 or two of 2
        assert "step cost after" in (run_dir / "server.log").read_text()
    elif "server.scheduler=pipeline" in scheduling:
        # two groups of edges take turns while both still have requests to serve
        group = [s["clients"][0] // (n_edges // 2) for s in steps]
        both_busy = min(max(i for i, g in enumerate(group) if g == k) for k in (0, 1))
        assert all(a != b for a, b in pairwise(group[: both_busy + 1])), group
    return rounds


def test_edge_counts_must_match_num_clients(tmp_path: Path, micro_pair: Path) -> None:
    result = _specedge(tmp_path / "bad", micro_pair, "server.num_clients=3")
    assert result.returncode == 2
    assert "server.num_clients = 3 is not accepted" in result.stderr


def test_sampled_specedge_is_the_targets_own_sampled_decode(tmp_path: Path,
                                                            micro_pair: Path) -> None:
    """Samples are keyed by (seed, request, position): batching (which depends on timing) and
    how many nodes a goodput budget keeps (a timed cost) cannot change them, so sampled
    SpecEdge equals auto-batch's plain sampled decode under the same seed, token for token,
    and another seed samples otherwise. (One SpecEdge run, four edges under the goodput
    budget and group count: batches formed by timing, trees cut by a timed cost; its records
    are checked as the greedy runs' are.)"""
    sampled = ["generation.temperature=1.0", "generation.top_p=0.9"]
    runs = {
        "goodput": _specedge(tmp_path / "goodput", micro_pair, *sampled, "seed=1", *GOODPUT),
        "auto-batch": _auto_batch(tmp_path / "auto-batch", micro_pair, *sampled, "seed=1"),
        # the key's seed, seen in the plain decode: one process, not a server and two edges
        "other seed": _auto_batch(tmp_path / "other seed", micro_pair, *sampled, "seed=2"),
    }
    outputs, texts = {}, {}
    for name, result in runs.items():
        assert result.returncode == 0, (name, result.stderr[-2000:])
        outputs[name] = read_records(tmp_path / name / OUTPUTS_FILE)
        texts[name] = [o["output_ids"] for o in sorted(outputs[name],
                                                       key=lambda o: o["request_id"])]
    assert texts["goodput"] == texts["auto-batch"]
    assert texts["other seed"] != texts["auto-batch"]
    assert [o["request_id"] for o in outputs["goodput"]] == list(range(6))
    _check_records(tmp_path / "goodput", outputs["goodput"], GOODPUT)
    steps = read_records(tmp_path / "goodput" / SERVER_FILE)
    cut = [s["tree_nodes"] < s["sent_nodes"] for s in steps]
    assert any(cut), "the budget kept every node: the test would not test pruning"

