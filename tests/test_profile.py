"""`python -m specedge.profile`: forward latencies of real and random-weight architectures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from specedge.analysis.profile import main
from specedge.base.datasheets import datasheet
from specedge.engine.models import ModelLoadError, architecture, load_model, shipped_architectures

POINTS = ["profile.batches=[1,3]", "profile.nodes=[1,5]", "profile.prefixes=[20]",
          "profile.repeats=2", "profile.warmup=1"]


def test_profile_of_the_micro_pair(tmp_path: Path, micro_pair: Path) -> None:
    out = tmp_path / "profile.json"
    code = main(["model=tiny", f"model.target={micro_pair / 'target'}",
                 f"model.draft={micro_pair / 'draft'}",
                 *POINTS, "profile.bandwidth_gbs=20", "model.compile=static",
                 f"profile.out={out}"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["forward_path"] == "static" and result["device_name"].startswith("CPU")
    rows = result["rows"]
    assert [(r["model"], r["batch"], r["nodes"]) for r in rows] == [
        (m, b, n) for m in ("target", "draft") for b in (1, 3) for n in (1, 5)]
    assert all(r["ms_min"] > 0 and r["ms_median"] >= r["ms_min"] for r in rows)
    for r in rows:  # the floor is the bytes a forward must read over the stated bandwidth
        assert r["floor_ms"] == pytest.approx(r["floor_bytes"] / 20e9 * 1e3, abs=1e-4)
    assert rows[3]["floor_bytes"] > rows[0]["floor_bytes"]  # more KV read
    for r in rows:  # static shapes read whole KV buckets (>= 64 columns) and gather batches
        assert r["weight_bytes"] + r["kv_read_bytes"] + r["kv_gathered_bytes"] >= \
            r["floor_bytes"]
        assert r["path_floor_ms"] >= r["floor_ms"]
        assert (r["kv_gathered_bytes"] == 0) == (r["batch"] == 1)
    assert rows[0]["kv_read_bytes"] == rows[1]["kv_read_bytes"]  # 21 and 25 columns: one bucket


def test_profile_of_a_random_weight_architecture(tmp_path: Path, micro_pair: Path) -> None:
    """No weights at all: the architecture comes from a config.json, weights are random."""
    arch = json.loads((micro_pair / "target" / "config.json").read_text())
    arch["num_hidden_layers"] = 3
    arch.pop("layer_types", None)  # one per layer: derived again from the new count
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    out = tmp_path / "profile.json"
    code = main(["model=tiny", f"model.target={tmp_path / 'arch.json'}", "model.weights=random",
                 "profile.models=[target]", *POINTS, f"profile.out={out}"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["weights"] == "random" and "timing only" in result["note"]
    assert result["forward_path"] == "eager"  # auto on a CPU
    assert len(result["rows"]) == 4 and result["rows"][0]["floor_ms"] is None


def test_unknown_architecture_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    assert main(["model=tiny", "model.target=acme/Giant-9000B", "model.weights=random",
                 "profile.models=[target]"]) == 2
    err = capsys.readouterr().err
    assert "model.target = 'acme/Giant-9000B'" in err and "Qwen3-14B" in err
    assert main(["model.compile=static", "profile.nodes=[256]"]) == 2
    assert "profile.nodes = [256] is not accepted" in capsys.readouterr().err


# Parameters of the shipped architectures, as their model cards give them (billions).
SIZES = {"qwen3-14b": 14.8, "qwen3-8b": 8.2, "qwen3-1.7b": 1.7, "qwen3-0.6b": 0.6,
         "llama-3.1-8b": 8.0, "llama-3.2-1b": 1.24}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_shipped_architectures_have_their_sizes(name: str) -> None:
    assert name in shipped_architectures()
    hub_id = {"qwen": "Qwen/", "llam": "meta-llama/"}[name[:4]] + name
    config = architecture(hub_id)  # found by the hub id's last part, any case
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # transformers 5.0 leaves tying to this on the meta device
    params = sum(p.numel() for p in model.parameters()) / 1e9
    assert params == pytest.approx(SIZES[name], rel=0.03)


def test_random_weights_are_the_same_every_time(micro_pair: Path) -> None:
    a = load_model(str(micro_pair / "draft"), weights="random")
    b = load_model(str(micro_pair / "draft"), weights="random")
    trained = load_model(str(micro_pair / "draft"))
    pa, pb, pt = (next(m.model.layers[0].parameters()) for m in (a, b, trained))
    assert torch.equal(pa, pb) and not torch.equal(pa, pt)
    with pytest.raises(ModelLoadError, match=r"model\.draft"):
        load_model("nowhere/none-such", weights="random", key="model.draft")


def test_the_datasheets_match_the_names_torch_reports() -> None:
    """A variant's entry wins over its family's; a card nobody catalogued has none."""
    def bandwidth(name: str) -> float | None:
        sheet = datasheet(name)
        return sheet.bandwidth_gbs if sheet else None

    assert bandwidth("NVIDIA H200") == 4800.0
    assert bandwidth("NVIDIA H100 80GB HBM3") == 3350.0
    assert bandwidth("NVIDIA H100 PCIe") == 2000.0
    assert bandwidth("NVIDIA A100-SXM4-80GB") == 2039.0
    assert bandwidth("NVIDIA A100-SXM4-40GB") == 1555.0
    assert bandwidth("NVIDIA GeForce RTX 4090") == 1008.0
    assert bandwidth("Intel Xeon") is None


def test_a_random_weight_run_says_so(tmp_path: Path, micro_pair: Path) -> None:
    import subprocess

    from specedge import PROJECT_ROOT
    from tests.serving import run_command
    run_dir = tmp_path / "run"
    result = subprocess.run(
        run_command(run_dir, micro_pair, "baseline=server_only", "model.weights=random",
                    f"model.tokenizer={micro_pair / 'target'}", "dataset.max_requests=2",
                    "generation.max_new_tokens=8"),
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "summary.json").read_text())["weights"] == "random"
    assert "acceptance mean nothing" in (run_dir / "run.log").read_text()
    no_tokenizer = subprocess.run(
        run_command(tmp_path / "bad", micro_pair, "baseline=server_only", "model.weights=random",
                    "dry_run=true"),
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert no_tokenizer.returncode == 2
    assert "model.tokenizer = None is not accepted" in no_tokenizer.stderr
