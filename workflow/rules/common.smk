import shlex
import sys

from snakemake.utils import validate


validate(config, "../schemas/config.schema.yaml")

# The interpreter running Snakemake is the project's venv: every rule uses it.
PY = shlex.quote(sys.executable)


def hydra_overrides(items):
    return " ".join(shlex.quote(str(item)) for item in items)
