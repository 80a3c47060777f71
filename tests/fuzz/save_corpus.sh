#!/usr/bin/env bash
# tests/fuzz/save_corpus.sh (make fuzz-corpus): after a fuzzing campaign
# (make fuzz), minimises each target's committed corpus together with what the
# campaign found (libFuzzer -merge=1: the smallest set of inputs that keeps
# every feature) into tests/fuzz/corpus/TARGET, ready to commit. Needs the
# binaries of build/fuzz/bin (make fuzz or FUZZ_BUILD_ONLY=1 make fuzz).
#   FUZZ_TARGETS="json oai_req"   only these targets
set -u
cd "$(dirname "$0")/../.."
OUT=build/fuzz
ALL="st_header st_index config json tok_load tok_encode chat chat_parse oai_req"
fail=0
for t in ${FUZZ_TARGETS:-$ALL}; do
    bin=$OUT/bin/fuzz_$t
    found=$OUT/corpus/$t
    dest=tests/fuzz/corpus/$t
    [ -x "$bin" ] || { echo "fuzz-corpus: $bin missing (run make fuzz first)" >&2; fail=1; continue; }
    [ -d "$found" ] || { echo "fuzz-corpus: $t: no campaign corpus in $found, kept as is"; continue; }
    new=$(mktemp -d)
    mkdir -p "$dest"
    if "$bin" -merge=1 -rss_limit_mb=2560 -timeout=20 "$new" "$dest" "$found" >"$OUT/log/merge_$t.log" 2>&1; then
        rm -rf "$dest" && mv "$new" "$dest" && chmod 755 "$dest"
        echo "fuzz-corpus: $t: $(ls "$dest" | wc -l) inputs, $(du -sk "$dest" | cut -f1) KiB"
    else
        echo "fuzz-corpus: $t: merge failed ($OUT/log/merge_$t.log)" >&2
        rm -rf "$new"
        fail=1
    fi
done
exit $fail
