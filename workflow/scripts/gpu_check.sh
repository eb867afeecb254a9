#!/usr/bin/env bash
# The GPU figures of the forward path, in one short run (about 8 min on an H100/H200):
#  0. tests/test_gpu.py: the CUDA graphs path gives eager's tokens, every bucket captured at start-up;
#  1. profile Qwen3-14B (target) and Qwen3-0.6B (draft), random bf16 weights, CUDA graphs,
#     then the same points eager;
#  2. `bench spec` and `bench edge` on the tiny pair (models/tiny, built beforehand), all
#     methods on the graphs path, server and four edges sharing the one GPU.
# Usage: bash workflow/scripts/gpu_check.sh OUT_DIR [PYTHON]   (writes JSON and logs there)
# Needs there: the project's dependencies (workflow/scripts/offline_wheels.sh) plus pytest,
# pytest-timeout and hypothesis, and models/corpus carried (the micro pair of the tests is
# built from it) and models/tiny for the benchmarks.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [PYTHON]}
py=${2:-python}
mkdir -p "$out"
"$py" -c "import torch; print('GPU:', torch.cuda.get_device_name(0))" | tee "$out/gpu.txt"
timeout 120 "$py" -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$out/test_gpu.log" 2>&1
echo "tests/test_gpu.py: rc $?"; tail -n 15 "$out/test_gpu.log"
points=(profile.batches=[1,4] profile.nodes=[1,32,64] profile.prefixes=[512] profile.repeats=6)
pair=(model=qwen3_14b model.draft=Qwen/Qwen3-0.6B model.weights=random model.dtype=bf16
      hardware=one_gpu)
for path in graphs eager; do
    timeout 300 "$py" -m specedge.profile "${pair[@]}" "${points[@]}" "model.compile=$path" \
        "profile.out=$out/profile-$path.json" > "$out/profile-$path.log" 2>&1
    echo "profile $path: rc $?"; tail -n 25 "$out/profile-$path.log"
done
if [ -f models/tiny/card.json ]; then
    timeout 200 "$py" -m specedge.bench spec hardware=one_gpu --out "$out/spec.json" \
        > "$out/spec.log" 2>&1
    echo "bench spec: rc $?"; tail -n 30 "$out/spec.log"
    timeout 200 "$py" -m specedge.bench edge hardware=one_gpu --out "$out/edge.json" \
        > "$out/edge.log" 2>&1
    echo "bench edge: rc $?"; tail -n 20 "$out/edge.log"
else
    echo "models/tiny is missing: bench spec/edge skipped (build it, then carry it)"
fi
