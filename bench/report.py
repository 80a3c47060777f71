"""report.py: turns bench.py's JSON records into the markdown tables of
bench/README.md (medians over rounds, median per-round ratio, fraction of
the round's limit) and the list of targets of issue 6 with met / not met.
Usage: python3 bench/report.py bench/work/results.jsonl  (or imported by bench.py)."""
import json
import statistics
import sys

from bench import SHAPES, bytes_per_token, prefill_flop_per_token


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt(x, spec="%.1f"):
    return spec % x if x is not None else "–"


def case_ctx(case):
    """Average KV positions read per decode step of a case."""
    if case.startswith("tg"):
        n, d = case[2:].split("@")
        return int(d) + int(n) / 2.0
    if case.startswith("batch"):
        return 128 + 16
    return 0


def render(records):
    res = [r for r in records if r.get("kind") == "result"]
    rounds = [r for r in records if r.get("kind") == "round"]
    machine = next((r for r in records if r.get("kind") == "machine"), {})
    out = []
    out.append("Machine: %s, %s threads; medserve %s; peer llama.cpp %s; %s.\n" % (
        machine.get("cpu", "?"), machine.get("threads", "?"), machine.get("medserve", "?"),
        "available" if machine.get("peer") else "NOT available (ours alone)", machine.get("time", "?")))
    # the round's bandwidth: the larger of its start and end probes (the 2-thread
    # figure on a shared host flips between regimes; the larger is the safer bound)
    bw_round = {(r["shape"], r["fmt"], r["threads"], r["round"]): max(r.get("stream_start") or 0, r.get("stream_end") or 0)
                for r in rounds}
    groups = {}
    for r in res:
        groups.setdefault((r["shape"], r["fmt"], r["threads"]), {}).setdefault(r["case"], []).append(r)
    summary = {}
    for (shape, f, threads), cases in groups.items():
        peer_fmt = "BF16" if f == "bf16" else "Q8_0"
        out.append("\n### Qwen3-%s shape, ours %s vs llama.cpp %s, %d thread%s\n" % (
            shape, "bf16" if f == "bf16" else "int8 (q8)", peer_fmt, threads, "s" if threads > 1 else ""))
        out.append("| case | medserve | llama.cpp | ratio (median of rounds) | medserve of limit | llama.cpp of limit | rounds |")
        out.append("|---|---|---|---|---|---|---|")
        for case, rs in cases.items():
            by_round = {}
            for r in rs:
                by_round.setdefault(r["round"], {})[r["runtime"]] = r
            ours, peer, ratios, fo, fp = [], [], [], [], []
            ttft = case.startswith("ttft")
            for rd, pair in sorted(by_round.items()):
                a, b = pair.get("medserve", {}), pair.get("llama.cpp", {})
                key = "wall_s" if ttft else "ts"
                va, vb = a.get(key), b.get(key)
                ours.append(va)
                peer.append(vb)
                if va and vb:
                    ratios.append(vb / va if ttft else va / vb)
                if ttft:
                    continue
                bw = (bw_round.get((shape, f, threads, rd)) or a.get("stream_gbs") or b.get("stream_gbs") or 0) * 1e9
                pk = (a.get("peak_gflops") or b.get("peak_gflops") or 0) * 1e9
                if case.startswith("pp"):
                    P = int(case[2:])
                    flop = prefill_flop_per_token(shape, P)
                    if pk:
                        fo.append(flop * va / pk if va else None)
                        fp.append(flop * vb / pk if vb else None)
                else:
                    ctx = case_ctx(case)
                    B = int(case[5:]) if case.startswith("batch") else 1
                    if bw:
                        for lst, v, ff in ((fo, va, f), (fp, vb, "bf16" if f == "bf16" else "q8_0")):
                            if v:
                                w = bytes_per_token(shape, ff, 0)
                                step = w + B * (bytes_per_token(shape, ff, ctx) - w)
                                lst.append(step * (v / B) / bw)
            if ttft:
                rss_o = med([p.get("medserve", {}).get("peak_rss_kb") for p in by_round.values()])
                rss_p = med([p.get("llama.cpp", {}).get("peak_rss_kb") for p in by_round.values()])
                out.append("| %s start→first token (s), peak RSS (MB) | %s s, %s MB | %s s, %s MB | %s× (llama/ours) | | | %d |" % (
                    case, fmt(med(ours), "%.2f"), fmt(rss_o and rss_o / 1024, "%.0f"), fmt(med(peer), "%.2f"),
                    fmt(rss_p and rss_p / 1024, "%.0f"), fmt(med(ratios), "%.2f"), len(by_round)))
                summary[(shape, f, threads, case)] = (med(ours), med(peer), med(ratios), rss_o, rss_p)
            else:
                unit = "tok/s"
                lim = ("of bf16 peak" if f == "bf16" else "of bf16 peak (int8 ops counted as bf16)") if case.startswith("pp") \
                    else "of bandwidth"
                out.append("| %s (%s) | %s | %s | %s× | %s %s | %s | %d |" % (
                    case, unit, fmt(med(ours)), fmt(med(peer)), fmt(med(ratios), "%.2f"),
                    fmt(med(fo) and 100 * med(fo), "%.0f%%"), lim, fmt(med(fp) and 100 * med(fp), "%.0f%%"),
                    len(by_round)))
                summary[(shape, f, threads, case)] = (med(ours), med(peer), med(ratios), med(fo), med(fp))
    if rounds:
        bw = [r["stream_start"] for r in rounds if r.get("stream_start")]
        pk = [r["peak_start"] for r in rounds if r.get("peak_start")]
        changed = sum(1 for r in rounds if r.get("regime_changed"))
        out.append("\nProbes: STREAM %s–%s GB/s, bf16 peak %s–%s GFLOP/s over %d rounds; %d round(s) saw the "
                   "bandwidth change by more than 1.5x between start and end." % (
                       fmt(min(bw) if bw else None), fmt(max(bw) if bw else None), fmt(min(pk) if pk else None, "%.0f"),
                       fmt(max(pk) if pk else None, "%.0f"), len(rounds), changed))
    cold = [r for r in records if r.get("kind") == "cold" and "error" not in r]
    cold_ratio = None
    if cold:
        def cmed(who, key):
            return med([r[key] for r in cold if r.get("runtime") == who and r.get(key) is not None])
        pairs = {}
        for r in cold:
            pairs.setdefault(r.get("round", 0), {})[r.get("runtime")] = r.get("wall_s")
        ratios = [p["llama.cpp"] / p["medserve"] for p in pairs.values()
                  if p.get("medserve") and p.get("llama.cpp")]
        out.append("\nCold page cache (caches dropped before every run), 0.6B bf16, 128-token prompt, start→first "
                   "token, median of %d alternating rounds: " % len(pairs) + "; ".join(
                       "%s %s s (load %s s, peak RSS %s MB)" % (
                           who, fmt(cmed(who, "wall_s"), "%.2f"), fmt(cmed(who, "load_s"), "%.2f"),
                           fmt(cmed(who, "peak_rss_kb") and cmed(who, "peak_rss_kb") / 1024, "%.0f"))
                       for who in ("medserve", "llama.cpp")) +
                   ("; ratio llama/ours %s (per-round median)" % fmt(med(ratios), "%.2f×") if ratios else "") + ".")
        cold_ratio = med(ratios)
    ag = [r for r in records if r.get("kind") == "agree" and "error" not in r]
    if ag:
        out.append("\nint8 vs bf16 weights (ours, same 256-token random prompt, every position): " + "; ".join(
            "%s: top-1 agreement %.1f %%, max logit drift %.3f, mean %.4f" % (
                r["shape"], 100 * r["top1_agree"], r["max_drift"], r["mean_drift"]) for r in ag) + ".")
    hf = [r for r in records if r.get("kind") == "hf" and "error" not in r]
    if hf:
        out.append("\ntransformers (torch CPU, bf16, same weights), one run: " + "; ".join(
            "%s %s tok/s" % (r.get("case"), fmt(r.get("ts"), "%.1f")) for r in hf) + ".")
    out.append("\n" + targets(summary, cold_ratio))
    return "\n".join(out) + "\n"


def targets(s, cold_ratio=None):
    """Issue 6 targets, each with met / not met and the figures."""
    lines = ["### Targets (issue 6), primary shape 0.6B", "", "| target | figure | met |", "|---|---|---|"]

    def get(f, case, idx, shape="0.6b"):
        for (sh, ff, t, c), v in s.items():
            if sh == shape and ff == f and c == case and t == max(tt for (s2, f2, tt, c2) in s if s2 == sh):
                return v[idx]
        return None

    def row(name, val, goal, fmt_s, higher=True):
        if val is None:
            lines.append("| %s | – | not measured |" % name)
        else:
            ok = val >= goal if higher else val <= goal
            lines.append("| %s | %s | %s |" % (name, fmt_s % val, "yes" if ok else "**no**"))

    row("decode batch 1 ≥ 1.5× llama.cpp BF16", get("bf16", "tg64@0", 2), 1.5, "%.2f×")
    row("decode batch 1 int8 ≥ 1.3× llama.cpp Q8_0", get("q8", "tg64@0", 2), 1.3, "%.2f×")
    row("decode batch 1 ≥ 85 % of bandwidth bound (bf16)", get("bf16", "tg64@0", 3), 0.85, "%.2f")
    row("decode at 2,048 context ≥ 2×", get("bf16", "tg32@2048", 2), 2.0, "%.2f×")
    row("prefill pp512 ≥ 2× llama.cpp BF16", get("bf16", "pp512", 2), 2.0, "%.2f×")
    row("prefill pp512 ≥ 80 % of bf16 peak", get("bf16", "pp512", 3), 0.80, "%.2f")
    row("aggregate decode batch 8 ≥ 1.2×", get("bf16", "batch8", 2), 1.2, "%.2f×")
    v = get("bf16", "ttft128", 2)
    row("load to first token ≤ llama.cpp's (bf16, warm; ratio llama/ours)", v, 1.0, "%.2f×")
    row("load to first token ≤ llama.cpp's (bf16, cold page cache; ratio llama/ours)", cold_ratio, 1.0, "%.2f×")
    o, p = get("bf16", "ttft128", 3), get("bf16", "ttft128", 4)
    row("peak RSS ≤ llama.cpp's (bf16, ctx 4096; ours/llama)", o / p if o and p else None, 1.0, "%.2f", higher=False)
    o, p = get("q8", "ttft128", 3), get("q8", "ttft128", 4)
    row("peak RSS ≤ llama.cpp's (int8 vs Q8_0, ctx 4096; ours/llama)", o / p if o and p else None, 1.0, "%.2f",
        higher=False)
    return "\n".join(lines)


if __name__ == "__main__":
    recs = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    print(render(recs))
