"""One run's whole configuration (:class:`RunConfig`) with its cross-group checks, the
schemas' registration in Hydra's ConfigStore, and the run directory's saved copy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from specedge.base.config.baseline import (
    AutoBatchBaseline,
    BaselineConfig,
    BaselineName,
    ServerOnlyBaseline,
    SpecEdgeBaseline,
)
from specedge.base.config.checks import ConfigError, require
from specedge.base.config.dataset import DatasetConfig, GenerationConfig
from specedge.base.config.edge import EdgeConfig, max_tree_nodes
from specedge.base.config.hardware import HardwareConfig, LauncherName
from specedge.base.config.model import CompileMode, ModelConfig
from specedge.base.config.server import ServerConfig
from specedge.base.config.tools import ProfileConfig, SimulateConfig
from specedge.base.records import RUN_CONFIG_FILE


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
            require(
                self.hardware.launcher == LauncherName.slurm
                or self.server.num_clients == self.hardware.num_edges,
                "server.num_clients",
                self.server.num_clients,
                f"the number of edges listed under hardware.nodes ({self.hardware.num_edges})",
            )
            require(self.server.max_batch_size <= self.server.num_clients,
                     "server.max_batch_size", self.server.max_batch_size,
                     f"at most server.num_clients = {self.server.num_clients}")
        self._check_forward_path()
        longest = self.edge.max_beam_len + self.edge.proactive.max_beam_len
        needed = self.generation.max_new_tokens + longest + 1
        require(self.model.max_len > needed, "model.max_len", self.model.max_len,
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
            require(not cpu, "model.compile", mode.value,
                     f"eager, static or auto on a CPU device (this run places models on "
                     f"{', '.join(sorted(set(cpu)))}); CUDA graphs need cuda devices")
        if mode == CompileMode.eager or (mode == CompileMode.auto and not any(
                d.startswith("cuda") for d in self.devices())):
            return  # eager shapes have no buckets to outgrow
        largest = self.model.token_buckets[-1]
        tree = max_tree_nodes(self.edge)
        require(tree <= largest, "model.token_buckets", self.model.token_buckets,
                 f"a largest bucket >= the largest tree a round forwards ({tree} nodes: "
                 f"edge.max_budget + 1, or the proactive budget's), for static shapes")




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
# Settings that moved (old dotted key -> new): a run saved before reads them in their new place.
MOVED_KEYS = {
    "hardware.server_gpu": "hardware.prices.server_gpu",
    "hardware.server_price_per_hour": "hardware.prices.server_per_hour",
    "hardware.edge_gpu": "hardware.prices.edge_gpu",
    "hardware.edge_price_per_hour": "hardware.prices.edge_per_hour",
    "hardware.ssh_key": "hardware.ssh.key",
    "hardware.ssh_config": "hardware.ssh.config",
    "hardware.project_path": "hardware.ssh.project_path",
    "hardware.server_profile": "hardware.profiles.server",
    "hardware.edge_profile": "hardware.profiles.edge",
}
# Settings whose default changed: a run saved before the key existed ran as the old default,
# so that is what it reads back as (not today's default, which would replay another system).
EARLIER_DEFAULTS = {("server", "verify_budget"): "fixed", ("server", "pipeline_groups"): "split"}


def load_run_config(run_dir: Path) -> RunConfig:
    """Load and re-validate a run's saved config against the schemas."""
    raw = OmegaConf.load(Path(run_dir) / RUN_CONFIG_FILE)
    assert isinstance(raw, DictConfig)
    for group, key in RETIRED_KEYS:
        if isinstance(raw.get(group), DictConfig) and key in raw[group]:
            del raw[group][key]
    for old_key, new_key in MOVED_KEYS.items():
        parent, _, key = old_key.rpartition(".")
        node = OmegaConf.select(raw, parent, default=None)
        if isinstance(node, DictConfig) and key in node:
            value = node[key]
            del node[key]
            OmegaConf.update(raw, new_key, value, force_add=True)
    for (group, key), value in EARLIER_DEFAULTS.items():
        if isinstance(raw.get(group), DictConfig) and key not in raw[group]:
            raw[group][key] = value
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
