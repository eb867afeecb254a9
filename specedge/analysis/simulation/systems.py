"""The compared systems as settings of a run configuration, defined once, and the typed way
to simulate one: Hydra composes a base configuration at the command line, and
:func:`configured` applies a point's settings to it as objects (every schema's checks run
again), so a sweep of thousands of points never composes per point. The same settings written
as :func:`overrides` reproduce a point with ``specedge simulate``; the Snakefile reads
:func:`batch_settings` for its own rules."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, fields, is_dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from hydra import compose
from omegaconf import DictConfig, OmegaConf

from specedge.analysis.simulation.events import simulate
from specedge.analysis.simulation.plan import plan_of_config
from specedge.base.config.baseline import BaselineName
from specedge.base.config.checks import ConfigError
from specedge.base.config.hardware import EdgePlacement
from specedge.base.config.preflight import preflight
from specedge.base.config.run import RunConfig, to_run_config

Settings = dict[str, Any]  # a dotted key (server.max_batch_size) -> its value

SYSTEMS = ("specedge", "specedge_budgeted", "server_only", "auto_batch")
SUMMARY_KEYS = (
    "baseline", "tokens", "server_busy_s", "server_wall_s", "server_time_s",
    "server_utilization", "verified_size_mean", "tree_size_mean", "edge_busy_s",
    "edge_cost_usd", "server_cost_usd", "usd_per_mtok", "throughput_tok_s", "accounting",
    "itl_ms", "accepted_per_round", "tokens_per_round", "mean_batch_size", "prices",
    "upstream", "trace", "latency_model")


def baseline_of(system: str) -> str:
    """The baseline group a system runs (both SpecEdge variants are ``specedge``)."""
    if system not in SYSTEMS:
        raise ConfigError(f"system {system!r} is not accepted: one of {', '.join(SYSTEMS)}")
    return BaselineName.specedge.value if system.startswith("specedge") else system


def batch_settings(baseline: str, batch: int, edges: int | None = None) -> Settings:
    """A baseline at batch ``batch``: SpecEdge with ``edges`` edges (``batch`` if none) in
    batches of ``batch``; the baselines batching ``batch`` requests."""
    return {"specedge": {"simulate.edges": edges or batch, "server.max_batch_size": batch},
            "server_only": {"baseline.max_batch_size": batch},
            "auto_batch": {"baseline.batch_size": batch}}[baseline]


def system_settings(system: str, batch: int, edges: int | None = None) -> Settings:
    """A system at batch ``batch``: SpecEdge with every tree verified whole in pipeline
    groups of ``batch`` (fixed), or the server's goodput budget of nodes in the group count
    the same objective picks (budgeted: groups of ``batch``, or one of every edge); the
    baselines batching ``batch`` requests (server-only verifying whole trees, as
    upstream's)."""
    baseline_of(system)
    specedge = {**batch_settings("specedge", batch, edges), "server.scheduler": "pipeline"}
    return {
        "specedge": specedge | {"server.verify_budget": "fixed",
                                "server.pipeline_groups": "split"},
        "specedge_budgeted": specedge | {"server.verify_budget": "goodput",
                                         "server.pipeline_groups": "goodput"},
        "server_only": batch_settings("server_only", batch) | {"server.verify_budget": "fixed"},
        "auto_batch": batch_settings("auto_batch", batch),
    }[system]


def overrides(settings: Settings) -> list[str]:
    """The settings as command-line overrides (``key=value``)."""
    def text(value: Any) -> str:
        if isinstance(value, Enum):
            return str(value.value)
        return "null" if value is None else str(value)
    return [f"{key}={text(value)}" for key, value in settings.items()]


def edge_settings(edges: int, max_batch_size: int, device: str) -> Settings:
    """``simulate.edges`` SpecEdge edges like the configured ones: ``server.num_clients``
    and ``hardware.nodes`` follow it, and ``server.max_batch_size`` is capped at it (a batch
    cannot hold more edges than there are)."""
    # Under "localhost": a saved config is merged over the schema, whose default node it is.
    return {"server.num_clients": edges, "server.max_batch_size": min(max_batch_size, edges),
            "hardware.nodes": {"localhost": [EdgePlacement(device) for _ in range(edges)]}}


def with_edges(composed: DictConfig) -> None:
    """:func:`edge_settings` applied to a composed configuration, before it is checked."""
    edges = composed.simulate.edges
    if edges is None or composed.baseline.name != BaselineName.specedge.value:
        return
    first = next(iter(composed.hardware.nodes.values()))[0]
    for key, value in edge_settings(edges, composed.server.max_batch_size,
                                    first.device).items():
        OmegaConf.update(composed, key, value, merge=False)


def configured(cfg: RunConfig, settings: Settings) -> RunConfig:
    """``cfg`` with ``settings`` applied as objects, in one step (the schemas check the
    result, not each setting alone), ``simulate.edges`` as the command line applies it
    (:func:`with_edges`). A string set on an enum field becomes that enum; an unknown key
    is refused, naming what is accepted."""
    edges = settings.get("simulate.edges", cfg.simulate.edges)
    if edges is not None and cfg.baseline.name == BaselineName.specedge:
        first = next(iter(cfg.hardware.nodes.values()))[0]
        batch = settings.get("server.max_batch_size", cfg.server.max_batch_size)
        settings = settings | edge_settings(edges, batch, first.device)
    return _applied(cfg, settings, "")


def _applied(node: Any, settings: Settings, where: str) -> Any:
    """``node`` (a dataclass) with dotted ``settings`` replaced, children first."""
    names = {f.name for f in fields(node)}
    nested: dict[str, Settings] = {}
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ConfigError(f"setting {where}{key} is not accepted: {where}{head} is not a "
                              f"key of {type(node).__name__} ({', '.join(sorted(names))})")
        if rest:
            nested.setdefault(head, {})[rest] = value
            continue
        current = getattr(node, head)
        changes[head] = type(current)(value) if isinstance(current, Enum) else value
    for head, inner in nested.items():
        child = getattr(node, head)
        if not is_dataclass(child):
            raise ConfigError(f"setting {where}{head}.{next(iter(inner))} is not accepted: "
                              f"{where}{head} has no keys")
        changes[head] = _applied(child, inner, f"{where}{head}.")
    return replace(node, **changes)


def simulate_point(cfg: RunConfig) -> dict[str, Any]:
    """One simulated run of ``cfg`` (checked against this machine first): its summary's
    figures (records are not kept; the settings reproduce them)."""
    preflight(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        summary = simulate(plan_of_config(cfg), Path(tmp))
    return {k: summary[k] for k in SUMMARY_KEYS}


@dataclass
class Bases:
    """The run configurations every point starts from: the setup composed by Hydra, once per
    hardware entry (``None``: the setup's own) and baseline group, as the command line
    composes them; a point is settings applied to one (:func:`simulate_system`)."""

    setup: list[str]
    configs: dict[tuple[str | None, str], RunConfig]

    def overrides(self, hardware: str | None, baseline: str) -> list[str]:
        """The command line's overrides that compose one base."""
        setup = self.setup if hardware is None else [
            *(o for o in self.setup if not o.startswith("hardware")), f"hardware={hardware}"]
        return [*setup, f"baseline={baseline}"]


def compose_bases(setup: list[str], hardware_entries: list[str]) -> Bases:
    """The bases of ``setup`` on its own hardware and on each of ``hardware_entries``, as the
    command line composes them. Hydra must be initialized with ``conf/`` (a command's main
    is; elsewhere ``hydra.initialize_config_dir``)."""
    bases = Bases(setup, {})
    for hardware in (None, *hardware_entries):
        for baseline in BaselineName:
            composed = compose(config_name="config",
                               overrides=bases.overrides(hardware, baseline.value))
            bases.configs[(hardware, baseline.value)] = to_run_config(composed)
    return bases


def simulate_system(bases: Bases, hardware: str | None, system: str, batch: int,
                    edges: int | None, settings: Settings, seed: int = 0) -> dict[str, Any]:
    """One simulated system at batch ``batch`` (SpecEdge: ``edges`` edges): a base with the
    point's settings and the system's, its summary's figures and the overrides that
    reproduce it."""
    baseline = baseline_of(system)
    settings = settings | system_settings(system, batch, edges)
    run = configured(bases.configs[(hardware, baseline)], settings | {"seed": seed})
    return {"overrides": [*bases.overrides(hardware, baseline), *overrides(settings)],
            **simulate_point(run)}
