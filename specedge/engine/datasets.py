"""Prompt sets: the upstream file formats, the built-in set, and request sampling.

Files are parsed here (so an error names the file and line), then held as a ``datasets.Dataset``;
a hub name goes through ``datasets.load_dataset`` where a network exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import datasets
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge.base.config.dataset import DatasetConfig, DatasetFormat, DatasetName

T = TypeVar("T")

BUILTIN_FILE = "builtin_prompts.jsonl"
# Upstream's six Spec-Bench subsets, in the order of the benchmark's question.jsonl: 80 questions
# each, the multi-turn MT-bench ones first (labelled with MT-bench's own 8 categories).
SPEC_BENCH_CATEGORIES = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")
SPEC_BENCH_SUBSET_SIZE = 80


class DatasetError(ValueError):
    """A prompt file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Request:
    """One prompt to serve, exactly as the tokenizer sees it."""

    index: int  # the dataset's own index (question_id, or the pair's index)
    category: str  # Spec-Bench subset (see subsets), or the dataset name for uncategorised sets
    prompt: str  # text after any chat template: what gets tokenized
    subcategory: str = ""  # the file's own label (MT-bench's "writing", ...); "": the category


def subsets(labels: list[str]) -> list[str]:
    """Upstream's grouping of Spec-Bench: a file laid out as the benchmark's question.jsonl
    (6 x 80 questions) is grouped by position into the six subsets, whatever its labels (its
    MT-bench questions carry 8 labels of their own); any other file keeps its labels."""
    if len(labels) != len(SPEC_BENCH_CATEGORIES) * SPEC_BENCH_SUBSET_SIZE:
        return list(labels)
    return [SPEC_BENCH_CATEGORIES[i // SPEC_BENCH_SUBSET_SIZE] for i in range(len(labels))]


def _parse_specbench(path: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{lineno}: expected an object with question_id, "
                               f"category and turns, got {type(obj).__name__}")
        turns = obj.get("turns")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise DatasetError(f"{path}:{lineno}: 'turns' must be a non-empty list of strings")
        qid = obj.get("question_id", len(rows))
        if not isinstance(qid, (int, str)):
            raise DatasetError(f"{path}:{lineno}: 'question_id' must be an integer or a string")
        rows.append({"index": qid if isinstance(qid, int) else len(rows),
                     "subcategory": str(obj.get("category", "uncategorised")), "text": turns[0]})
    for row, subset in zip(rows, subsets([r["subcategory"] for r in rows]), strict=True):
        row["category"] = subset
    return rows


def _parse_pairs(path: Path, text: str, category: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected a JSON "
                           "list of [index, prompt] pairs") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}:1: expected a JSON list of [index, prompt] pairs, "
                           f"got {type(data).__name__}")
    rows = []
    for i, item in enumerate(data):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)
                and isinstance(item[1], str)):
            raise DatasetError(f"{path}: entry {i} is {json.dumps(item)[:80]}; expected an "
                               "[index, prompt] pair (integer, string)")
        rows.append({"index": item[0], "category": category, "subcategory": category,
                     "text": item[1]})
    return rows


def read_dataset(cfg: DatasetConfig) -> datasets.Dataset:
    """All rows of the configured prompt set (columns: index, category, text)."""
    if cfg.hub is not None and cfg.path is None:
        hub = datasets.load_dataset(cfg.hub, split="train")
        if cfg.format == DatasetFormat.specbench:
            hub = hub.map(lambda r, i: {"index": r.get("question_id", i), "subcategory":
                          r.get("category", cfg.name.value), "text": r["turns"][0]},
                          with_indices=True, remove_columns=hub.column_names)
            return hub.add_column("category", subsets(hub["subcategory"]))
        return hub
    if cfg.path is None:
        if cfg.name != DatasetName.builtin:
            raise DatasetError(f"dataset {cfg.name.value!r} needs dataset.path")
        path = Path(str(resources.files("specedge") / "data" / BUILTIN_FILE))
    else:
        path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: no such file (dataset.path for dataset {cfg.name.value!r})")
    text = path.read_text(encoding="utf-8")
    if cfg.format == DatasetFormat.specbench:
        rows = _parse_specbench(path, text)
    else:
        rows = _parse_pairs(path, text, cfg.name.value)
    if not rows:
        raise DatasetError(f"{path}: holds no prompts")
    return datasets.Dataset.from_list(rows)


def select(n_rows: int, offset: int, stride: int, max_requests: int) -> list[int]:
    """Upstream sampling: skip ``offset``, take every ``stride``-th, stop at ``max_requests``."""
    picked = list(range(offset, n_rows, stride))
    return picked if max_requests < 0 else picked[:max_requests]


def render_prompt(text: str, tokenizer: PreTrainedTokenizerBase, cfg: DatasetConfig) -> str:
    if not cfg.chat_template:
        return text
    if not getattr(tokenizer, "chat_template", None):
        raise DatasetError(f"dataset.chat_template is true for {cfg.name.value!r} but the "
                           f"tokenizer {tokenizer.name_or_path!r} has no chat template; set "
                           "dataset.chat_template=false to feed prompts as plain text")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True,
        enable_thinking=cfg.reasoning,
    )


def load_requests(cfg: DatasetConfig, tokenizer: PreTrainedTokenizerBase) -> list[Request]:
    rows = read_dataset(cfg)
    picked = select(len(rows), cfg.offset, cfg.stride, cfg.max_requests)
    if not picked:
        raise DatasetError(f"dataset {cfg.name.value!r} has {len(rows)} prompts; offset="
                           f"{cfg.offset}, stride={cfg.stride} select none of them")
    return [
        Request(index=int(rows[i]["index"]), category=str(rows[i]["category"]),
                prompt=render_prompt(str(rows[i]["text"]), tokenizer, cfg),
                subcategory=str(rows[i].get("subcategory") or rows[i]["category"]))
        for i in picked
    ]


def edge_share(items: list[T], client_id: int, num_clients: int) -> list[T]:
    """What edge ``client_id`` serves: every ``num_clients``-th request from its own position,
    so the edges split any prompt set evenly without talking to each other."""
    return items[client_id::num_clients]
