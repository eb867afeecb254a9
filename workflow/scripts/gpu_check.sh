#!/usr/bin/env bash
# The GPU check: the forward path's figures on a lent GPU, in one command of at most 480 s of
# step limits, most important first, so that a run cut short still gives the main figures:
#  1. profile: random bf16 Qwen3-14B (target) and Qwen3-0.6B (draft), batch 1 and 8 x new tokens
#     1/16/64 after a 512-token prefix, CUDA graphs (start-up capture time and memory logged)
#     then eager, beside the bandwidth floor;
#  2. bench paths: eager against graphs token for token on the same random 14B + 0.6B (bf16,
#     8 new tokens, a budget-8 tree), then an fp32 exact-or-fail run on the micro pair (16);
#  3. bench spec with 4 and 8 requests, bench edge (SpecEdge and server-only, server and four
#     edges sharing the one GPU) with 8, on the micro pair. Every process there spends about
#     15 s starting (measured on an H200, 2026-12-04: one SpecEdge run of 4 requests 37 s),
#     so one edge size fits, not two;
#  4. tests/test_gpu.py; then bench summary: one table with the GPU's name on every line.
# It writes into a temporary folder and leaves OUT/gpu-check.tar.gz (everything) and
# OUT/summary.txt (the table, each step's exit status and time); it exits 1 if a step failed.
#
# Usage: bash workflow/scripts/gpu_check.sh OUT [--cpu] [--steps NAME,...]
#   --cpu: the same steps on this machine's CPU with every size shrunk (the micro pair in place
#          of Qwen3, static in place of graphs), to test the plumbing where no GPU is; each
#          limit is then 4x its device value (a shared 2-core CPU under a parallel test suite
#          took 30 s for spec-4: the limits are sized for the device, not for this);
#   --steps: only these (profile, paths, paths-fp32, spec-4, spec-8, edge-8, test-gpu; a
#          prefix takes its group: spec, paths), e.g. to finish a run that was cut short;
#   --pair DIR: the small pair (default models/micro, built by gpu_prepare.sh);
#   --python PY: the interpreter (default python3; here, .venv/bin/python).
# OUT/summary.txt (each step's status) and the tarball are rewritten after every step: a run
# killed from outside still leaves what it measured; the table is made once, at the end (each
# Python process costs a start-up: 15 s on the device), or from the unpacked tarball by
# `python -m specedge.bench summary DIR`.
# Each step's limit is in LIMITS below (at most 480 s together; --limits prints the sum).
# Prepared here by workflow/scripts/gpu_prepare.sh (wheels in .whl/, the micro pair in
# models/micro); on the GPU machine, carrying .whl, models/micro and models/corpus:
#   bash workflow/scripts/gpu_run.sh bash workflow/scripts/gpu_check.sh OUT
set -uo pipefail
declare -A LIMITS=([profile-graphs]=45 [profile-eager]=40 [paths]=75 [paths-fp32]=30
                   [spec-4]=30 [spec-8]=35 [edge-8]=120 [test-gpu]=90)
if [ "${1:-}" = --limits ]; then
    sum=0
    for name in "${!LIMITS[@]}"; do sum=$((sum + LIMITS[$name])); done
    echo "$sum"
    exit 0
fi
out=$(realpath -m "${1:?usage: gpu_check.sh OUT [--cpu] [--steps NAME,...] [--pair DIR] [--python PY] | --limits}")
shift
cpu=0 only= micro=models/micro py=python3 scale=1
while [ $# -gt 0 ]; do
    case $1 in
        --cpu) cpu=1 scale=4 ;;
        --steps) only=",${2:?--steps needs a comma-separated list},"; shift ;;
        --pair) micro=${2:?--pair needs a folder}; shift ;;
        --python) py=${2:?--python needs an interpreter}; shift ;;
        *) echo "gpu_check: unknown argument $1 (accepted: --cpu, --steps NAME,...," \
                "--pair DIR, --python PY)" >&2
           exit 2 ;;
    esac
    shift
done
[ -f "$micro/card.json" ] || { echo "gpu_check: $micro is missing: run" \
    "workflow/scripts/gpu_prepare.sh first (it builds the micro pair and the wheels)" >&2; exit 2; }
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
pair=(model=tiny "model.name=micro" "model.target=$micro/target" "model.draft=$micro/draft")
small_tree=(edge.max_budget=8 edge.max_beam_len=3 generation.max_new_tokens=8)
if [ $cpu = 1 ]; then
    fast=static hw=(hardware=cpu)
    big=("${pair[@]}" model.dtype=fp32 model.max_len=1024)
    points=(profile.batches=[1,2] profile.nodes=[1,4] profile.prefixes=[16] profile.repeats=2
            profile.warmup=1)
    tests=(tests/test_gpu.py::test_graphs_give_eager_tokens_and_capture_once_per_bucket)
else
    fast=graphs hw=(hardware=one_gpu)
    big=(model=qwen3_14b model.weights=random model.dtype=bf16 model.draft=Qwen/Qwen3-0.6B)
    points=(profile.batches=[1,8] profile.nodes=[1,16,64] profile.prefixes=[512]
            profile.repeats=5)
    tests=(tests/test_gpu.py)
fi
total=0 failed=0
status=()
# step NAME COMMAND...: run it under LIMITS[NAME], log into the work folder, keep going
step() {
    local name=$1; shift
    local limit=$((LIMITS[${name/-static/-graphs}] * scale))
    case $only in ""|*",$name,"*|*",${name%%-*},"*) ;; *) return ;; esac
    total=$((total + limit))
    local t0=$SECONDS
    timeout "$limit" "$@" > "$work/$name.log" 2>&1
    local rc=$?
    local line="$name: rc $rc in $((SECONDS - t0)) s (limit $limit s)"
    [ $rc = 124 ] && line="$line: TIMED OUT"
    [ $rc = 0 ] || failed=$((failed + 1))
    status+=("$line")
    echo "$line"
    tail -n 25 "$work/$name.log"
    report > /dev/null
}
# report [table]: the steps' status (and the table) and the tarball of everything so far, into OUT
report() {
    {
        if [ "${1:-}" = table ]; then
            "$py" -m specedge.bench summary "$work" 2>&1
        else
            echo "(the table comes at the end; for a run cut short:" \
                 "python -m specedge.bench summary DIR on the unpacked tarball)"
        fi
        echo
        printf '%s\n' "${status[@]}"
        echo "step limits: $total s"
    } > "$work/summary.txt"
    cp "$work/summary.txt" "$out/summary.txt"
    tar -czf "$out/gpu-check.tar.gz" -C "$work" .
    cat "$work/summary.txt"
}
"$py" -c "import torch, transformers; print('device:', torch.cuda.get_device_name(0) \
if torch.cuda.is_available() else 'no CUDA', '| torch', torch.__version__, '| transformers', \
transformers.__version__)" | tee "$work/device.txt"
for path in "$fast" eager; do
    step "profile-$path" "$py" -m specedge.profile "${big[@]}" "${hw[@]}" "${points[@]}" \
        "model.compile=$path" "profile.out=$work/profile-$path.json"
done
step paths "$py" -m specedge.bench paths "${big[@]}" "${hw[@]}" "${small_tree[@]}" \
    model.compile=$fast --log --out "$work/paths.json"
step paths-fp32 "$py" -m specedge.bench paths "${pair[@]}" "${hw[@]}" model.dtype=fp32 \
    model.compile=$fast generation.max_new_tokens=16 --out "$work/paths-fp32.json"
for n in 4 8; do
    step "spec-$n" "$py" -m specedge.bench spec "${pair[@]}" "${hw[@]}" \
        "dataset.max_requests=$n" generation.max_new_tokens=32 --repeats 1 --log \
        --out "$work/spec-$n.json"
done
step edge-8 "$py" -m specedge.bench edge "${pair[@]}" "${hw[@]}" dataset.max_requests=8 \
    generation.max_new_tokens=32 --no-proactive-run --out "$work/edge-8/edge.json"
step test-gpu "$py" -m pytest -q -p no:cacheprovider -o addopts= "${tests[@]}"
report table
rm -rf "$work"
echo "wrote $out/summary.txt and $out/gpu-check.tar.gz; $failed step(s) failed"
[ $failed = 0 ]
