"""The CUDA graphs path on a real GPU (skipped where there is none; run by
workflow/scripts/gpu_check.sh on a lent GPU): the same tokens as eager, every bucket captured
at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from specedge.algorithm.drafting import TreeShape, commit_draft, draft_tree, resume_draft
from specedge.algorithm.proactive import adopt, draft_proactively, hit_of
from specedge.algorithm.sequence import Sequence
from specedge.algorithm.verification import Chooser, verify_trees
from specedge.base.config.edge import ProactiveConfig, ProactiveType
from specedge.base.config.model import CompileMode
from specedge.engine.datasets import Request
from specedge.engine.kv_pool import KVPool
from specedge.engine.models import load_model, load_tokenizer
from specedge.serving.baselines import serve

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
PROMPTS = ["KING. What say you, lords?", "Enter HAMLET", "O", "Of Man's first disobedience"]


def _serve(micro_pair: Path, mode: CompileMode, speculate: bool) -> tuple[list[list[int]],
                                                                          KVPool]:
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"), "fp32", "cuda:0")
    draft = load_model(str(micro_pair / "draft"), "fp32", "cuda:0")
    t_pool = KVPool(target, 3, 256, 128, mode)
    d_pool = KVPool(draft, 3, 256, 128, mode)
    if mode == CompileMode.graphs:  # as pool_for does: every bucket before the first request
        for pool in (t_pool, d_pool):
            assert pool.capture_all().graphs == len(pool.planner.buckets())
    seqs = [Sequence(request=Request(i, "t", p), prompt_ids=tok(p)["input_ids"],
                     max_new_tokens=40, eos_token_id=None) for i, p in enumerate(PROMPTS)]
    serve(baseline="server_only" if speculate else "auto_batch", sequences=seqs, capacity=3,
          target=t_pool, draft=d_pool if speculate else None,
          shape=TreeShape(4, 4, 3, 16) if speculate else None, choose=Chooser())
    return [s.generated for s in seqs], t_pool


@pytest.mark.parametrize("speculate", [True, False])
def test_graphs_give_eager_tokens_and_capture_once_per_bucket(micro_pair: Path,
                                                              speculate: bool) -> None:
    eager, _ = _serve(micro_pair, CompileMode.eager, speculate)
    graphs, pool = _serve(micro_pair, CompileMode.graphs, speculate)
    assert graphs == eager
    assert pool.graphs.late == 0 and pool.shapes <= set(pool.planner.buckets())


def test_proactive_drafting_on_graphs(micro_pair: Path) -> None:
    tok = load_tokenizer(str(micro_pair / "target"))
    target = load_model(str(micro_pair / "target"), "fp32", "cuda:0")
    pools = {m: (KVPool(target, 1, 256, 128, m), KVPool(target, 1, 256, 128, m))
             for m in (CompileMode.eager, CompileMode.graphs)}
    pcfg = ProactiveConfig(type=ProactiveType.excluded, max_n_beams=2, max_beam_len=3,
                           max_branch_width=2, max_budget=6)
    outs, hits = {}, {}
    for mode, (t_pool, d_pool) in pools.items():
        tokens = tok(PROMPTS[0])["input_ids"]
        t_row, d_row = t_pool.acquire(), d_pool.acquire()
        adopted, hits[mode] = None, 0
        for _ in range(10):
            shape = TreeShape(1, 3, 1, 3)
            d = (resume_draft(d_pool, adopted, shape, 3) if adopted is not None else
                 draft_tree(d_pool, d_row, tokens[d_row.length:-1], tokens[-1], shape))
            guesses = draft_proactively(d_pool, d, pcfg)
            (verdict,) = verify_trees(t_pool, [t_row], [tokens[t_row.length:-1]], [d.tree],
                                      Chooser())
            adopted = None
            if (rank := hit_of(guesses, verdict)) is not None:
                hits[mode] += 1
                adopted = adopt(d_pool, d, verdict, guesses[rank])
            else:
                commit_draft(d_pool, d, verdict.path)
            tokens = tokens + verdict.new_tokens(d.tree)
        outs[mode] = tokens
    assert outs[CompileMode.graphs] == outs[CompileMode.eager]
    assert hits[CompileMode.graphs] == hits[CompileMode.eager] > 0
