#!/usr/bin/env python3
"""run_bench.py: lora-merge vs PEFT merge_and_unload + save_pretrained on the
same files in the same run, alternating, for the Qwen3-0.6B and 1.7B shapes
with an r=16 all-linear adapter (synthetic weights: build/tools/synth and
build/tools/synth_lora). Measures wall time and peak RSS with /usr/bin/time -v,
checks that both exports hold bit-identical tensors, and writes
bench/merge/results.json and the table in bench/merge/README.md (between the
RESULTS markers).

Usage (repository root, after make): python3 bench/merge/run_bench.py [--runs 3] [--shapes 0.6b,1.7b]
Work files go to bench/work/merge (git-ignored) and are removed at the end
unless --keep.
"""
import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
B = os.path.join(ROOT, "build")
WORK = os.path.join(ROOT, "bench", "work", "merge")
HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time -v; returns (wall s, max RSS MiB, stdout, stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=e)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    h, m, s = wall.groups()
    secs = int(h or 0) * 3600 + int(m) * 60 + float(s)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) / 1024
    return secs, rss, r.stdout, r.stderr


def tensors_equal(a_dir, b_dir):
    """Whether two exports hold the same tensors bit for bit (safetensors, no torch needed)."""
    import torch  # bf16 is not a numpy dtype: use torch's loader
    from safetensors.torch import load_file as tload
    ta, tb = {}, {}
    for d, t in ((a_dir, ta), (b_dir, tb)):
        for f in sorted(os.listdir(d)):
            if f.endswith(".safetensors"):
                t.update(tload(os.path.join(d, f)))
    if sorted(ta) != sorted(tb):
        return False, f"names differ: {sorted(set(ta) ^ set(tb))[:5]}"
    bad = [k for k in ta if not torch.equal(ta[k].view(torch.int16), tb[k].view(torch.int16))]
    return not bad, f"{len(ta)} tensors, {len(bad)} differ"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shapes", default="0.6b,1.7b")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                        if l.startswith("model name")), "?")},
               "threads": a.threads, "runs": a.runs, "shapes": {}}
    for shape in a.shapes.split(","):
        base = os.path.join(WORK, f"base-{shape}")
        lora = os.path.join(WORK, f"lora-{shape}")
        if not os.path.exists(os.path.join(base, "config.json")):
            subprocess.run([f"{B}/tools/synth", "--out", base, "--shape", shape, "--tokenizer", "none",
                            "--quiet", "--force"], check=True)
        subprocess.run([f"{B}/tools/synth_lora", "--base", base, "--out", lora, "--r", "16", "--alpha", "32",
                        "--targets", "all-linear", "--force", "--quiet"], check=True)
        rows = {"lora-merge": [], "peft": []}
        for i in range(a.runs):
            for tool in (("lora-merge", "peft") if i % 2 == 0 else ("peft", "lora-merge")):
                out = os.path.join(WORK, f"out-{tool}-{shape}")
                shutil.rmtree(out, ignore_errors=True)
                subprocess.run(["sync"])
                if tool == "lora-merge":
                    wall, rss, _, err = timed([f"{B}/lora-merge", "--base", base, "--adapter", lora, "--out", out,
                                               "--threads", str(a.threads), "--quiet"])
                    rows[tool].append({"wall_s": wall, "rss_mib": rss})
                else:
                    wall, rss, so, _ = timed([sys.executable, os.path.join(HERE, "peft_merge.py"), base, lora, out],
                                             env={"BENCH_THREADS": str(a.threads), "OMP_NUM_THREADS": str(a.threads)})
                    ph = json.loads(so.strip().splitlines()[-1])
                    rows[tool].append({"wall_s": wall, "rss_mib": rss, **ph})
                print(shape, tool, i, rows[tool][-1], flush=True)
        same, detail = tensors_equal(os.path.join(WORK, f"out-lora-merge-{shape}"), os.path.join(WORK, f"out-peft-{shape}"))
        results["shapes"][shape] = {"runs": rows, "bit_identical": same, "compare": detail,
                                    "base_bytes": sum(os.path.getsize(os.path.join(base, f)) for f in os.listdir(base))}
        print(shape, "bit identical:", same, detail, flush=True)
        if not a.keep:
            for tool in ("lora-merge", "peft"):
                shutil.rmtree(os.path.join(WORK, f"out-{tool}-{shape}"), ignore_errors=True)
    json.dump(results, open(os.path.join(HERE, "results.json"), "w"), indent=2)
    write_table(results)
    if not a.keep:
        shutil.rmtree(WORK, ignore_errors=True)


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def write_table(res):
    lines = ["| shape | tool | wall s (median) | peak RSS MiB (median) | notes |", "|---|---|---|---|---|"]
    for shape, r in res["shapes"].items():
        lm, pf = r["runs"]["lora-merge"], r["runs"]["peft"]
        lw, lr = med([x["wall_s"] for x in lm]), med([x["rss_mib"] for x in lm])
        pw, pr = med([x["wall_s"] for x in pf]), med([x["rss_mib"] for x in pf])
        ps, pfs = med([x["save_s"] for x in pf]), med([x["fsync_s"] for x in pf])
        lines.append(f"| {shape} | lora-merge | {lw:.1f} | {lr:.0f} | hashes inputs and outputs, fsyncs, re-reads and verifies |")
        lines.append(f"| {shape} | PEFT + save_pretrained | {pw:.1f} | {pr:.0f} | save done at {ps:.1f} s, all files fsynced at {pfs:.1f} s (incl. ~python/torch import) |")
        lines.append(f"| {shape} | ratio | {pw / lw:.1f}x faster | {lr / pr:.2f} of PEFT's | tensors bit-identical: {r['bit_identical']} ({r['compare']}) |")
    table = "\n".join(lines)
    p = os.path.join(HERE, "README.md")
    text = open(p).read() if os.path.exists(p) else "<!-- RESULTS -->\n<!-- /RESULTS -->\n"
    text = re.sub(r"<!-- RESULTS -->.*<!-- /RESULTS -->", "<!-- RESULTS -->\n" + table + "\n<!-- /RESULTS -->", text,
                  flags=re.S)
    open(p, "w").write(text)
    print(table)


if __name__ == "__main__":
    main()
