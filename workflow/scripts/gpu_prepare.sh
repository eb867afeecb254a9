#!/usr/bin/env bash
# Prepares, here, what the offline GPU machine needs to run workflow/scripts/gpu_check.sh from a
# copy of this checkout: that machine has Python 3.12 with torch, transformers, numpy, pandas,
# seaborn, rich, accelerate and pytest, and nothing else arrives but the checkout and the ignored
# folders named to travel with it. So:
#  - .whl/: Python 3.12 manylinux x86_64 wheels of every other dependency the check imports
#    (hydra-core, omegaconf, grpcio, protobuf, datasets, fabric, simpy, ... with their needs);
#  - models/micro: the micro pair (built in seconds, the tests' recipe) and models/corpus;
#  - both ignored by git (.gitignore), and the size of all that travels printed and checked
#    against the 64 MiB a call may carry.
# Usage, from the project root: bash workflow/scripts/gpu_prepare.sh [PYTHON]
# Then, on the GPU machine (carrying .whl models/micro models/corpus):
#   bash workflow/scripts/gpu_run.sh bash workflow/scripts/gpu_check.sh OUT
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${1:-.venv/bin/python}
mkdir -p .whl
plat=(--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux_2_28_x86_64 --platform any)
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .whl hydra-core==1.3.2 omegaconf==2.3.1 datasets dill multiprocess xxhash \
    fabric invoke paramiko cryptography bcrypt pynacl cffi pycparser decorator deprecated wrapt \
    grpcio==1.85.3 protobuf==7.36.2 jsonschema jsonschema-specifications referencing rpds-py \
    attrs simpy rich markdown-it-py mdurl pygments 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
# hydra-core 1.3 needs antlr4 4.9.3, published only as an sdist: its (pure) wheel is built here.
if ! ls .whl/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    "$py" -m pip download -q --no-deps --no-binary=:all: -d "$tmp" antlr4-python3-runtime==4.9.3
    "$py" -m pip wheel -q --no-deps -w .whl "$tmp"/antlr4-python3-runtime-4.9.3.tar.gz
    rm -rf "$tmp"
fi
# The micro pair: the tests' recipe (tests/conftest.py), so its figures mean the same thing.
if [ ! -f models/micro/card.json ]; then
    "$py" -c "from pathlib import Path; from tests.conftest import micro_build_config; \
from specedge.commands.build_models import build_pair; \
build_pair(micro_build_config(Path('models/micro')))"
fi
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -n 1 | cut -f1)
carried=$(du -cb .whl models/micro models/corpus | tail -n 1 | cut -f1)
mib=$(( (tree + carried) / 1048576 ))
echo "travels: tree $((tree / 1024)) KiB + .whl, models/micro, models/corpus" \
     "$((carried / 1024)) KiB = $mib MiB (at most 64)"
[ "$mib" -lt 64 ] || { echo "gpu_prepare: over the 64 MiB a call carries" >&2; exit 1; }
