"""Derived profiles: architecture arithmetic, the roofline, and the shipped files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from specedge.roofline import (
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
    main,
)
from specedge.simulate import profile_latencies


@pytest.mark.parametrize("path", sorted(ARCHITECTURES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_parameter_count_matches_the_model_transformers_builds(path: Path) -> None:
    arch = architectures()["".join(c for c in path.stem.lower() if c.isalnum())]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    assert arch.params == sum(p.numel() for p in model.parameters())


def test_roofline_is_memory_bound_for_one_token_and_compute_bound_for_many() -> None:
    arch, gpu = architectures()["qwen314b"], next(g for g in GPUS if g.key == "a100_80")
    model = Roofline(efficiency=0.5, host_ms_per_layer=0.0)
    weights_ms = arch.weights * 2 / (0.5 * gpu.bandwidth_gbs * 1e6)
    one = model.ms(arch, gpu, 1, 1, 0)
    assert one == pytest.approx(weights_ms, rel=1e-3)  # the KV of one token is negligible
    # 4096 tokens: 2 * 14e9 * 4096 flops at half of 312 TFLOPS, far above the weight read
    many = model.ms(arch, gpu, 32, 128, 0)
    assert many == pytest.approx(2 * arch.weights * 4096 / (0.5 * 312e12) * 1e3, rel=0.05)
    assert model.ms(arch, gpu, 8, 4, 2048) > model.ms(arch, gpu, 8, 4, 128)  # the KV read
    eager = Roofline(efficiency=0.5, host_ms_per_layer=1.0)
    assert eager.ms(arch, gpu, 1, 1, 0) == pytest.approx(arch.layers * 1.0)


def test_fit_recovers_the_parameters_of_a_synthetic_profile() -> None:
    gpu, truth = GPUS[-1], Roofline(efficiency=0.6, host_ms_per_layer=0.5)
    arch = architectures()["qwen314b"]
    rows = [{"model": "qwen3-14b", "batch": b, "nodes": n, "prefix": 512,
             "ms_median": truth.ms(arch, gpu, b, n, 512)}
            for b in (1, 8, 32) for n in (1, 16, 128)]
    fitted, error = fit({"rows": rows}, gpu)
    assert fitted == truth and error == pytest.approx(0.0, abs=1e-9)


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
    fitted, error = fit(json.loads(MEASURED.read_text()), GPUS[-1])
    assert dumps(derive(GPUS[0], "graphs", fitted, error, "x")).startswith("{")
    latencies = profile_latencies(PROFILES_DIR / "a100_80-graphs-derived.json",
                                  {"target": "Qwen/Qwen3-14B", "draft": "Qwen/Qwen3-1.7B"})
    assert "derived" in latencies["target"].source
    assert latencies["target"].seconds(1, 1, 128) > latencies["draft"].seconds(1, 1, 128)


def test_a_measured_profile_of_an_unknown_model_is_refused(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"model": "acme-9000b", "batch": 1, "nodes": 1,
                                         "prefix": 1, "ms_median": 1.0}]}))
    assert main(["--measured", str(bad), "--out", str(tmp_path)]) == 2
    assert "not a shipped architecture" in capsys.readouterr().err
