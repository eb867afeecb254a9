"""The model builder is deterministic for a seed and refuses nonsense recipes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from specedge.commands.build_models import BuildConfig, build_pair
from tests.conftest import micro_build_config

pytestmark = pytest.mark.slow  # end to end: real processes, pipelines or builds


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("*.safetensors"))}


def test_same_seed_same_weights(tmp_path: Path, micro_pair: Path) -> None:
    again = tmp_path / "again"
    build_pair(micro_build_config(again, seed=0))
    for name in ("target", "draft"):
        assert _digest(again / name) == _digest(micro_pair / name)
    assert (again / "tokenizer" / "tokenizer.json").read_text() == \
        (micro_pair / "tokenizer" / "tokenizer.json").read_text()
    card_a = json.loads((again / "card.json").read_text())
    card_b = json.loads((micro_pair / "card.json").read_text())
    assert card_a["losses"] == card_b["losses"] and card_a["agreement"] == card_b["agreement"]
    # the card names the bytes it describes
    assert card_a["weights_sha256"] == card_b["weights_sha256"] == {
        name: _digest(micro_pair / name)["model.safetensors"] for name in ("target", "draft")}


def test_other_seed_other_weights(tmp_path: Path, micro_pair: Path) -> None:
    other = tmp_path / "other"
    build_pair(micro_build_config(other, seed=1))
    assert _digest(other / "target") != _digest(micro_pair / "target")


def test_a_failed_build_keeps_the_previous_pair(tmp_path: Path, micro_pair: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "kept"
    shutil.copytree(micro_pair, out)  # a pair built before, as the builder left it
    before = _digest(out / "target")

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("interrupted")

    monkeypatch.setattr("specedge.commands.build_models.val_ce", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        build_pair(micro_build_config(out, seed=3))
    assert _digest(out / "target") == before


def test_bad_recipe_is_refused() -> None:
    with pytest.raises(ValueError, match="target_steps = 0"):
        BuildConfig(target_steps=0)
