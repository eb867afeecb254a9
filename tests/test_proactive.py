"""Proactive edge drafting: hits are adopted with their KV, and output stays exact."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import PreTrainedModel

from specedge.config import CompileMode, ProactiveConfig, ProactiveType
from specedge.drafting import TreeShape
from specedge.kv_cache import KVPool
from specedge.models import load_model, load_tokenizer
from specedge.rounds import Drafter
from specedge.verification import Chooser, greedy_reference, verify_trees


def _edge_rounds(target: PreTrainedModel, draft: PreTrainedModel, prompt: list[int],
                 shape: TreeShape, pcfg: ProactiveConfig, max_new: int,
                 stop: Callable[[], Callable[[], bool]] | None = None,
                 mode: CompileMode = CompileMode.eager) -> tuple[list[int], int]:
    """The edge's rounds (:class:`specedge.rounds.Drafter`) with the server's verification
    done in-process.

    ``stop`` makes each round's "reply is in" signal (as the edge's Event.is_set).
    """
    tokens = list(prompt)
    t_pool = KVPool(target, 1, 128, 128, mode, (1, 2, 4, 8, 16))
    d_pool = KVPool(draft, 1, 128, 128, mode, (1, 2, 4, 8, 16))
    t_row = t_pool.acquire()
    drafter = Drafter(d_pool, d_pool.acquire(), shape, pcfg)
    hits = 0
    while len(tokens) - len(prompt) < max_new:
        d = drafter.draft(tokens[drafter.row.length:-1], tokens[-1])
        guess = drafter.draft_proactively(d, stop() if stop else None)
        (verdict,) = verify_trees(t_pool, [t_row], [tokens[t_row.length:-1]], [d.tree],
                                  Chooser())
        hits += drafter.commit(d, verdict, guess)
        tokens += verdict.new_tokens(d.tree)
        assert t_row.length == len(tokens) - 1
        assert drafter.row.length <= len(tokens) - 1
    return tokens[len(prompt):len(prompt) + max_new], hits


@pytest.mark.parametrize(("mode", "path"), [(ProactiveType.excluded, CompileMode.eager),
                                            (ProactiveType.included, CompileMode.static)])
@pytest.mark.parametrize("self_draft", [True, False])
def test_proactive_rounds_stay_exact(micro_pair: Path, mode: ProactiveType, path: CompileMode,
                                     self_draft: bool) -> None:
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"))
    draft = target if self_draft else load_model(str(micro_pair / "draft"))
    pcfg = ProactiveConfig(type=mode, max_n_beams=2, max_beam_len=3, max_branch_width=2,
                           max_budget=6)
    for text in ("KING. What say you, lords?", "O", "Of Man's first disobedience"):
        prompt = tok(text)["input_ids"]
        ref = greedy_reference(target, prompt, 40)
        out, _ = _edge_rounds(target, draft, prompt, TreeShape(4, 4, 2, 10), pcfg, 40,
                              mode=path)
        assert out == ref
        # A chain drafted by the target itself is accepted whole, and its only leaf's best
        # next token is the bonus: every round's guess must hit and be adopted.
        out, hits = _edge_rounds(target, draft, prompt, TreeShape(1, 3, 1, 3), pcfg, 40,
                                 mode=path)
        assert out == ref
        if self_draft:
            assert hits >= 40 // (3 + 1 + 3) - 1, hits


@pytest.mark.parametrize("checks_before_reply", [0, 1, 2])
def test_interrupted_proactive_drafting_stays_exact(micro_pair: Path,
                                                    checks_before_reply: int) -> None:
    """The reply lands before the proactive tree is done: the guess keeps the steps it has
    (none at all when the reply beat the first forward), hits are still adopted, output exact."""
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"))
    pcfg = ProactiveConfig(type=ProactiveType.excluded, max_n_beams=2, max_beam_len=3,
                           max_branch_width=2, max_budget=6)
    prompt = tok("KING. What say you, lords?")["input_ids"]
    ref = greedy_reference(target, prompt, 30)

    def stop() -> Callable[[], bool]:
        calls = itertools.count()
        return lambda: next(calls) >= checks_before_reply

    out, hits = _edge_rounds(target, target, prompt, TreeShape(1, 3, 1, 3), pcfg, 30, stop)
    assert out == ref
    if checks_before_reply == 0:
        assert hits == 0  # no forward ran, so there was no guess
    else:
        assert hits >= 30 // (3 + 1 + 3) - 1, hits
