"""Lossless speculative decoding: exact equality with the target's own greedy decode."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from specedge.algorithm.drafting import TreeShape, draft_tree, draft_trees
from specedge.algorithm.goodput import OnlineStepCost, StepTable
from specedge.algorithm.sequence import Sequence
from specedge.algorithm.verification import Chooser, greedy_reference
from specedge.base.config.model import CompileMode
from specedge.base.records import STEPS_FILE, JsonlWriter
from specedge.engine.datasets import Request
from specedge.engine.kv_pool import KVPool
from specedge.engine.models import load_model, load_tokenizer
from specedge.engine.runners import timed
from specedge.serving.baselines import serve
from specedge.training.decoding import decode

PROMPTS = [
    "KING. What say you, lords?",
    "Enter HAMLET",
    "O",
    "Of Man's first disobedience, and the fruit\nOf that forbidden tree",
    "<|user|>\nWho is there?\n<|assistant|>\n",
    "Now is the winter of our discontent",
]
MAX_NEW = 24


class Pair(NamedTuple):
    tok: PreTrainedTokenizerBase
    target: PreTrainedModel
    draft: PreTrainedModel
    reference: Callable[[int], tuple[int, ...]]  # the target's own greedy continuation

    def pools(self, mode: CompileMode, rows: int = 1,
              draft: PreTrainedModel | None = None) -> tuple[KVPool, KVPool]:
        """Target and draft pools on one forward path; small buckets, so trees and prompts
        cross bucket edges (padding, chunked prefill)."""
        return (KVPool(self.target, rows, 128, 64, mode, BUCKETS),
                KVPool(draft or self.draft, rows, 128, 64, mode, BUCKETS))


BUCKETS = (1, 2, 4, 8, 16, 32)
MODES = [CompileMode.eager, CompileMode.static]


@pytest.fixture(scope="module")
def pair(micro_pair: Path) -> Pair:
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"), "fp32", "cpu")
    draft = load_model(str(micro_pair / "draft"), "fp32", "cpu")

    @cache
    def reference(i: int, max_new: int = MAX_NEW) -> tuple[int, ...]:
        return tuple(greedy_reference(target, tok(PROMPTS[i])["input_ids"], max_new,
                                      tok.pad_token_id))

    return Pair(tok, target, draft, reference)


def _seqs(tok: PreTrainedTokenizerBase, indices: list[int], max_new: int = MAX_NEW,
          eos: int | None = None) -> list[Sequence]:
    return [Sequence(request=Request(index=i, category="test", prompt=PROMPTS[i]),
                     prompt_ids=tok(PROMPTS[i])["input_ids"], max_new_tokens=max_new,
                     eos_token_id=tok.eos_token_id if eos is None else eos) for i in indices]


FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # the module-scoped pair is read-only
shapes = st.builds(TreeShape, max_n_beams=st.integers(1, 8), max_beam_len=st.integers(1, 6),
                   max_branch_width=st.integers(1, 4), max_budget=st.integers(1, 24))


@settings(max_examples=16, deadline=None, suppress_health_check=FIXTURE_OK)
@given(shape=shapes, prompt=st.integers(0, len(PROMPTS) - 1), mode=st.sampled_from(MODES))
def test_server_only_equals_target_greedy(pair: Pair, shape: TreeShape, prompt: int,
                                          mode: CompileMode) -> None:
    tok, _, _, reference = pair
    seq = _seqs(tok, [prompt])[0]
    target, draft = pair.pools(mode)
    serve(baseline="server_only", sequences=[seq], capacity=1, target=target, draft=draft,
          shape=shape, choose=Chooser())
    assert tuple(seq.generated) == reference(prompt)


@settings(max_examples=8, deadline=None, suppress_health_check=FIXTURE_OK)
@given(shape=shapes, capacity=st.integers(2, 4), mode=st.sampled_from(MODES))
def test_batched_equals_unbatched(pair: Pair, shape: TreeShape, capacity: int,
                                  mode: CompileMode) -> None:
    """Batches of 2-4 requests (static: padded to 2 or 4 rows) whose trees and catch-up
    tokens differ in size, refilled as requests finish."""
    tok, _, _, reference = pair
    seqs = _seqs(tok, list(range(len(PROMPTS))))
    target, draft = pair.pools(mode, rows=capacity)
    serve(baseline="server_only", sequences=seqs, capacity=capacity, target=target, draft=draft,
          shape=shape, choose=Chooser())
    assert [tuple(s.generated) for s in seqs] == [reference(i) for i in range(len(PROMPTS))]


@settings(max_examples=8, deadline=None, suppress_health_check=FIXTURE_OK)
@given(shape=shapes, capacity=st.integers(1, 4), mode=st.sampled_from(MODES),
       slope=st.sampled_from([0.0, 0.02, 0.2, 5.0]))
def test_a_goodput_budget_verifies_fewer_nodes_and_changes_no_token(
        pair: Pair, shape: TreeShape, capacity: int, mode: CompileMode, slope: float,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Server-only verifying only its budget's nodes, under step costs from free (every node
    kept) to steep (plain decoding): still the target's greedy text."""
    tok, _, _, reference = pair
    seqs = _seqs(tok, list(range(len(PROMPTS))))
    target, draft = pair.pools(mode, rows=capacity)
    path = tmp_path_factory.mktemp("budget") / STEPS_FILE
    with JsonlWriter(path) as out:
        serve(baseline="server_only", sequences=seqs, capacity=capacity, target=target,
              draft=draft, shape=shape, choose=Chooser(), steps_out=out,
              step_cost=OnlineStepCost(StepTable((1, 2), (1.0, 1.0 + slope)), window=0))
    assert [tuple(s.generated) for s in seqs] == [reference(i) for i in range(len(PROMPTS))]
    steps = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(r["accepted"] < r["tree_size"] <= r["drafted_nodes"] for r in steps)
    if slope == 0.0:  # verifying is free: every node the draft saw any chance in is kept
        assert sum(r["tree_size"] for r in steps) > len(steps)
    if slope == 5.0:  # each node costs five steps: plain decoding
        assert all(r["tree_size"] == 1 for r in steps)


@pytest.mark.parametrize("mode", MODES)
def test_auto_batch_equals_per_request_greedy(pair: Pair, mode: CompileMode) -> None:
    tok, _, _, reference = pair
    seqs = _seqs(tok, list(range(len(PROMPTS))))
    target, _ = pair.pools(mode, rows=3)
    result = serve(baseline="auto_batch", sequences=seqs, capacity=3, target=target, draft=None,
                   shape=None, choose=Chooser())
    assert [tuple(s.generated) for s in seqs] == [reference(i) for i in range(len(PROMPTS))]
    assert result.steps >= MAX_NEW  # one token per request per step


def test_model_buildings_decoder_is_the_targets_greedy_decode_with_its_top_k(
        pair: Pair) -> None:
    """Distillation's targets and the agreement measure come from the serving loop's own
    auto-batch decoding: each reply is the target's greedy decode (ending after EOS), and the
    top-k kept at each position ranks the chosen token first."""
    tok, target, _, reference = pair
    prompts = [tok(PROMPTS[i])["input_ids"] for i in range(len(PROMPTS))]
    eos = reference(2)[3]  # an EOS that some replies meet early
    examples = decode(target, prompts, MAX_NEW, eos, top_k=3)
    for i, ex in enumerate(examples):
        ref = reference(i)
        assert ex.prompt == prompts[i]
        assert tuple(ex.reply) == (ref[: ref.index(eos) + 1] if eos in ref else ref)
        assert ex.top_ids.shape == ex.top_logp.shape == (len(ex.reply), 3)
        assert ex.top_ids[:, 0].tolist() == ex.reply
        assert bool((ex.top_logp[:, :-1] >= ex.top_logp[:, 1:]).all())
    assert any(len(ex.reply) < MAX_NEW for ex in examples)


def test_eos_and_length_end_where_plain_decoding_does(pair: Pair) -> None:
    tok, _, _, reference = pair
    target, draft = pair.pools(CompileMode.eager)
    ref = reference(0)
    eos = ref[5]  # pretend the 6th greedy token is EOS: decoding must stop right after it
    seq = _seqs(tok, [0], eos=eos)[0]
    serve(baseline="server_only", sequences=[seq], capacity=1, target=target, draft=draft,
          shape=TreeShape(4, 6, 3, 16), choose=Chooser())
    assert tuple(seq.generated) == ref[: ref.index(eos) + 1]
    short = _seqs(tok, [1], max_new=7)[0]
    serve(baseline="server_only", sequences=[short], capacity=1, target=target, draft=draft,
          shape=TreeShape(4, 6, 3, 16), choose=Chooser())
    assert tuple(short.generated) == reference(1)[:7]


def test_speculation_accepts_more_than_one_token_per_forward(pair: Pair) -> None:
    tok, _, _, reference = pair
    # The target drafting for itself must have its greedy chain accepted whole.
    seq = _seqs(tok, [3])[0]
    target, draft = pair.pools(CompileMode.static, draft=pair.target)
    result = serve(baseline="server_only", sequences=[seq], capacity=1, target=target,
                   draft=draft, shape=TreeShape(1, 5, 1, 5), choose=Chooser())
    assert tuple(seq.generated) == reference(3)
    assert result.steps == -(-MAX_NEW // 6)


@settings(max_examples=8, deadline=None, suppress_health_check=FIXTURE_OK)
@given(tree_shapes=st.lists(shapes, min_size=2, max_size=4), mode=st.sampled_from(MODES))
def test_batched_drafting_grows_the_trees_drafted_alone(pair: Pair, tree_shapes: list[TreeShape],
                                                        mode: CompileMode) -> None:
    """Server-only drafts its batch together, one draft forward per level: each request's
    tree (tokens, structure, scores, forwards) is the one it gets drafted alone, whatever the
    batch and each request's shape."""
    tok = pair.tok
    # within one bucket: a longer catch-up would add a prefill forward of its own
    prompts = [tok(PROMPTS[i])["input_ids"][: BUCKETS[-1]] for i in range(len(tree_shapes))]
    _, alone_pool = pair.pools(mode)
    alone = []
    for ids, shape in zip(prompts, tree_shapes, strict=True):
        row = alone_pool.acquire()
        alone.append(draft_tree(alone_pool, row, ids[:-1], ids[-1], shape))
        alone_pool.release(row)
    _, pool = pair.pools(mode, rows=len(tree_shapes))
    with timed(pool) as timer:
        together = draft_trees(pool, [pool.acquire() for _ in tree_shapes],
                               [ids[:-1] for ids in prompts], [ids[-1] for ids in prompts],
                               tree_shapes)
    for a, b in zip(alone, together, strict=True):
        assert (b.tree.tokens, b.tree.parents, b.forwards) == (a.tree.tokens, a.tree.parents,
                                                                a.forwards)
        assert b.tree.scores == pytest.approx(a.tree.scores, abs=1e-5)
    assert timer.calls == max(d.forwards for d in alone)  # one forward per level for all


def test_server_only_drafts_each_step_in_one_forward_per_level(pair: Pair,
                                                               tmp_path: Path) -> None:
    """Every step's draft forwards are its deepest tree's, not the sum over its requests."""
    tok, _, _, reference = pair
    seqs = _seqs(tok, list(range(len(PROMPTS))))
    target, draft = pair.pools(CompileMode.eager, rows=3)
    with JsonlWriter(tmp_path / STEPS_FILE) as out, timed(draft) as timer:
        serve(baseline="server_only", sequences=seqs, capacity=3, target=target, draft=draft,
              shape=TreeShape(4, 4, 3, 12), choose=Chooser(), steps_out=out)
    assert [tuple(s.generated) for s in seqs] == [reference(i) for i in range(len(PROMPTS))]
    steps: dict[int, list[dict]] = {}
    for line in (tmp_path / STEPS_FILE).read_text().splitlines():
        rec = json.loads(line)
        steps.setdefault(rec["step"], []).append(rec)
    assert timer.calls == sum(max(r["draft_forwards"] for r in recs) for recs in steps.values())
    assert timer.calls < sum(r["draft_forwards"] for recs in steps.values() for r in recs)
    # every request of a step waited for the batch's drafting: one time on each record
    assert all(len({r["draft_s"] for r in recs}) == 1 for recs in steps.values())
