"""``hardware``: one setup a run picks whole (``hardware=a100_80``), its schema by concern:
where the server and the edges run (devices, cores, nodes, launcher), and as sub-configs how
remote nodes are reached (``ssh``) or placed (``slurm``), the emulated ``link``, the
``prices`` the bill uses and the latency ``profiles`` the simulator uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from omegaconf import MISSING

from specedge.base.config.checks import check_device, require

LOOPBACK = ("localhost", "127.0.0.1", "::1")  # node names run locally; hosts only it reaches


class LauncherName(StrEnum):
    ssh = "ssh"  # edges of hardware.nodes: local processes, other nodes over SSH (Fabric)
    slurm = "slurm"  # server and edges as srun steps of the SLURM allocation the run is in

@dataclass
class EdgePlacement:
    """One edge process on a node."""

    device: str = "cpu"


def _edge_placement(key: str, value: Any) -> EdgePlacement:
    if isinstance(value, EdgePlacement):
        return value
    require(isinstance(value, dict) and set(value) <= {"device"}, key, value,
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
    # how long the link stays down when its edge gets SIGUSR1 (a dropped link: every message
    # in that time is lost; the fault benchmark's link drop)
    drop_s: float = 1.0

    def wire_s(self, n_bytes: int) -> float:
        """Seconds ``n_bytes`` take at the link's bandwidth (0 when unlimited)."""
        return n_bytes * 8 / (self.bandwidth_mbps * 1e6) if self.bandwidth_mbps else 0.0

    def __post_init__(self) -> None:
        for key in ("delay_ms", "jitter_ms", "bandwidth_mbps", "loss_timeout_ms", "drop_s"):
            value = getattr(self, key)
            require(value >= 0, f"hardware.link.{key}", value, "a number >= 0")
        require(0 <= self.loss < 1, "hardware.link.loss", self.loss,
                 "a probability per message, 0 <= loss < 1")
        require(self.jitter_ms <= self.delay_ms, "hardware.link.jitter_ms", self.jitter_ms,
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
        require(self.edges_per_node >= 1, "hardware.slurm.edges_per_node",
                 self.edges_per_node, "an integer >= 1")
        for key in ("gpus_per_edge", "server_gpus"):
            value = getattr(self, key)
            require(value >= 0, f"hardware.slurm.{key}", value, "an integer >= 0")

    @property
    def edge_device(self) -> str:
        return "cuda:0" if self.gpus_per_edge else "cpu"


@dataclass
class SshConfig:
    """How non-local nodes of ``hardware.nodes`` are reached (Fabric, key-based only)."""

    key: str | None = None  # key file for non-local nodes; passwords are never used
    config: str | None = None  # ssh_config file naming the nodes (None: ~/.ssh/config)
    project_path: str | None = None  # absolute path of this project on remote nodes


@dataclass
class PriceConfig:
    """What the bill charges: the server's GPU and one edge's, in dollars per GPU-hour."""

    server_gpu: str = MISSING
    server_per_hour: float = MISSING
    edge_gpu: str = MISSING
    edge_per_hour: float = MISSING

    def __post_init__(self) -> None:
        for key in ("server_per_hour", "edge_per_hour"):
            value = getattr(self, key)
            require(value >= 0, f"hardware.prices.{key}", value, "a price >= 0 dollars per hour")


@dataclass
class ProfileFiles:
    """Latency profiles of the server's and the edges' devices (specedge.analysis.profile JSON,
    measured or derived by specedge.base.roofline) that `specedge simulate` uses; null: none
    (the simulator then times from the run's own records). Their existence is the preflight's
    check, so a config composes away from its data."""

    server: str | None = None
    edge: str | None = None


@dataclass
class HardwareConfig:
    """Where processes run, and under ``ssh``, ``slurm``, ``link``, ``prices`` and ``profiles``
    the other concerns of the same setup."""

    name: str = MISSING
    server_device: str = "cpu"
    # CPU cores the server / the local edges may use (None: no pinning), so one machine can
    # keep them apart.
    server_cores: list[int] | None = None
    edge_cores: list[int] | None = None
    nodes: dict[str, list[EdgePlacement]] = field(
        default_factory=lambda: {"localhost": [EdgePlacement("cpu")]}
    )
    # How the server and edges are started: `ssh` (hardware.nodes) or `slurm` (srun steps in
    # the current allocation, placed by hardware.slurm; hardware.nodes is then not used).
    launcher: LauncherName = LauncherName.ssh
    ssh: SshConfig = field(default_factory=SshConfig)
    slurm: SlurmPlacement = field(default_factory=SlurmPlacement)
    link: LinkConfig = field(default_factory=LinkConfig)
    prices: PriceConfig = MISSING  # every hardware entry names its own
    profiles: ProfileFiles = field(default_factory=ProfileFiles)

    def __post_init__(self) -> None:
        check_device("hardware.server_device", self.server_device)
        require(bool(self.nodes), "hardware.nodes", self.nodes, "at least one node with an edge")
        # OmegaConf types the list items of keys that the schema's default already has, but
        # leaves those of new node names as plain dicts: check and convert them here.
        self.nodes = {node: [_edge_placement(f"hardware.nodes.{node}[{i}]", edge)
                             for i, edge in enumerate(edges)]
                      for node, edges in self.nodes.items()}
        for node, edges in self.nodes.items():
            require(bool(edges), f"hardware.nodes.{node}", edges, "a non-empty list of edges")
            for i, edge in enumerate(edges):
                check_device(f"hardware.nodes.{node}[{i}].device", edge.device)
        for key in ("server_cores", "edge_cores"):
            cores = getattr(self, key)
            if cores is not None:
                require(all(c >= 0 for c in cores) and bool(cores), f"hardware.{key}", cores,
                         "null or a non-empty list of CPU indices >= 0")
                require(self.launcher == LauncherName.ssh, f"hardware.{key}", cores,
                         "null under hardware.launcher=slurm, where SLURM places and binds "
                         "the tasks (hardware=slurm has none; --cpu-bind may go in "
                         "hardware.slurm.srun_args)")

    @property
    def num_edges(self) -> int:
        return sum(len(edges) for edges in self.nodes.values())
