#!/usr/bin/env bash
# tests/stress.sh: what `make stress-test` runs after `make deps`: builds, then
# runs the C suites (plain build) and the end-to-end suite STRESS_RUNS times in
# a row (default 10) while STRESS_BURNERS processes (default 2) burn CPU beside
# them, so a test that depends on timing or on an idle machine shows up as a
# failure. STRESS_ASAN=1 also runs the ASan+UBSan build's C suites each run.
# Prints each run's count and failing tests, then the failures by run, the
# total time, the CPU model and one line "N passed, N failed" over all runs.
# The burners are started here and always killed on exit (trap); nothing is
# niced: contention is the point. Each run's output is kept in a directory
# under /tmp, named at the end.
set -u
cd "$(dirname "$0")/.."
export LC_ALL=C
JOBS=$(nproc 2>/dev/null || echo 2)
RUNS=${STRESS_RUNS:-10}
BURNERS=${STRESS_BURNERS:-2}
ASAN=${STRESS_ASAN:-0}
case "$RUNS" in '' | *[!0-9]* | 0) echo "stress: STRESS_RUNS must be a whole number >= 1, got '$RUNS'" >&2; exit 2 ;; esac
case "$BURNERS" in '' | *[!0-9]*) echo "stress: STRESS_BURNERS must be a whole number >= 0, got '$BURNERS'" >&2; exit 2 ;; esac
case "$ASAN" in 0 | 1) ;; *) echo "stress: STRESS_ASAN must be 0 or 1, got '$ASAN'" >&2; exit 2 ;; esac

OUT=$(mktemp -d /tmp/medserve-stress.XXXXXX)
burner_pids=()

# Kills the burners this script started (by their ids) and waits for them.
stop_burners() {
    local p
    for p in "${burner_pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${burner_pids[@]}"; do wait "$p" 2>/dev/null; done
    burner_pids=()
}
trap stop_burners EXIT
trap 'echo "stress: interrupted"; exit 130' INT TERM

t_start=$(date +%s)
echo "== build (plain and ASan+UBSan; the end-to-end suite runs build/asan/medserve too)"
if ! make -j"$JOBS" tests >"$OUT/build.log" 2>&1 || ! make -j"$JOBS" asan >>"$OUT/build.log" 2>&1; then
    tail -n 40 "$OUT/build.log"
    echo "0 passed, 1 failed"
    exit 1
fi

for _ in $(seq 1 "$BURNERS"); do
    yes >/dev/null &
    burner_pids+=("$!")
done
echo "== $RUNS runs beside $BURNERS CPU burners (pids ${burner_pids[*]:-none}); output in $OUT"

total_pass=0; total_fail=0
failures=()    # "run N: suite name" for every failed test
run_lines=()   # one summary line per run

# Runs every C test binary under $1 (label $2) for run $3; adds to the run's
# counts (rp, rf) and names each failed case in failures.
run_c_suite() {
    local dir=$1 label=$2 run=$3 t name out rc p f c
    for t in "$dir"/tests/test_*; do
        [ -x "$t" ] || continue
        case "$t" in *.o | *.d) continue ;; esac
        name=$(basename "$t")
        out=$(timeout 900 "$t" 2>&1); rc=$?
        printf '%s\n' "$out" >"$OUT/run$run-$label-$name.log"
        p=$(printf '%s\n' "$out" | grep -c '^ok ')
        f=$(printf '%s\n' "$out" | grep -c '^not ok ')
        while IFS= read -r c; do
            [ -n "$c" ] && failures+=("run $run: $label $name: $c")
        done < <(printf '%s\n' "$out" | sed -n 's/^not ok //p')
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            f=1
            failures+=("run $run: $label $name: exited $rc")
        fi
        rp=$((rp + p)); rf=$((rf + f))
    done
}

# Runs the end-to-end suite for run $1; adds to rp, rf and failures.
run_e2e() {
    local run=$1 out rc last p f n
    out=$(MEDSERVE_BUILD=build timeout 1500 python3 -m pytest -q -p no:cacheprovider -rfE tests/e2e 2>&1); rc=$?
    printf '%s\n' "$out" >"$OUT/run$run-e2e.log"
    last=$(printf '%s\n' "$out" | tail -n 1)
    p=$(printf '%s\n' "$last" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || true)
    f=0
    for n in $(printf '%s\n' "$last" | grep -oE '[0-9]+ (failed|errors?)' | grep -oE '^[0-9]+'); do f=$((f + n)); done
    p=${p:-0}
    while IFS= read -r n; do
        [ -n "$n" ] && failures+=("run $run: e2e $n")
    done < <(printf '%s\n' "$out" | sed -n 's/^\(FAILED\|ERROR\) \([^ ]*\).*/\2/p')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        failures+=("run $run: e2e: pytest exited $rc ($last)")
    fi
    rp=$((rp + p)); rf=$((rf + f))
}

for run in $(seq 1 "$RUNS"); do
    t0=$(date +%s); rp=0; rf=0; before=${#failures[@]}
    run_c_suite build plain "$run"
    if [ "$ASAN" = 1 ]; then
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
            MEDSERVE_SANITIZED=1 run_c_suite build/asan asan "$run"
    fi
    run_e2e "$run"
    load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
    line="run $run/$RUNS: $rp passed, $rf failed in $(($(date +%s) - t0)) s (load average $load)"
    run_lines+=("$line")
    echo "$line"
    for ((i = before; i < ${#failures[@]}; i++)); do echo "  failed: ${failures[$i]#run $run: }"; done
    total_pass=$((total_pass + rp)); total_fail=$((total_fail + rf))
done
stop_burners

echo "== summary"
printf '%s\n' "${run_lines[@]}"
if [ ${#failures[@]} -gt 0 ]; then
    echo "failed tests, by run:"
    printf '  %s\n' "${failures[@]}"
fi
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
echo "$RUNS runs, $BURNERS burners, STRESS_ASAN=$ASAN, $(nproc) CPUs ($cpu), $(($(date +%s) - t_start)) s in all; logs in $OUT"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
