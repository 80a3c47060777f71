#!/usr/bin/env python3
"""bench.py: the measuring half of bench/run.sh (which builds and converts).

Runs medserve (bench/work/bin/ms_bench) and llama.cpp (llama-bench,
llama-batched-bench, llama-completion) on the same synthetic weights,
alternating the two round by round (A,B then B,A), with a STREAM bandwidth
probe and a bf16 compute-peak probe at the start and end of every round.
Writes every measurement as a JSON line to WORK/results.jsonl and the
summary tables to WORK/results.md. Each figure is reported as the median
over rounds, the median of the per-round ratio ours/llama.cpp, and a
fraction of the round's limit: bytes/token x tok/s over the probed
bandwidth (decode), FLOP/token x tok/s over the probed bf16 peak (prefill).
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

# ---------------------------------------------------------------- model arithmetic

SHAPES = {  # hidden, layers, heads, kv heads, head_dim, intermediate, vocab (tied)
    "0.6b": (1024, 28, 16, 8, 128, 3072, 151936),
    "1.7b": (2048, 28, 16, 8, 128, 6144, 151936),
}


def matmul_params(shape):
    """(layer matmul parameters, rows of those matrices, lm_head parameters)."""
    H, L, nh, nkv, d, I, V = SHAPES[shape]
    per_layer = [(nh * d, H), (nkv * d, H), (nkv * d, H), (H, nh * d), (I, H), (I, H), (H, I)]
    params = L * sum(r * c for r, c in per_layer)
    rows = L * sum(r for r, _ in per_layer)
    return params, rows, V * H


def bytes_per_token(shape, fmt, ctx):
    """Bytes one decode step reads: every matmul weight, the tied lm_head in
    full, and the KV cache of ctx earlier positions (bf16/f16 K and V)."""
    H, L, nh, nkv, d, I, V = SHAPES[shape]
    params, rows, head = matmul_params(shape)
    if fmt == "bf16":
        w = 2.0 * (params + head)
    elif fmt == "q8":  # medserve int8: 1 byte per weight + one fp32 scale per row
        w = 1.0 * (params + head) + 4.0 * (rows + V)
    else:  # llama.cpp Q8_0: 34 bytes per 32 weights
        w = 34.0 / 32.0 * (params + head)
    return w + 2.0 * L * nkv * d * 2 * ctx


def prefill_flop_per_token(shape, P):
    """Matmul FLOPs per prompt token + causal attention (QK and PV) averaged
    over a P-token prompt + the lm_head once per prompt."""
    H, L, nh, nkv, d, I, V = SHAPES[shape]
    params, _, head = matmul_params(shape)
    return 2.0 * params + 4.0 * nh * d * L * (P + 1) / 2.0 + 2.0 * head / P


# ---------------------------------------------------------------- processes


def run(cmd, timeout=900, env=None):
    """Runs cmd; returns (rc, stdout, stderr, wall seconds, peak RSS kB of the child)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return 124, out, err, time.monotonic() - t0, 0
    wall = time.monotonic() - t0
    # p.communicate reaped the child; its rusage is folded into RUSAGE_CHILDREN,
    # so read the high-water mark via /usr/bin/time when available instead.
    return p.returncode, out, err, wall, 0


def run_timed(cmd, timeout=900):
    """Like run(), with peak RSS from /usr/bin/time -f %M (kB), if installed."""
    if shutil.which("time") or os.path.exists("/usr/bin/time"):
        tf = "/tmp/ms_bench_time.%d" % os.getpid()
        rc, out, err, wall, _ = run(["/usr/bin/time", "-f", "%M %e", "-o", tf] + cmd, timeout)
        try:
            with open(tf) as f:
                last = f.read().split("\n")
                fields = [l for l in last if l.strip()][-1].split()
                return rc, out, err, wall, int(fields[0])
        except (OSError, ValueError, IndexError):
            return rc, out, err, wall, 0
    return run(cmd, timeout)


def json_lines(text):
    res = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                res.append(json.loads(line))
            except ValueError:
                pass
    return res


def drop_caches():
    """Drops the page cache (root only); returns whether it worked."""
    try:
        subprocess.run(["sync"], check=False)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- the two runtimes


class Bench:
    def __init__(self, work, threads, rounds, log):
        self.work = work
        self.bin = os.path.join(work, "bin")
        self.lbin = os.path.join(work, "llama-bin")
        self.threads = threads
        self.rounds = rounds
        self.log = log
        self.results = []

    def emit(self, rec):
        self.results.append(rec)
        self.log.write(json.dumps(rec) + "\n")
        self.log.flush()

    def have_peer(self):
        return all(os.path.exists(os.path.join(self.lbin, b))
                   for b in ("llama-bench", "llama-batched-bench", "llama-completion"))

    def model_dir(self, shape):
        return os.path.join(self.work, "models", shape + "-bf16")

    def gguf(self, shape, fmt):
        p = os.path.join(self.work, "models", "%s-%s.gguf" % (shape, "bf16" if fmt == "bf16" else "q8_0"))
        return p if os.path.exists(p) else None

    # -- probes
    def probes(self, threads):
        rc, out, _, _, _ = run([os.path.join(self.bin, "stream"), "--threads", str(threads), "--mb", "512",
                                "--reps", "6", "--json"], 120)
        s = json_lines(out)
        rc2, out2, _, _, _ = run([os.path.join(self.bin, "peak"), "--threads", str(threads), "--ms", "200"], 120)
        p = json_lines(out2)
        return (s[0]["best_gbs"] if s else None), (p[0]["best_gflops"] if p else None)

    # -- ours
    def ours(self, case, shape, fmt, threads):
        kind = case[0]
        cmd = [os.path.join(self.bin, "ms_bench"), self.model_dir(shape)]
        q8 = ["--q8"] if fmt == "q8" else []
        t = ["--threads", str(threads)]
        if kind == "pp":
            cmd += ["pp", "--p", str(case[1]), "--reps", "3"] + t + q8
        elif kind == "tg":
            cmd += ["tg", "--n", str(case[1]), "--depth", str(case[2]), "--reps", str(case[3])] + t + q8
        elif kind == "batched":
            cmd += ["batched", "--p", "128", "--n", "32", "--batch", str(case[1]), "--reps", "2"] + t + q8
        elif kind == "ttft":
            cmd += ["ttft", "--prompt-file", case[1], "--ctx", "4096"] + t + q8
        rc, out, err, wall, rss = run_timed(cmd)
        js = json_lines(out)
        if rc != 0 or not js:
            return {"error": (err or out)[-300:]}
        r = js[-1]
        if kind == "ttft":
            return {"wall_s": wall, "peak_rss_kb": rss, "load_s": r["load_s"] + r["create_s"],
                    "prompt_tokens": r["prompt_tokens"]}
        return {"ts": r["avg_ts"], "sd": r["stddev_ts"], "samples": r["samples_ts"],
                "prefill_ts": r.get("prefill_ts"), "peak_rss_kb": rss, "load_s": r["load_s"] + r["create_s"]}

    # -- llama.cpp
    def peer(self, case, shape, fmt, threads):
        g = self.gguf(shape, fmt)
        if not g or not self.have_peer():
            return {"error": "peer not available"}
        kind = case[0]
        t = ["-t", str(threads)]
        if kind in ("pp", "tg"):
            cmd = [os.path.join(self.lbin, "llama-bench"), "-m", g, "-o", "jsonl"] + t
            if kind == "pp":
                cmd += ["-p", str(case[1]), "-n", "0", "-r", "3"]
            else:
                cmd += ["-p", "0", "-n", str(case[1]), "-d", str(case[2]), "-r", str(case[3])]
            rc, out, err, wall, rss = run_timed(cmd)
            js = json_lines(out)
            if rc != 0 or not js:
                return {"error": (err or out)[-300:]}
            r = js[-1]
            return {"ts": r["avg_ts"], "sd": r["stddev_ts"], "samples": r.get("samples_ts"), "peak_rss_kb": rss}
        if kind == "batched":
            B = case[1]
            cmd = [os.path.join(self.lbin, "llama-batched-bench"), "-m", g, "-c", str(B * 160 + 256), "-b", "2048",
                   "-ub", "512", "-npp", "128", "-ntg", "32", "-npl", str(B), "--output-format", "jsonl"] + t
            rc, out, err, wall, rss = run_timed(cmd)
            js = [j for j in json_lines(out) if "speed_tg" in j]
            if rc != 0 or not js:
                return {"error": (err or out)[-300:]}
            r = js[-1]
            return {"ts": r["speed_tg"], "prefill_ts": r.get("speed_pp"), "peak_rss_kb": rss}
        if kind == "ttft":
            cmd = [os.path.join(self.lbin, "llama-completion"), "-m", g, "-f", case[1], "-n", "1", "-c", "4096",
                   "--no-warmup", "-no-cnv", "--temp", "0"] + t
            rc, out, err, wall, rss = run_timed(cmd)
            if rc != 0:
                return {"error": (err or out)[-300:]}
            load = None
            for line in err.splitlines():
                if "load time" in line and "=" in line:
                    try:
                        load = float(line.split("=")[1].split("ms")[0]) / 1e3
                    except ValueError:
                        pass
            return {"wall_s": wall, "peak_rss_kb": rss, "load_s": load}
        return {"error": "unknown case"}


# ---------------------------------------------------------------- the plan


def case_name(case):
    if case[0] == "pp":
        return "pp%d" % case[1]
    if case[0] == "tg":
        return "tg%d@%d" % (case[1], case[2])
    if case[0] == "batched":
        return "batch%d" % case[1]
    return "ttft%s" % os.path.basename(case[1]).split(".")[0].replace("prompt", "")


def make_prompts(work, model_dir):
    """Prompt files of 128 and 512 tokens of plain clinical English (counted with the model's
    tokenizer.json via the tokenizers package when it is installed, else about that many)."""
    words = ("The patient is a sixty-two year old man with a history of hypertension and type two diabetes "
             "who presents with three days of worsening shortness of breath, a productive cough and fever. "
             "On examination he is tachycardic with crackles at the right base and an oxygen saturation of "
             "ninety one percent on room air. ").split()
    count = lambda text: len(text.split()) * 1.2
    try:
        from tokenizers import Tokenizer
        tk = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        count = lambda text: len(tk.encode(text, add_special_tokens=False).ids)
    except Exception:
        pass
    out = {}
    for n in (128, 512):
        text, i = "", 0
        while True:
            nxt = (text + " " + words[i % len(words)]).strip()
            if count(nxt) > n:
                break
            text, i = nxt, i + 1
        p = os.path.join(work, "prompt%d.txt" % n)
        with open(p, "w") as f:
            f.write(text)
        out[n] = p
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--shapes", default="0.6b,1.7b", help="comma list of shapes to measure (default both)")
    args = ap.parse_args()
    shapes = set(args.shapes.split(","))
    work = args.work
    T = args.threads
    log = open(os.path.join(work, "results.jsonl"), "a")
    b = Bench(work, T, 3, log)
    prompts = make_prompts(work, b.model_dir("0.6b"))
    started = time.time()
    info = {"kind": "machine", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpu": platform.processor() or platform.machine(), "threads": T, "quick": args.quick,
            "peer": b.have_peer()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["medserve"] = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                                          text=True).stdout.strip()
    except OSError:
        pass
    b.emit(info)
    if not b.have_peer():
        print("[bench] llama.cpp is not available: running medserve alone (see bench/work/run.log)")

    # (shape, fmt, threads, rounds, cases)
    if args.quick:
        plan = [("0.6b", "bf16", T, 3, [("pp", 512), ("tg", 64, 0, 3), ("batched", 8)])]
    else:
        main_cases = [("pp", 128), ("pp", 512), ("tg", 64, 0, 3), ("tg", 32, 2048, 2),
                      ("batched", 4), ("batched", 8), ("batched", 16),
                      ("ttft", prompts[128]), ("ttft", prompts[512])]
        plan = [("0.6b", "bf16", T, 3, main_cases),
                ("0.6b", "q8", T, 3, main_cases),
                ("1.7b", "bf16", T, 2, main_cases),
                ("1.7b", "q8", T, 2, main_cases)]
        if T > 1:
            plan.append(("0.6b", "bf16", 1, 2, [("pp", 512), ("tg", 64, 0, 3)]))

    plan = [step for step in plan if step[0] in shapes]
    for shape, fmt, threads, rounds, cases in plan:
        if not os.path.isdir(b.model_dir(shape)):
            print("[bench] no %s model; skipped" % shape)
            continue
        for r in range(rounds):
            bw0, peak0 = b.probes(threads)
            print("[bench] %s %s %dt round %d: stream %.1f GB/s, bf16 peak %.0f GFLOP/s" %
                  (shape, fmt, threads, r + 1, bw0 or 0, peak0 or 0), flush=True)
            for case in cases:
                order = ["ours", "peer"] if r % 2 == 0 else ["peer", "ours"]
                for who in order:
                    res = b.ours(case, shape, fmt, threads) if who == "ours" else b.peer(case, shape, fmt, threads)
                    rec = {"kind": "result", "shape": shape, "fmt": fmt, "threads": threads, "round": r,
                           "case": case_name(case), "runtime": "medserve" if who == "ours" else "llama.cpp",
                           "stream_gbs": bw0, "peak_gflops": peak0}
                    rec.update(res)
                    b.emit(rec)
                    short = res.get("ts", res.get("wall_s"))
                    print("   %-10s %-9s %s" % (case_name(case), rec["runtime"],
                                                 ("%.2f" % short) if short is not None else res.get("error", "")[:120]),
                          flush=True)
            bw1, peak1 = b.probes(threads)
            b.emit({"kind": "round", "shape": shape, "fmt": fmt, "threads": threads, "round": r,
                    "stream_start": bw0, "stream_end": bw1, "peak_start": peak0, "peak_end": peak1,
                    "regime_changed": bool(bw0 and bw1 and max(bw0, bw1) / min(bw0, bw1) > 1.5)})

    if not args.quick:
        if "0.6b" in shapes:
            cold(b, prompts[128])
        agreement(b, shapes)
        if "0.6b" in shapes:
            hf_column(b, work)
    b.emit({"kind": "done", "seconds": time.time() - started})
    log.close()
    import report
    md = report.render([r for r in b.results])
    with open(os.path.join(work, "results.md"), "w") as f:
        f.write(md)
    print(md)


def cold(b, prompt, rounds=3):
    """Start-to-first-token with a cold page cache: both runtimes, alternating
    (order swapped every round), caches dropped before every run."""
    for rnd in range(rounds):
        order = ("ours", "peer") if rnd % 2 == 0 else ("peer", "ours")
        for who in order:
            if not drop_caches():
                b.emit({"kind": "cold", "error": "cannot drop caches (not root?)"})
                return
            res = b.ours(("ttft", prompt), "0.6b", "bf16", b.threads) if who == "ours" else \
                b.peer(("ttft", prompt), "0.6b", "bf16", b.threads)
            rec = {"kind": "cold", "round": rnd, "runtime": "medserve" if who == "ours" else "llama.cpp",
                   "shape": "0.6b", "fmt": "bf16"}
            rec.update(res)
            b.emit(rec)
            print("[bench] cold start %s: %s" % (rec["runtime"], res), flush=True)


def agreement(b, shapes):
    """int8 against bf16 weights on one 256-token prompt, per shape: top-1 agreement and logit drift."""
    for shape in ("0.6b", "1.7b"):
        if shape not in shapes or not os.path.isdir(b.model_dir(shape)):
            continue
        rc, out, err, wall, rss = run([os.path.join(b.bin, "ms_bench"), b.model_dir(shape), "agree", "--p", "256",
                                       "--threads", str(b.threads)], 900)
        for r in json_lines(out):
            r.update({"kind": "agree", "shape": shape})
            b.emit(r)
            print("[bench] int8 vs bf16 %s: %s" % (shape, r), flush=True)
        if rc != 0:
            b.emit({"kind": "agree", "shape": shape, "error": (err or out)[-300:]})


def hf_column(b, work):
    """transformers (torch CPU, bf16) as a third column: pp512 and tg32, one run."""
    here = os.path.dirname(os.path.abspath(__file__))
    rc, out, err, wall, rss = run_timed([sys.executable, os.path.join(here, "hf_bench.py"), b.model_dir("0.6b"),
                                         "--threads", str(b.threads)], 900)
    for r in json_lines(out):
        r.update({"kind": "hf", "peak_rss_kb": rss})
        b.emit(r)
    if rc != 0:
        b.emit({"kind": "hf", "error": (err or out)[-300:]})


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
