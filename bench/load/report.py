#!/usr/bin/env python3
"""bench/load/report.py: the tables of bench/load/README.md, written from a results JSON of
bench/load/load.py, so the README and the JSON always agree.

    python3 bench/load/report.py [RESULTS.json [README.md]]

Defaults: bench/load/results.json and bench/load/README.md. The text between the
markers <!-- load-results:begin --> and <!-- load-results:end --> in the README is
replaced; README.md given as '-' prints the tables instead.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BEGIN, END = "<!-- load-results:begin -->", "<!-- load-results:end -->"

MEANING = {
    "completed": "200 and a well-formed final answer",
    "hung_up": "planned: the client closed the stream after its first chunks",
    "refused_429": "429 with a JSON body and Retry-After (queue full)",
    "refused_503": "503 with a JSON body and Retry-After",
    "context_400": "overflow answered 400, code context_length_exceeded",
    "connection_error": "FAILURE: bare connection error (dropped, reset, refused)",
    "timeout": "FAILURE: no answer within the client timeout",
    "incomplete": "FAILURE: no final answer (missing finish_reason or usage)",
    "stream_error": "FAILURE: error event inside a 200 stream",
    "malformed": "FAILURE: malformed body",
    "unexpected_status": "FAILURE: a status the request should not get",
}


def sec(d, key="p50"):
    """A latency figure in seconds, or a dash."""
    v = d.get(key)
    return "-" if v is None else ("%.3f s" % v if v < 10 else "%.1f s" % v)


def res_row(name, r, unit, div=1, checked=True):
    """One row of the resources table."""
    if r.get("first") is None:
        return "| %s | - | - | - | %s |\n" % (name, r.get("why", "no samples"))
    f = lambda v: (("%.1f" if div > 1 else "%.0f") % (v / div)) + unit  # noqa: E731
    verdict = "-" if not checked else "flat" if r["ok"] else "**not flat**"
    return "| %s | %s → %s | %s – %s | %+.2f %% | %s |\n" % (
        name, f(r["first"]), f(r["last"]), f(r["min"]), f(r["max"]), r["fitted_change_pct"] or 0.0, verdict)


def tables(rep):
    """The markdown of one run."""
    ld, lat, th, rs = rep["load"], rep["latency"], rep["throughput"], rep["resources"]
    n_fail = sum(rep["failure_counts"].values())
    out = []
    mode = "full soak" if rep["mode"] == "full" else "quick development run (`--quick`), not the full soak"
    out.append("Run: %s, started %s, commit `%s`; **%s**%s.\n\n" % (
        mode, rep["started_utc"], rep["git"], "PASSED" if rep["passed"] else "FAILED",
        "" if rep["passed"] else " (%d failures: %s)" % (n_fail, ", ".join(
            "%s %d" % kv for kv in sorted(rep["failure_counts"].items())))))
    out.append("| what | value |\n|---|---|\n")
    mc = rep["machine"]
    out.append("| machine | %s (lscpu; %s), %d CPUs, %s MB RAM, Linux %s |\n" % (
        mc["cpu_model"], " ".join(mc.get("cpu_flags") or []) or "no AVX2", mc["cpus"], mc["mem_total_mb"],
        mc["kernel"]))
    m = rep["model"]
    out.append("| model | %s%s; context %d; start to ready %.1f s |\n" % (
        m["what"], "" if m["bytes"] is None else ", %s, %.2f GB" % (m["dir"], m["bytes"] / 1e9), m["context"],
        m["load_to_ready_s"]))
    out.append("| medserve | `%s` (OMP_WAIT_POLICY=%s) |\n" % (" ".join(rep["medserve"]["argv"]),
                                                              rep["medserve"]["env"]["OMP_WAIT_POLICY"]))
    mix = ld["mix"]
    out.append("| load | %d clients × %.0f s (then %.0f s for requests in flight), openai %s SDK, "
               "max_tokens %d-%d, n %d-%d; %.0f %% context overflows, %.0f %% hang-ups, the rest "
               "%.0f %% streaming, %.0f %% chat, %.0f %% with stop strings |\n" % (
                   ld["clients"], ld["duration_s"], ld["tail_s"], rep["software"]["openai"], ld["max_tokens"][0],
                   ld["max_tokens"][1], ld["n"][0], ld["n"][1], 100 * mix["overflow"], 100 * mix["hangup"],
                   100 * mix["stream_of_rest"], 100 * mix["chat_of_all"], 100 * mix["stop_strings_of_rest"]))
    out.append("| requests | %d |\n" % rep["requests"])
    out.append("| TTFT, streams (client, first text) p50 / p99 | %s / %s (%d requests) |\n" % (
        sec(lat["ttft_s"]), sec(lat["ttft_s"], "p99"), lat["ttft_s"]["count"]))
    out.append("| TTFT, every 200 (server request log) p50 / p99 | %s / %s (%d requests) |\n" % (
        sec(lat["server_ttft_s"]), sec(lat["server_ttft_s"], "p99"), lat["server_ttft_s"]["count"]))
    out.append("| end-to-end, completed p50 / p99 | %s / %s (streams %s / %s, JSON %s / %s) |\n" % (
        sec(lat["e2e_s"]), sec(lat["e2e_s"], "p99"), sec(lat["e2e_stream_s"]), sec(lat["e2e_stream_s"], "p99"),
        sec(lat["e2e_json_s"]), sec(lat["e2e_json_s"], "p99")))
    out.append("| generated tokens/s, aggregate | %.1f (%d tokens of completed requests in %.0f s; "
               "from the request log: %.1f) |\n" % (
                   th["tokens_per_s"], th["completion_tokens"], th["wall_s"], th["server_tokens_per_s"]))
    out.append("| completed requests/s | %.2f |\n\n" % th["completed_per_s"])

    out.append("| outcome | count | meaning |\n|---|---|---|\n")
    for k, v in rep["outcomes"].items():
        out.append("| %s | %d | %s |\n" % (k, v, MEANING.get(k, "FAILURE")))
    for k, v in sorted(rep["failure_counts"].items()):
        if k not in rep["outcomes"]:
            out.append("| %s | %d | FAILURE of the run (see results.json) |\n" % (k, v))
    out.append("\n")

    w = rs["rss_kb"].get("window_s")
    out.append("Server process, sampled every %g s; flatness = least-squares trend over the last %s s of "
               "load within %.0f %% of the mean (at least 1 MB / 2 descriptors):\n\n" % (
                   rs["sample_every_s"], "%.0f" % w if w is not None else "-", 100 * rs["flat_tolerance"]))
    out.append("| | first → last | min – max | fitted change | |\n|---|---|---|---|---|\n")
    out.append(res_row("RSS", rs["rss_kb"], " MB", 1024))
    out.append(res_row("open descriptors", rs["fds"], ""))
    out.append(res_row("threads (not checked)", rs["threads"], "", checked=False))
    if rep["failures"]:
        out.append("\nFirst failures (all in results.json, at most 200):\n\n")
        for f in rep["failures"][:10]:
            out.append("- %s%s: %s\n" % (f["class"], " (%s, t=%s s)" % (f["kind"], f["t_s"]) if "kind" in f else "",
                                         (f.get("detail") or "").replace("|", "/")[:300]))
    return "".join(out)


def main(argv):
    """Reads the JSON, writes the tables into the README (or prints them)."""
    src = argv[0] if argv else os.path.join(HERE, "results.json")
    dst = argv[1] if len(argv) > 1 else os.path.join(HERE, "README.md")
    with open(src) as f:
        text = tables(json.load(f))
    if dst == "-":
        sys.stdout.write(text)
        return 0
    with open(dst) as f:
        readme = f.read()
    a, b = readme.find(BEGIN), readme.find(END)
    if a < 0 or b < a:
        sys.exit("report.py: %s lacks the markers %s / %s" % (dst, BEGIN, END))
    readme = readme[:a + len(BEGIN)] + "\n" + text + readme[b:]
    with open(dst, "w") as f:
        f.write(readme)
    print("report.py: %s updated from %s" % (dst, src))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
