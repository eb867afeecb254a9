"""Config composition: every option of every group, and start-up errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from specedge import CONF_DIR, PROJECT_ROOT
from specedge.base.config.baseline import BaselineName
from specedge.base.config.checks import ConfigError
from specedge.base.config.model import DType
from specedge.base.config.preflight import preflight
from specedge.base.config.run import RunConfig, to_run_config

GROUPS = ("server", "edge", "baseline", "hardware", "model", "dataset")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _compose(*overrides: str) -> RunConfig:
    """The config as a run checks it at start-up: schemas, then the preflight."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    run_cfg = to_run_config(cfg)
    preflight(run_cfg)
    return run_cfg


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUPS for o in _options(g)]
)
def test_every_option_composes_and_validates(group: str, option: str) -> None:
    extra = ["dataset.path=prompts.json"] if group == "dataset" and option != "builtin" else []
    cfg = _compose(f"{group}={option}", *extra)
    assert isinstance(cfg, RunConfig)


def test_defaults_are_the_smollm2_pair_on_cpu_in_the_hardwares_dtype() -> None:
    cfg = _compose()
    assert cfg.baseline.name == BaselineName.specedge
    assert cfg.model.name == "smollm2" and cfg.model.target == "models/smollm2/target"
    assert cfg.model.dtype == DType.auto
    assert cfg.hardware.server_device == "cpu"
    assert cfg.server.num_clients == cfg.hardware.num_edges


def test_hardware_prices_match_upstream() -> None:
    prices = {hw: _compose(f"hardware={hw}").hardware for hw in ("a100_40", "a100_80", "rtx4090")}
    assert prices["a100_40"].prices.server_per_hour == 4.05
    assert prices["a100_80"].prices.server_per_hour == 5.05
    assert prices["rtx4090"].prices.server_per_hour == 0.35
    assert all(hw.prices.edge_per_hour == 0.35 for hw in prices.values())


@pytest.mark.parametrize(("override", "key"), [
    ("server.auth_token_file=/nonexistent/token", "server.auth_token_file"),
    ("hardware.profiles.server=/nonexistent/profile.json", "hardware.profiles.server"),
    ("simulate.trace=/nonexistent/run", "simulate.trace"),
])
def test_a_missing_file_composes_and_only_the_preflight_stops_it(override: str,
                                                                 key: str) -> None:
    """Schemas check values, not the machine: a config naming a file that is not here (an
    old run directory's, on another machine) composes; the preflight every command runs
    before a model loads names the key."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = to_run_config(compose(config_name="config", overrides=[override]))
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    assert key in str(err.value) and "/nonexistent/" in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "key", "accepted"),
    [
        (["edge.max_budget=-1"], "edge.max_budget", ">= 1"),
        (["edge.max_n_beams=40"], "edge.max_n_beams", "max_budget + 1"),
        (["edge.proactive.max_budget=0"], "edge.proactive.max_budget", ">= 1"),
        (["server.num_clients=3"], "server.num_clients", "hardware.nodes"),
        (["server.max_batch_size=8"], "server.max_batch_size", "num_clients"),
        (["dataset=c4"], "dataset.path", "pairs format"),
        (["generation.top_p=0"], "generation.top_p", "(0, 1]"),
        (["generation.temperature=-1"], "generation.temperature", ">= 0"),
        (["hardware.server_device=gpu0"], "hardware.server_device", "cuda:N"),
        (["baseline=auto_batch", "baseline.batch_size=0"], "baseline.batch_size", ">= 1"),
        (["dataset.stride=0"], "dataset.stride", ">= 1"),
        (["model.max_len=40"], "model.max_len", "max_new_tokens"),
        (["server.client_timeout_s=0"], "server.client_timeout_s", "> 0 seconds"),
        (["server.max_message_bytes=10"], "server.max_message_bytes", ">= 1024"),
        (["server.max_restarts=-1"], "server.max_restarts", ">= 0"),
        (["server.auth_token_file=/nonexistent/token"], "server.auth_token_file",
         "an existing file"),
        (["server.tls_cert=/etc/hostname"], "server.tls_cert", "with server.tls_key"),
        (["server.tls_client_ca=/etc/hostname"], "server.tls_client_ca", "TLS on"),
        (["model.compile=graphs"], "model.compile", "CUDA graphs need cuda devices"),
        (["model.compile=static", "model.token_buckets=[1,2,4,8]"], "model.token_buckets",
         "the largest tree a round forwards (17 nodes"),
        (["model.token_buckets=[4,2]"], "model.token_buckets", "increasing"),
        (["profile.models=[critic]"], "profile.models", "'target' and/or 'draft'"),
        (["edge.max_restarts=-1"], "edge.max_restarts", ">= 0"),
        (["hardware=slurm", "hardware.slurm.edges_per_node=0"], "hardware.slurm.edges_per_node",
         ">= 1"),
        (["hardware=slurm", "hardware.edge_cores=[1]"], "hardware.edge_cores",
         "null under hardware.launcher=slurm"),
    ],
)
def test_bad_values_name_the_key(overrides: list[str], key: str, accepted: str) -> None:
    with pytest.raises(ConfigError) as err:
        _compose(*overrides)
    assert key in str(err.value) and accepted in str(err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dtype=fp64", "expected one of [auto, fp16, bf16, fp32]"),
        ("edge.max_budgte=3", "Key 'max_budgte' not in 'EdgeConfig'"),
        ("edge.max_budget=many", "edge.max_budget"),
        ("server.batch_type=eager", "expected one of [static, dynamic]"),
        ("edge.proactive.type=sometimes", "expected one of [disabled, excluded, included, cache]"),
    ],
)
def test_typos_and_types_fail_at_composition(override: str, message: str) -> None:
    with pytest.raises(ConfigCompositionException) as err:
        _compose(override)
    assert message in f"{err.value} {err.value.__cause__}"


def test_forward_path_defaults_to_graphs_on_cuda_and_eager_on_cpu() -> None:
    from specedge.base.config.model import CompileMode, resolve_compile
    cfg = _compose()
    assert cfg.model.compile == CompileMode.auto
    assert resolve_compile(cfg.model.compile, "cpu") == CompileMode.eager
    assert resolve_compile(cfg.model.compile, "cuda:0") == CompileMode.graphs
    assert resolve_compile(CompileMode.static, "cuda:0") == CompileMode.static
    # Eager shapes have no buckets, so small buckets do not matter there.
    assert _compose("model.token_buckets=[1,2]").model.token_buckets == [1, 2]


def test_num_clients_only_binds_specedge() -> None:
    cfg = _compose("baseline=server_only", "server.num_clients=3")
    assert cfg.server.num_clients == 3


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "specedge.run", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_prints_composed_job_config() -> None:
    result = _run("--cfg", "job", "edge.max_budget=64", "baseline=server_only")
    assert result.returncode == 0, result.stderr
    assert "max_budget: 64" in result.stdout and "name: server_only" in result.stdout


def test_cli_refuses_bad_value_with_exit_code_2() -> None:
    result = _run("edge.max_budget=-5", "hydra.run.dir=/tmp/specedge-test-bad")
    assert result.returncode == 2
    assert "edge.max_budget = -5 is not accepted" in result.stderr


def test_a_saved_run_config_loads_as_it_was_saved(tmp_path: Path) -> None:
    """A run saved before a setting was retired still loads, and its edge list is exactly the
    saved one (the schema's default node is not merged in)."""
    from omegaconf import OmegaConf

    from specedge.base.config.run import load_run_config, save_run_config

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = compose(config_name="config", overrides=["server.num_clients=3"])
    save_run_config(composed, tmp_path)
    raw = OmegaConf.load(tmp_path / "run_config.yaml")
    raw.hardware.nodes = {"edge-a": [{"device": "cpu"}],
                          "edge-b": [{"device": "cpu"}, {"device": "cpu"}]}
    raw.server.process_name = "server"  # what runs saved before it was retired hold
    raw.edge.process_name = "edge"
    (tmp_path / "run_config.yaml").write_text(OmegaConf.to_yaml(raw))
    cfg = load_run_config(tmp_path)
    assert list(cfg.hardware.nodes) == ["edge-a", "edge-b"]
    assert sum(len(v) for v in cfg.hardware.nodes.values()) == cfg.server.num_clients == 3
    assert cfg.server.verify_budget.value == "goodput"  # saved with today's default
    # a run saved before the goodput budget and group count existed ran every tree in 2 groups
    del raw.server.verify_budget, raw.server.pipeline_groups
    (tmp_path / "run_config.yaml").write_text(OmegaConf.to_yaml(raw))
    old = load_run_config(tmp_path).server
    assert (old.verify_budget.value, old.pipeline_groups.value) == ("fixed", "split")


def test_a_run_saved_with_the_flat_hardware_keys_reads_them_in_their_new_place() -> None:
    """Prices, SSH and profiles were flat keys of ``hardware`` before it was grouped by
    concern; a run directory of that time (the held-out fixture's) loads with them moved."""
    from omegaconf import OmegaConf

    from specedge.base.config.run import load_run_config

    run = PROJECT_ROOT / "tests" / "data" / "heldout-long-6e" / "specedge"
    saved = OmegaConf.load(run / "run_config.yaml").hardware
    assert "server_price_per_hour" in saved and "ssh_key" in saved and "prices" not in saved
    hw = load_run_config(run).hardware
    assert (hw.prices.server_gpu, hw.prices.server_per_hour) == (saved.server_gpu,
                                                                 saved.server_price_per_hour)
    assert hw.prices.edge_per_hour == saved.edge_price_per_hour
    assert (hw.ssh.key, hw.profiles.server) == (saved.ssh_key, saved.server_profile)


def test_slurm_placement_comes_from_the_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    from specedge.base.config.hardware import EdgePlacement
    from specedge.serving import remote

    cfg = _compose("hardware=slurm", "server.num_clients=3", "server.max_batch_size=2")
    assert cfg.devices() == ["cpu", "cpu"]  # the allocation, not hardware.nodes, decides
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ConfigError, match="only inside a SLURM allocation"):
        remote.slurm_placements(cfg)
    monkeypatch.setattr(remote, "allocation_nodes", lambda: ["n1", "n2"])
    with pytest.raises(ConfigError, match=r"server.num_clients = 3 is not accepted: this "
                       r"allocation has 2 node\(s\) x hardware.slurm.edges_per_node = 2"):
        remote.slurm_placements(cfg)
    cfg = _compose("hardware=slurm", "server.num_clients=4")
    with pytest.raises(ConfigError, match=r"server\.host = '127\.0\.0\.1' is not accepted"):
        remote.slurm_placements(cfg)
    cfg = _compose("hardware=slurm", "server.num_clients=4", "server.host=0.0.0.0",
                   "hardware.slurm.gpus_per_edge=1")
    assert remote.slurm_placements(cfg) == (
        "n1", [(n, EdgePlacement("cuda:0")) for n in ("n1", "n1", "n2", "n2")])
    assert remote.srun_command(cfg, "n2", "specedge-edge-3", 1, ["python"]) == [
        "srun", "--nodes=1", "--ntasks=1", "--nodelist=n2", "--overlap",
        "--job-name=specedge-edge-3", "--gpus-per-task=1", "python"]
