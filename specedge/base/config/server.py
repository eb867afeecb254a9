"""``server``: the verification server, its scheduler and its serving limits."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from specedge.base.config.checks import require


class BatchType(StrEnum):
    static = "static"  # wait until max_batch_size Validate calls are queued
    dynamic = "dynamic"  # take whatever is queued




class VerifyBudget(StrEnum):
    fixed = "fixed"  # verify every node each edge sent
    # one budget per step, shared by the batch's trees by survival, sized for expected tokens
    # per second of server time (specedge.algorithm.goodput)
    goodput = "goodput"




class PipelineGroups(StrEnum):
    split = "split"  # num_clients / max_batch_size groups take turns, always
    # one group or that many, whichever the step cost model makes the shorter cycle
    # (specedge.algorithm.goodput.pipeline_groups), re-decided as the server learns the gaps
    goodput = "goodput"


class SchedulerName(StrEnum):
    batch = "batch"  # plain batching of queued calls, as batch_type says
    pipeline = "pipeline"  # pipeline-aware: groups of edges take turns (specedge.serving.scheduler)




@dataclass
class ServerConfig:
    host: str = "127.0.0.1"  # bind address; edges connect to host:port
    port: int = 0  # 0 picks a free port at start-up
    max_batch_size: int = 2
    num_clients: int = 4  # must equal the number of edges listed under hardware.nodes
    batch_type: BatchType = BatchType.dynamic
    scheduler: SchedulerName = SchedulerName.pipeline
    max_wait_ms: float = 2000.0  # a batch never waits longer than this for stragglers
    verify_budget: VerifyBudget = VerifyBudget.goodput
    cost_window: int = 256  # forwards the goodput budget's step cost is refitted on; 0: never
    pipeline_groups: PipelineGroups = PipelineGroups.goodput  # under scheduler=pipeline
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
        require(0 <= self.port <= 65535, "server.port", self.port, "0 (any free port) to 65535")
        require(self.max_batch_size >= 1, "server.max_batch_size", self.max_batch_size,
                 "an integer >= 1")
        require(self.num_clients >= 1, "server.num_clients", self.num_clients, "an integer >= 1")
        require(self.max_wait_ms > 0, "server.max_wait_ms", self.max_wait_ms, "a time > 0 ms")
        require(self.cost_window >= 0, "server.cost_window", self.cost_window,
                "an integer >= 0 (0 keeps the start-up table)")
        for key in ("client_timeout_s", "rpc_timeout_s", "reconnect_s"):
            require(getattr(self, key) > 0, f"server.{key}", getattr(self, key),
                     "a time > 0 seconds")
        require(self.max_restarts >= 0, "server.max_restarts", self.max_restarts,
                 "an integer >= 0")
        require(self.max_message_bytes >= 1024, "server.max_message_bytes",
                 self.max_message_bytes, "an integer >= 1024 bytes")
        require((self.tls_cert is None) == (self.tls_key is None), "server.tls_cert",
                 self.tls_cert, "set together with server.tls_key (both or neither)")
        require((self.tls_client_cert is None) == (self.tls_client_key is None),
                 "server.tls_client_cert", self.tls_client_cert,
                 "set together with server.tls_client_key (both or neither)")
        require(self.tls_client_ca is None or self.tls_cert is not None, "server.tls_client_ca",
                 self.tls_client_ca, "null unless server.tls_cert/tls_key turn TLS on")
        require(self.tls_client_ca is None or self.tls_client_cert is not None,
                 "server.tls_client_ca", self.tls_client_ca,
                 "set with server.tls_client_cert/tls_client_key (the edges' certificate)")

    @property
    def regroups(self) -> bool:
        """Whether the pipeline's group count follows goodput (it may merge every edge into
        one group)."""
        return (self.scheduler == SchedulerName.pipeline
                and self.pipeline_groups == PipelineGroups.goodput)

    @property
    def needs_step_cost(self) -> bool:
        """Whether the server times its steps (start-up table, refitted online): the goodput
        budget sizes each step by it, goodput pipeline groups choose their count by it."""
        return self.verify_budget == VerifyBudget.goodput or self.regroups

    @property
    def step_batches(self) -> tuple[int, ...]:
        """The batch sizes a step may have, which the step cost's start-up table covers:
        ``max_batch_size``, and every edge at once when the groups may merge into one."""
        if self.regroups:
            return (self.max_batch_size, self.num_clients)
        return (self.max_batch_size,)

    @property
    def scheduler_policy(self) -> str:
        """The scheduling policy's name: 'pipeline', or the batch type."""
        if self.scheduler == SchedulerName.pipeline:
            return "pipeline"
        return self.batch_type.value
