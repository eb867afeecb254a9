import shlex
import sys

from snakemake.utils import validate


validate(config, "../schemas/config.schema.yaml")

# The interpreter running Snakemake is the project's venv: every rule uses it.
PY = shlex.quote(sys.executable)
# Every tool of the package, as `specedge COMMAND` (specedge/__main__.py) on that interpreter.
SPECEDGE = f"{PY} -m specedge"


# The pair every run serves (models.pair in workflow/config.yaml) and the card its build
# writes last; every run's overrides start with model=<pair>, then runs.overrides.
PAIR = config["models"]["pair"]
PAIR_CARD = {"tiny": "models/tiny/card.json", "smollm2": "models/smollm2/draft/card.json"}[PAIR]
RUN_OVERRIDES = [f"model={PAIR}", *config["runs"].get("overrides", [])]

# The SmolLM2 draft every clone assembles: its own tensors and card, tracked in the package.
SHIPPED_DRAFT = f"{workflow.basedir}/specedge/data/drafts/smollm2"


def hydra_overrides(items):
    return " ".join(shlex.quote(str(item)) for item in items)


def slurm_resources(gpus=True, runtime_factor=1):
    """A job's resources under the SLURM profile, from config["slurm"] (values given with
    --config arrive as strings). ``gpus``: the rule runs models (the site's GPU request)."""
    slurm = config.get("slurm", {})
    res = {"cpus_per_task": int(slurm.get("cpus_per_task", 2)),
           "mem_mb": int(slurm.get("mem_mb", 8000)),
           "runtime": int(slurm.get("runtime", 60)) * runtime_factor}
    if slurm.get("partition"):
        res["slurm_partition"] = slurm["partition"]
    if slurm.get("account"):
        res["slurm_account"] = slurm["account"]
    if gpus and int(slurm.get("gpus", 0)):
        res["gpu"] = int(slurm["gpus"])
    return res
