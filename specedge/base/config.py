"""Typed schemas for every Hydra config group, and the checks that run at start-up.

Each group under ``conf/`` extends one of these dataclasses (``defaults: [base_<group>]``), so a
misspelt key or a wrongly typed value fails while Hydra composes. Range and cross-field checks
live in ``__post_init__`` and run when :func:`to_run_config` turns the composed DictConfig into
objects, before any model is loaded: a bad value never costs a model load or a partial run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from specedge import PROJECT_ROOT
from specedge.base.records import RUN_CONFIG_FILE


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent; the message names the key."""


def _require(ok: bool, key: str, value: Any, accepted: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r} is not accepted: {accepted}")


_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def _check_device(key: str, value: str) -> None:
    _require(bool(_DEVICE_RE.match(value)), key, value, "'cpu', 'cuda' or 'cuda:N'")


def project_file(path: str) -> Path:
    """A file path as given (relative to the working directory), or else relative to the
    project, where shipped data lives (``specedge/data/profiles/a100_80-graphs-derived.json``
    works from anywhere)."""
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute():
        return given
    return PROJECT_ROOT / given


def _check_profile(key: str, value: str | None) -> None:
    _require(value is None or project_file(value).is_file(), key, value,
             "null or an existing profile JSON (python -m specedge.profile writes one; "
             "specedge/data/profiles/ holds the shipped ones)")


class DType(StrEnum):
    fp16 = "fp16"
    bf16 = "bf16"
    fp32 = "fp32"


class CompileMode(StrEnum):
    """How every forward runs (specedge.engine.kv_cache): the one setting of the forward path."""

    auto = "auto"  # graphs on a CUDA device, eager on a CPU
    eager = "eager"  # exact shapes, attention over the columns in use
    static = "static"  # bucketed shapes over the preallocated cache (what graphs replay)
    graphs = "graphs"  # static, each bucket captured once as a CUDA graph and replayed


def resolve_compile(mode: CompileMode, device: str) -> CompileMode:
    if mode != CompileMode.auto:
        return mode
    return CompileMode.graphs if device.startswith("cuda") else CompileMode.eager


class Weights(StrEnum):
    pretrained = "pretrained"  # from_pretrained(target / draft)
    random = "random"  # the architecture only (timing runs: acceptance means nothing)


class BaselineName(StrEnum):
    specedge = "specedge"
    server_only = "server_only"
    auto_batch = "auto_batch"


class BatchType(StrEnum):
    static = "static"  # wait until max_batch_size Validate calls are queued
    dynamic = "dynamic"  # take whatever is queued


class SchedulerName(StrEnum):
    batch = "batch"  # plain batching of queued calls, as batch_type says
    pipeline = "pipeline"  # pipeline-aware: groups of edges take turns (specedge.serving.scheduler)


class ProactiveType(StrEnum):
    disabled = "disabled"
    excluded = "excluded"  # proactive depth is extra, on top of max_beam_len
    included = "included"  # proactive depth counts toward max_beam_len
    # the speculation cache: sub-trees for the max_guesses likeliest verification outcomes, inner
    # nodes included (specedge.algorithm.outcomes); an adopted sub-tree grows on as with excluded
    cache = "cache"


class TreePolicy(StrEnum):
    fixed = "fixed"  # every round drafts the configured shape
    adaptive = "adaptive"  # depth and budget per round from live acceptance and costs


class LauncherName(StrEnum):
    ssh = "ssh"  # edges of hardware.nodes: local processes, other nodes over SSH (Fabric)
    slurm = "slurm"  # server and edges as srun steps of the SLURM allocation the run is in


class DatasetName(StrEnum):
    builtin = "builtin"
    c4 = "c4"
    mtbench = "mtbench"
    oasst = "oasst"
    wikitext = "wikitext"
    specbench = "specbench"


class DatasetFormat(StrEnum):
    pairs = "pairs"  # a JSON list of [index, prompt] pairs (upstream c4/mtbench/oasst/wikitext)
    specbench = "specbench"  # JSONL lines {"question_id", "category", "turns": [...]}


def _check_tree(prefix: str, n_beams: int, beam_len: int, width: int, budget: int) -> None:
    for name, value in (
        ("max_n_beams", n_beams),
        ("max_beam_len", beam_len),
        ("max_branch_width", width),
        ("max_budget", budget),
    ):
        _require(value >= 1, f"{prefix}.{name}", value, "an integer >= 1")
    # A step forwards at most every node of the tree plus its root: more beams can never be used.
    _require(
        n_beams <= budget + 1,
        f"{prefix}.max_n_beams",
        n_beams,
        f"at most {prefix}.max_budget + 1 = {budget + 1} (no more nodes can exist to forward)",
    )


@dataclass
class ModelConfig:
    """A target/draft pair; names are hub ids or local folders, loaded the same way."""

    name: str = MISSING  # label used in reports, e.g. "tiny" or "qwen3-14b+1.7b"
    target: str = MISSING
    draft: str = MISSING
    dtype: DType = DType.fp32
    max_len: int = 2048  # KV cache capacity in tokens (upstream: max_len)
    attn_implementation: str = "sdpa"
    compile: CompileMode = CompileMode.auto  # the forward path (specedge.engine.kv_cache)
    # static/graphs: new tokens per row and work-area widths are rounded up to one of these
    token_buckets: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128])
    # random: build target/draft from their architecture (a shipped name such as qwen3-14b,
    # a config.json or a model folder) with random weights, for timing without a model hub
    weights: Weights = Weights.pretrained
    tokenizer: str | None = None  # null: the target's (random weights: the tiny pair's)

    def __post_init__(self) -> None:
        _require(self.max_len >= 16, "model.max_len", self.max_len, "an integer >= 16")
        _require(bool(self.token_buckets) and all(b >= 1 for b in self.token_buckets)
                 and list(self.token_buckets) == sorted(set(self.token_buckets)),
                 "model.token_buckets", self.token_buckets,
                 "a non-empty increasing list of integers >= 1")
        _require(
            self.attn_implementation in ("sdpa", "eager"),
            "model.attn_implementation",
            self.attn_implementation,
            "'sdpa' or 'eager' (tree verification needs an explicit 4D mask)",
        )


@dataclass
class ProactiveConfig:
    """Proactive edge drafting: grow the next tree while the server verifies this one."""

    type: ProactiveType = ProactiveType.excluded
    max_n_beams: int = 4
    max_beam_len: int = 4
    max_branch_width: int = 4
    max_budget: int = 16  # with type=cache: the nodes of all guesses' sub-trees together
    max_guesses: int = 8  # type=cache: verification outcomes drafted for at most

    def __post_init__(self) -> None:
        _check_tree(
            "edge.proactive", self.max_n_beams, self.max_beam_len, self.max_branch_width,
            self.max_budget,
        )
        _require(self.max_guesses >= 1, "edge.proactive.max_guesses", self.max_guesses,
                 "an integer >= 1")


@dataclass
class EdgeConfig:
    """SpecExec tree shape drawn by each edge (upstream names kept), and how often a dead edge
    is restarted. These are the defaults (conf/edge/default.yaml only names the schema)."""

    max_n_beams: int = 8
    max_beam_len: int = 5
    max_branch_width: int = 3
    max_budget: int = 16
    proactive: ProactiveConfig = field(default_factory=ProactiveConfig)
    # fixed: every round drafts the shape above; adaptive: each round's depth and budget (never
    # above it) maximise expected tokens per second (specedge.algorithm.tree_policy). Server-only
    # too.
    tree_policy: TreePolicy = TreePolicy.fixed
    # The launcher restarts an edge that died this many times; the restarted edge resumes its
    # unfinished requests from their committed tokens (0: a dead edge's requests stay undone).
    max_restarts: int = 2

    def __post_init__(self) -> None:
        _check_tree("edge", self.max_n_beams, self.max_beam_len, self.max_branch_width,
                    self.max_budget)
        _require(self.max_restarts >= 0, "edge.max_restarts", self.max_restarts,
                 "a number of restarts >= 0")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"  # bind address; edges connect to host:port
    port: int = 0  # 0 picks a free port at start-up
    max_batch_size: int = 2
    num_clients: int = 4  # must equal the number of edges listed under hardware.nodes
    batch_type: BatchType = BatchType.dynamic
    scheduler: SchedulerName = SchedulerName.pipeline
    max_wait_ms: float = 2000.0  # a batch never waits longer than this for stragglers
    cache_prefill: bool = False  # true: prompts' KV precomputed once, kept on disk
    prefill_cache_dir: str = "models/prefill_cache"
    client_timeout_s: float = 60.0  # free the request of an edge silent this long (it died?)
    rpc_timeout_s: float = 600.0  # deadline of every edge RPC
    reconnect_s: float = 120.0  # how long an edge keeps retrying a server it cannot reach
    max_restarts: int = 1  # the launcher restarts a server that died this many times
    max_message_bytes: int = 4 * 1024 * 1024  # larger requests get RESOURCE_EXHAUSTED
    # Security. Secrets are only ever named by file, so configs, logs and run directories
    # never hold them.
    auth_token_file: str | None = None  # shared token (the file's first line); None: no auth
    tls_cert: str | None = None  # server certificate (PEM); with tls_key, the server uses TLS
    tls_key: str | None = None
    tls_client_ca: str | None = None  # CA (PEM) edges' certificates must chain to: mutual TLS
    tls_client_cert: str | None = None  # an edge's certificate and key, for mutual TLS
    tls_client_key: str | None = None

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "server.port", self.port, "0 (any free port) to 65535")
        _require(self.max_batch_size >= 1, "server.max_batch_size", self.max_batch_size,
                 "an integer >= 1")
        _require(self.num_clients >= 1, "server.num_clients", self.num_clients, "an integer >= 1")
        _require(self.max_wait_ms > 0, "server.max_wait_ms", self.max_wait_ms, "a time > 0 ms")
        for key in ("client_timeout_s", "rpc_timeout_s", "reconnect_s"):
            _require(getattr(self, key) > 0, f"server.{key}", getattr(self, key),
                     "a time > 0 seconds")
        _require(self.max_restarts >= 0, "server.max_restarts", self.max_restarts,
                 "an integer >= 0")
        _require(self.max_message_bytes >= 1024, "server.max_message_bytes",
                 self.max_message_bytes, "an integer >= 1024 bytes")
        _require((self.tls_cert is None) == (self.tls_key is None), "server.tls_cert",
                 self.tls_cert, "set together with server.tls_key (both or neither)")
        _require((self.tls_client_cert is None) == (self.tls_client_key is None),
                 "server.tls_client_cert", self.tls_client_cert,
                 "set together with server.tls_client_key (both or neither)")
        _require(self.tls_client_ca is None or self.tls_cert is not None, "server.tls_client_ca",
                 self.tls_client_ca, "null unless server.tls_cert/tls_key turn TLS on")
        _require(self.tls_client_ca is None or self.tls_client_cert is not None,
                 "server.tls_client_ca", self.tls_client_ca,
                 "set with server.tls_client_cert/tls_client_key (the edges' certificate)")
        for key in ("auth_token_file", "tls_cert", "tls_key", "tls_client_ca", "tls_client_cert",
                    "tls_client_key"):
            path = getattr(self, key)
            _require(path is None or Path(path).expanduser().is_file(), f"server.{key}", path,
                     "null or an existing file")

    @property
    def scheduler_policy(self) -> str:
        """The scheduling policy's name: 'pipeline', or the batch type."""
        if self.scheduler == SchedulerName.pipeline:
            return "pipeline"
        return self.batch_type.value


@dataclass
class EdgePlacement:
    """One edge process on a node."""

    device: str = "cpu"


def _edge_placement(key: str, value: Any) -> EdgePlacement:
    if isinstance(value, EdgePlacement):
        return value
    _require(isinstance(value, dict) and set(value) <= {"device"}, key, value,
             "an edge entry like {device: cpu} (only the key 'device')")
    return EdgePlacement(**value)


@dataclass
class LinkConfig:
    """Emulated edge-server link (see specedge.serving.network); zeros emulate nothing."""

    delay_ms: float = 0.0  # one-way delay
    jitter_ms: float = 0.0  # uniform +- around the delay
    bandwidth_mbps: float = 0.0  # 0: unlimited
    loss: float = 0.0  # probability that a message (request or reply) is lost
    loss_timeout_ms: float = 200.0  # how long an edge waits for a lost message before resending

    def wire_s(self, n_bytes: int) -> float:
        """Seconds ``n_bytes`` take at the link's bandwidth (0 when unlimited)."""
        return n_bytes * 8 / (self.bandwidth_mbps * 1e6) if self.bandwidth_mbps else 0.0

    def __post_init__(self) -> None:
        for key in ("delay_ms", "jitter_ms", "bandwidth_mbps", "loss_timeout_ms"):
            value = getattr(self, key)
            _require(value >= 0, f"hardware.link.{key}", value, "a number >= 0")
        _require(0 <= self.loss < 1, "hardware.link.loss", self.loss,
                 "a probability per message, 0 <= loss < 1")
        _require(self.jitter_ms <= self.delay_ms, "hardware.link.jitter_ms", self.jitter_ms,
                 f"at most hardware.link.delay_ms = {self.delay_ms} (delays cannot go negative)")


@dataclass
class SlurmPlacement:
    """Where a run inside a SLURM allocation (``hardware.launcher=slurm``) puts its processes:
    the server on the allocation's first node, ``edges_per_node`` edges on every node."""

    edges_per_node: int = 1  # one per GPU on GPU nodes (with gpus_per_edge=1)
    gpus_per_edge: int = 0  # srun --gpus-per-task of each edge (0: a CPU edge); device cuda:0
    server_gpus: int = 0  # the server's (hardware.server_device then cuda:0)
    srun_args: list[str] = field(default_factory=list)  # added to every srun, e.g. [--mem=16G]

    def __post_init__(self) -> None:
        _require(self.edges_per_node >= 1, "hardware.slurm.edges_per_node",
                 self.edges_per_node, "an integer >= 1")
        for key in ("gpus_per_edge", "server_gpus"):
            value = getattr(self, key)
            _require(value >= 0, f"hardware.slurm.{key}", value, "an integer >= 0")

    @property
    def edge_device(self) -> str:
        return "cuda:0" if self.gpus_per_edge else "cpu"


@dataclass
class HardwareConfig:
    """Where processes run and what their accelerators cost (dollars per GPU-hour)."""

    name: str = MISSING
    server_gpu: str = MISSING
    server_price_per_hour: float = MISSING
    edge_gpu: str = MISSING
    edge_price_per_hour: float = MISSING
    server_device: str = "cpu"
    # CPU cores the server / the local edges may use (None: no pinning), so one machine can
    # keep them apart.
    server_cores: list[int] | None = None
    edge_cores: list[int] | None = None
    ssh_key: str | None = None  # key file for non-local nodes; passwords are never used
    ssh_config: str | None = None  # ssh_config file naming the nodes (None: ~/.ssh/config)
    project_path: str | None = None  # absolute path of this project on remote nodes
    nodes: dict[str, list[EdgePlacement]] = field(
        default_factory=lambda: {"localhost": [EdgePlacement("cpu")]}
    )
    link: LinkConfig = field(default_factory=LinkConfig)
    # Latency profiles of the server's and the edges' devices (specedge.analysis.profile JSON,
    # measured or derived by specedge.base.roofline) that `python -m specedge.simulate` uses; null:
    # none.
    server_profile: str | None = None
    edge_profile: str | None = None
    # How the server and edges are started: `ssh` (hardware.nodes) or `slurm` (srun steps in
    # the current allocation, placed by hardware.slurm; hardware.nodes is then not used).
    launcher: LauncherName = LauncherName.ssh
    slurm: SlurmPlacement = field(default_factory=SlurmPlacement)

    def __post_init__(self) -> None:
        for key in ("server_profile", "edge_profile"):
            _check_profile(f"hardware.{key}", getattr(self, key))
        for key in ("server_price_per_hour", "edge_price_per_hour"):
            value = getattr(self, key)
            _require(value >= 0, f"hardware.{key}", value, "a price >= 0 dollars per hour")
        _check_device("hardware.server_device", self.server_device)
        _require(bool(self.nodes), "hardware.nodes", self.nodes, "at least one node with an edge")
        # OmegaConf types the list items of keys that the schema's default already has, but
        # leaves those of new node names as plain dicts: check and convert them here.
        self.nodes = {node: [_edge_placement(f"hardware.nodes.{node}[{i}]", edge)
                             for i, edge in enumerate(edges)]
                      for node, edges in self.nodes.items()}
        for node, edges in self.nodes.items():
            _require(bool(edges), f"hardware.nodes.{node}", edges, "a non-empty list of edges")
            for i, edge in enumerate(edges):
                _check_device(f"hardware.nodes.{node}[{i}].device", edge.device)
        for key in ("server_cores", "edge_cores"):
            cores = getattr(self, key)
            if cores is not None:
                _require(all(c >= 0 for c in cores) and bool(cores), f"hardware.{key}", cores,
                         "null or a non-empty list of CPU indices >= 0")
                _require(self.launcher == LauncherName.ssh, f"hardware.{key}", cores,
                         "null under hardware.launcher=slurm, where SLURM places and binds "
                         "the tasks (hardware=slurm has none; --cpu-bind may go in "
                         "hardware.slurm.srun_args)")

    @property
    def num_edges(self) -> int:
        return sum(len(edges) for edges in self.nodes.values())


@dataclass
class BaselineConfig:
    name: BaselineName = MISSING


@dataclass
class SpecEdgeBaseline(BaselineConfig):
    """Edges draft, the server verifies over gRPC (the paper's system)."""

    name: BaselineName = BaselineName.specedge


@dataclass
class ServerOnlyBaseline(BaselineConfig):
    """Draft and target both on the server; SpecExec trees batched over requests."""

    name: BaselineName = BaselineName.server_only
    max_batch_size: int = 4

    @property
    def batch_capacity(self) -> int:
        """Requests served at once (upstream's name for it differs per baseline)."""
        return self.max_batch_size

    def __post_init__(self) -> None:
        _require(self.max_batch_size >= 1, "baseline.max_batch_size", self.max_batch_size,
                 "an integer >= 1")


@dataclass
class AutoBatchBaseline(BaselineConfig):
    """Plain batched autoregressive decoding, refilled from the queue as requests finish."""

    name: BaselineName = BaselineName.auto_batch
    batch_size: int = 4

    @property
    def batch_capacity(self) -> int:
        """Requests served at once."""
        return self.batch_size

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "baseline.batch_size", self.batch_size, "an integer >= 1")


@dataclass
class DatasetConfig:
    name: DatasetName = MISSING
    path: str | None = None  # local file; null for builtin means the prompts shipped in the package
    hub: str | None = None  # a datasets-hub name, where a network exists
    format: DatasetFormat = DatasetFormat.specbench
    chat_template: bool = True  # render the prompt with the tokenizer's chat template
    reasoning: bool = False  # passed as enable_thinking to templates that know it
    offset: int = 0  # upstream req_offset: skip this many prompts first
    stride: int = 1  # upstream sample_req_cnt: then take every stride-th prompt
    max_requests: int = -1  # upstream max_request_num: cap (-1: all)

    def __post_init__(self) -> None:
        _require(self.offset >= 0, "dataset.offset", self.offset, "an integer >= 0")
        _require(self.stride >= 1, "dataset.stride", self.stride, "an integer >= 1")
        _require(self.max_requests == -1 or self.max_requests >= 1, "dataset.max_requests",
                 self.max_requests, "-1 (all) or an integer >= 1")
        if self.name != DatasetName.builtin:
            _require(self.path is not None or self.hub is not None, "dataset.path", self.path,
                     f"a file in the upstream {self.format.value} format (dataset "
                     f"'{self.name.value}' ships no prompts), or set dataset.hub")


@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0

    def __post_init__(self) -> None:
        _require(self.max_new_tokens >= 1, "generation.max_new_tokens", self.max_new_tokens,
                 "an integer >= 1")
        _require(self.temperature >= 0, "generation.temperature", self.temperature,
                 "a float >= 0 (0 is greedy)")
        _require(0 < self.top_p <= 1, "generation.top_p", self.top_p, "a float in (0, 1]")


@dataclass
class ProfileConfig:
    """What `python -m specedge.profile` times (on hardware.server_device)."""

    models: list[str] = field(default_factory=lambda: ["target", "draft"])
    batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    nodes: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128])
    prefixes: list[int] = field(default_factory=lambda: [512])
    repeats: int = 6
    warmup: int = 2  # untimed forwards first (CUDA graphs are captured here)
    bandwidth_gbs: float | None = None  # null: looked up by the GPU's name, if known
    out: str = "results/profile/profile.json"

    def __post_init__(self) -> None:
        _require(bool(self.models) and set(self.models) <= {"target", "draft"},
                 "profile.models", self.models, "a non-empty list of 'target' and/or 'draft'")
        for key in ("batches", "nodes", "prefixes"):
            values = getattr(self, key)
            _require(bool(values) and all(v >= 1 for v in values), f"profile.{key}", values,
                     "a non-empty list of integers >= 1")
        _require(self.repeats >= 1, "profile.repeats", self.repeats, "an integer >= 1")
        _require(self.warmup >= 0, "profile.warmup", self.warmup, "an integer >= 0")
        _require(self.bandwidth_gbs is None or self.bandwidth_gbs > 0, "profile.bandwidth_gbs",
                 self.bandwidth_gbs, "null or a bandwidth > 0 GB/s")


@dataclass
class SimulateConfig:
    """What `python -m specedge.simulate` models (see specedge/analysis/simulate.py)."""

    trace: str | None = None  # a run directory whose rounds are the acceptance trace
    # specedge.analysis.profile JSONs (null: hardware.server_profile / edge_profile)
    profile: str | None = None  # the server's (target, and draft for server-only)
    edge_profile: str | None = None  # the edges' drafts (null: the server's)
    edges: int | None = None  # SpecEdge edges (null: server.num_clients)
    requests: int | None = None  # requests served (null: the trace's, at least one per edge)
    # or this many per edge (per batch place for server-only and auto-batch): sweeps over
    # simulate.edges keep every edge busy for as long
    requests_per_edge: int | None = None
    # P(k drafted tokens accepted in a round), k = 0, 1, ...: replaces the trace's acceptance
    acceptance: list[float] | None = None
    # rounds are chains of this many drafted tokens (with published chain acceptance): the
    # tree sizes and draft forwards follow it instead of the trace's
    chain: int | None = None

    def __post_init__(self) -> None:
        if self.acceptance is not None:
            _require(bool(self.acceptance) and all(p >= 0 for p in self.acceptance)
                     and abs(sum(self.acceptance) - 1) < 1e-6, "simulate.acceptance",
                     self.acceptance, "null or probabilities of 0, 1, 2, ... accepted tokens "
                     "that sum to 1")
        _require(self.chain is None or self.acceptance is None
                 or len(self.acceptance) <= self.chain + 1, "simulate.acceptance",
                 self.acceptance, f"at most simulate.chain + 1 = {(self.chain or 0) + 1} "
                 "probabilities (a chain accepts 0 to all of its tokens)")
        _require(self.requests is None or self.requests_per_edge is None,
                 "simulate.requests_per_edge", self.requests_per_edge,
                 "null when simulate.requests is set (one of the two)")
        for key in ("edges", "requests", "requests_per_edge", "chain"):
            value = getattr(self, key)
            _require(value is None or value >= 1, f"simulate.{key}", value,
                     "null or an integer >= 1")
        _require(self.trace is None or Path(self.trace).expanduser().exists(),
                 "simulate.trace", self.trace,
                 "null, an existing run directory or a trace file "
                 "(specedge.analysis.simulate.save_trace)")
        for key in ("profile", "edge_profile"):
            _check_profile(f"simulate.{key}", getattr(self, key))


@dataclass
class RunConfig:
    exp_name: str = "default"
    seed: int = 0
    dry_run: bool = False  # check config, tokenizer and prompts, then stop before any model loads
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    server: ServerConfig = MISSING
    edge: EdgeConfig = MISSING
    baseline: BaselineConfig = MISSING
    hardware: HardwareConfig = MISSING
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)

    def __post_init__(self) -> None:
        if self.baseline.name == BaselineName.specedge:
            # under slurm the allocation decides the edges (checked at launch)
            _require(
                self.hardware.launcher == LauncherName.slurm
                or self.server.num_clients == self.hardware.num_edges,
                "server.num_clients",
                self.server.num_clients,
                f"the number of edges listed under hardware.nodes ({self.hardware.num_edges})",
            )
            _require(self.server.max_batch_size <= self.server.num_clients,
                     "server.max_batch_size", self.server.max_batch_size,
                     f"at most server.num_clients = {self.server.num_clients}")
        self._check_forward_path()
        longest = self.edge.max_beam_len + self.edge.proactive.max_beam_len
        needed = self.generation.max_new_tokens + longest + 1
        _require(self.model.max_len > needed, "model.max_len", self.model.max_len,
                 f"more than max_new_tokens + tree depth + 1 = {needed}, plus the prompt")


    def devices(self) -> list[str]:
        """Every device a model of this run is placed on."""
        if self.baseline.name != BaselineName.specedge:
            return [self.hardware.server_device]
        if self.hardware.launcher == LauncherName.slurm:
            return [self.hardware.server_device, self.hardware.slurm.edge_device]
        return [self.hardware.server_device,
                *(e.device for edges in self.hardware.nodes.values() for e in edges)]

    def _check_forward_path(self) -> None:
        mode = self.model.compile
        if mode == CompileMode.graphs:
            cpu = [d for d in self.devices() if not d.startswith("cuda")]
            _require(not cpu, "model.compile", mode.value,
                     f"eager, static or auto on a CPU device (this run places models on "
                     f"{', '.join(sorted(set(cpu)))}); CUDA graphs need cuda devices")
        if mode == CompileMode.eager or (mode == CompileMode.auto and not any(
                d.startswith("cuda") for d in self.devices())):
            return  # eager shapes have no buckets to outgrow
        largest = self.model.token_buckets[-1]
        tree = max_tree_nodes(self.edge)
        _require(tree <= largest, "model.token_buckets", self.model.token_buckets,
                 f"a largest bucket >= the largest tree a round forwards ({tree} nodes: "
                 f"edge.max_budget + 1, or the proactive budget's), for static shapes")


def max_tree_nodes(edge: EdgeConfig) -> int:
    """The largest tree an honest edge sends: its budget, or an adopted proactive tree's."""
    budget = edge.max_budget
    if edge.proactive.type != ProactiveType.disabled:
        budget = max(budget, edge.proactive.max_budget)
    return budget + 1


def register_configs() -> None:
    """Put every schema in Hydra's ConfigStore so YAML options can extend them."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunConfig)
    cs.store(group="server", name="base_server", node=ServerConfig)
    cs.store(group="edge", name="base_edge", node=EdgeConfig)
    cs.store(group="hardware", name="base_hardware", node=HardwareConfig)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="baseline", name="base_specedge", node=SpecEdgeBaseline)
    cs.store(group="baseline", name="base_server_only", node=ServerOnlyBaseline)
    cs.store(group="baseline", name="base_auto_batch", node=AutoBatchBaseline)


BASELINE_SCHEMAS: dict[str, type[BaselineConfig]] = {
    BaselineName.specedge: SpecEdgeBaseline,
    BaselineName.server_only: ServerOnlyBaseline,
    BaselineName.auto_batch: AutoBatchBaseline,
}


def save_run_config(cfg: DictConfig, run_dir: Path) -> Path:
    """The composed job config, for the server and edge processes of this run to load."""
    path = run_dir / RUN_CONFIG_FILE
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


# Settings removed from the schemas, which run directories saved before keep: dropped on load
# so that an upgrade never makes a finished run unreadable.
RETIRED_KEYS = (("server", "process_name"), ("edge", "process_name"))


def load_run_config(run_dir: Path) -> RunConfig:
    """Load and re-validate a run's saved config against the schemas."""
    raw = OmegaConf.load(Path(run_dir) / RUN_CONFIG_FILE)
    assert isinstance(raw, DictConfig)
    for group, key in RETIRED_KEYS:
        if isinstance(raw.get(group), DictConfig) and key in raw[group]:
            del raw[group][key]
    base = OmegaConf.structured(RunConfig)
    if isinstance(raw.get("hardware"), DictConfig) and "nodes" in raw.hardware:
        base.hardware = OmegaConf.structured(HardwareConfig)
        base.hardware.nodes = {}  # the saved nodes replace the schema's default node
    name = raw.get("baseline", {}).get("name")
    if name not in BASELINE_SCHEMAS:
        raise ConfigError(f"baseline.name = {name!r} is not accepted: one of "
                          f"{', '.join(BASELINE_SCHEMAS)}")
    base.baseline = OmegaConf.structured(BASELINE_SCHEMAS[name])
    try:
        merged = OmegaConf.merge(base, raw)
    except OmegaConfBaseException as exc:
        raise ConfigError(str(exc)) from None
    assert isinstance(merged, DictConfig)
    return to_run_config(merged)


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Validate a composed config and return it as typed objects (raises ConfigError)."""
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, ConfigError) else None
        if cause is not None:
            raise cause from None
        raise ConfigError(str(exc)) from None
    if not isinstance(obj, RunConfig):
        raise ConfigError(f"the composed config is a {type(obj).__name__}, not a RunConfig")
    return obj


register_configs()
