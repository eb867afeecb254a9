"""How a plan runs on the model: :class:`ModelRunner` (``eager`` and ``static``: the plan as it
is), :class:`GraphRunner` (``graphs``: each bucket captured once as a CUDA graph, then
replayed), and :class:`TimedRunner`, which wraps either to count and time forwards. All of them
are ``run(plan) -> logits``."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from transformers import PreTrainedModel

from specedge.engine.attention import (
    GQA_ATTENTION,
    PoolView,
    attention_implementation,
    cache_argument,
    register_gqa,
)
from specedge.engine.query_plan import Plan, pow2_at_least, unpacked

log = logging.getLogger(__name__)

Capture = Callable[[Callable[[], torch.Tensor]], tuple[Callable[[], None], torch.Tensor]]


class Runner(Protocol):
    def run(self, plan: Plan) -> torch.Tensor:
        """Logits ``[B, N, vocab]`` of ``plan`` on the device."""
        ...


class ModelRunner:
    """The plan's forward, at the plan's shape. With ``gqa`` (CUDA, grouped-query models)
    its forwards use :func:`~specedge.engine.attention.gqa_attention`, and only its own."""

    def __init__(self, model: PreTrainedModel, keys: torch.Tensor, values: torch.Tensor,
                 gqa: bool = False) -> None:
        self.model, self.keys, self.values, self.gqa = model, keys, values, gqa
        # Read once: the model's .device/.dtype walk its modules on every access.
        self.device, self.dtype = keys.device, keys.dtype
        self._min = torch.finfo(self.dtype).min
        self._cache_arg = cache_argument(model)
        self._columns = torch.arange(keys.shape[3], device=self.device)
        if gqa:
            register_gqa()

    def run(self, plan: Plan) -> torch.Tensor:
        single = int(plan.read_rows[0]) if len(plan.read_rows) == 1 else None
        return self.step(unpacked(*self.to_device(plan)), plan.kv_len, single)

    def to_device(self, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed integers and the block, on the device."""
        return (torch.from_numpy(plan.packed()).to(self.device),
                torch.from_numpy(plan.block).to(self.device))

    def step(self, t: dict[str, torch.Tensor], kv_len: int, single: int | None) -> torch.Tensor:
        """``single``: the one row read (a view of the pool, no gather), known on the host."""
        read: torch.Tensor | int = t["read_rows"] if single is None else single
        view = PoolView(self.keys, self.values, t["write_rows"], t["write_cols"], read, kv_len)
        attention = (attention_implementation(self.model, GQA_ATTENTION) if self.gqa
                     else contextlib.nullcontext())
        with attention:
            out = self.model(input_ids=t["input_ids"], position_ids=t["position_ids"],
                             attention_mask=self.mask(t["lengths"], t["block"], kv_len),
                             use_cache=True, **{self._cache_arg: view})
        return out.logits

    def mask(self, lengths: torch.Tensor, block: torch.Tensor, kv_len: int) -> torch.Tensor:
        """``[B, 1, N, kv_len]`` additive mask: the committed prefix, plus the block's columns."""
        batch, n_new, width = block.shape
        offset = self._columns[:kv_len].unsqueeze(0) - lengths.unsqueeze(1)  # [B, C]
        in_work = (offset >= 0) & (offset < width)
        index = offset.clamp(0, width - 1).unsqueeze(1).expand(batch, n_new, kv_len)
        allowed = (offset < 0).unsqueeze(1) | (in_work.unsqueeze(1) & block.gather(2, index))
        mask = torch.zeros((batch, 1, n_new, kv_len), dtype=self.dtype, device=self.device)
        return mask.masked_fill_(~allowed.unsqueeze(1), self._min)


@dataclass
class _Graph:
    replay: Callable[[], None]
    ints: torch.Tensor  # the buffers the graph reads (a packed plan)
    block: torch.Tensor
    logits: torch.Tensor  # the buffer it writes
    staging: tuple[torch.Tensor, torch.Tensor] | None = None  # pinned host copies (CUDA)
    copied: object = None  # a CUDA event: the last copy out of the staging buffers is done


@dataclass(frozen=True)
class Captured:
    """What capturing a pool's buckets at start-up took."""

    graphs: int
    seconds: float
    memory_bytes: int  # device memory reserved by the graphs, their buffers and the logits


@dataclass
class GraphRunner:
    """Each static shape's forward captured once, over input buffers it keeps; later
    forwards of the shape copy their inputs in and replay."""

    direct: ModelRunner
    max_plan: tuple[int, int]  # (batch, new tokens) of the largest shape: the logits' buffer
    one_row: bool  # a pool of one row: every graph reads row 0 as a view (no gather)
    capture: Capture | None = None  # how a shape is captured (None: a CUDA graph; tests)
    captures: int = field(init=False, default=0)
    late: int = field(init=False, default=0)  # captured inside a forward after capture_all
    started: bool = field(init=False, default=False)  # capture_all ran
    graphs: dict[tuple[int, int, int, int], _Graph] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._memory: object = None  # this runner's CUDA graph memory
        self._logits: torch.Tensor | None = None  # every graph's output, flat

    @property
    def device(self) -> torch.device:
        return self.direct.device

    def run(self, plan: Plan) -> torch.Tensor:
        with self._on_device():
            return self._replay(plan)

    def capture_all(self, plans: Iterable[Plan]) -> Captured:
        """Capture every shape of ``plans`` (padding) now, before any request: a served round
        then only replays."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
        before = torch.cuda.memory_reserved(self.device) if cuda else 0
        t0, n0 = time.perf_counter(), self.captures
        with torch.inference_mode(), self._on_device():
            for plan in plans:
                if plan.key not in self.graphs:
                    self._capture(plan)
        if cuda:
            torch.cuda.synchronize(self.device)
        self.started = True
        memory = torch.cuda.memory_reserved(self.device) - before if cuda else 0
        return Captured(self.captures - n0, time.perf_counter() - t0, memory)

    def _on_device(self) -> contextlib.AbstractContextManager[object]:
        """The model's own CUDA device as the current one: streams, events, graph memory
        and captures all belong to the current device, which need not be the model's (a
        model on cuda:1 in a process whose current device is cuda:0)."""
        if self.device.type == "cuda":
            return torch.cuda.device(self.device)
        return contextlib.nullcontext()

    def _replay(self, plan: Plan) -> torch.Tensor:
        graph = self.graphs.get(plan.key)
        if graph is None:
            if self.started:  # a shape the buckets missed: correct, but captured mid-run
                self.late += 1
                log.warning("captured bucket %s inside a forward (not among the %d captured "
                            "at start-up)", plan.key, len(self.graphs))
            graph = self._capture(plan)
        elif graph.staging is None:  # a CPU stand-in (tests): plain copies
            graph.ints.copy_(torch.from_numpy(plan.packed()))
            graph.block.copy_(torch.from_numpy(plan.block))
        else:  # pinned staging, asynchronous copies; never overwrite one still in flight
            if graph.copied is not None:
                graph.copied.synchronize()  # type: ignore[attr-defined]
            ints, block = graph.staging
            ints.numpy()[:] = plan.packed()
            block.numpy()[:] = plan.block
            graph.ints.copy_(ints, non_blocking=True)
            graph.block.copy_(block, non_blocking=True)
            graph.copied = torch.cuda.Event()
            graph.copied.record()  # type: ignore[attr-defined]
        graph.replay()
        return graph.logits

    def _capture(self, plan: Plan) -> _Graph:
        """Capture the plan's shape. The buffers hold this call's real inputs, so a warm-up
        run writes the same KV values to the same columns."""
        packed, block = self.direct.to_device(plan)
        views = unpacked(packed, block)
        if self.capture is not None:
            capture = self.capture
        else:  # this runner's own graph memory: see cuda_graph
            if self._memory is None:
                self._memory = torch.cuda.graph_pool_handle()
            capture = functools.partial(cuda_graph, device=self.device, memory=self._memory)
        single = 0 if self.one_row else None
        # Every graph writes its logits into the front of one buffer, allocated outside any
        # graph's memory and sized for the largest shape: an output is only read before the
        # pool's next forward, so one buffer serves them all, and only inputs, KV and it
        # stay live between replays.
        head = self.direct.model.get_output_embeddings()  # the logits' width and dtype
        vocab = int(head.out_features)
        if self._logits is None:
            most = pow2_at_least(self.max_plan[0]) * self.max_plan[1] * vocab
            self._logits = torch.empty(most, dtype=head.weight.dtype, device=self.device)
        batch, n_new = plan.key[:2]
        out = self._logits[: batch * n_new * vocab].view(batch, n_new, vocab)

        def step() -> torch.Tensor:
            return out.copy_(self.direct.step(views, plan.kv_len, single))

        replay, logits = capture(step)
        self.captures += 1
        staging = None
        if self.device.type == "cuda":
            staging = (torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True),
                       torch.empty(block.shape, dtype=block.dtype, pin_memory=True))
        captured = _Graph(replay=replay, ints=packed, block=block, logits=logits,
                          staging=staging)
        self.graphs[plan.key] = captured
        return captured


def cuda_graph(step: Callable[[], torch.Tensor], device: torch.device,
               memory: object) -> tuple[Callable[[], None], torch.Tensor]:
    """Record ``step`` as a CUDA graph on ``device`` (after two warm-up runs on a side stream
    of that device, as capture requires), in the graph memory ``memory``; returns its replay
    (on ``device``'s current stream) and its output buffer.

    Graphs sharing ``memory`` share their intermediate and output allocations: an output is
    valid until the next replay of any graph captured in the same memory. Each
    :class:`GraphRunner` keeps its own, so a pool's logits stay valid until that pool's next
    forward (the rule :meth:`~specedge.engine.kv_pool.KVPool.forward` states)."""
    with torch.cuda.device(device):
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                step()
        torch.cuda.current_stream(device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=memory):
            out = step()

    def replay() -> None:
        with torch.cuda.device(device):
            graph.replay()

    return replay, out


class _Pool(Protocol):
    runner: Runner
    device: torch.device


class TimedRunner:
    """A pool's forwards, each synchronised, counted and timed (whoever makes them), from
    its creation until :meth:`close` gives the pool its runner back."""

    def __init__(self, pool: _Pool) -> None:
        self.pool, self.inner, self.device = pool, pool.runner, pool.device
        self.calls, self.seconds = 0, 0.0
        pool.runner = self

    def run(self, plan: Plan) -> torch.Tensor:
        t0 = time.perf_counter()
        logits = self.inner.run(plan)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        return logits

    def close(self) -> None:
        self.pool.runner = self.inner


@contextlib.contextmanager
def timed(pool: _Pool) -> Iterator[TimedRunner]:
    """``pool``'s forwards inside the block, counted and timed."""
    timer = TimedRunner(pool)
    try:
        yield timer
    finally:
        timer.close()
