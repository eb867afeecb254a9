"""``dataset`` and ``generation``: the prompts served and how much is generated."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from omegaconf import MISSING

from specedge.base.config.checks import require


class DatasetName(StrEnum):
    builtin = "builtin"
    c4 = "c4"
    mtbench = "mtbench"
    oasst = "oasst"
    wikitext = "wikitext"
    specbench = "specbench"




class DatasetFormat(StrEnum):
    pairs = "pairs"  # a JSON list of [index, prompt] pairs (upstream c4/mtbench/oasst/wikitext)
    specbench = "specbench"  # JSONL lines {"question_id", "category", "turns": [...]}




@dataclass
class DatasetConfig:
    name: DatasetName = MISSING
    path: str | None = None  # local file; null for builtin means the prompts shipped in the package
    hub: str | None = None  # a datasets-hub name, where a network exists
    format: DatasetFormat = DatasetFormat.specbench
    chat_template: bool = True  # render the prompt with the tokenizer's chat template
    reasoning: bool = False  # passed as enable_thinking to templates that know it
    offset: int = 0  # upstream req_offset: skip this many prompts first
    stride: int = 1  # upstream sample_req_cnt: then take every stride-th prompt
    max_requests: int = -1  # upstream max_request_num: cap (-1: all)

    def __post_init__(self) -> None:
        require(self.offset >= 0, "dataset.offset", self.offset, "an integer >= 0")
        require(self.stride >= 1, "dataset.stride", self.stride, "an integer >= 1")
        require(self.max_requests == -1 or self.max_requests >= 1, "dataset.max_requests",
                 self.max_requests, "-1 (all) or an integer >= 1")
        if self.name != DatasetName.builtin:
            require(self.path is not None or self.hub is not None, "dataset.path", self.path,
                     f"a file in the upstream {self.format.value} format (dataset "
                     f"'{self.name.value}' ships no prompts), or set dataset.hub")


@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0

    def __post_init__(self) -> None:
        require(self.max_new_tokens >= 1, "generation.max_new_tokens", self.max_new_tokens,
                 "an integer >= 1")
        require(self.temperature >= 0, "generation.temperature", self.temperature,
                 "a float >= 0 (0 is greedy)")
        require(0 < self.top_p <= 1, "generation.top_p", self.top_p, "a float in (0, 1]")
