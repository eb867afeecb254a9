"""Derived profiles: architecture arithmetic, the roofline, and the shipped files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from specedge.analysis.simulation.latency import profile_latencies
from specedge.base.roofline import (
    ARCHITECTURES_DIR,
    GPUS,
    MEASURED,
    PATHS,
    PROFILES_DIR,
    Roofline,
    architectures,
    derive,
    dumps,
    fit,
    gpu_of,
    main,
)


@pytest.mark.parametrize("path", sorted(ARCHITECTURES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_parameter_count_matches_the_model_transformers_builds(path: Path) -> None:
    arch = architectures()["".join(c for c in path.stem.lower() if c.isalnum())]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    assert arch.params == sum(p.numel() for p in model.parameters())


def test_roofline_is_memory_bound_for_one_token_and_compute_bound_for_many() -> None:
    arch, gpu = architectures()["qwen314b"], next(g for g in GPUS if g.key == "a100_80")
    model = Roofline(bandwidth_eff=0.5, compute_eff=0.5, host_ms_per_layer=0.0)
    weights_ms = arch.weights * 2 / (0.5 * gpu.bandwidth_gbs * 1e6)
    one = model.ms(arch, gpu, 1, 1, 0)
    assert one == pytest.approx(weights_ms, rel=1e-3)  # the KV of one token is negligible
    # 4096 tokens: 2 * 14e9 * 4096 flops at half of 312 TFLOPS, far above the weight read
    many = model.ms(arch, gpu, 32, 128, 0)
    assert many == pytest.approx(2 * arch.weights * 4096 / (0.5 * 312e12) * 1e3, rel=0.05)
    assert model.ms(arch, gpu, 8, 4, 2048) > model.ms(arch, gpu, 8, 4, 128)  # the KV read
    eager = Roofline(bandwidth_eff=0.5, compute_eff=0.5, host_ms_per_layer=1.0)
    assert eager.ms(arch, gpu, 1, 1, 0) == pytest.approx(arch.layers * 1.0)


def _synthetic(truth: Roofline, gpu: object, path: str) -> dict[str, object]:
    arch = architectures()["qwen314b"]
    return {"device_name": gpu.name, "forward_path": path,  # type: ignore[attr-defined]
            "rows": [{"model": "qwen3-14b", "batch": b, "nodes": n, "prefix": 512,
                      "ms_median": truth.ms(arch, gpu, b, n, 512)}  # type: ignore[arg-type]
                     for b in (1, 8, 32) for n in (1, 16, 128)]}


def test_a_graphs_profile_refits_both_efficiencies_and_an_eager_one_only_the_host() -> None:
    gpu = GPUS[-1]
    truth = Roofline(bandwidth_eff=0.6, compute_eff=0.75, host_ms_per_layer=0.0)
    fitted = fit(_synthetic(truth, gpu, "graphs"), gpu)
    assert fitted.roofline == truth and fitted.fitted == "efficiencies"
    assert fitted.error == pytest.approx(0.0, abs=1e-9) and fitted.host_bound == 0.0
    # Host-bound data: the host cost is recovered, the efficiencies stay the sourced ones.
    eager = Roofline.of(gpu, host_ms_per_layer=1.5)
    fitted = fit(_synthetic(eager, gpu, "eager"), gpu)
    assert fitted.roofline == eager and fitted.fitted == "host"
    assert fitted.host_bound == 8 / 9  # all but 32 x 128 tokens, which is compute-bound


def test_the_shipped_h200_profile_is_reported_host_bound() -> None:
    measured = json.loads(MEASURED.read_text())
    result = fit(measured, gpu_of(measured))
    assert result.fitted == "host" and result.host_bound == 1.0
    assert result.roofline.bandwidth_eff == GPUS[-1].efficiency.bandwidth


def test_a_graphs_profile_given_to_the_tool_sets_only_its_gpus_efficiencies(
        tmp_path: Path) -> None:
    gpu = next(g for g in GPUS if g.key == "a100_80")
    graphs = tmp_path / "a100-graphs.json"
    graphs.write_text(json.dumps(_synthetic(Roofline(0.5, 0.6, 0.0), gpu, "graphs")))
    assert main(["--measured", str(MEASURED), str(graphs), "--out", str(tmp_path)]) == 0
    refit = json.loads((tmp_path / "a100_80-graphs-derived.json").read_text())
    assert refit["parameters"] == {"eff_bw": 0.5, "eff_compute": 0.6, "host_ms_per_layer": 0.0}
    assert "a100-graphs.json" in refit["sources"]["efficiencies"]
    other = json.loads((tmp_path / "a100_40-graphs-derived.json").read_text())
    assert other["parameters"]["eff_bw"] == GPUS[0].efficiency.bandwidth
    assert "proxy" in other["sources"]["efficiencies"]


def test_shipped_derived_profiles_are_what_the_tool_writes(tmp_path: Path) -> None:
    """Regenerating changes nothing, every file says it is derived, and the simulator reads
    them by architecture name."""
    assert main(["--out", str(tmp_path)]) == 0
    for gpu in GPUS:
        for path in PATHS:
            name = f"{gpu.key}-{path}-derived.json"
            assert (tmp_path / name).read_text() == (PROFILES_DIR / name).read_text(), name
            data = json.loads((PROFILES_DIR / name).read_text())
            assert data["derived"] and "derived" in data["note"] and data["formula"]
            assert data["sources"]["efficiencies"] == gpu.efficiency.source
    assert dumps(derive(GPUS[0], "graphs", Roofline.of(GPUS[0]), {})).startswith("{")
    latencies = profile_latencies(PROFILES_DIR / "a100_80-graphs-derived.json",
                                  {"target": "Qwen/Qwen3-14B", "draft": "Qwen/Qwen3-1.7B"})
    assert "derived" in latencies["target"].source
    assert latencies["target"].seconds(1, 1, 128) > latencies["draft"].seconds(1, 1, 128)


def test_a_measured_profile_of_an_unknown_model_is_refused(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"device_name": "NVIDIA H200", "rows": [
        {"model": "acme-9000b", "batch": 1, "nodes": 1, "prefix": 1, "ms_median": 1.0}]}))
    assert main(["--measured", str(bad), "--out", str(tmp_path)]) == 2
    assert "not a shipped architecture" in capsys.readouterr().err
