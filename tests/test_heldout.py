"""The held-out draw (seeded, capped, each SpecEdge run paired with a server-only twin, every
drawn configuration accepted) and the long prompts it draws from."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from specedge import CONF_DIR, PROJECT_ROOT
from specedge.analysis.simulation import heldout
from specedge.base.config.dataset import DatasetConfig, DatasetFormat, DatasetName
from specedge.base.config.run import to_run_config
from specedge.commands.corpus import load_corpus
from specedge.commands.long_prompts import long_prompts, main
from specedge.engine.datasets import read_dataset

WORKFLOW = yaml.safe_load((PROJECT_ROOT / "workflow" / "config.yaml").read_text())
HELDOUT = WORKFLOW["validation"]["heldout"]


def _draw(n: int, seed: int = 0) -> list[heldout.Draw]:
    return heldout.draw(HELDOUT["space"], HELDOUT["datasets"], n, seed, HELDOUT["requests"])


def _value(overrides: list[str], key: str) -> str | None:
    found = [o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")]
    return found[-1] if found else None


def test_the_draw_is_seeded_capped_and_pairs_each_run_with_a_server_only_twin() -> None:
    draws = _draw(24)
    assert draws == _draw(24) and draws[:HELDOUT["draws"]] == _draw(HELDOUT["draws"])
    assert [d.choices for d in draws] != [d.choices for d in _draw(24, seed=1)]
    for d in draws:
        edges = d.choices["edges"]
        assert int(_value(d.specedge, "server.num_clients")) == edges
        assert int(_value(d.specedge, "server.max_batch_size")) <= edges
        assert float(_value(d.specedge, "hardware.link.jitter_ms")) <= float(
            _value(d.specedge, "hardware.link.delay_ms"))
        assert _value(d.server_only, "baseline") == "server_only"
        assert int(_value(d.server_only, "baseline.max_batch_size")) == edges
        for key in ("dataset", "dataset.path", "dataset.max_requests", "edge.max_budget",
                    "edge.tree_policy"):  # the same prompts, the same trees
            assert _value(d.server_only, key) == _value(d.specedge, key)
        assert int(_value(d.specedge, "dataset.max_requests")) >= edges  # no idle edge
        assert not [o for o in d.server_only
                    if o.startswith(("hardware.", "server.", "edge.proactive"))]
    # the space is explored: every declared value of a few keys turns up in 24 draws
    for key in ("edges", "dataset", "edge.proactive.type"):
        assert {d.choices[key] for d in draws} == set(HELDOUT["space"][key])
    assert heldout.runs(draws[:2]).keys() == {"heldout-0", "heldout-0-server_only",
                                              "heldout-1", "heldout-1-server_only"}


def test_every_drawn_configuration_is_accepted() -> None:
    """The configuration's own checks pass on every run of 24 draws of the workflow's space
    (a space whose values clash, e.g. jitter above the delay, would fail here, not an hour
    into the pipeline)."""
    for d in _draw(24):
        for overrides in (d.specedge, d.server_only):
            with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
                cfg = to_run_config(compose("config", overrides=["model=smollm2", *overrides]))
            assert cfg.server.num_clients == d.choices["edges"] or \
                cfg.baseline.name.value == "server_only"


@pytest.mark.parametrize(("space", "datasets", "message"), [
    ({"edge.max_budget": [8]}, {}, "has no 'edges'"),
    ({"edges": [0, 2]}, {}, "integers >= 1"),
    ({"edges": [2], "edge.max_budget": []}, {}, "a non-empty list"),
    ({"edges": [2], "dataset": ["long"]}, {"builtin": ["dataset=builtin"]},
     "names ['long'], which are not in validation.heldout.datasets; accepted: ['builtin']"),
])
def test_a_space_that_cannot_be_drawn_from_is_refused(space: dict, datasets: dict,
                                                      message: str) -> None:
    with pytest.raises(heldout.HeldoutError, match=message.replace("[", r"\[").replace(
            "]", r"\]")):
        heldout.draw(space, datasets, 3, 0, 5)


def test_long_prompts_are_long_distinct_and_seeded() -> None:
    corpus = load_corpus(PROJECT_ROOT / "models" / "corpus")
    prompts = long_prompts(corpus, 8, 350, seed=0)
    assert prompts == long_prompts(corpus, 8, 350, seed=0)
    assert prompts != long_prompts(corpus, 8, 350, seed=1)
    assert [p["question_id"] for p in prompts] == list(range(8))
    works = {p["turns"][0].split("\n")[0] for p in prompts}
    assert len(works) == 8  # each from a different work, with its own task line
    for p in prompts:
        passage = p["turns"][0].split("\n\n", 1)[1]
        assert len(passage.split()) >= 350 and p["category"].startswith("long-")


def test_the_long_prompts_command_writes_a_dataset_the_runs_read(tmp_path: Path) -> None:
    out = tmp_path / "long.jsonl"
    corpus = PROJECT_ROOT / "models" / "corpus"
    assert main([str(out), "--n", "3", "--corpus-dir", str(corpus)]) == 0
    rows = read_dataset(DatasetConfig(name=DatasetName.specbench, path=str(out),
                                      format=DatasetFormat.specbench))
    assert [r["text"] for r in rows] == [
        p["turns"][0] for p in long_prompts(load_corpus(corpus), 3, 350, seed=0)]
    assert main([str(out), "--n", "0", "--corpus-dir", str(corpus)]) == 2
