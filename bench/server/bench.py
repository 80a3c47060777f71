#!/usr/bin/env python3
"""bench/server/bench.py: throughput and latency of `medserve` over HTTP.

Starts build/medserve on a model directory (by default a synthetic Qwen3-0.6B
made with `build/tools/synth --shape 0.6b --dtype bf16`), then for each
concurrency level runs that many clients, each sending streaming
/v1/completions requests back to back (greedy, fixed prompt length, fixed
max_tokens), and reports requests/s, aggregate generated tokens/s, time to
first token (client-side: first non-empty text chunk; and server-side from the
request log) and inter-token latency. Standard library only.

    python3 bench/server/bench.py [--model DIR] [--concurrency 1,4,16]
        [--requests 4] [--max-tokens 32] [--prompt-tokens 64] [--threads N]
        [--max-seqs 16] [--fake-engine] [--markdown FILE]
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def start_server(args, log):
    cmd = [os.path.join(ROOT, args.build, "medserve")]
    cmd += ["--fake-engine"] if args.fake_engine else [args.model]
    cmd += ["--port", "0", "--model-name", "bench", "--max-seqs", str(args.max_seqs), "--queue", "256",
            "--log", log, "--ctx", str(args.ctx)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    port = None
    for line in p.stderr:
        sys.stderr.write("  " + line)
        m = re.search(r"listening on http://[^ ]*:(\d+)", line)
        if m:
            port = int(m.group(1))
        if "medserve: ready" in line:
            break
    if port is None or p.poll() is not None:
        raise SystemExit("medserve did not start")
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    return p, port


def one_request(port, prompt_ids, max_tokens):
    """Streams one completion; returns (ttft_s, [chunk times], completion_tokens, total_s)."""
    body = json.dumps({"model": "bench", "prompt": prompt_ids, "max_tokens": max_tokens,
                       "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError("HTTP %d: %s" % (r.status, r.read()[:200]))
    ttft, times, usage, buf = None, [], None, b""
    while True:
        line = r.fp.readline()
        if not line:
            break
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        ev = json.loads(data)
        if "error" in ev:
            raise RuntimeError(ev["error"]["message"])
        if ev.get("usage"):
            usage = ev["usage"]
        for ch in ev.get("choices", []):
            if ch.get("text"):
                now = time.perf_counter()
                if ttft is None:
                    ttft = now - t0
                times.append(now)
    c.close()
    return ttft, times, usage["completion_tokens"] if usage else 0, time.perf_counter() - t0


def run_level(port, conc, n_req, prompt_ids, max_tokens):
    results, errors = [], []
    lock = threading.Lock()

    def client(k):
        for i in range(n_req):
            # a distinct first token per request: no two requests are the same
            ids = [(prompt_ids[0] + 97 * (k * n_req + i)) % 150000] + prompt_ids[1:]
            try:
                res = one_request(port, ids, max_tokens)
                with lock:
                    results.append(res)
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    th = [threading.Thread(target=client, args=(k,)) for k in range(conc)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.perf_counter() - t0
    toks = sum(r[2] for r in results)
    ttfts = [r[0] for r in results if r[0] is not None]
    itls = []
    for r in results:
        itls += [b - a for a, b in zip(r[1], r[1][1:])]
    return {"concurrency": conc, "requests": len(results), "errors": len(errors), "wall_s": wall,
            "req_per_s": len(results) / wall, "tok_per_s": toks / wall, "tokens": toks,
            "ttft_p50": pct(ttfts, 50), "ttft_p95": pct(ttfts, 95),
            "itl_p50": pct(itls, 50), "itl_p95": pct(itls, 95),
            "e2e_p50": pct([r[3] for r in results], 50), "first_error": errors[0] if errors else ""}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="export directory (default: synthesize Qwen3-0.6B bf16)")
    ap.add_argument("--build", default="build")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=4, help="requests per client per level")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-seqs", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--fake-engine", action="store_true", help="HTTP layer only, no model compute")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="medserve-bench-")
    if not args.model and not args.fake_engine:
        args.model = os.path.join(tmp, "qwen3-0.6b-bf16")
        print("synthesizing Qwen3-0.6B (bf16) into", args.model, file=sys.stderr)
        subprocess.run([os.path.join(ROOT, args.build, "tools", "synth"), "--shape", "0.6b", "--dtype",
                        "bf16", "--out", args.model, "--quiet"], check=True)
    log = os.path.join(tmp, "requests.jsonl")
    proc, port = start_server(args, log)
    prompt = [(i * 7919) % 150000 for i in range(1, args.prompt_tokens + 1)]
    rows = []
    try:
        one_request(port, prompt, 4)  # warm-up
        for conc in [int(x) for x in args.concurrency.split(",")]:
            rows.append(run_level(port, conc, args.requests, prompt, args.max_tokens))
            r = rows[-1]
            print("c=%-3d req/s %.3f  tok/s %.1f  ttft p50 %.3fs p95 %.3fs  itl p50 %.1fms  errors %d" %
                  (conc, r["req_per_s"], r["tok_per_s"], r["ttft_p50"], r["ttft_p95"],
                   r["itl_p50"] * 1e3, r["errors"]), file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(60)
    server_ttft = [json.loads(l).get("ttft_ms") for l in open(log)]
    server_ttft = [x for x in server_ttft if x is not None]
    head = ("| clients | requests | req/s | generated tok/s | TTFT p50 | TTFT p95 | ITL p50 | ITL p95 | "
            "errors |\n|---|---|---|---|---|---|---|---|---|\n")
    body = "".join("| %d | %d | %.3f | %.1f | %.0f ms | %.0f ms | %.1f ms | %.1f ms | %d |\n" %
                   (r["concurrency"], r["requests"], r["req_per_s"], r["tok_per_s"], r["ttft_p50"] * 1e3,
                    r["ttft_p95"] * 1e3, r["itl_p50"] * 1e3, r["itl_p95"] * 1e3, r["errors"]) for r in rows)
    note = ("\nmodel: %s; prompt %d tokens, max_tokens %d, greedy, streaming /v1/completions; "
            "--max-seqs %d, threads %s, %d CPUs. Server-side TTFT (request log) p50 %.0f ms over %d "
            "requests.\n" % ("fake engine" if args.fake_engine else args.model, args.prompt_tokens,
                             args.max_tokens, args.max_seqs, args.threads or "all", os.cpu_count(),
                             statistics.median(server_ttft) if server_ttft else float("nan"),
                             len(server_ttft)))
    print(head + body + note)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(head + body + note)


if __name__ == "__main__":
    main()
