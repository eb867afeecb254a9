"""Sampling stays lossless: speculative output follows the target's own distribution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from specedge.baselines import serve
from specedge.config import CompileMode
from specedge.datasets import Request
from specedge.drafting import TreeShape
from specedge.kv_cache import KVPool
from specedge.models import load_model, load_tokenizer
from specedge.sequence import Sequence
from specedge.verification import Chooser, top_p_filter


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


def test_speculative_sampling_matches_target_distribution(micro_pair: Path) -> None:
    """Chi-square on the first two sampled tokens: (t1, t2) ~ p(t1) p(t2 | t1)."""
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"), "fp32", "cpu")
    draft = load_model(str(micro_pair / "draft"), "fp32", "cpu")
    temperature, top_p, n = 0.6, 0.8, 2000
    prompt = tok("Enter HAMLET")["input_ids"]

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

    seqs = [Sequence(request=Request(i, "test", "Enter HAMLET"), prompt_ids=prompt,
                     max_new_tokens=2, eos_token_id=None) for i in range(n)]
    chooser = Chooser(temperature=temperature, top_p=top_p,
                      generator=torch.Generator().manual_seed(1234))
    # The static forward path (bucketed, padded batches of 64) must sample like the target.
    serve(baseline="server_only", sequences=seqs, capacity=64,
          target=KVPool(target, 64, 64, 32, CompileMode.static),
          draft=KVPool(draft, 64, 64, 32, CompileMode.static),
          shape=TreeShape(4, 3, 3, 8), choose=chooser)
    observed: dict[tuple[int, int], int] = {}
    for s in seqs:
        key = (s.generated[0], s.generated[1])
        assert key in expected, f"sampled {key}, which the target's top-p set excludes"
        observed[key] = observed.get(key, 0) + 1

    # Cells with enough expected mass, the rest pooled, as chi-square needs.
    big = sorted(k for k, v in expected.items() if v * n >= 10)
    assert len(big) >= 5
    obs = [observed.get(k, 0) for k in big] + [n - sum(observed.get(k, 0) for k in big)]
    exp = [expected[k] * n for k in big] + [n * (1 - sum(expected[k] for k in big))]
    result = chisquare(obs, exp)
    assert result.pvalue > 0.001, (result, list(zip(obs, exp, strict=True)))
