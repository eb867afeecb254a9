"""The KV pool: device-side keep, buckets, static shapes and graph replays (on the CPU)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel

from specedge.algorithm.drafting import TreeShape, draft_tree
from specedge.algorithm.tree import TokenTree
from specedge.algorithm.verification import Chooser, tree_query, verify_trees
from specedge.base.config.model import CompileMode
from specedge.engine import attention
from specedge.engine.attention import GQA_ATTENTION, gqa_attention
from specedge.engine.kv_pool import KVPool, prefill
from specedge.engine.models import load_model, load_tokenizer
from specedge.engine.query_plan import KVCapacityError, KVRow, bucket, causal_query
from specedge.engine.runners import timed

BUCKETS = (1, 2, 4, 8, 16, 32)


@pytest.fixture(scope="module")
def models(micro_pair: Path) -> tuple[PreTrainedModel, PreTrainedModel, list[int]]:
    tok = load_tokenizer(str(micro_pair / "target"))
    prompt = tok("Of Man's first disobedience, and the fruit\nOf that forbidden tree")["input_ids"]
    return load_model(str(micro_pair / "target")), load_model(str(micro_pair / "draft")), prompt


def _reference_kv(model: PreTrainedModel, tokens: list[int]) -> list[torch.Tensor]:
    """Keys of every layer after a plain causal forward of ``tokens`` (Hugging Face's cache)."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([tokens]), use_cache=True)
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    return [layer.keys[0] for layer in cache.layers]


@pytest.mark.parametrize("mode", [CompileMode.eager, CompileMode.static])
def test_kept_kv_equals_a_plain_forward_of_the_accepted_tokens(models, mode: CompileMode) -> None:
    """After verifying a tree, the row holds exactly the KV a plain decode of the committed
    tokens has: the device-side keep moved the accepted nodes' entries, nothing else."""
    target, draft, prompt = models
    d_pool = KVPool(draft, 1, 256, 64, mode, BUCKETS)
    t_pool = KVPool(target, 2, 256, 64, mode, BUCKETS)
    d_row, other, row = d_pool.acquire(), t_pool.acquire(), t_pool.acquire()
    tokens = list(prompt)
    for _ in range(3):
        tree = draft_tree(d_pool, d_row, tokens[d_row.length : -1], tokens[-1],
                          TreeShape(3, 4, 3, 10)).tree
        # A second request in the same batch: its padding and KV must not leak into ours.
        (verdict, _) = verify_trees(t_pool, [row, other], [tokens[row.length : -1], [5, 6]],
                                    [tree, TokenTree.rooted(7)], Chooser())
        d_pool.drop_work(d_row)
        tokens += verdict.new_tokens(tree)
        t_pool.reset(other)
        assert row.length == row.used == len(tokens) - 1
    ref = _reference_kv(target, tokens[:-1])
    for layer, ref_keys in enumerate(ref):
        got = t_pool.keys[layer, row.index, :, : row.length]
        torch.testing.assert_close(got, ref_keys, atol=1e-4, rtol=1e-4)


def test_keep_then_hold_moves_a_subtree_after_the_committed_path(models) -> None:
    target, _, prompt = models
    pool = KVPool(target, 1, 128, 64, CompileMode.eager)
    row = pool.acquire()
    pool.forward([causal_query(row, prompt[:6], 0)])
    before = pool.keys[:, row.index, :, :6].clone()
    held = pool.keep_then_hold(row, [0, 2], [4, 5])
    assert (row.length, row.used, held) == (2, 4, [2, 3])
    torch.testing.assert_close(pool.keys[:, row.index, :, :4], before[:, :, [0, 2, 4, 5]])
    with pytest.raises(ValueError, match="work area"):
        pool.keep([(row, [1])])  # column 1 is committed now, not work


def test_bucket_choice() -> None:
    assert [bucket(n, BUCKETS) for n in (1, 2, 3, 5, 16, 17, 32, 33, 70)] == \
        [1, 2, 4, 8, 16, 32, 32, 64, 128]
    assert [bucket(n, (3, 10)) for n in (1, 3, 4, 10, 11)] == [3, 3, 10, 10, 16]


def test_static_shapes_are_few_and_bucketed(models) -> None:
    """A static pool's forwards take only bucketed shapes, and a long prompt is prefilled in
    chunks of the largest bucket; eager forwards keep their exact shapes."""
    target, _, prompt = models
    long = (prompt * 8)[:70]
    seen: list[tuple[int, int, int, int]] = []
    static = KVPool(target, 3, 256, 64, CompileMode.static, (1, 2, 4, 8, 16), seen.append)
    row = static.acquire()
    prefill(static, row, long)
    assert row.length == 70
    assert [s[:2] for s in seen] == [(1, 16)] * 4 + [(1, 8)]  # 16+16+16+16+6: 6 rounds up
    assert all(w in (1, 2, 4, 8, 16, 32, 64, 128) for _, _, w, _ in seen)
    # KV columns read: the row's end rounded up to a power of two >= 64, never the whole row
    assert [kv for *_, kv in seen] == [64, 64, 64, 64, 128] and static.columns == 320
    eager = KVPool(target, 1, 256, 64, CompileMode.eager)
    erow = eager.acquire()
    prefill(eager, erow, long)
    assert eager.shapes == {(1, 70, 70, 70)}
    torch.testing.assert_close(static.keys[:, row.index, :, :70],
                               eager.keys[:, erow.index, :, :70], atol=1e-4, rtol=1e-4)


def test_static_limits_fail_with_the_key_named(models) -> None:
    target, _, prompt = models
    pool = KVPool(target, 1, 32, 8, CompileMode.static, (1, 2, 4))
    row = pool.acquire()
    with pytest.raises(KVCapacityError, match=r"model\.token_buckets"):
        pool.forward([causal_query(row, prompt[:5], 0)])
    with pytest.raises(KVCapacityError, match=r"model\.max_len = 32"):
        prefill(pool, row, (prompt * 10)[:41])


class RecordedGraphs:
    """Stands in for torch.cuda.graph on a CPU: 'capturing' records the forward closure over
    the graph's static input buffers, and a replay runs it again on whatever the buffers hold
    now, so stale or unrefreshed buffers give wrong tokens here just as on a GPU."""

    def __init__(self) -> None:
        self.captured = 0

    def __call__(self, fn: Callable[[], torch.Tensor]) -> tuple[Callable[[], None], torch.Tensor]:
        self.captured += 1
        out = fn()

        def replay() -> None:
            out.copy_(fn())
        return replay, out


def _rounds_against_eager(models, t_pool: KVPool, d_pool: KVPool) -> int:
    """SpecExec rounds of two requests of different lengths on the pools, each round's
    verdicts checked against an eager pool's; returns the rounds run."""
    target, _, prompt = models
    eager = KVPool(target, 2, 256, 64, CompileMode.eager)
    rows, erows = [t_pool.acquire(), t_pool.acquire()], [eager.acquire(), eager.acquire()]
    d_rows = [d_pool.acquire(), d_pool.acquire()]
    seqs = [list(prompt), list(prompt[:9])]
    steps = 0
    while len(seqs[0]) < len(prompt) + 40:
        trees = [draft_tree(d_pool, d, s[d.length : -1], s[-1], TreeShape(3, 3, 2, 8)).tree
                 for d, s in zip(d_rows, seqs, strict=True)]
        verdicts = verify_trees(t_pool, rows, [s[r.length : -1] for r, s in zip(rows, seqs,
                                                                                  strict=True)],
                                trees, Chooser())
        expected = verify_trees(eager, erows, [s[r.length : -1] for r, s in zip(erows, seqs,
                                                                                   strict=True)],
                                trees, Chooser())
        assert verdicts == expected
        for d in d_rows:
            d_pool.drop_work(d)
        for s, t, v in zip(seqs, trees, verdicts, strict=True):
            s += v.new_tokens(t)
        steps += 1
    return steps


def test_graphs_replay_each_bucket_without_recapturing(models) -> None:
    target, draft, _ = models
    recorder = RecordedGraphs()
    t_pool = KVPool(target, 2, 256, 64, CompileMode.graphs, BUCKETS, capture=recorder)
    d_pool = KVPool(draft, 2, 256, 64, CompileMode.graphs, BUCKETS, capture=recorder)
    steps = _rounds_against_eager(models, t_pool, d_pool)
    assert steps >= 10
    # One capture per bucket ever used, however many steps ran.
    assert recorder.captured == len(t_pool.shapes) + len(d_pool.shapes)
    assert t_pool.graphs.captures == len(t_pool.shapes) < steps
    assert t_pool.graphs.late == 0  # nothing was captured at start-up: no capture is late
    # Every graph writes into the front of the pool's one logits buffer.
    graphs = t_pool.graphs.graphs
    assert len({g.logits.data_ptr() for g in graphs.values()}) == 1 < len(graphs)


def test_start_up_capture_covers_every_forward_of_a_run(models) -> None:
    """capture_all captures every bucket up front, from padding that touches no request's KV;
    a run afterwards replays only (no late capture) and gives eager's verdicts, and the
    captures left the records' counters alone."""
    target, draft, _ = models
    recorder = RecordedGraphs()
    t_pool = KVPool(target, 2, 256, 64, CompileMode.graphs, BUCKETS, capture=recorder)
    d_pool = KVPool(draft, 2, 256, 64, CompileMode.graphs, BUCKETS, capture=recorder, batch=1)
    # 2 batches x 6 token buckets x KV 64/128/256/320 columns; the draft pool batch 1 only.
    assert len(t_pool.planner.buckets()) == 48 and len(d_pool.planner.buckets()) == 24
    with timed(t_pool) as timer:
        done = [t_pool.capture_all(), d_pool.capture_all()]
    assert [d.graphs for d in done] == [48, 24] and recorder.captured == 72
    assert timer.calls == 0 and not t_pool.shapes and timer.seconds == 0
    _rounds_against_eager(models, t_pool, d_pool)
    assert t_pool.graphs.late == d_pool.graphs.late == 0 and recorder.captured == 72
    assert t_pool.shapes <= set(t_pool.planner.buckets()) and len(t_pool.shapes) > 3
    assert t_pool.capture_all().graphs == 0  # idempotent


def test_a_capture_after_start_up_is_counted_late(models, caplog) -> None:
    target, _, prompt = models
    pool = KVPool(target, 2, 256, 64, CompileMode.graphs, BUCKETS, capture=RecordedGraphs())
    pool.graphs.started = True  # as if capture_all had run and missed every bucket
    prefill(pool, pool.acquire(), prompt[:5])
    assert pool.graphs.late == 1 and "inside a forward" in caplog.text


def test_static_pools_refuse_what_their_buckets_cannot_hold(models) -> None:
    target, _, prompt = models
    pool = KVPool(target, 4, 256, 8, CompileMode.static, (1, 2, 4, 8), batch=2)
    rows = [pool.acquire() for _ in range(3)]
    with pytest.raises(KVCapacityError, match="limit of 2"):
        pool.forward([causal_query(r, prompt[:2], 0) for r in rows])
    row = rows[0]
    for _ in range(4):  # grow the work area to the pool's static width: 8 + 8, a bucket
        pool.forward([causal_query(row, prompt[:4], row.used)])
    with pytest.raises(KVCapacityError, match="static work width 16"):
        pool.forward([causal_query(row, prompt[:1], row.used)])
    with pytest.raises(ValueError, match=r"batch must lie in \[1, rows = 4\]"):
        KVPool(target, 4, 256, 8, CompileMode.static, (1, 2, 4, 8), batch=5)
    with pytest.raises(ValueError, match=r"needs model\.compile = graphs"):
        pool.capture_all()


def test_tree_query_sees_ancestors_only(models) -> None:
    target, _, prompt = models
    pool = KVPool(target, 1, 128, 64, CompileMode.static, BUCKETS)
    row = pool.acquire()
    prefill(pool, row, prompt[:-1])
    tree = TokenTree.from_wire([prompt[-1], 11, 12, 13, 14], [-1, 0, 0, 1, 2])
    logits = pool.forward([tree_query(row, [], tree)])
    for node in range(len(tree)):
        path = [tree.tokens[n] for n in tree.path_to(node)]
        with torch.no_grad():
            alone = target(torch.tensor([prompt[:-1] + path])).logits[0, -1]
        torch.testing.assert_close(logits[0, node], alone, atol=1e-4, rtol=1e-4)
    assert isinstance(row, KVRow)


def test_the_gqa_runner_switches_only_its_own_forwards(micro_pair: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool with grouped-query SDPA (the default on CUDA) runs it in its own forwards, gives
    SDPA's logits, and leaves the model's attention as it was: Hugging Face's forward and
    generate on the shared model (the benchmarks' reference) are untouched, and stay causal
    even under GQA_ATTENTION itself. On a grouped-query model (2 query heads, 1 KV head)."""
    model = load_model(str(micro_pair / "target"))
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    tok = load_tokenizer(str(micro_pair / "target"))
    ids = torch.tensor([tok("Of Man's first disobedience, and the fruit")["input_ids"]])

    @torch.no_grad()
    def outputs() -> tuple[torch.Tensor, list[int]]:
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        return logits, out[0].tolist()

    logits, tokens = outputs()
    before = model.config._attn_implementation
    ran = []

    def spy(*args: object, **kwargs: object) -> tuple[torch.Tensor, None]:
        ran.append(1)
        return gqa_attention(*args, **kwargs)

    monkeypatch.setattr(attention, "gqa_attention", spy)
    got = {}
    for gqa in (False, True):
        pool = KVPool(model, 1, 128, 32, CompileMode.eager, gqa=gqa)
        got[gqa] = pool.forward([causal_query(pool.acquire(), ids[0].tolist(), 0)]).clone()
        assert bool(ran) == gqa  # one call per layer, only in the GQA pool's forward
    torch.testing.assert_close(got[True], got[False], rtol=1e-5, atol=1e-5)
    assert model.config._attn_implementation == before
    torch.testing.assert_close(outputs()[0], logits, rtol=0, atol=0)
    with attention.attention_implementation(model, GQA_ATTENTION):
        gqa_logits, gqa_tokens = outputs()
    # every position's logits: a prefill without its causal mask changes all but the last
    torch.testing.assert_close(gqa_logits, logits, rtol=1e-5, atol=1e-5)
    assert gqa_tokens == tokens
