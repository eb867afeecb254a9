#!/usr/bin/env bash
# The GPU figures of the forward path, in one short run (within 8 min on an H100/H200):
#  0. tests/test_gpu.py: the CUDA graphs path gives eager's tokens, every bucket captured at
#     start-up;
#  1. profile Qwen3-14B (target) with Qwen3-0.6B and Qwen3-1.7B (drafts), random bf16 weights,
#     batch 1/4/8 x new tokens 1/16/64 after a 512-token prefix, CUDA graphs then eager;
#  2. `bench paths`: eager against graphs on the same random Qwen3-14B + 0.6B, batched greedy
#     and server-only SpecExec, each request's first differing token (bf16);
#  3. `bench spec` and `bench edge` on the tiny pair (models/tiny, built beforehand), all
#     methods on the graphs path, server and four edges sharing the one GPU;
#  4. `bench summary`: one table of it all, with the GPU path's bar, the GPU's name on it.
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
points=(profile.batches=[1,4,8] profile.nodes=[1,16,64] profile.prefixes=[512] profile.repeats=6)
random=(model=qwen3_14b model.weights=random model.dtype=bf16 hardware=one_gpu)
for path in graphs eager; do
    timeout 150 "$py" -m specedge.profile "${random[@]}" model.draft=Qwen/Qwen3-0.6B \
        "${points[@]}" "model.compile=$path" "profile.out=$out/profile-$path.json" \
        > "$out/profile-$path.log" 2>&1
    echo "profile $path: rc $?"; tail -n 25 "$out/profile-$path.log"
    timeout 60 "$py" -m specedge.profile "${random[@]}" model.draft=Qwen/Qwen3-1.7B \
        profile.models=[draft] "${points[@]}" "model.compile=$path" \
        "profile.out=$out/profile-draft-1.7b-$path.json" > "$out/profile-draft-1.7b-$path.log" 2>&1
    echo "profile Qwen3-1.7B $path: rc $?"; tail -n 12 "$out/profile-draft-1.7b-$path.log"
done
timeout 150 "$py" -m specedge.bench paths "${random[@]}" model.draft=Qwen/Qwen3-0.6B \
    model.compile=graphs --out "$out/paths.json" > "$out/paths.log" 2>&1
echo "bench paths: rc $?"; tail -n 12 "$out/paths.log"
if [ -f models/tiny/card.json ]; then
    timeout 120 "$py" -m specedge.bench spec hardware=one_gpu --out "$out/spec.json" \
        > "$out/spec.log" 2>&1
    echo "bench spec: rc $?"; tail -n 30 "$out/spec.log"
    timeout 120 "$py" -m specedge.bench edge hardware=one_gpu --out "$out/edge.json" \
        > "$out/edge.log" 2>&1
    echo "bench edge: rc $?"; tail -n 20 "$out/edge.log"
else
    echo "models/tiny is missing: bench spec/edge skipped (build it, then carry it)"
fi
"$py" -m specedge.bench summary "$out" | tee "$out/summary.txt"
