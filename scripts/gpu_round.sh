#!/usr/bin/env bash
# The GPU round: one call, at most 7 minutes of wall time on a fresh H100 / H200 that has torch, triton, nvcc and
# pytest (nothing is installed). Steps run most valuable first, each under its own `timeout` with its own log; a
# step that fails or runs out of time does not stop the next, and a step that would start with less than 10 s
# before the round's deadline is skipped and said so. At the end the logs go into one archive, $OUT holds at most
# 8 files, and a one-screen summary says what passed and the figures.
#
#   bash scripts/gpu_round.sh                 every step
#   bash scripts/gpu_round.sh measure memory  only these (the extension must be built)
#   bash scripts/gpu_round.sh --smoke         the same script on a CPU at tiny sizes (CI runs it): the extension
#                                             loaded instead of built, the GPU tests only collected, no sanitizer,
#                                             benchmarks with --smoke, every limit x4 (a busy 2-core machine)
#
# Environment: OUT (default /tmp/gpu_round_out), PYTHON (default python3), ROUND_DEADLINE_S (default 420),
#   SANITIZE_TOOLS (default memcheck).
#
# Budgets (s, each step's time limit) and what they rest on. H100 SXM: ~990 dense bf16 TFLOP/s peak (~600
# reached by large cuBLAS GEMMs), 3.35 TB/s HBM, 132 SMs; 16 CPU cores for the build.
#   info          5  nvidia-smi and versions.
#   build       140  pip install -e . for sm_90 only (H100 / H200), MAX_JOBS=16, nvcc --threads 4: the C++ and CUDA
#                    sources compile in parallel; the longest, sample_tier.cu (three weight dtypes of a large
#                    kernel), takes 60-90 s on one core (about 4 min for the whole CUDA build on 2 busy cores).
#   tests-cuda   60  pytest -m gpu on both CUDA sampler and both sweep designs, mixture NLL and maths: ~300 cases of
#                    microseconds on the GPU each; the CPU float64 references (largest: the H=512 sweeps) take most
#                    of the time.
#   measure     100  benchmarks/gpu_round_measure.py, budget 90 s: the sweep at the Blizzard tier-1 shape is 8.3
#                    TFLOP per fwd+bwd, ~15-25 ms for cuDNN and an estimated 20-40 ms for our designs, so 2 warm-up
#                    + at most 9 timed calls of 6 providers and 3 shapes is ~10 s; Triton's JIT (first call of every
#                    kernel specialization, 2-5 s each, ~10 of them) counts here, it runs before the Triton tests;
#                    the GEMM floor (~5.5 TFLOP of bf16 GEMMs, ~9 ms) ~2 s; 2 x 2200 grid barriers at ~1.5 us
#                    <1 s; the sampler at ~70-120 us per element on Blizzard tier 1 (a frame is 32 elements),
#                    0.3 s of frames x 3 reps x 6 variants (both designs) x 2 batches x 2 presets ~30 s; a
#                    whole 10 s Blizzard spectrogram per design, extrapolated from a few frames when it does not fit.
#   tests-triton 40  pytest -m gpu on the Triton sweep and mixture NLL: JIT compiles dominate (~30 specializations);
#                    last of the tests (not the fast path: README, GPU backends).
#   sanitize     40  compute-sanitizer memcheck over the CUDA kernels only (scripts/sanitize_kernels.py --backends
#                    cuda cuda_gemm): ~20 small launches slowed 10-100x, plus the tool's start-up; then 2 x 15 s:
#                    racecheck and synccheck of the flags sampler on its smallest case (skipped if the deadline is near).
#   memory       25  benchmarks/sweep_memory.py on the GPU at the Blizzard tier-1 shape: stored and recompute,
#                    each in a fresh process (~5 s of imports, one fwd+bwd).
# Total 440 s of step limits for the 420 s deadline: the last steps are skipped, and said so, if the earlier ones use
# their whole limits. Not in the default round (a longer window): train and sample, the full
# training and sampling benchmarks (bench_gpu_training.py, bench_gpu_sampling.py, budget 170 and 130 s). New steps (a second sweep or sampler design) add their cases to the lists in
# benchmarks/gpu_round_measure.py (SWEEP_DESIGNS, SAMPLER_VARIANTS) and need no new step here.
set -u -o pipefail
cd "$(dirname "$0")/.."

SMOKE=0
steps=()
for a in "$@"; do
    if [ "$a" = "--smoke" ]; then SMOKE=1; else steps+=("$a"); fi
done
ALL_STEPS=(info build tests-cuda measure tests-triton sanitize memory)
[ ${#steps[@]} -eq 0 ] && steps=("${ALL_STEPS[@]}")

OUT=${OUT:-${TMPDIR:-/tmp}/gpu_round_out}
PY=${PYTHON:-python3}
DEADLINE=${ROUND_DEADLINE_S:-420}
LOGS="$OUT/logs"
mkdir -p "$LOGS"
# The build uses every core; per-shape tuning stays off (nothing calls melnet_fast.tune and no tuning cache is read).
export MELNET_FAST_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} MELNET_FAST_NVCC_THREADS=${MELNET_FAST_NVCC_THREADS:-4}
export MELNET_FAST_CUDA_ARCHS=${MELNET_FAST_CUDA_ARCHS:-9.0}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset MELNET_FAST_TUNE_CACHE
BENCH=() COLLECT=() SCALE=1
if [ $SMOKE -eq 1 ]; then
    BENCH=(--smoke) COLLECT=(--collect-only) SCALE=4
    DEADLINE=$((DEADLINE * SCALE))
fi
START=$SECONDS
summary=()

# step NAME BUDGET_S CMD...: run CMD under `timeout`, cut to what is left before the deadline (5 s kept for the
# archive and the summary); its output to $LOGS/NAME.log, its last lines shown.
step() {
    local name=$1 budget=$2
    shift 2
    local left=$((DEADLINE - (SECONDS - START) - 5)) lim t0=$SECONDS
    budget=$((budget * SCALE))
    lim=$budget
    [ "$left" -lt "$lim" ] && lim=$left
    if [ "$lim" -lt 10 ] && [ "$lim" -lt "$budget" ]; then
        summary+=("$(printf '%-13s %-8s %4s s  %s' "$name" SKIPPED 0 "no time left before the round's deadline")")
        return
    fi
    echo "=== $name (limit ${lim} s of ${budget}): $*"
    timeout --signal=TERM --kill-after=5 "$lim" "$@" >"$LOGS/$name.log" 2>&1
    local rc=$? status=ok
    tail -n 6 "$LOGS/$name.log"
    [ $rc -ne 0 ] && status="rc=$rc"
    [ $rc -eq 124 ] && status=TIMEOUT
    summary+=("$(printf '%-13s %-8s %4d s  %s' "$name" "$status" $((SECONDS - t0)) "$(tail -n 1 "$LOGS/$name.log" | cut -c1-70)")")
}

skipped() {
    summary+=("$(printf '%-13s %-8s %4s s  %s' "$1" SKIPPED 0 "$2")")
}

sanitizer() {
    command -v compute-sanitizer 2>/dev/null && return
    for c in "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
        [ -x "$c" ] && echo "$c" && return
    done
}

echo "round: ${steps[*]} -> $OUT (deadline ${DEADLINE} s$([ $SMOKE -eq 1 ] && echo ", smoke"))"
for s in "${steps[@]}"; do
    case $s in
    info)
        step info 5 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; \
            '$PY' -c 'import torch, triton; print(torch.__version__, torch.version.cuda, triton.__version__)'; \
            git log -1 --format='%h %cI %s'"
        ;;
    build)
        if [ $SMOKE -eq 1 ]; then
            step build 15 "$PY" -c "import melnet_fast._C as c; print('extension loaded:', c.__file__)"
        else
            step build 140 "$PY" -m pip install --no-build-isolation --no-deps -e .
        fi
        ;;
    tests-cuda)
        step tests-cuda 60 "$PY" -m pytest "${COLLECT[@]}" --maxfail=10 -q -m gpu -p no:cacheprovider tests/gpu/test_sample_tier_cuda_gpu.py \
            tests/gpu/test_sample_tier_flags_gpu.py tests/gpu/test_lstm_sweep_cuda_gpu.py tests/gpu/test_lstm_sweep_gemm_gpu.py \
            tests/gpu/test_gmm_nll_gpu.py tests/gpu/test_scalar_math_gpu.py \
            tests/gpu/test_ops_opcheck_gpu.py -k "not triton"
        ;;
    measure)
        step measure 100 "$PY" benchmarks/gpu_round_measure.py --out "$OUT" --budget-s 90 "${BENCH[@]}"
        ;;
    tests-triton)
        step tests-triton 40 "$PY" -m pytest "${COLLECT[@]}" -q -m gpu -p no:cacheprovider tests/gpu/test_lstm_sweep_triton_gpu.py \
            tests/gpu/test_gmm_nll_gpu.py -k triton
        ;;
    sanitize)
        cs=$(sanitizer)
        if [ $SMOKE -eq 1 ] || [ -z "$cs" ]; then
            skipped sanitize "$([ $SMOKE -eq 1 ] && echo "smoke: no GPU" || echo "compute-sanitizer not found")"
            continue
        fi
        for tool in ${SANITIZE_TOOLS:-memcheck}; do
            # No caching allocator: each tensor its own allocation, so out-of-bounds accesses are seen.
            step "sanitize-$tool" 40 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$cs" --tool "$tool" --error-exitcode 1 \
                --print-limit 20 "$PY" scripts/sanitize_kernels.py --backends cuda cuda_gemm
        done
        # The flags sampler's shared memory and barriers (its global-memory ordering is the emulator's to check).
        for tool in racecheck synccheck; do
            step "sanitize-flags-$tool" 15 "$cs" --tool "$tool" --error-exitcode 1 --print-limit 20 \
                "$PY" scripts/sanitize_kernels.py --backends cuda --ops sampler --variants flags --small
        done
        ;;
    memory)
        if [ $SMOKE -eq 1 ]; then
            step memory 25 "$PY" benchmarks/sweep_memory.py --smoke --out "$OUT"
        else
            step memory 25 "$PY" benchmarks/sweep_memory.py --device cuda --shape 32 215 32 512 512 --out "$OUT"
        fi
        ;;
    train)
        step train 170 "$PY" benchmarks/bench_gpu_training.py --out "$OUT" --budget-s 140 "${BENCH[@]}"
        ;;
    sample)
        step sample 130 "$PY" benchmarks/bench_gpu_sampling.py --out "$OUT" --budget-s 100 "${BENCH[@]}"
        ;;
    *)
        echo "unknown step $s (steps: ${ALL_STEPS[*]} train sample)"
        exit 2
        ;;
    esac
done

# At most 8 files come back: the logs go into one archive.
tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$LOGS"
{
    echo "=== round summary: $((SECONDS - START)) s of ${DEADLINE}; files in $OUT: $(ls "$OUT" | wc -l) (at most 8)"
    printf '%s\n' "${summary[@]}"
    if [ -f "$OUT/gpu_round.json" ]; then
        "$PY" benchmarks/gpu_round_measure.py --summary "$OUT/gpu_round.json"
    fi
} | tee "$OUT/summary.txt"
[ "$(ls "$OUT" | wc -l)" -le 8 ] || echo "warning: more than 8 files in $OUT"
printf '%s\n' "${summary[@]}" | grep -qvE '^\S+ +(ok|SKIPPED) ' && exit 1
exit 0
