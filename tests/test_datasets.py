"""Prompt sets: upstream formats, the built-in set, sampling and error messages."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from specedge import PROJECT_ROOT
from specedge.base.config.dataset import DatasetConfig, DatasetFormat, DatasetName
from specedge.engine.datasets import (
    SPEC_BENCH_CATEGORIES,
    DatasetError,
    load_requests,
    read_dataset,
    select,
)
from specedge.engine.models import load_tokenizer


def test_builtin_set_covers_spec_bench_categories() -> None:
    rows = read_dataset(DatasetConfig(name=DatasetName.builtin))
    counts = Counter(rows["category"])
    assert len(rows) >= 48
    assert set(counts) == set(SPEC_BENCH_CATEGORIES)
    assert min(counts.values()) >= 8
    assert len(set(rows["text"])) == len(rows)


def test_requests_render_the_chat_template(micro_pair: Path) -> None:
    tok = load_tokenizer(str(micro_pair / "target"))
    reqs = load_requests(DatasetConfig(name=DatasetName.builtin, max_requests=3), tok)
    assert [r.index for r in reqs] == [0, 1, 2]
    assert reqs[0].prompt.startswith("<|user|>\n") and reqs[0].prompt.endswith("<|assistant|>\n")


@pytest.mark.parametrize(("offset", "stride", "cap", "expected"), [
    (0, 1, -1, list(range(10))),
    (2, 3, -1, [2, 5, 8]),
    (1, 2, 2, [1, 3]),
    (12, 1, -1, []),
])
def test_upstream_sampling(offset: int, stride: int, cap: int, expected: list[int]) -> None:
    assert select(10, offset, stride, cap) == expected


def test_pairs_file_is_plain_text_for_c4(tmp_path: Path, micro_pair: Path) -> None:
    path = tmp_path / "c4.json"
    path.write_text(json.dumps([[7, "The quick brown fox"], [9, "Once upon a time"]]))
    cfg = DatasetConfig(name=DatasetName.c4, path=str(path), format=DatasetFormat.pairs,
                        chat_template=False)
    reqs = load_requests(cfg, load_tokenizer(str(micro_pair / "target")))
    assert [(r.index, r.category, r.prompt) for r in reqs] == [
        (7, "c4", "The quick brown fox"), (9, "c4", "Once upon a time")]


def test_specbench_file_takes_the_first_turn(tmp_path: Path) -> None:
    path = tmp_path / "question.jsonl"
    lines = [{"question_id": 81, "category": "writing", "turns": ["First?", "Second?"]},
             {"question_id": 82, "category": "qa", "turns": ["Why?"]}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rows = read_dataset(DatasetConfig(name=DatasetName.specbench, path=str(path)))
    assert rows["index"] == [81, 82] and rows["text"] == ["First?", "Why?"]
    assert rows["category"] == ["writing", "qa"]  # not Spec-Bench's layout: its own labels
    assert rows["subcategory"] == ["writing", "qa"]


def test_a_file_laid_out_as_spec_bench_is_grouped_into_its_six_subsets(
        tmp_path: Path, micro_pair: Path) -> None:
    """Upstream's question.jsonl: 80 multi-turn MT-bench questions under 8 labels of their
    own, then 80 per subset; the subsets are positional, the file's label a subcategory."""
    mt_labels = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem",
                 "humanities")
    labels = [mt_labels[i // 10] for i in range(80)]
    labels += [name for name in SPEC_BENCH_CATEGORIES[1:] for _ in range(80)]
    path = tmp_path / "question.jsonl"
    path.write_text("".join(json.dumps({"question_id": i + 1, "category": label,
                                        "turns": [f"q{i}"] * (2 if i < 80 else 1)}) + "\n"
                            for i, label in enumerate(labels)))
    cfg = DatasetConfig(name=DatasetName.specbench, path=str(path), stride=10,
                        chat_template=False)
    reqs = load_requests(cfg, load_tokenizer(str(micro_pair / "target")))
    assert Counter(r.category for r in reqs) == dict.fromkeys(SPEC_BENCH_CATEGORIES, 8)
    assert [r.subcategory for r in reqs[:8]] == list(mt_labels)
    assert (reqs[8].index, reqs[8].category, reqs[8].subcategory) == (81, "translation",
                                                                      "translation")


@pytest.mark.parametrize(("fmt", "content", "message"), [
    ("specbench", '{"question_id": 1, "turns": ["a"]}\n{"question_id": 2, "turns": [\n',
     ":2: not valid JSON"),
    ("specbench", '{"question_id": 1, "turns": []}\n', ":1: 'turns' must be a non-empty list"),
    ("specbench", '[1, 2]\n', ":1: expected an object"),
    ("pairs", '[[0, "a"],\n [1, "b"\n', ":3: not valid JSON"),
    ("pairs", '[[0, "a"], ["x", "b"]]', "entry 1"),
    ("pairs", '{"0": "a"}', "expected a JSON list"),
    ("pairs", "[]", "holds no prompts"),
])
def test_malformed_files_name_file_and_line(tmp_path: Path, fmt: str, content: str,
                                            message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(DatasetError) as err:
        read_dataset(DatasetConfig(name=DatasetName.specbench, path=str(path),
                                   format=DatasetFormat(fmt)))
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        read_dataset(DatasetConfig(name=DatasetName.oasst, path=str(tmp_path / "none.json"),
                                   format=DatasetFormat.pairs))


def test_run_loads_an_upstream_specbench_file(tmp_path: Path, micro_pair: Path) -> None:
    path = tmp_path / "question.jsonl"
    path.write_text("\n".join(json.dumps({"question_id": i, "category": "qa",
                                          "turns": [f"Question {i}?"]}) for i in range(5)))
    result = subprocess.run(
        [sys.executable, "-m", "specedge.run", "dataset=specbench", f"dataset.path={path}",
         "model=tiny", f"model.target={micro_pair / 'target'}",
         f"model.draft={micro_pair / 'draft'}",
         "dataset.stride=2", "dry_run=true", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "3 requests from dataset specbench (qa: 3)" in result.stdout


def test_run_names_a_malformed_dataset_file(tmp_path: Path, micro_pair: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question_id": 1, "turns": ["ok"]}\n{"question_id": 2,\n')
    result = subprocess.run(
        [sys.executable, "-m", "specedge.run", "dataset=specbench", f"dataset.path={path}",
         "model=tiny", f"model.target={micro_pair / 'target'}",
         f"model.draft={micro_pair / 'draft'}",
         "dry_run=true", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert f"{path}:2: not valid JSON" in result.stderr
