"""The graphs path, checked on a CPU: what a capture needs to be valid on a GPU.

- ``cuda_graph`` does everything on the device it is given, never the process's current
  one (torch.cuda stands in for a recorder that knows which device is current);
- the captured step of the tiny Llama and Qwen3 architectures, run on the ``meta`` device
  under a dispatch-mode logger, makes no host synchronisation and touches no CPU tensor
  (either would break or invalidate a CUDA graph capture).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

from specedge.base.config.model import CompileMode
from specedge.engine.attention import GQA_ATTENTION, gqa_attention
from specedge.engine.kv_pool import KVPool
from specedge.engine.query_plan import CAPACITY_ALIGN, causal_query
from specedge.engine.runners import cuda_graph


class FakeCuda:
    """The parts of torch.cuda that cuda_graph uses, recording the device current at each
    call. A real GPU process starts with cuda:0 current."""

    def __init__(self) -> None:
        self.current = 0
        self.calls: list[tuple[str, int, Any]] = []

    @contextlib.contextmanager
    def device(self, device: torch.device | int) -> Iterator[None]:
        before = self.current
        self.current = device.index if isinstance(device, torch.device) else device
        try:
            yield
        finally:
            self.current = before

    def current_device(self) -> int:
        return self.current

    def _log(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, self.current, arg))

    def Stream(self, device: Any = None) -> Any:
        self._log("Stream", device)
        fake = self

        class _Stream:
            def wait_stream(self, other: Any) -> None:
                fake._log("wait_stream")
        return _Stream()

    def current_stream(self, device: Any = None) -> Any:
        self._log("current_stream", device)
        return self.Stream(device)

    @contextlib.contextmanager
    def stream(self, s: Any) -> Iterator[None]:
        self._log("stream")
        yield

    def CUDAGraph(self) -> Any:
        fake = self

        class _Graph:
            def replay(self) -> None:
                fake._log("replay")
        return _Graph()

    @contextlib.contextmanager
    def graph(self, g: Any, pool: Any = None) -> Iterator[None]:
        self._log("graph", pool)
        yield


def test_a_capture_and_its_replays_run_on_the_models_device(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A model on cuda:1 while cuda:0 is current: its streams, warm-ups, capture and every
    replay happen with cuda:1 current (before, the current device got them all: an empty
    graph whose replays returned stale logits)."""
    fake = FakeCuda()
    for name in ("device", "current_device", "Stream", "current_stream", "stream",
                 "CUDAGraph", "graph"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    steps: list[int] = []

    def step() -> torch.Tensor:
        steps.append(fake.current)
        return torch.zeros(1)

    memory = object()
    replay, _ = cuda_graph(step, device=torch.device("cuda", 1), memory=memory)
    replay()
    assert steps == [1, 1, 1]  # two warm-ups and the capture
    assert fake.calls and all(device == 1 for _, device, _ in fake.calls), fake.calls
    assert ("graph", 1, memory) in fake.calls  # the pool's own graph memory
    assert fake.calls[-1][:2] == ("replay", 1) and fake.current == 0


SYNCS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.item.default,
         torch.ops.aten.is_nonzero.default, torch.ops.aten.nonzero.default,
         torch.ops.aten.equal.default}


class CaptureSafety(TorchDispatchMode):
    """Fails on any operation a CUDA graph capture cannot hold: a host synchronisation
    (reading a value, a data-dependent shape) or a tensor on the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        if func in SYNCS:
            raise AssertionError(f"host synchronisation in the captured step: {func}")
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten((args, kwargs, out))[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                raise AssertionError(f"{func} touches a CPU tensor {tuple(t.shape)}")
        self.ops += 1
        return out


def _tiny(kind: str, device: str = "meta") -> torch.nn.Module:
    common = {"vocab_size": 128, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 512}
    cfg = LlamaConfig(**common) if kind == "llama" else Qwen3Config(**common, head_dim=16)
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(cfg).eval()


@pytest.mark.parametrize("attention", ["sdpa", GQA_ATTENTION])
@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_the_captured_step_makes_no_host_sync_and_no_cpu_tensor(kind: str,
                                                                attention: str) -> None:
    model = _tiny(kind)
    model.set_attn_implementation("sdpa")
    checked: list[CaptureSafety] = []

    def capture(step: Callable[[], torch.Tensor]) -> tuple[Callable[[], None], torch.Tensor]:
        with CaptureSafety() as safety:
            out = step()
        checked.append(safety)

        def replay() -> None:
            with CaptureSafety():
                step()
        return replay, out

    pool = KVPool(model, 2, 100, 20, CompileMode.graphs, (1, 4, 8), capture=capture,
                  gqa=attention == GQA_ATTENTION)
    assert pool.columns % CAPACITY_ALIGN == 0 and pool.columns >= pool.capacity == 120
    rows = [pool.acquire(), pool.acquire()]
    logits = pool.forward([causal_query(r, [1, 2, 3], 0) for r in rows])  # capture
    assert logits.device.type == "meta" and tuple(logits.shape) == (2, 4, 128)
    for r in rows:
        pool.drop_work(r)
    pool.forward([causal_query(r, [4, 5, 6], 0) for r in rows])  # same bucket: a replay
    assert pool.graphs.captures == 1 and checked and checked[0].ops > 50


def test_grouped_query_attention_without_repeating_kv_equals_sdpa() -> None:
    """The GPU path's attention (the query heads of a KV head as its extra rows) gives what
    SDPA over repeated K/V gives, with a tree mask, alone and inside a model's forward."""
    torch.manual_seed(0)
    b, heads, kv_heads, n, cols, d = 2, 8, 2, 5, 70, 16
    q, k, v = (torch.randn(b, h, length, d) for h, length in
               ((heads, n), (kv_heads, cols), (kv_heads, cols)))
    mask = torch.where(torch.rand(b, 1, n, cols) < 0.7, 0.0, torch.finfo(torch.float32).min)
    mask[..., 0] = 0.0
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1),
        attn_mask=mask).transpose(1, 2)
    got, _ = gqa_attention(torch.nn.Identity(), q, k, v, mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for kind in ("llama", "qwen3"):
        logits = {}
        for attention in ("sdpa", GQA_ATTENTION):
            model = _tiny(kind, "cpu")
            model.set_attn_implementation("sdpa")
            pool = KVPool(model, 2, 100, 20, CompileMode.static, (1, 4, 8),
                          gqa=attention == GQA_ATTENTION)
            rows = [pool.acquire(), pool.acquire()]
            logits[attention] = pool.forward([causal_query(rows[0], [1, 2, 3], 0),
                                              causal_query(rows[1], [7, 8], 0)]).clone()
        torch.testing.assert_close(logits[GQA_ATTENTION], logits["sdpa"], atol=1e-5, rtol=1e-5)
