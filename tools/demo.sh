#!/usr/bin/env bash
# tools/demo.sh: what `make demo` runs, end to end on synthetic data:
#   1. a tiny synthetic Qwen3 model          (build/tools/synth)
#   2. a synthetic PEFT LoRA adapter for it  (build/tools/synth_lora)
#   3. the two merged                        (build/lora-merge)
#   4. medserve serving the merge on 127.0.0.1, a curl line that works,
#      serving until Ctrl-C.
# DEMO_ONESHOT=1: sends that one request, checks the answer, stops the server
# (SIGTERM, drain) and exits 0 on success; for tests.
# DEMO_DIR (default build/demo) holds the files; DEMO_PORT (default 8080, 0 =
# any free port). The weights are random: the text is gibberish by design.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${MEDSERVE_BUILD:-build}
DIR=${DEMO_DIR:-$B/demo}
PORT=${DEMO_PORT:-8080}

for t in "$B/tools/synth" "$B/tools/synth_lora" "$B/lora-merge" "$B/medserve"; do
    [ -x "$t" ] || { echo "demo: $t is missing; run make first" >&2; exit 1; }
done
mkdir -p "$DIR"
echo "demo: 1/4 synthetic base model -> $DIR/base"
"$B/tools/synth" --shape tiny --out "$DIR/base" --force --quiet
echo "demo: 2/4 synthetic LoRA adapter -> $DIR/adapter"
"$B/tools/synth_lora" --base "$DIR/base" --out "$DIR/adapter" --r 8 --alpha 16 \
    --targets all-linear --seed 7 --force --quiet
echo "demo: 3/4 merge -> $DIR/merged"
"$B/lora-merge" --base "$DIR/base" --adapter "$DIR/adapter" --out "$DIR/merged" --force --quiet

echo "demo: 4/4 medserve on 127.0.0.1"
LOG="$DIR/medserve.stderr"
"$B/medserve" "$DIR/merged" --host 127.0.0.1 --port "$PORT" --model-name demo \
    --log "$DIR/requests.jsonl" 2>"$LOG" &
PID=$!
stop() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID"; }
trap 'stop; exit 130' INT TERM
for _ in $(seq 1 600); do
    grep -q "medserve: ready" "$LOG" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { cat "$LOG" >&2; echo "demo: medserve exited" >&2; exit 1; }
    sleep 0.1
done
grep -q "medserve: ready" "$LOG" || { cat "$LOG" >&2; stop; exit 1; }
PORT=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$LOG" | head -n 1)
URL="http://127.0.0.1:$PORT"
BODY='{"model":"demo","messages":[{"role":"user","content":"Hello!"}],"max_tokens":16,"seed":1}'
CURL="curl -s $URL/v1/chat/completions -H 'Content-Type: application/json' -d '$BODY'"
echo
echo "medserve is serving $DIR/merged at $URL. Try:"
echo "  $CURL"
echo

if [ "${DEMO_ONESHOT:-0}" = 1 ]; then
    OUT=$(curl -sS -H 'Content-Type: application/json' -d "$BODY" "$URL/v1/chat/completions")
    echo "$OUT"
    stop
    trap - INT TERM
    case "$OUT" in
    *'"object":"chat.completion"'*'"finish_reason"'*) echo "demo: ok"; exit 0 ;;
    *) echo "demo: unexpected reply" >&2; exit 1 ;;
    esac
fi
echo "Ctrl-C stops it (requests in flight are drained first). Server messages: $LOG,"
echo "request log: $DIR/requests.jsonl"
wait "$PID"
