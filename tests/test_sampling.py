"""Sampling stays lossless: speculative output follows the target's own distribution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare
from transformers import PreTrainedModel

from specedge.algorithm.drafting import TreeShape
from specedge.algorithm.goodput import OnlineStepCost, StepTable
from specedge.algorithm.rounds import Drafter
from specedge.algorithm.sequence import Sequence
from specedge.algorithm.verification import (
    Chooser,
    inverse_cdf,
    position_uniform,
    top_p_filter,
    verify_trees,
)
from specedge.base.config.edge import ProactiveConfig, ProactiveType
from specedge.base.config.model import CompileMode
from specedge.base.records import JsonlWriter
from specedge.engine.datasets import Request
from specedge.engine.kv_pool import KVPool
from specedge.engine.models import load_model, load_tokenizer
from specedge.serving.baselines import serve


def _kept(probs: list[float], p: float) -> list[int]:
    logits = torch.tensor(probs).log()
    return (top_p_filter(logits, p) > float("-inf")).nonzero().flatten().tolist()


@pytest.mark.parametrize(("p", "kept"), [(0.5, [0]), (0.7, [0, 1]), (0.8, [0, 1]),
                                          (0.81, [0, 1, 2]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_most_likely_tokens(p: float, kept: list[int]) -> None:
    assert _kept([0.5, 0.3, 0.15, 0.05], p) == kept
    # order of the vocabulary must not matter
    assert sorted(3 - i for i in _kept([0.05, 0.15, 0.3, 0.5], p)) == kept


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=2, max_size=30), st.floats(0.05, 0.99))
def test_top_p_is_the_smallest_sufficient_set(weights: list[float], p: float) -> None:
    probs = torch.tensor(weights) / sum(weights)
    kept = (top_p_filter(probs.log(), p) > float("-inf")).nonzero().flatten()
    mass = probs[kept].sum().item()
    assert mass >= p - 1e-6  # enough mass
    dropped = probs[~torch.isin(torch.arange(len(probs)), kept)].tolist()
    assert probs[kept].min().item() >= max(dropped, default=0.0) - 1e-9  # the most likely ones
    assert mass - probs[kept].min().item() < p + 1e-6  # and no token more than needed


def test_a_keyed_sample_is_the_inverse_cdf_at_its_positions_uniform() -> None:
    """Each token is chosen in proportion to its probability as the uniform sweeps [0, 1), a
    token of probability 0 never; the uniform depends on (seed, request, position) alone."""
    probs = torch.tensor([[0.0, 0.25, 0.0, 0.75]]).expand(1000, 4)
    grid = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
    chosen = inverse_cdf(probs.double(), grid)
    assert set(chosen.tolist()) == {1, 3} and (chosen == 1).sum().item() == 250
    draws = [position_uniform(7, 3, p) for p in range(2000)]
    assert all(0.0 <= u < 1.0 for u in draws) and len(set(draws)) == 2000
    assert abs(sum(draws) / len(draws) - 0.5) < 0.03
    assert draws[5] == position_uniform(7, 3, 5) != position_uniform(8, 3, 5)
    assert position_uniform(7, 3, 5) != position_uniform(7, 4, 5)
    with pytest.raises(ValueError, match="needs its request's key and one position per row"):
        Chooser(1.0)(torch.zeros(2, 4), key=0, positions=[1])


def _two_token_distribution(target: PreTrainedModel, prompt: list[int], temperature: float,
                            top_p: float) -> dict[tuple[int, int], float]:
    """The target's own law of its first two sampled tokens: p(t1) p(t2 | t1)."""
    def dist(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            logits = target(torch.tensor([ids])).logits[0, -1] / temperature
        return top_p_filter(logits, top_p).softmax(-1)

    p1 = dist(prompt)
    expected: dict[tuple[int, int], float] = {}
    for t1 in p1.nonzero().flatten().tolist():
        p2 = dist([*prompt, t1])
        for t2 in p2.nonzero().flatten().tolist():
            expected[(t1, t2)] = p1[t1].item() * p2[t2].item()
    return expected


def _chi_square(samples: list[tuple[int, int]], expected: dict[tuple[int, int], float]) -> None:
    """Cells with enough expected mass, the rest pooled, as chi-square needs."""
    n = len(samples)
    observed: dict[tuple[int, int], int] = {}
    for key in samples:
        assert key in expected, f"sampled {key}, which the target's top-p set excludes"
        observed[key] = observed.get(key, 0) + 1
    big = sorted(k for k, v in expected.items() if v * n >= 10)
    assert len(big) >= 5
    obs = [observed.get(k, 0) for k in big] + [n - sum(observed.get(k, 0) for k in big)]
    exp = [expected[k] * n for k in big] + [n * (1 - sum(expected[k] for k in big))]
    result = chisquare(obs, exp)
    assert result.pvalue > 0.001, (result, list(zip(obs, exp, strict=True)))


def _micro_law(micro_pair: Path) -> tuple[PreTrainedModel, PreTrainedModel,
                                           dict[tuple[int, int], float], list[Sequence]]:
    """The micro pair, the target's law of its first two sampled tokens after "Enter HAMLET"
    (temperature 0.6, top-p 0.8) and 2000 requests of that prompt for two tokens."""
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"), "fp32", "cpu")
    draft = load_model(str(micro_pair / "draft"), "fp32", "cpu")
    prompt = tok("Enter HAMLET")["input_ids"]
    expected = _two_token_distribution(target, prompt, TEMPERATURE, TOP_P)
    seqs = [Sequence(request=Request(i, "test", "Enter HAMLET"), prompt_ids=prompt,
                     max_new_tokens=2, eos_token_id=None) for i in range(2000)]
    return target, draft, expected, seqs


TEMPERATURE, TOP_P = 0.6, 0.8


def test_speculative_sampling_matches_target_distribution(micro_pair: Path) -> None:
    """Chi-square on the first two sampled tokens: (t1, t2) ~ p(t1) p(t2 | t1)."""
    target, draft, expected, seqs = _micro_law(micro_pair)
    chooser = Chooser(TEMPERATURE, TOP_P, seed=1234)
    # The static forward path (bucketed, padded batches of 64) must sample like the target.
    serve(baseline="server_only", sequences=seqs, capacity=64,
          target=KVPool(target, 64, 64, 32, CompileMode.static),
          draft=KVPool(draft, 64, 64, 32, CompileMode.static),
          shape=TreeShape(4, 3, 3, 8), choose=chooser)
    _chi_square([(s.generated[0], s.generated[1]) for s in seqs], expected)


def test_sampling_under_a_goodput_budget_matches_target_distribution(
        micro_pair: Path, tmp_path: Path) -> None:
    """Server-only cutting each step's trees to the goodput budget (a cost that makes the
    budget keep some nodes and drop others): (t1, t2) still follows the target's law."""
    target, draft, expected, seqs = _micro_law(micro_pair)
    chooser = Chooser(TEMPERATURE, TOP_P, seed=4321)
    with JsonlWriter(tmp_path / "steps.jsonl") as steps:
        serve(baseline="server_only", sequences=seqs, capacity=64,
              target=KVPool(target, 64, 64, 32, CompileMode.eager),
              draft=KVPool(draft, 64, 64, 32, CompileMode.eager),
              shape=TreeShape(4, 3, 3, 8), choose=chooser, steps_out=steps,
              step_cost=OnlineStepCost(StepTable((1, 1001), (1.002, 3.002)), window=0))
    records = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert any(r["tree_size"] < r["drafted_nodes"] for r in records), "nothing was cut"
    sizes = {r["tree_size"] for r in records}
    assert len(sizes) > 2 and max(sizes) > 1, f"verified sizes {sizes}: cut to various sizes"
    _chi_square([(s.generated[0], s.generated[1]) for s in seqs], expected)


def test_sampling_through_the_speculation_cache_matches_target_distribution(
        micro_pair: Path) -> None:
    """One-node trees leave the second token to a second round about half the time, whose
    tree is often a sub-tree the speculation cache adopted: (t1, t2) must still follow the
    target's law."""
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"), "fp32", "cpu")
    temperature, top_p, n = 0.6, 0.8, 1500
    prompt = tok("Enter HAMLET")["input_ids"]
    expected = _two_token_distribution(target, prompt, temperature, top_p)
    t_pool = KVPool(target, 1, 64, 32, CompileMode.eager)
    d_pool = KVPool(target, 1, 64, 32, CompileMode.eager)
    t_row = t_pool.acquire()
    pcfg = ProactiveConfig(type=ProactiveType.cache, max_n_beams=2, max_beam_len=1,
                           max_branch_width=1, max_budget=2, max_guesses=6)
    drafter = Drafter(d_pool, d_pool.acquire(), TreeShape(1, 1, 1, 1), pcfg)
    choose = Chooser(temperature, top_p, seed=99)
    samples, adopted = [], 0
    for trial in range(n):  # each trial its own request: its own samples
        t_pool.reset(t_row)
        drafter.reset()
        tokens = list(prompt)
        while len(tokens) < len(prompt) + 2:
            adopted += drafter.from_proactive
            d = drafter.draft(tokens[drafter.row.length:-1], tokens[-1])
            guesses = drafter.draft_proactively(d)
            (verdict,) = verify_trees(t_pool, [t_row], [tokens[t_row.length:-1]], [d.tree],
                                      choose, [trial])
            drafter.commit(d, verdict, guesses)
            tokens += verdict.new_tokens(d.tree)
        samples.append((tokens[len(prompt)], tokens[len(prompt) + 1]))
    assert adopted >= n // 10, adopted
    _chi_square(samples, expected)
