"""The single loading path, exercised on the micro pair saved in Hugging Face format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from specedge.base.config.model import DType
from specedge.engine.models import (
    ModelLoadError,
    cpu_autocast,
    load_model,
    load_tokenizer,
    resolve_dtype,
)


def fake_cpu(monkeypatch: pytest.MonkeyPatch, capability: str) -> None:
    """Make torch report a CPU of ``capability``: AMX, AVX512-BF16 (native bf16 instructions),
    or a plain dispatch level such as AVX2."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: capability == "AMX")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported",
                        lambda: capability in ("AMX", "AVX512-BF16"))
    level = "AVX512" if capability in ("AMX", "AVX512-BF16") else capability
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: level)


@pytest.mark.parametrize(("capability", "expected"),
                         [("AVX2", DType.fp32), ("AVX512", DType.fp32), ("DEFAULT", DType.fp32),
                          ("AMX", DType.bf16), ("AVX512-BF16", DType.bf16)])
def test_auto_dtype_is_bf16_only_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch,
                                                      micro_pair: Path, capability: str,
                                                      expected: DType) -> None:
    fake_cpu(monkeypatch, capability)
    dtype, why = resolve_dtype(DType.auto, "cpu")
    assert dtype == expected and capability in why
    assert cpu_autocast(None) == (expected == DType.bf16)
    model = load_model(str(micro_pair / "draft"), "auto", "cpu")
    assert next(model.parameters()).dtype == {DType.fp32: torch.float32,
                                              DType.bf16: torch.bfloat16}[expected]
    # explicit dtypes and autocast settings stay as asked, whatever the CPU
    assert resolve_dtype(DType.bf16, "cpu")[0] == DType.bf16
    assert resolve_dtype("fp32", "cpu")[0] == DType.fp32
    assert cpu_autocast(True) and not cpu_autocast(False)


@pytest.mark.parametrize(("dtype", "torch_dtype"),
                         [("fp32", torch.float32), ("bf16", torch.bfloat16),
                          ("fp16", torch.float16)])
def test_loads_in_each_dtype(micro_pair: Path, dtype: str, torch_dtype: torch.dtype) -> None:
    model = load_model(str(micro_pair / "target"), dtype, "cpu")
    assert next(model.parameters()).dtype == torch_dtype
    assert not model.training
    assert type(model).__name__ == "Qwen3ForCausalLM"


def test_pair_shares_a_tokenizer_with_chat_template(micro_pair: Path) -> None:
    t_tok = load_tokenizer(str(micro_pair / "target"))
    d_tok = load_tokenizer(str(micro_pair / "draft"))
    assert t_tok.get_vocab() == d_tok.get_vocab()
    text = t_tok.apply_chat_template([{"role": "user", "content": "Who is there?"}],
                                     tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>\nWho is there?\n<|assistant|>\n"
    ids = t_tok(text)["input_ids"]
    assert t_tok.decode(ids) == text
    assert t_tok.convert_tokens_to_ids("<|assistant|>") in ids


def test_loaded_model_matches_saved_weights(micro_pair: Path) -> None:
    model = load_model(str(micro_pair / "draft"), "fp32", "cpu")
    again = load_model(str(micro_pair / "draft"), "fp32", "cpu")
    ids = torch.tensor([[1, 5, 9, 30]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


def test_card_records_the_build(micro_pair: Path) -> None:
    card = json.loads((micro_pair / "card.json").read_text())
    assert card["params"]["target"] > card["params"]["draft"] > 0
    assert 0.0 <= card["agreement"]["top1"] <= card["agreement"]["top4"] <= 1.0
    assert card["forward"]["target_ms"] > 0 and card["forward"]["draft_ms"] > 0
    assert card["corpus"]["sdist_sha256"] and card["corpus"]["tokens"] > 0


def test_missing_local_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "target"
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(missing))
    with pytest.raises(ModelLoadError, match="snakemake --cores 1 build_models"):
        load_tokenizer("models/tiny/absent-target")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_refused(micro_pair: Path) -> None:
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        load_model(str(micro_pair / "target"), "fp16", "cuda:0")


def _wheel(folder: Path, name: str = "tinypkg", version: str = "1.0") -> str:
    """A minimal valid wheel in ``folder``: what a registry serves, without the registry."""
    import zipfile

    info = f"{name}-{version}.dist-info"
    file = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(folder / file, "w") as whl:
        whl.writestr(f"{name}/__init__.py", "")
        whl.writestr(f"{info}/METADATA",
                     f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                     "Root-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")
    return file


def test_registry_files_arrive_whole_even_when_fetched_at_once(tmp_path: Path) -> None:
    """Processes fetching one file together (a parallel test run, two Snakemake jobs) each end
    with the whole file and no partial download left behind; a missing one is pip's error."""
    from concurrent.futures import ThreadPoolExecutor

    from specedge.commands.registry import pip_download

    index = tmp_path / "index"
    index.mkdir()
    file = _wheel(index)
    dest = tmp_path / "cache" / file
    local = ("--no-index", "--find-links", str(index), "--only-binary=:all:")
    with ThreadPoolExecutor(3) as pool:
        errors = list(pool.map(lambda _: pip_download("tinypkg==1.0", dest, *local), range(3)))
    assert errors == ["", "", ""]
    assert dest.read_bytes() == (index / file).read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == [file]
    missing = pip_download("tinypkg==2.0", tmp_path / "cache" / "tinypkg-2.0.whl", *local)
    assert "tinypkg==2.0" in missing
    assert [p.name for p in dest.parent.iterdir()] == [file]
