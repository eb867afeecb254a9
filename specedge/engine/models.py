"""The one place that loads a causal LM and its tokenizer, by hub id or local folder.

Real pairs (Qwen3, Llama) and the embedded tiny pair take exactly the same path:
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``. With
``model.weights=random`` the architecture alone is built (``from_config``, random weights made
on the device), so any GPU can be timed with the paper's models and no model hub: shipped
architectures (``specedge/data/architectures``) are found by the hub id's last part.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge import ARCHITECTURES_DIR
from specedge.base.config.model import DType, ModelConfig, Weights

log = logging.getLogger(__name__)

TORCH_DTYPES: dict[DType, torch.dtype] = {
    DType.fp16: torch.float16,
    DType.bf16: torch.bfloat16,
    DType.fp32: torch.float32,
}




def shipped_architectures() -> dict[str, Path]:
    """Architecture files shipped with the package, by lower-cased name (e.g. qwen3-14b)."""
    return {p.stem.lower(): p for p in sorted(ARCHITECTURES_DIR.glob("*.json"))}


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message says which and why."""


def _looks_local(name_or_path: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else (./x, /abs, a/b/c) is meant as a folder.
    return (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or Path(name_or_path).exists()
    )


def _check_local(name_or_path: str, what: str, key: str) -> None:
    if _looks_local(name_or_path) and not Path(name_or_path).expanduser().is_dir():
        hint = ""
        if "models/tiny" in name_or_path:
            hint = " Build the embedded pair first: `snakemake --cores 1 build_models`."
        elif "models/smollm2" in name_or_path:
            hint = (" Build the SmolLM2 pair first: "
                    "`snakemake --cores 1 models/smollm2/draft/card.json`.")
        raise ModelLoadError(f"{key} = {name_or_path!r}: the {what} folder does not exist."
                             f"{hint}")


def resolve_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for, but this machine has no CUDA GPU; "
                             "use device 'cpu' (hardware=cpu)")
    return dev


def architecture(name_or_path: str, key: str = "model.target") -> AutoConfig:
    """The configuration of a model to build with random weights: a shipped architecture
    (by name or hub id, e.g. ``Qwen/Qwen3-14B``), a config.json, or a model folder."""
    shipped = shipped_architectures()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return AutoConfig.from_pretrained(path)
    if path.suffix == ".json" and path.is_file():
        source = path
    elif (found := shipped.get(Path(name_or_path).name.lower())) is not None:
        source = found
    else:
        raise ModelLoadError(
            f"{key} = {name_or_path!r}: model.weights=random needs an architecture: one of "
            f"{', '.join(p.stem for p in shipped.values())} (or a hub id ending in one), a "
            "config.json file, or a model folder")
    raw = json.loads(source.read_text())
    model_type = raw.pop("model_type")
    return AutoConfig.for_model(model_type, **raw)


def device_name(device: str) -> str:
    """What a figure was measured on: the GPU's name, or the CPU's model."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU ({line.split(':', 1)[1].strip()})"
    except OSError:
        pass
    return "CPU"


def load_model(
    name_or_path: str,
    dtype: DType | str = DType.fp32,
    device: str = "cpu",
    attn_implementation: str = "sdpa",
    weights: Weights | str = Weights.pretrained,
    key: str = "model.target",
) -> PreTrainedModel:
    """Load a causal LM in eval mode on ``device`` with weights in ``dtype``."""
    dtype = DType(dtype)
    dev = resolve_device(device)
    if Weights(weights) == Weights.random:
        config = architecture(name_or_path, key)
        torch.manual_seed(0)  # the same random model every time
        with dev:  # made where it runs: a 14B model is never materialised on the host
            model = AutoModelForCausalLM.from_config(
                config, dtype=TORCH_DTYPES[dtype], attn_implementation=attn_implementation)
            model.tie_weights()  # what from_pretrained does for tied embeddings
        what = "random weights"
    else:
        _check_local(name_or_path, "model", key)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                name_or_path,
                dtype=TORCH_DTYPES[dtype],
                attn_implementation=attn_implementation,
            )
        except OSError as exc:
            raise ModelLoadError(f"{key} = {name_or_path!r}: could not load the model: {exc}"
                                 ) from exc
        what = "pretrained"
    model.to(dev).eval()
    log.info("loaded %s (%s, %s, %.1fM params) on %s", name_or_path, what, dtype.value,
             sum(p.numel() for p in model.parameters()) / 1e6, dev)
    return model


def load_tokenizer(name_or_path: str, key: str = "model.tokenizer") -> PreTrainedTokenizerBase:
    _check_local(name_or_path, "tokenizer", key)
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as exc:
        raise ModelLoadError(f"could not load tokenizer {name_or_path!r}: {exc}") from exc
    if tok.pad_token_id is None:
        # Batched decoding needs a pad id; it never reaches the model unmasked.
        tok.pad_token = tok.eos_token
    return tok


def check_member(mcfg: ModelConfig, which: str) -> None:
    """What can be known about the run's target or draft without loading it: a local folder
    exists, a random-weight architecture is known (a hub id is only checked when loaded)."""
    key = f"model.{which}"
    if mcfg.weights == Weights.random:
        architecture(getattr(mcfg, which), key)
    else:
        _check_local(getattr(mcfg, which), "model", key)


def load_member(mcfg: ModelConfig, which: str, device: str) -> PreTrainedModel:
    """The run's target or draft (``which``), as ``model.*`` says, on ``device``."""
    return load_model(getattr(mcfg, which), mcfg.dtype, device, mcfg.attn_implementation,
                      mcfg.weights, key=f"model.{which}")


def tokenizer_path(mcfg: ModelConfig, which: str = "target") -> tuple[str, str]:
    """Where the run's tokenizer comes from, and the key that named it."""
    if mcfg.tokenizer is not None:
        return mcfg.tokenizer, "model.tokenizer"
    if mcfg.weights == Weights.random:
        raise ModelLoadError("model.tokenizer = None is not accepted with model.weights=random: "
                             "an architecture carries no tokenizer; name a tokenizer folder "
                             "(e.g. models/tiny/tokenizer) to encode the prompts")
    return getattr(mcfg, which), f"model.{which}"


def load_run_tokenizer(mcfg: ModelConfig, which: str = "target") -> PreTrainedTokenizerBase:
    path, key = tokenizer_path(mcfg, which)
    return load_tokenizer(path, key)
