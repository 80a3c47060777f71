#!/usr/bin/env bash
# tests/fuzz/run.sh: builds the libFuzzer targets (clang-14, ASan+UBSan) into
# build/fuzz and runs each for FUZZ_SECONDS (default 60), FUZZ_JOBS at a time
# (default 1), starting from the committed seeds (tests/fuzz/seeds/TARGET)
# and the committed corpus of earlier campaigns (tests/fuzz/corpus/TARGET),
# plus the corpus kept from earlier runs (build/fuzz/corpus/TARGET). Before
# fuzzing, every committed crasher (tests/fuzz/crashers/TARGET/*) is replayed
# and reported. Crashes found go to build/fuzz/artifacts/TARGET/. Ends with a
# summary line per target and exits 1 when anything crashed.
#   FUZZ_TARGETS="st_header json"  only these targets
#   FUZZ_BUILD_ONLY=1              build, replay crashers, do not fuzz
# Run from anywhere; works in the repository root.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
CC=${FUZZ_CC:-clang-14}
OUT=build/fuzz
SECS=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-1}
ALL="st_header st_index config json tok_load tok_encode chat chat_parse oai_req"
TARGETS=${FUZZ_TARGETS:-$ALL}

if ! command -v "$CC" >/dev/null; then
    echo "fuzz: $CC not found (apt-get install clang-14 libclang-rt-14-dev)" >&2
    exit 2
fi

# Library sources the targets link: the runtime (no kernels) and the request parser.
SRC="$(ls runtime/base/*.c runtime/io/*.c runtime/model/*.c runtime/text/*.c runtime/engine/*.c) server/oai_req.c"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Wno-source-uses-openmp \
 -Wno-unknown-pragmas -Iinclude -Iruntime -Iserver -Itests/fuzz \
 -fsanitize=address,undefined -fno-sanitize-recover=all"
LIBS="-lcjson -lpcre2-8 -lutf8proc -lm -lpthread"

mkdir -p "$OUT/obj" "$OUT/bin"
objs=()
for s in $SRC; do
    o="$OUT/obj/$(echo "${s%.c}" | tr / _).o"
    if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ -n "$(find runtime include server -name '*.h' -newer "$o" 2>/dev/null | head -1)" ]; then
        $CC $CFLAGS -fsanitize=fuzzer-no-link -c "$s" -o "$o" || { echo "fuzz: build failed: $s" >&2; exit 2; }
    fi
    objs+=("$o")
done
rm -f "$OUT/libfuzzlib.a" && ar rcs "$OUT/libfuzzlib.a" "${objs[@]}"
for t in $TARGETS; do
    $CC $CFLAGS -fsanitize=fuzzer "tests/fuzz/fuzz_$t.c" "$OUT/libfuzzlib.a" $LIBS -o "$OUT/bin/fuzz_$t" ||
        { echo "fuzz: build failed: fuzz_$t" >&2; exit 2; }
done
echo "fuzz: built $(echo $TARGETS | wc -w) targets in $OUT/bin"

# Per-target libFuzzer options: input size cap and dictionary.
maxlen() {
    case $1 in
        tok_load) echo 65536 ;;
        st_header|st_index|config|json|chat|oai_req) echo 16384 ;;
        *) echo 4096 ;;
    esac
}
opts() {
    local t=$1 o="-max_len=$(maxlen "$t") -timeout=20 -rss_limit_mb=2560 -print_final_stats=1"
    [ -f "tests/fuzz/dict/$t.dict" ] && o="$o -dict=tests/fuzz/dict/$t.dict"
    [ -f "tests/fuzz/dict/json.dict" ] && [ ! -f "tests/fuzz/dict/$t.dict" ] && case $t in
        config|json|chat|oai_req|st_index|tok_load) o="$o -dict=tests/fuzz/dict/json.dict" ;; esac
    echo "$o"
}

fail=0
# Replay committed crashers: each must now run clean (they are fixed bugs kept as regressions).
for t in $TARGETS; do
    d=tests/fuzz/crashers/$t
    [ -d "$d" ] || continue
    for f in "$d"/*; do
        [ -f "$f" ] || continue
        case $f in *.md|*.txt) continue ;; esac
        if "$OUT/bin/fuzz_$t" $(opts "$t") "$f" >"$OUT/replay.log" 2>&1; then
            echo "fuzz: replay $f: ok"
        else
            echo "fuzz: replay $f: STILL CRASHES ($(grep -m1 -E 'ERROR|runtime error|deadly' "$OUT/replay.log"))"
            fail=1
        fi
    done
done
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit $fail

run_one() {
    local t=$1 corpus=$OUT/corpus/$t art=$OUT/artifacts/$t log=$OUT/log/$t.log
    mkdir -p "$corpus" "$art" "$OUT/log"
    local seeds=tests/fuzz/seeds/$t
    [ -d "$seeds" ] || seeds=
    # the committed corpus of earlier campaigns (make fuzz-corpus refreshes it)
    [ -d "tests/fuzz/corpus/$t" ] && seeds="$seeds tests/fuzz/corpus/$t"
    case $t in
        st_header) seeds="$seeds tests/data/bad/st" ;;
        config) seeds="$seeds tests/data/bad/config tests/data/bad/gen" ;;
    esac
    "$OUT/bin/fuzz_$t" $(opts "$t") -max_total_time="$SECS" -artifact_prefix="$art/" \
        "$corpus" $seeds >"$log" 2>&1
    local rc=$?
    local execs cov ft units crashes
    execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]*' | awk '{print $2}')
    ft=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'ft: [0-9]*' | awk '{print $2}')
    units=$(ls "$corpus" | wc -l)
    crashes=$(ls "$art" 2>/dev/null | wc -l)
    printf 'fuzz: %-11s rc=%d execs=%s cov=%s ft=%s corpus=%s artifacts=%s (%s)\n' "$t" "$rc" \
        "${execs:-?}" "${cov:-?}" "${ft:-?}" "$units" "$crashes" "$log"
    [ "$rc" = 0 ] && [ "$crashes" = 0 ]
}

pids=()
for t in $TARGETS; do
    run_one "$t" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$JOBS" ]; then
        wait "${pids[0]}" || fail=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if [ $fail = 0 ]; then echo "fuzz: no crashes"; else echo "fuzz: CRASHES (see build/fuzz/artifacts and logs)"; fi
exit $fail
