#!/usr/bin/env bash
# bench/run.sh: what `make bench` runs. medserve's CPU backend side by side
# with llama.cpp (as PyPI's llama-cpp-python sdist bundles it) on the same
# synthetic Qwen3 weights, in alternating rounds with a bandwidth probe each
# round; results go to bench/work/results.jsonl and the tables to
# bench/work/results.md (copy them into bench/README.md when committing).
#
#   bash bench/run.sh            full matrix (~55 min on an idle 2-core machine)
#   BENCH_QUICK=1 bash bench/run.sh   pp512, tg128, batch 8, 2 threads, bf16 0.6b, 3 rounds (~3 min)
#   BENCH_STEPS=build|models|run ... only those steps (comma list; default all)
#   BENCH_SHAPES=0.6b|1.7b ...   only those shapes (comma list; default both)
#
# Everything downloaded or built is cached under bench/work/ (git-ignored).
# LLAMA_BIN=DIR uses an existing llama.cpp build instead of building one.
# If llama.cpp cannot be built or a model cannot be converted, the peer
# columns are left empty and the report says why; our side still runs.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$ROOT/bench/work
mkdir -p "$WORK"/bin "$WORK"/models "$WORK"/dl
THREADS=${BENCH_THREADS:-$(nproc 2>/dev/null || echo 2)}
STEPS=${BENCH_STEPS:-build,models,run}
LOG=$WORK/run.log
say() { echo "[bench] $*" | tee -a "$LOG"; }
has_step() { case ",$STEPS," in *",$1,"*) return 0;; esac; return 1; }

# ---- what the peers need: cmake and a C++ compiler to build llama.cpp,
# torch/transformers/numpy/sentencepiece for its GGUF converter and for the
# transformers column. Installed when missing (apt-get as root, pip); a
# failure is reported and the affected peer is skipped later, never fatal. ----
bench_deps() {
    local miss="" p
    for p in cmake g++; do command -v "$p" >/dev/null || miss="$miss $p"; done
    if [ -n "$miss" ]; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            say "apt-get install$miss (to build llama.cpp)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $miss >>"$LOG" 2>&1 ||
                { apt-get update -qq >>"$LOG" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $miss >>"$LOG" 2>&1; } ||
                say "apt-get install$miss failed: the llama.cpp build will be skipped"
        else
            say "missing$miss (not root): the llama.cpp build will be skipped unless they are installed"
        fi
    fi
    miss=""
    for p in numpy torch transformers sentencepiece; do python3 -c "import $p" 2>/dev/null || miss="$miss $p"; done
    if [ -n "$miss" ]; then
        say "pip install$miss (GGUF converter and the transformers column; torch is large)"
        python3 -m pip install -q $miss >>"$LOG" 2>&1 || python3 -m pip install -q --break-system-packages $miss >>"$LOG" 2>&1 ||
            say "pip install$miss failed: GGUF conversion and the transformers column may be skipped"
    fi
}

# ---- our binaries: library + bench driver + probes ----
build_ours() {
    say "building medserve (make all) and the bench tools"
    make -j"$THREADS" all >>"$LOG" 2>&1 || { say "make failed (see $LOG)"; return 1; }
    local cc="gcc -std=c11 -O2 -D_GNU_SOURCE -fopenmp -Iinclude -Iruntime"
    local libs="build/libmedserve-internal.a -lcjson -lpcre2-8 -lutf8proc -lm -lpthread"
    $cc -march=native -O3 bench/stream.c -o "$WORK/bin/stream" >>"$LOG" 2>&1 || return 1
    $cc -march=native bench/peak.c -o "$WORK/bin/peak" >>"$LOG" 2>&1 || return 1
    $cc bench/ms_bench.c $libs -o "$WORK/bin/ms_bench" >>"$LOG" 2>&1 || return 1
    $cc bench/kern_bench.c $libs -o "$WORK/bin/kern_bench" >>"$LOG" 2>&1 || return 1
}

# ---- the peer: llama.cpp from the llama-cpp-python sdist ----
build_llama() {
    if [ -n "${LLAMA_BIN:-}" ]; then
        ln -sfn "$LLAMA_BIN" "$WORK/llama-bin"
        say "using llama.cpp binaries from $LLAMA_BIN"
    elif [ -x "$WORK/llama-build/bin/llama-bench" ] && [ -x "$WORK/llama-build/bin/llama-completion" ]; then
        ln -sfn "$WORK/llama-build/bin" "$WORK/llama-bin"
        say "llama.cpp already built in $WORK/llama-build"
    else
        local sdist
        sdist=$(ls "$WORK"/dl/llama_cpp_python-*.tar.gz 2>/dev/null | head -n1)
        if [ -z "$sdist" ]; then
            say "downloading the llama-cpp-python sdist (pip download --no-binary :all:)"
            python3 -m pip download --no-deps --no-binary :all: llama-cpp-python -d "$WORK/dl" >>"$LOG" 2>&1 ||
                { say "SKIP peer: pip download of llama-cpp-python failed (see $LOG)"; return 1; }
            sdist=$(ls "$WORK"/dl/llama_cpp_python-*.tar.gz 2>/dev/null | head -n1)
        fi
        [ -n "$sdist" ] || { say "SKIP peer: no sdist found"; return 1; }
        command -v cmake >/dev/null || { say "SKIP peer: cmake is not installed"; return 1; }
        say "building llama.cpp from $(basename "$sdist") (cmake, GGML_NATIVE=ON; several minutes)"
        rm -rf "$WORK/llama-src" && mkdir -p "$WORK/llama-src"
        tar -xzf "$sdist" -C "$WORK/llama-src" --strip-components=1 ||
            { say "SKIP peer: cannot unpack $sdist"; return 1; }
        cmake -S "$WORK/llama-src/vendor/llama.cpp" -B "$WORK/llama-build" -DCMAKE_BUILD_TYPE=Release \
            -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
            -DLLAMA_BUILD_SERVER=OFF >>"$LOG" 2>&1 &&
            cmake --build "$WORK/llama-build" -j"$THREADS" --target llama-bench llama-batched-bench \
                llama-quantize llama-completion >>"$LOG" 2>&1 ||
            { say "SKIP peer: llama.cpp build failed (see $LOG)"; return 1; }
        ln -sfn "$WORK/llama-build/bin" "$WORK/llama-bin"
    fi
    # the converter and its gguf package come from the same sdist when we have it
    if [ -d "$WORK/llama-src/vendor/llama.cpp" ]; then
        ln -sfn "$WORK/llama-src/vendor/llama.cpp" "$WORK/llama-py"
    elif [ -n "${LLAMA_BIN:-}" ] && [ -f "$LLAMA_BIN/../../convert_hf_to_gguf.py" ]; then
        ln -sfn "$(cd "$LLAMA_BIN/../.." && pwd)" "$WORK/llama-py"
    fi
}

# ---- models: synthetic weights, the same bits for both runtimes ----
make_model() { # $1 shape (0.6b|1.7b)
    local dir=$WORK/models/$1-bf16
    if [ ! -f "$dir/model.safetensors" ] && [ ! -f "$dir/model.safetensors.index.json" ]; then
        say "synth $1 bf16 -> $dir"
        build/tools/synth --shape "$1" --dtype bf16 --out "$dir" --force --quiet >>"$LOG" 2>&1 ||
            { say "synth $1 failed"; return 1; }
    fi
    [ -e "$WORK/llama-bin/llama-quantize" ] || return 0
    if [ ! -f "$WORK/models/$1-bf16.gguf" ]; then
        if [ -f "$WORK/llama-py/convert_hf_to_gguf.py" ]; then
            say "convert $1 to GGUF (the sdist's convert_hf_to_gguf.py)"
            PYTHONPATH="$WORK/llama-py/gguf-py" python3 "$WORK/llama-py/convert_hf_to_gguf.py" "$dir" \
                --outtype bf16 --outfile "$WORK/models/$1-bf16.gguf" >>"$LOG" 2>&1 ||
                { say "SKIP peer for $1: GGUF conversion failed (see $LOG)"; rm -f "$WORK/models/$1-bf16.gguf"; return 0; }
        else
            say "SKIP peer for $1: no convert_hf_to_gguf.py"; return 0
        fi
    fi
    if [ ! -f "$WORK/models/$1-q8_0.gguf" ]; then
        say "quantize $1 to Q8_0 (llama-quantize)"
        "$WORK/llama-bin/llama-quantize" "$WORK/models/$1-bf16.gguf" "$WORK/models/$1-q8_0.gguf" Q8_0 \
            >>"$LOG" 2>&1 || { say "Q8_0 quantization of $1 failed"; rm -f "$WORK/models/$1-q8_0.gguf"; }
    fi
}

: >"$LOG"
say "$(date -u +%FT%TZ) medserve $(git describe --always --dirty 2>/dev/null), $THREADS threads, quick=${BENCH_QUICK:-0}"
if has_step build; then
    bench_deps
    build_ours || { say "cannot build our side; stopping"; exit 1; }
    build_llama || true
fi
if has_step models; then
    make_model 0.6b || exit 1
    [ "${BENCH_QUICK:-0}" = 1 ] || make_model 1.7b || true
fi
if has_step run; then
    QUICK_ARG=""
    [ "${BENCH_QUICK:-0}" = 1 ] && QUICK_ARG=--quick
    python3 bench/bench.py --work "$WORK" --threads "$THREADS" --shapes "${BENCH_SHAPES:-0.6b,1.7b}" $QUICK_ARG 2>&1 |
        tee -a "$LOG"
    exit "${PIPESTATUS[0]}"
fi
