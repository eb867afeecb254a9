#!/usr/bin/env bash
# On the offline GPU machine, from the checkout: installs the wheels gpu_prepare.sh left in .whl
# into a private folder (once; the image's torch and transformers stay), then runs a command
# with the checkout importable.
# Usage: bash workflow/scripts/gpu_run.sh COMMAND...
set -euo pipefail
site=/tmp/specedge-site
[ -d "$site/hydra" ] || python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --target "$site" .whl/*.whl
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$@"
