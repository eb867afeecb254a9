"""What a configuration needs of the machine it runs on, checked apart from the schemas: a
config composes, and an old run directory's config loads, anywhere (the schemas check values
only), and every command that runs or simulates calls :func:`preflight` before a model loads,
so a missing file still stops it with the key named."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from specedge.base.config.checks import check_profile, require
from specedge.base.config.run import RunConfig, to_run_config

SERVER_FILES = ("auth_token_file", "tls_cert", "tls_key", "tls_client_ca", "tls_client_cert",
                "tls_client_key")


def preflight(cfg: RunConfig) -> None:
    """Every file ``cfg`` names exists (a :class:`ConfigError` names the first that does not)."""
    for key in ("server", "edge"):
        check_profile(f"hardware.profiles.{key}", getattr(cfg.hardware.profiles, key))
    for key in SERVER_FILES:
        path = getattr(cfg.server, key)
        require(path is None or Path(path).expanduser().is_file(), f"server.{key}", path,
                 "null or an existing file")
    trace = cfg.simulate.trace
    require(trace is None or Path(trace).expanduser().exists(), "simulate.trace", trace,
            "null, an existing run directory or a trace file "
            "(specedge.analysis.simulation.traces.save_trace)")
    for key in ("profile", "edge_profile"):
        check_profile(f"simulate.{key}", getattr(cfg.simulate, key))


def checked_run_config(composed: DictConfig) -> RunConfig:
    """The composed config as objects (schemas checked), then checked against this machine:
    what a command that runs or simulates now starts from."""
    cfg = to_run_config(composed)
    preflight(cfg)
    return cfg
