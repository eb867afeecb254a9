"""The distillation's prompts: requests of Spec-Bench's six kinds, generated from templates.

A draft agrees with its target where it was distilled: on prompts the target wrote itself it
matched 0.46 of the target's tokens, on the built-in set (Spec-Bench's kinds) 0.24. So the
draft learns on requests shaped like those the runs serve: multi-turn writing and roleplay,
translation, summarization of a passage, question answering, arithmetic word problems and
answers from a given context. Every template, word list and foreign sentence is written here,
none taken from a prompt a report evaluates on; :func:`overlapping` finds any that come close
(tests check it against the built-in set).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable

from specedge.commands.distill_prompts.questions import qa, summarization
from specedge.commands.distill_prompts.reasoning import maths, rag
from specedge.commands.distill_prompts.writing import translation, writing

KINDS: dict[str, Callable[[random.Random], str]] = {
    "writing": writing, "translation": translation, "summarization": summarization,
    "qa": qa, "maths": maths, "rag": rag,
}


def distill_prompts(n: int, seed: int, excluded: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``n`` distinct (kind, prompt) pairs, the kinds in turn, none in ``excluded``.

    Raises when the templates cannot give ``n`` distinct prompts (rather than repeating some)."""
    rng = random.Random(seed)
    seen = {_norm(t) for t in excluded}
    out: list[tuple[str, str]] = []
    names = list(KINDS)
    misses = 0
    while len(out) < n:
        kind = names[len(out) % len(names)]
        text = KINDS[kind](rng)
        if _norm(text) in seen:
            misses += 1  # in a row: the kinds' templates are nearly exhausted
            if misses > 2000:
                raise ValueError(f"prompts = {n} is not accepted: the templates gave only "
                                 f"{len(out)} distinct prompts")
            continue
        seen.add(_norm(text))
        out.append((kind, text))
        misses = 0
    return out


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _grams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _norm(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def overlapping(prompts: Iterable[str], held_out: Iterable[str],
                n: int = 8) -> list[tuple[str, str]]:
    """(prompt, held-out text) pairs that share content: the same text, a run of ``n`` words
    (a copied sentence or passage; shared instructions such as "Think step by step" are
    shorter), or a quotation of the held-out text (the sentence to translate)."""
    held = [(t, _grams(t, n), [_norm(q) for q in re.findall(r'"([^"]+)"', t)])
            for t in held_out]
    found = []
    for p in prompts:
        norm, grams = _norm(p), _grams(p, n)
        found += [(p, t) for t, g, quotes in held
                  if norm == _norm(t) or g & grams or any(q and q in norm for q in quotes)]
    return found
