"""The one place that loads a causal LM and its tokenizer, by hub id or local folder.

Real pairs (Qwen3, Llama) and the embedded tiny pair take exactly the same path:
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``. With
``model.weights=random`` the architecture alone is built (``from_config``, random weights made
on the device), so any GPU can be timed with the paper's models and no model hub: shipped
architectures (``specedge/data/architectures``) are found by the hub id's last part.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoConfig, AutoTokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge import ARCHITECTURES_DIR
from specedge.base.config.model import DType, ModelConfig, Weights
from specedge.base.config.run import RunConfig
from specedge.base.records import DTYPE_FILE

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

TORCH_DTYPES: dict[DType, torch.dtype] = {
    DType.fp16: torch.float16,
    DType.bf16: torch.bfloat16,
    DType.fp32: torch.float32,
}




def cpu_capability() -> str:
    """The CPU's bf16 ability in one word: ``AMX`` or ``AVX512-BF16`` where bf16 matmuls are
    native, else torch's dispatch level (``AVX512``, ``AVX2``, ``DEFAULT``...). Torch's own
    level says ``AVX512`` on an AMX Xeon too, so the bf16 instructions are asked for apart."""
    cpu = torch.cpu
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return str(torch.backends.cpu.get_cpu_capability())


NATIVE_BF16_CPUS = ("AMX", "AVX512-BF16")


def resolve_dtype(dtype: DType | str, device: str | torch.device) -> tuple[DType, str]:
    """The dtype that runs on ``device`` for ``dtype``, and why. ``auto``: bf16 on a GPU that
    has it (fp16 on one that has not) and on a CPU with native bf16; fp32 on any other CPU,
    where bf16 is emulated: on an AVX2 EPYC a bf16 matmul took 18x the fp32 time and a
    SmolLM2 forward 5.7x (2026-12-04)."""
    dtype = DType(dtype)
    if dtype != DType.auto:
        return dtype, "set explicitly"
    dev = torch.device(device)
    if dev.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return DType.bf16, f"{torch.cuda.get_device_name(dev)} supports bf16"
        return DType.fp16, f"{torch.cuda.get_device_name(dev)} lacks bf16"
    if dev.type != "cpu":
        return DType.fp32, f"{dev.type} devices get fp32"
    cap = cpu_capability()
    if cap in NATIVE_BF16_CPUS:
        return DType.bf16, f"the CPU has native bf16 ({cap})"
    return DType.fp32, (f"the CPU has no native bf16 (capability {cap}; bf16 is native with "
                        f"{' or '.join(NATIVE_BF16_CPUS)})")


def cpu_autocast(asked: bool | None) -> bool:
    """Whether CPU training runs under bf16 autocast: as ``asked``, or (None) where the CPU has
    native bf16 (about 3x faster with AMX; emulated bf16 is several times slower than fp32)."""
    if asked is not None:
        return asked
    dtype, why = resolve_dtype(DType.auto, "cpu")
    log.info("bf16 autocast %s: %s", "on" if dtype == DType.bf16 else "off", why)
    return dtype == DType.bf16


def with_resolved_dtype(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``model.dtype`` as it runs on the server's device (logged when auto)."""
    dtype, why = resolve_dtype(cfg.model.dtype, cfg.hardware.server_device)
    if cfg.model.dtype == DType.auto:
        log.info("model.dtype=auto -> %s on %s: %s", dtype.value, cfg.hardware.server_device,
                 why)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dtype=dtype))


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
    # Imported here: the modeling code costs about 2.3 s of start-up, and a SpecEdge run's
    # launcher (which checks the folders and loads the tokenizer) loads no model.
    from transformers import AutoModelForCausalLM

    dev = resolve_device(device)
    asked = DType(dtype)
    dtype, why = resolve_dtype(asked, dev)
    if asked == DType.auto:
        log.info("model.dtype=auto -> %s on %s: %s", dtype.value, dev, why)
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


def load_member(mcfg: ModelConfig, which: str, device: str,
                record_in: Path | None = None) -> PreTrainedModel:
    """The run's target or draft (``which``), as ``model.*`` says, on ``device``.
    ``record_in``: a run folder, which gets the dtype it ran in and why (``dtype.json``)."""
    model = load_model(getattr(mcfg, which), mcfg.dtype, device, mcfg.attn_implementation,
                       mcfg.weights, key=f"model.{which}")
    if record_in is not None:
        dtype, why = resolve_dtype(mcfg.dtype, device)
        (Path(record_in) / DTYPE_FILE).write_text(json.dumps(
            {"model": which, "asked": mcfg.dtype.value, "dtype": dtype.value, "why": why,
             "device": str(device)}) + "\n")
    return model


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
