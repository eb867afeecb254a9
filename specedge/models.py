"""The one place that loads a causal LM and its tokenizer, by hub id or local folder.

Real pairs (Qwen3, Llama) and the embedded tiny pair take exactly the same path:
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge.config import DType

log = logging.getLogger(__name__)

TORCH_DTYPES: dict[DType, torch.dtype] = {
    DType.fp16: torch.float16,
    DType.bf16: torch.bfloat16,
    DType.fp32: torch.float32,
}


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message says which and why."""


def _looks_local(name_or_path: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else (./x, /abs, a/b/c) is meant as a folder.
    return (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or Path(name_or_path).exists()
    )


def _check_local(name_or_path: str, what: str) -> None:
    if _looks_local(name_or_path) and not Path(name_or_path).expanduser().is_dir():
        hint = ""
        if "models/tiny" in name_or_path:
            hint = " Build the embedded pair first: `snakemake --cores 1 build_models`."
        raise ModelLoadError(f"{what} folder {name_or_path!r} does not exist.{hint}")


def resolve_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for, but this machine has no CUDA GPU; "
                             "use device 'cpu' (hardware=cpu)")
    return dev


def load_model(
    name_or_path: str,
    dtype: DType | str = DType.fp32,
    device: str = "cpu",
    attn_implementation: str = "sdpa",
) -> PreTrainedModel:
    """Load a causal LM in eval mode on ``device`` with weights in ``dtype``."""
    dtype = DType(dtype)
    _check_local(name_or_path, "model")
    dev = resolve_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path,
            dtype=TORCH_DTYPES[dtype],
            attn_implementation=attn_implementation,
        )
    except OSError as exc:
        raise ModelLoadError(f"could not load model {name_or_path!r}: {exc}") from exc
    model.to(dev).eval()
    log.info("loaded %s (%s, %.1fM params) on %s", name_or_path, dtype.value,
             sum(p.numel() for p in model.parameters()) / 1e6, dev)
    return model


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    _check_local(name_or_path, "tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as exc:
        raise ModelLoadError(f"could not load tokenizer {name_or_path!r}: {exc}") from exc
    if tok.pad_token_id is None:
        # Batched decoding needs a pad id; it never reaches the model unmasked.
        tok.pad_token = tok.eos_token
    return tok
