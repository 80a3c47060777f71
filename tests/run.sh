#!/usr/bin/env bash
# tests/run.sh: what `make test` runs after `make deps`: builds, runs every C
# test in a normal build and again under ASan+UBSan, then the Python
# end-to-end tests against real processes, and ends with one line
# "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
export LC_ALL=C
JOBS=$(nproc 2>/dev/null || echo 2)
pass=0; fail=0; failed_names=()

run_c_tests() { # $1 build dir, $2 label
    local t out
    for t in "$1"/tests/test_*; do
        [ -x "$t" ] || continue
        case "$t" in *.o|*.d) continue;; esac
        out=$(timeout 900 "$t" 2>&1); rc=$?
        printf '%s\n' "$out" | sed "s|^|[$2 $(basename "$t")] |"
        local p f
        p=$(printf '%s\n' "$out" | grep -c '^ok ')
        f=$(printf '%s\n' "$out" | grep -c '^not ok ')
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "[$2 $(basename "$t")] exited $rc"; fi
        pass=$((pass + p)); fail=$((fail + f))
        [ "$f" -eq 0 ] || failed_names+=("$2 $(basename "$t")")
    done
}

echo "== format"
if make -s format-check; then pass=$((pass + 1)); else fail=$((fail + 1)); failed_names+=("format-check (run: make format)"); fi

echo "== build"
if ! make -j"$JOBS" tests >/tmp/medserve-build.log 2>&1; then
    cat /tmp/medserve-build.log; echo "0 passed, 1 failed"; exit 1
fi
echo "== C tests"
run_c_tests build plain

echo "== C tests under ASan+UBSan"
if make -j"$JOBS" asan >/tmp/medserve-asan.log 2>&1; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        MEDSERVE_SANITIZED=1 run_c_tests build/asan asan
else
    cat /tmp/medserve-asan.log; fail=$((fail + 1)); failed_names+=("asan build")
fi

echo "== end-to-end tests (real processes)"
if ls tests/e2e/test_*.py >/dev/null 2>&1; then
    out=$(MEDSERVE_BUILD=build timeout 1500 python3 -m pytest -q -p no:cacheprovider tests/e2e 2>&1); rc=$?
    printf '%s\n' "$out" | tail -n 40
    p=$(printf '%s\n' "$out" | tail -n 1 | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || true)
    f=$(printf '%s\n' "$out" | tail -n 1 | grep -oE '[0-9]+ (failed|error|errors)' | grep -oE '[0-9]+' | paste -sd+ | bc 2>/dev/null || true)
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    pass=$((pass + p)); fail=$((fail + f))
    [ "$f" -eq 0 ] || failed_names+=("e2e")
fi

[ ${#failed_names[@]} -eq 0 ] || echo "failing: ${failed_names[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
