"""Proactive edge drafting: hits are adopted with their KV, and output stays exact."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import PreTrainedModel

from specedge.algorithm.drafting import Draft, TreeShape
from specedge.algorithm.rounds import Drafter
from specedge.algorithm.verification import Chooser, greedy_reference, verify_trees
from specedge.base.config.edge import ProactiveConfig, ProactiveType, TreePolicy
from specedge.base.config.model import CompileMode
from specedge.engine.kv_pool import KVPool
from specedge.engine.models import load_model, load_tokenizer


def _edge_rounds(target: PreTrainedModel, draft: PreTrainedModel, prompt: list[int],
                 shape: TreeShape, pcfg: ProactiveConfig, max_new: int,
                 stop: Callable[[], Callable[[], bool]] | None = None,
                 mode: CompileMode = CompileMode.eager,
                 policy: TreePolicy = TreePolicy.fixed) -> tuple[list[int], int]:
    """The edge's rounds (:class:`specedge.algorithm.rounds.Drafter`) with the server's verification
    done in-process.

    ``stop`` makes each round's "reply is in" signal (as the edge's Event.is_set). Each round
    is given a verification wait of 3 draft forwards (what the adaptive policy plans with).
    """
    tokens = list(prompt)
    t_pool = KVPool(target, 1, 128, 128, mode, (1, 2, 4, 8, 16))
    d_pool = KVPool(draft, 1, 128, 128, mode, (1, 2, 4, 8, 16))
    t_row = t_pool.acquire()
    drafter = Drafter(d_pool, d_pool.acquire(), shape, pcfg, policy)
    hits = 0
    while len(tokens) - len(prompt) < max_new:
        t0 = time.perf_counter()
        d = drafter.draft(tokens[drafter.row.length:-1], tokens[-1])
        draft_s = time.perf_counter() - t0
        assert len(d.tree) - 1 <= max(shape.max_budget, pcfg.max_budget)
        assert max(d.tree.depths) <= shape.max_beam_len + pcfg.max_beam_len
        guess = drafter.draft_proactively(d, stop() if stop else None)
        (verdict,) = verify_trees(t_pool, [t_row], [tokens[t_row.length:-1]], [d.tree],
                                  Chooser())
        hits += drafter.commit(d, verdict, guess)
        drafter.observe(draft_s, 3 * draft_s / max(d.forwards, 1))
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


# ------------------------------------------------------------------ the speculation cache

def _context_dists_match(draft: PreTrainedModel, tokens: list[int], d: Draft) -> int:
    """Every remembered next-token distribution of ``d`` (a tree rooted at ``tokens[-1]``)
    equals the draft's own on the full context: its KV columns were the right ones."""
    for node, (toks, lps) in d.dists.items():
        path = [d.tree.tokens[a] for a in d.tree.path_to(node)]
        with torch.inference_mode():
            logits = draft(input_ids=torch.tensor([tokens[:-1] + path])).logits[0, -1]
        fresh = torch.log_softmax(logits.float(), -1)
        assert fresh.argmax().item() == toks[0], (node, d.tree.snapshot())
        assert torch.allclose(fresh[toks], torch.tensor(lps, dtype=fresh.dtype), atol=1e-4)
    return len(d.dists)


def test_cache_hits_at_inner_nodes_and_adopts_the_right_kv(micro_pair: Path) -> None:
    """Sampled verification often stops short of a leaf: the cache guesses those outcomes
    too, and a sub-tree adopted from an inner node has the right KV (the draft's next-token
    distributions through it equal the draft's own on the full context)."""
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"))
    pcfg = ProactiveConfig(type=ProactiveType.cache, max_n_beams=3, max_beam_len=3,
                           max_branch_width=2, max_budget=8, max_guesses=8)
    shape = TreeShape(4, 4, 2, 10)
    t_pool = KVPool(target, 1, 160, 160, CompileMode.eager, (1, 2, 4, 8, 16, 32))
    d_pool = KVPool(target, 1, 160, 160, CompileMode.eager, (1, 2, 4, 8, 16, 32))
    tokens, t_row = tok("KING. What say you, lords?")["input_ids"], t_pool.acquire()
    drafter = Drafter(d_pool, d_pool.acquire(), shape, pcfg)
    choose = Chooser(1.0, 1.0, seed=3)
    inner_hits = checked = 0
    while len(tokens) < 140:
        d = drafter.draft(tokens[drafter.row.length:-1], tokens[-1])
        if drafter.stats.hit_rank >= 0:  # this tree grew from an adopted sub-tree
            checked += _context_dists_match(target, tokens, d)
        guesses = drafter.draft_proactively(d)
        assert [g.probability for g in guesses] == sorted(
            (g.probability for g in guesses), reverse=True)
        (verdict,) = verify_trees(t_pool, [t_row], [tokens[t_row.length:-1]], [d.tree], choose,
                                  [0])
        if drafter.commit(d, verdict, guesses):
            inner_hits += bool(d.tree.children(verdict.path[-1]))
        tokens += verdict.new_tokens(d.tree)
    assert inner_hits >= 2 and checked >= 4, (inner_hits, checked)


shapes = st.builds(TreeShape, max_n_beams=st.integers(1, 6), max_beam_len=st.integers(1, 5),
                   max_branch_width=st.integers(1, 3), max_budget=st.integers(1, 16))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=shapes, sub=shapes, guesses=st.integers(1, 10),
       policy=st.sampled_from(list(TreePolicy)), prompt=st.sampled_from(
           ["KING. What say you, lords?", "O", "Of Man's first disobedience"]))
def test_cache_and_adaptive_trees_stay_exact(micro_pair: Path, shape: TreeShape,
                                            sub: TreeShape, guesses: int,
                                            policy: TreePolicy, prompt: str) -> None:
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"))
    draft = load_model(str(micro_pair / "draft"))
    if shape.max_n_beams > shape.max_budget + 1 or sub.max_n_beams > sub.max_budget + 1:
        return  # not a valid shape (the config refuses it)
    pcfg = ProactiveConfig(ProactiveType.cache, sub.max_n_beams, sub.max_beam_len,
                           sub.max_branch_width, sub.max_budget, guesses)
    ids = tok(prompt)["input_ids"]
    out, _ = _edge_rounds(target, draft, ids, shape, pcfg, 24, policy=policy)
    assert out == greedy_reference(target, ids, 24)


def test_outcome_estimates_are_calibrated_when_the_draft_samples_like_the_target(
        micro_pair: Path) -> None:
    """The target drafting for itself, sampled at temperature 1: the outcome model's
    probabilities are then the true ones, so over a recorded run the guessed outcomes'
    summed probability matches how often a guess hit (within 4 standard deviations)."""
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"))
    pcfg = ProactiveConfig(type=ProactiveType.cache, max_n_beams=2, max_beam_len=1,
                           max_branch_width=2, max_budget=4, max_guesses=4)
    shape = TreeShape(3, 3, 2, 6)
    choose = Chooser(1.0, 1.0, seed=7)
    expected = variance = 0.0
    hits = rounds = 0
    for key, text in enumerate(("KING. What say you, lords?", "O", "Enter HAMLET",
                                "Now is the winter")):
        t_pool = KVPool(target, 1, 160, 160, CompileMode.eager, (1, 2, 4, 8, 16))
        d_pool = KVPool(target, 1, 160, 160, CompileMode.eager, (1, 2, 4, 8, 16))
        tokens = tok(text)["input_ids"]
        t_row, drafter = t_pool.acquire(), Drafter(d_pool, d_pool.acquire(), shape, pcfg)
        while len(tokens) < 120:
            d = drafter.draft(tokens[drafter.row.length:-1], tokens[-1])
            guesses = drafter.draft_proactively(d)
            (verdict,) = verify_trees(t_pool, [t_row], [tokens[t_row.length:-1]], [d.tree],
                                      choose, [key])
            hits += drafter.commit(d, verdict, guesses)
            p = drafter.stats.guessed_p
            expected, variance, rounds = expected + p, variance + p * (1 - p), rounds + 1
            tokens += verdict.new_tokens(d.tree)
    assert rounds >= 60
    assert abs(hits - expected) <= 4 * variance ** 0.5 + 1, (hits, expected, rounds)
