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
    cpu = float(re.search(r"User time \(seconds\): ([\d.]+)", r.stderr).group(1)) + \
        float(re.search(r"System time \(seconds\): ([\d.]+)", r.stderr).group(1))
    return secs, rss, cpu, r.stdout, r.stderr


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
                           "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
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
                    wall, rss, cpu, _, err = timed([f"{B}/lora-merge", "--base", base, "--adapter", lora, "--out", out,
                                                    "--threads", str(a.threads)])
                    ph = re.search(r"merge ([\d.]+) with inputs hashed meanwhile in ([\d.]+), fsync ([\d.]+), "
                                   r"verify ([\d.]+)", err)
                    rows[tool].append({"wall_s": wall, "rss_mib": rss, "cpu_s": cpu,
                                       **({"merge_s": float(ph.group(1)), "hash_inputs_s": float(ph.group(2)),
                                           "fsync_s": float(ph.group(3)), "verify_s": float(ph.group(4))} if ph else {})})
                else:
                    wall, rss, cpu, so, _ = timed([sys.executable, os.path.join(HERE, "peft_merge.py"), base, lora, out],
                                                  env={"BENCH_THREADS": str(a.threads), "OMP_NUM_THREADS": str(a.threads)})
                    ph = json.loads(so.strip().splitlines()[-1])
                    rows[tool].append({"wall_s": wall, "rss_mib": rss, "cpu_s": cpu, **ph})
                print(shape, tool, i, rows[tool][-1], flush=True)
        same, detail = tensors_equal(os.path.join(WORK, f"out-lora-merge-{shape}"), os.path.join(WORK, f"out-peft-{shape}"))
        results["shapes"][shape] = {"runs": rows, "bit_identical": same, "compare": detail,
                                    "loadavg_at_end": open("/proc/loadavg").read().split()[:3],
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


def a_runs(rows, k):
    return ", ".join(f"{x[k]:.1f}" for x in rows)


def write_table(res):
    lines = ["| shape | tool | wall s | CPU s (user+sys) | peak RSS MiB | notes |", "|---|---|---|---|---|---|"]
    for shape, r in res["shapes"].items():
        lm, pf = r["runs"]["lora-merge"], r["runs"]["peft"]
        lw, lc, lr = (med([x[k] for x in lm]) for k in ("wall_s", "cpu_s", "rss_mib"))
        pw, pc, pr = (med([x[k] for x in pf]) for k in ("wall_s", "cpu_s", "rss_mib"))
        ps, pfs, pi = (med([x[k] for x in pf]) for k in ("save_s", "fsync_s", "import_s"))
        lph = ""
        if all("merge_s" in x for x in lm):
            lph = (f"; phases: merge {med([x['merge_s'] for x in lm]):.1f} (inputs hashed meanwhile), fsync "
                   f"{med([x['fsync_s'] for x in lm]):.1f}, verify {med([x['verify_s'] for x in lm]):.1f}")
        lines.append(f"| {shape} | lora-merge | {lw:.1f} | {lc:.1f} | {lr:.0f} | hashes inputs and outputs, fsyncs, "
                     f"re-reads and verifies{lph} |")
        lines.append(f"| {shape} | PEFT + save_pretrained | {pw:.1f} | {pc:.1f} | {pr:.0f} | import {pi:.1f}, save "
                     f"done at {ps:.1f}, all files fsynced at {pfs:.1f} |")
        lines.append(f"| {shape} | ratio | **{pw / lw:.1f}x** faster | {pc / lc:.1f}x less CPU | **{lr / pr:.3f}** of "
                     f"PEFT's | tensors bit-identical: {r['bit_identical']} ({r['compare']}) |")
        lines.append(f"| {shape} | runs | {a_runs(lm, 'wall_s')} / {a_runs(pf, 'wall_s')} | | | load average "
                     f"{' '.join(res['machine']['loadavg_at_start'])} at start, {' '.join(r['loadavg_at_end'])} at end |")
    table = "\n".join(lines)
    p = os.path.join(HERE, "README.md")
    text = open(p).read() if os.path.exists(p) else "<!-- RESULTS -->\n<!-- /RESULTS -->\n"
    text = re.sub(r"<!-- RESULTS -->.*<!-- /RESULTS -->", "<!-- RESULTS -->\n" + table + "\n<!-- /RESULTS -->", text,
                  flags=re.S)
    open(p, "w").write(text)
    print(table)


if __name__ == "__main__":
    main()
