#!/usr/bin/env bash
# The GPU round, in one call of at most 10 minutes on an H100 / H200:
#   build the extension with the CUDA kernels, the GPU tests, compute-sanitizer over every kernel, the training
#   and sampling benchmarks. Full logs and results go to $OUT; a short summary is printed last.
#
#   bash scripts/gpu_round.sh                      all steps: build tests sanitize train sample
#   bash scripts/gpu_round.sh build train          only these steps (build first if the extension is not built)
#
# Environment: OUT (default /tmp/gpu_round_out), PYTHON (default python3, the machine's own with torch),
#   ROUND_DEADLINE_S (default 570: every step's limit is cut so that the round ends before it),
#   SANITIZE_TOOLS (default "memcheck"; e.g. "memcheck racecheck"), TRAIN_BATCH (default 8),
#   BENCH_ARGS (extra arguments of both benchmark scripts, e.g. --smoke to check this script on a CPU).
# A step that fails or times out does not stop the others (the benchmarks skip providers that cannot run);
# the exit status is 1 if any step failed.
set -u -o pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-${TMPDIR:-/tmp}/gpu_round_out}
PY=${PYTHON:-python3}
DEADLINE=${ROUND_DEADLINE_S:-570}
mkdir -p "$OUT"
export MELNET_FAST_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} PYTHONUNBUFFERED=1
# The scripts run as benchmarks/x.py or scripts/x.py: the package comes from this tree.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$SECONDS

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build tests sanitize train sample)
summary=()

# limit WANTED: seconds a step may take, cut to what is left before the deadline (5 s kept for the summary).
limit() {
    local left=$((DEADLINE - (SECONDS - START) - 5))
    if [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi
}

# step NAME WANTED_S TAIL_LINES CMD...: run CMD with a time limit, log to $OUT/NAME.log, show its last lines.
step() {
    local name=$1 wanted=$2 tail_lines=$3
    shift 3
    local t0=$SECONDS lim
    lim=$(limit "$wanted")
    if [ "$lim" -lt 10 ]; then
        summary+=("$(printf '%-9s %-8s %5s s  %s' "$name" "SKIPPED" 0 "no time left before the round's deadline")")
        return
    fi
    echo "=== $name (limit ${lim} s): $*"
    timeout --signal=TERM --kill-after=10 "$lim" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n "$tail_lines" "$OUT/$name.log"
    local status=ok
    [ $rc -ne 0 ] && status="rc=$rc"
    [ $rc -eq 124 ] && status="TIMEOUT"
    summary+=("$(printf '%-9s %-8s %5d s  %s' "$name" "$status" $((SECONDS - t0)) "$OUT/$name.log")")
}

sanitizer() {
    command -v compute-sanitizer 2>/dev/null && return
    for c in "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
        [ -x "$c" ] && echo "$c" && return
    done
}

echo "round: ${steps[*]} -> $OUT (deadline ${DEADLINE} s)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/gpu.txt"

for s in "${steps[@]}"; do
    case $s in
    build)
        step build 300 5 "$PY" -m pip install --no-build-isolation --no-deps -e .
        ;;
    tests)
        # tests/gpu holds the GPU tests; elsewhere the marker selects them too.
        where=tests
        [ -d tests/gpu ] && where=tests/gpu
        step tests 150 25 "$PY" -m pytest -q -m gpu "$where"
        ;;
    sanitize)
        cs=$(sanitizer)
        if [ -z "$cs" ]; then
            summary+=("$(printf '%-9s %-8s %5s s  %s' sanitize "SKIPPED" 0 "compute-sanitizer not found")")
            continue
        fi
        for tool in ${SANITIZE_TOOLS:-memcheck}; do
            # No caching allocator: each tensor its own allocation, so out-of-bounds accesses are seen.
            step "sanitize-$tool" 75 12 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$cs" --tool "$tool" \
                --error-exitcode 1 --print-limit 20 "$PY" scripts/sanitize_kernels.py
        done
        ;;
    train)
        # The script stops starting cases when its budget runs out (30 s kept for writing and printing).
        lim=$(limit 170)
        step train 170 75 "$PY" benchmarks/bench_gpu_training.py --out "$OUT" --budget-s $((lim > 60 ? lim - 30 : 30)) \
            --train-batch "${TRAIN_BATCH:-8}" ${BENCH_ARGS:-}
        ;;
    sample)
        lim=$(limit 130)
        step sample 130 55 "$PY" benchmarks/bench_gpu_sampling.py --out "$OUT" --budget-s $((lim > 60 ? lim - 30 : 30)) \
            ${BENCH_ARGS:-}
        ;;
    *)
        echo "unknown step $s (steps: build tests sanitize train sample)"
        exit 2
        ;;
    esac
done

echo
echo "=== round summary ($((SECONDS - START)) s)"
[ -f "$OUT/tests.log" ] && echo "gpu tests: $(tail -n 1 "$OUT/tests.log")"
for f in "$OUT"/sanitize-*.log; do
    [ -f "$f" ] && echo "$(basename "$f" .log): $(grep -E 'ERROR SUMMARY|failure\(s\)' "$f" | tr '\n' ' ')"
done
printf '%s\n' "${summary[@]}"
printf '%s\n' "${summary[@]}" | grep -qvE '^\S+ +ok ' && exit 1
exit 0
