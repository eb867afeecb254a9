#!/usr/bin/env bash
# Wheels to install this project on an offline machine whose Python already has torch (a CUDA
# build, say): every dependency of pyproject.toml except torch, for that machine's Python and
# platform. Run it where a network is, copy DEST over, then there (torch stays as it is):
#   python -m venv --system-site-packages .venv && \
#   .venv/bin/pip install --no-index --find-links DEST -e .
# Usage: workflow/scripts/offline_wheels.sh DEST [PYTHON_VERSION] [PLATFORM]
#   e.g. workflow/scripts/offline_wheels.sh wheels 3.12 manylinux_2_28_x86_64
set -euo pipefail
shopt -s nullglob
dest=$(realpath -m "${1:?usage: offline_wheels.sh DEST [PYTHON_VERSION] [PLATFORM]}")
py=${2:-3.12}
plat=${3:-manylinux_2_28_x86_64}
cd "$(dirname "$0")/../.."
mkdir -p "$dest"
# Our requirements, torch left out: the target machine's own build must stay.
python3 - > "$dest/requirements.txt" <<'PY'
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not d.replace(" ", "").startswith("torch")))
print("setuptools>=68")  # the project's build backend, for pip's isolated build there
PY
# Some dependencies (antlr4 4.9.3 for hydra-core, a few of snakemake's) are published only as
# sdists, which a download for another platform cannot take: build their (pure) wheels here.
sdists=$(mktemp -d)
python3 -m pip download -q -d "$sdists" --prefer-binary -r "$dest/requirements.txt" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
built=("$sdists"/*.tar.gz "$sdists"/*.zip)
if [ ${#built[@]} -gt 0 ]; then
    python3 -m pip wheel -q --no-deps -w "$dest" "${built[@]}"
fi
rm -rf "$sdists"
python3 -m pip download -q -d "$dest" --find-links "$dest" --only-binary=:all: \
    --python-version "$py" --platform "$plat" --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform any -r "$dest/requirements.txt" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
if ls "$dest" | grep -q '^torch-'; then
    echo "offline_wheels: a dependency pulled torch in; remove it from $dest" >&2
    exit 1
fi
du -sh "$dest"
