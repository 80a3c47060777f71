#!/usr/bin/env bash
# bench/tokenizer/run.sh: encode throughput, medserve's C tokenizer vs HF
# `tokenizers`, on a deterministic 10 MB mixed corpus, one thread each.
# Rounds alternate the programs (C, HF encode, HF encode_batch); the ratio
# is computed per round and the median reported. Every run must produce the
# same ids (FNV-1a hash over all ids) or the script fails. Writes the table
# to bench/tokenizer/README.md. Needs: make (libmedserve-internal.a), python3 with
# tokenizers. Usage: bash bench/tokenizer/run.sh [ROUNDS] [MEGABYTES]
set -eu
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
MB=${2:-10}
TOK=tests/data/qwen3-tokenizer
OUT=build/bench
mkdir -p "$OUT"
make -s build/libmedserve-internal.a
${CC:-cc} -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Iruntime bench/tokenizer/bench_tok.c build/libmedserve-internal.a \
    -lcjson -lutf8proc -lpcre2-8 -lm -lpthread -fopenmp -o "$OUT/bench_tok"
CORPUS="$OUT/tok-corpus-${MB}mb.jsonl"
[ -s "$CORPUS" ] || python3 bench/tokenizer/gen_corpus.py "$CORPUS" "$MB"
export OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=true
: > "$OUT/tok-rounds.jsonl"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$ROUNDS"); do
    "$OUT/bench_tok" "$TOK" "$CORPUS" | sed "s/^{/{\"round\": $r, /" >> "$OUT/tok-rounds.jsonl"
    python3 bench/tokenizer/bench_hf.py "$TOK" "$CORPUS" encode | sed "s/^{/{\"round\": $r, /" >> "$OUT/tok-rounds.jsonl"
    python3 bench/tokenizer/bench_hf.py "$TOK" "$CORPUS" batch | sed "s/^{/{\"round\": $r, /" >> "$OUT/tok-rounds.jsonl"
    tail -n 3 "$OUT/tok-rounds.jsonl"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$OUT/tok-rounds.jsonl" "$CORPUS" "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc --all)" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
hashes = {r["ids_fnv"] for r in rows}
if len(hashes) != 1:
    sys.exit(f"ids differ between implementations: {hashes}")
by = {}
for r in rows:
    by.setdefault(r["round"], {})[r["impl"]] = r
rounds = sorted(by)
def med(impl):
    return statistics.median(by[k][impl]["mbps"] for k in rounds)
ratio_enc = statistics.median(by[k]["medserve"]["mbps"] / by[k]["hf-encode"]["mbps"] for k in rounds)
ratio_batch = statistics.median(by[k]["medserve"]["mbps"] / by[k]["hf-batch"]["mbps"] for k in rounds)
r0 = rows[0]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
import tokenizers
lines = [
    "# Tokenizer benchmark",
    "",
    "Encode throughput of medserve's C tokenizer (`tok_encode`) against HF `tokenizers` "
    f"{tokenizers.__version__} on the same corpus, one thread each. Made by `bash bench/tokenizer/run.sh` "
    "(corpus: `gen_corpus.py`, deterministic; C: `bench_tok.c`; HF: `bench_hf.py`).",
    "",
    f"- corpus: {r0['docs']} documents, {r0['bytes'] / 1e6:.2f} MB of UTF-8 (English and Chinese clinical "
    "text, chat transcripts with control tokens, code, other scripts, emoji, non-NFC text), "
    f"{r0['tokens']} tokens",
    f"- every run produced the same ids (FNV-1a over all ids: `{hashes.pop()}`)",
    f"- machine: {cpu}, {sys.argv[5]} CPUs shared with other work (load average {sys.argv[3]} before, "
    f"{sys.argv[4]} after); {len(rounds)} rounds, programs alternated "
    "(C, HF encode, HF batch) in each round; timing covers encoding only (file parsing excluded)",
    "- HF `encode`: `Tokenizer.encode` per document in a Python loop; HF `batch`: `encode_batch` with "
    "RAYON_NUM_THREADS=1",
    "",
    "| round | medserve MB/s | HF encode MB/s | HF batch MB/s | medserve / HF encode | medserve / HF batch |",
    "|---|---|---|---|---|---|",
]
for k in rounds:
    m, e, b = by[k]["medserve"]["mbps"], by[k]["hf-encode"]["mbps"], by[k]["hf-batch"]["mbps"]
    lines.append(f"| {k} | {m:.2f} | {e:.2f} | {b:.2f} | {m / e:.2f}x | {m / b:.2f}x |")
lines += ["", f"**Median: medserve {med('medserve'):.2f} MB/s, HF encode {med('hf-encode'):.2f} MB/s, "
          f"HF batch {med('hf-batch'):.2f} MB/s; median of per-round ratios {ratio_enc:.2f}x (encode) and "
          f"{ratio_batch:.2f}x (batch).**", ""]
open("bench/tokenizer/README.md", "w").write("\n".join(lines))
print("\n".join(lines))
PY
