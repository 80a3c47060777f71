#!/usr/bin/env python3
"""bench/load/load.py: load and soak benchmark of `medserve` (what `make bench-load` runs).

Starts build/medserve (a synthetic model with the real Qwen3-0.6B shape, or
--fake-engine), then N client threads, each with its own `openai.OpenAI`
client (max_retries=0: every answer is the server's, none is retried away),
send requests back to back for --duration seconds: chat and completions,
streaming and not, n in 1..3, stop strings, clients that hang up mid-stream,
and prompts that overflow the context. Every request's outcome is classified:

  completed       200, a well-formed final answer (every choice has a
                  finish_reason, usage is present and adds up, no stop
                  string in the text; a stream ends with its usage chunk)
  hung_up         a planned hang-up: 200 and at least one chunk, then the
                  client closed the stream
  refused_429     429 with a JSON error body and Retry-After (the client
                  waits that long, then goes on)
  refused_503     503 with a JSON error body and Retry-After
  context_400     a context overflow answered 400 with a JSON error body
                  (code context_length_exceeded)

Anything else is a failure, listed at the end: a bare connection error
(a dropped connection included), a client timeout, a stream that ends
without its final answer, an error event inside a 200 stream, a malformed
body, an unexpected status (200 for an overflow, 400 for a valid request,
500, ...). The server's RSS, open descriptors and threads are sampled from
/proc every --sample-every seconds and must be flat (least-squares trend
within 5 %) over the last --flat-window seconds of the load. After the
load: /health must answer 200, SIGTERM must drain and exit 0, and the
request log must hold exactly one line for every request id the clients
saw, with the same status. Results (TTFT, end-to-end latency, tokens/s,
counts, the CPU model, the medserve command line) go to --out as JSON;
bench/load/report.py turns that into the README table. Exit status 0 only
when every check passed; 1 otherwise (the failures are printed).

    python3 bench/load/load.py                  the full soak: 64 clients, 600 s,
                                                synthetic 0.6B bf16 model
    python3 bench/load/load.py --quick          8 clients, 45 s, --fake-engine
    python3 bench/load/load.py --help           every option
"""
import argparse
import collections
import datetime
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import openai
except ImportError:  # make deps installs it (tools/install-deps.sh PY_PKGS)
    sys.exit("load.py: the openai package is missing; run `make deps`")

# What each request is, in the full mix (fractions of all requests).
P_OVERFLOW = 0.08  # half a prompt longer than the context, half max_tokens = context
P_HANGUP = 0.12  # streaming, closed by the client after 1-4 text chunks
P_STREAM = 0.5  # of the rest: streaming or not
P_CHAT = 0.6  # of the rest: /v1/chat/completions, else /v1/completions
P_STOP = 0.35  # of the rest: with 1-3 stop strings (real engine only: the fake refuses them)
P_NO_THINK = 0.3  # of chat requests: chat_template_kwargs.enable_thinking = false
STOP_POOL = ["\n", "e", " the", ".", "ing", "END"]

CHAT_PROMPTS = [
    "List three causes of pleural effusion.",
    "Explain what an INR of 3.2 means for a patient on warfarin.",
    "Summarize the steps of a sepsis screening.",
    "What are the contraindications for an MRI scan?",
    "Give the normal range of serum potassium.",
    "Describe briefly how to read a 12-lead ECG.",
    "What does a raised troponin indicate?",
    "Rewrite 'take one tablet twice daily' in plain language.",
]
TEXT_PROMPTS = [
    "Discharge summary:\n",
    "Medication list:\n1.",
    "The differential diagnosis of chest pain includes",
    "Nursing handover, bed 4:",
]

OK_CLASSES = ("completed", "hung_up", "refused_429", "refused_503", "context_400")
FINISH_OK = ("stop", "length")


def now():
    """Monotonic seconds."""
    return time.monotonic()


def pct(xs, p):
    """The p-th percentile of xs (linear interpolation between ranks), or None when empty."""
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def dist(xs, scale=1.0, nd=4):
    """count / p50 / p99 / max of xs, scaled and rounded."""
    r = lambda v: None if v is None else round(v * scale, nd)  # noqa: E731
    return {"count": len(xs), "p50": r(pct(xs, 50)), "p99": r(pct(xs, 99)), "max": r(max(xs) if xs else None)}


class Bad(Exception):
    """A response that broke the contract: (failure class, detail)."""

    def __init__(self, cls, detail):
        """Keeps the failure class and its detail."""
        super().__init__(detail)
        self.cls = cls
        self.detail = detail


# ---------------------------------------------------------------- requests


def plan_request(rng, cfg):
    """A random request description drawn from the mix."""
    u = rng.random()
    q = {"chat": rng.random() < P_CHAT, "n": rng.randint(1, 3), "max_tokens": rng.randint(*cfg.max_tokens),
         "temperature": 0.0 if rng.random() < 0.3 else 0.8, "seed": rng.randint(0, 2**31 - 1),
         "stop": None, "think": True, "overflow": None, "hangup_after": None}
    if u < P_OVERFLOW:
        q["overflow"] = "prompt" if rng.random() < 0.5 else "max_tokens"
        q["stream"] = rng.random() < 0.5
    elif u < P_OVERFLOW + P_HANGUP:
        q["stream"] = True
        q["hangup_after"] = rng.randint(1, 4)
    else:
        q["stream"] = rng.random() < P_STREAM
    if cfg.stop_strings and q["overflow"] is None and rng.random() < P_STOP:
        q["stop"] = rng.sample(STOP_POOL, rng.randint(1, 3))
    if q["chat"] and rng.random() < P_NO_THINK:
        q["think"] = False
    if q["chat"]:
        text = rng.choice(CHAT_PROMPTS) + " (case %d)" % rng.randint(1, 99999)
    else:
        text = rng.choice(TEXT_PROMPTS)
    if q["overflow"] == "prompt":
        # every word is at least one token for the Qwen3 tokenizer and 5 for the fake's bytes
        text = "word " * (cfg.ctx + 64)
    elif q["overflow"] == "max_tokens":
        q["max_tokens"] = cfg.ctx
    q["text"] = text
    return q


def kind_of(q):
    """A short name of the request's kind, for the per-kind counts."""
    k = ("chat" if q["chat"] else "completions") + ("/stream" if q["stream"] else "/json")
    if q["overflow"]:
        k += "/overflow-" + q["overflow"]
    elif q["hangup_after"]:
        k += "/hangup"
    return k


def create_args(q, cfg):
    """Keyword arguments for the SDK's create() call."""
    a = {"model": cfg.model_name, "n": q["n"], "max_tokens": q["max_tokens"], "temperature": q["temperature"],
         "seed": q["seed"], "stream": q["stream"]}
    if q["stream"]:
        a["stream_options"] = {"include_usage": True}
    if q["stop"]:
        a["stop"] = q["stop"]
    if q["chat"]:
        a["messages"] = [{"role": "user", "content": q["text"]}]
        if not q["think"]:
            a["extra_body"] = {"chat_template_kwargs": {"enable_thinking": False}}
    else:
        a["prompt"] = q["text"]
    return a


def texts_of_choice(q, ch):
    """The text fields of one choice (or streamed delta) as a list of strings."""
    if not q["chat"]:
        return [ch.text or ""]
    m = ch.delta if q["stream"] else ch.message
    extra = getattr(m, "model_extra", None) or {}
    return [m.content or "", extra.get("reasoning_content") or ""]


def check_usage(u, q):
    """Usage must be present and add up."""
    if u is None:
        raise Bad("incomplete", "no usage in the final answer")
    p, c, t = u.prompt_tokens, u.completion_tokens, u.total_tokens
    if not all(isinstance(v, int) for v in (p, c, t)) or p <= 0 or c < 0 or t != p + c:
        raise Bad("malformed", "usage does not add up: %r" % (u,))
    if c > q["n"] * q["max_tokens"]:
        raise Bad("malformed", "completion_tokens %d > n %d x max_tokens %d" % (c, q["n"], q["max_tokens"]))
    return c


def check_stop_leak(q, texts, index):
    """A stop string must never appear in the returned text (docs: OpenAI semantics)."""
    for s in q["stop"] or []:
        for t in texts:
            if s in t:
                raise Bad("malformed", "choice %d: stop string %r in the text" % (index, s))


def res_finish(res, q, reason):
    """Counts one choice's finish_reason, apart for requests with stop strings."""
    key = ("stop_strings:" if q["stop"] else "") + str(reason)
    res["finish"][key] = res["finish"].get(key, 0) + 1


def check_json_answer(q, r, res):
    """Validates a non-streaming 200 answer; returns completion tokens."""
    obj = "chat.completion" if q["chat"] else "text_completion"
    if getattr(r, "object", None) != obj or not getattr(r, "id", None):
        raise Bad("malformed", "object %r id %r" % (getattr(r, "object", None), getattr(r, "id", None)))
    if sorted(ch.index for ch in r.choices) != list(range(q["n"])):
        raise Bad("incomplete" if len(r.choices) < q["n"] else "malformed",
                  "choice indices %r for n=%d" % ([ch.index for ch in r.choices], q["n"]))
    for ch in r.choices:
        res_finish(res, q, ch.finish_reason)
        if ch.finish_reason not in FINISH_OK:
            raise Bad("incomplete", "choice %d finish_reason %r" % (ch.index, ch.finish_reason))
        if q["chat"] and ch.message.role != "assistant":
            raise Bad("malformed", "choice %d role %r" % (ch.index, ch.message.role))
        check_stop_leak(q, texts_of_choice(q, ch), ch.index)
    return check_usage(r.usage, q)


def run_stream(q, stream, res):
    """Reads a 200 stream (or hangs up as planned); fills res; raises Bad on a broken contract."""
    obj = "chat.completion.chunk" if q["chat"] else "text_completion"
    finished, texts, usage, cid, n_text = {}, collections.defaultdict(lambda: ["", ""]), None, None, 0
    for chunk in stream:
        if cid is None:
            cid = chunk.id
            res["id"] = cid
        if chunk.id != cid or getattr(chunk, "object", None) != obj:
            raise Bad("malformed", "chunk id %r object %r (first id %r)" % (chunk.id, chunk.object, cid))
        if usage is not None:
            raise Bad("malformed", "a chunk after the usage chunk")
        if chunk.usage is not None:
            if chunk.choices:
                raise Bad("malformed", "usage chunk with choices")
            usage = chunk.usage
            continue
        for ch in chunk.choices:
            if not 0 <= ch.index < q["n"]:
                raise Bad("malformed", "chunk choice index %r for n=%d" % (ch.index, q["n"]))
            if ch.index in finished:
                raise Bad("malformed", "choice %d continues after its finish_reason" % ch.index)
            parts = texts_of_choice(q, ch)
            acc = texts[ch.index]
            for i, t in enumerate(parts):
                acc[i] += t
            if any(parts):
                n_text += 1
                if res.get("ttft") is None:
                    res["ttft"] = now() - res["t0"]
            if ch.finish_reason is not None:
                res_finish(res, q, ch.finish_reason)
                if ch.finish_reason not in FINISH_OK:
                    raise Bad("incomplete", "choice %d finish_reason %r" % (ch.index, ch.finish_reason))
                finished[ch.index] = ch.finish_reason
        if q["hangup_after"] and n_text >= q["hangup_after"] and len(finished) < q["n"]:
            stream.close()
            res["chunks"] = n_text
            return "hung_up"
    if len(finished) != q["n"]:
        raise Bad("incomplete", "stream ended with finish_reason for %d of %d choices" % (len(finished), q["n"]))
    for i, acc in texts.items():
        check_stop_leak(q, acc, i)
    res["tokens"] = check_usage(usage, q)
    return "completed"


def check_error_body(e, want_retry_after):
    """Validates an error reply's JSON body (and Retry-After); returns its error.code."""
    ctype = e.response.headers.get("content-type", "")
    if "application/json" not in ctype:
        raise Bad("malformed", "HTTP %d error with Content-Type %r" % (e.status_code, ctype))
    try:
        body = json.loads(e.response.text)
    except ValueError:
        raise Bad("malformed", "HTTP %d error body is not JSON: %r" % (e.status_code, e.response.text[:200]))
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("message"), str) or not err["message"] \
            or not isinstance(err.get("type"), str) or "code" not in err:
        raise Bad("malformed", "HTTP %d error body lacks error.message/type/code: %r" % (e.status_code, body))
    if want_retry_after:
        ra = e.response.headers.get("retry-after")
        if ra is None or not ra.strip().isdigit():
            raise Bad("malformed", "HTTP %d without a valid Retry-After (%r)" % (e.status_code, ra))
    return err.get("code")


def one_request(client, q, cfg):
    """Sends q and classifies the outcome: a result dict with 'outcome' (and 'detail' on failure)."""
    res = {"kind": kind_of(q), "t0": now(), "id": None, "ttft": None, "tokens": 0, "retry_after": 0, "finish": {}}
    api = client.chat.completions if q["chat"] else client.completions
    try:
        try:
            r = api.create(**create_args(q, cfg))
            if q["overflow"]:
                if q["stream"]:
                    r.close()
                raise Bad("unexpected_status", "HTTP 200 for a context overflow (%s)" % q["overflow"])
            if q["stream"]:
                res["outcome"] = run_stream(q, r, res)
            else:
                res["id"] = r.id
                res["tokens"] = check_json_answer(q, r, res)
                res["outcome"] = "completed"
        except openai.APITimeoutError:
            raise Bad("timeout", "no answer within %.0f s" % cfg.client_timeout)
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e.__context__
            raise Bad("connection_error", "%s (%s)" % (e, repr(cause)[:200]))
        except openai.APIStatusError as e:
            res["id"] = e.request_id
            st = e.status_code
            code = check_error_body(e, st in (429, 503))
            if st == 400 and q["overflow"] and code == "context_length_exceeded":
                res["outcome"] = "context_400"
            elif st in (429, 503):  # for an overflow too: a full queue may answer before the context check
                res["outcome"] = "refused_%d" % st
                res["retry_after"] = int(e.response.headers["retry-after"])
            else:
                raise Bad("unexpected_status", "HTTP %d code %r: %s" % (st, code, e.message[:200]))
        except openai.APIResponseValidationError as e:
            raise Bad("malformed", "SDK validation: %s" % e)
        except openai.APIError as e:  # an error event inside a 200 stream
            raise Bad("stream_error", "error event after HTTP 200: %s (body %r)" % (e.message, e.body))
    except Bad as b:
        res["outcome"] = b.cls
        res["detail"] = b.detail
    except Exception as e:  # noqa: BLE001 - any other exception is a broken answer, listed
        res["outcome"] = "malformed"
        res["detail"] = "%s: %s" % (type(e).__name__, traceback.format_exc(limit=3)[-400:])
    res["t1"] = now()
    return res


# ---------------------------------------------------------------- server


def server_argv(cfg):
    """The medserve command line of this run."""
    a = [os.path.join(ROOT, cfg.build, "medserve")]
    a += ["--fake-engine", "--fake-step-us", str(cfg.fake_step_us)] if cfg.fake_engine else [cfg.model]
    a += ["--host", "127.0.0.1", "--port", "0", "--model-name", cfg.model_name, "--ctx", str(cfg.ctx),
          "--max-seqs", str(cfg.max_seqs), "--queue", str(cfg.queue), "--max-n", "3",
          "--timeout", str(cfg.server_timeout), "--max-connections", str(cfg.max_connections),
          "--max-connections-per-ip", str(cfg.max_connections), "--log", cfg.reqlog]
    if cfg.threads:
        a += ["--threads", str(cfg.threads)]
    return a


class Server:
    """The medserve process: started, its stderr kept, port and context read from it."""

    def __init__(self, argv, env, stderr_path, ready_timeout):
        """Starts argv and waits for its ready line; exits the harness when it never comes."""
        self.lines = []
        self.port = self.ctx = None
        self.ready = threading.Event()
        self.errf = open(stderr_path, "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.pid = self.proc.pid
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(ready_timeout) or self.port is None or self.proc.poll() is not None:
            self.kill()
            raise SystemExit("load.py: medserve did not become ready within %d s:\n%s" %
                             (ready_timeout, "".join(self.lines[-20:])))

    def _read(self):
        """Copies stderr to the file and watches for the listening / ready lines."""
        for line in self.proc.stderr:
            self.lines.append(line)
            self.errf.write(line)
            self.errf.flush()
            m = re.search(r"listening on http://[^ ]*:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            m = re.search(r"medserve: ready: .*context (\d+)", line)
            if m:
                self.ctx = int(m.group(1))
                self.ready.set()
        self.ready.set()

    def alive(self):
        """Whether the process is still running."""
        return self.proc.poll() is None

    def get(self, path, timeout=30):
        """(status, body bytes) of a GET; (None, error text) when it fails."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return None, str(e)

    def stop(self, timeout):
        """SIGTERM, then the exit status (None if it had to be killed after timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        """SIGKILL and reap, when still running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


# ---------------------------------------------------------------- resources


def proc_sample(pid):
    """(RSS kB, open descriptors, threads) of pid from /proc, or None when it is gone."""
    try:
        rss = thr = None
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    thr = int(line.split()[1])
        fds = len(os.listdir("/proc/%d/fd" % pid))
        return rss, fds, thr
    except (OSError, ValueError):
        return None


def trend(samples, col, t_lo, t_hi, tol, floor):
    """Least-squares trend of column col over samples with t in [t_lo, t_hi]: flat when the
    fitted change over the window is within tol of the mean (or within floor, for small counts)."""
    pts = [(s[0], s[col]) for s in samples if t_lo <= s[0] <= t_hi and s[col] is not None]
    out = {"window_s": round(t_hi - t_lo, 1), "samples": len(pts)}
    if len(pts) < 5:
        out.update(ok=False, why="fewer than 5 samples in the window")
        return out
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    slope = sum((t - mt) * (v - mv) for t, v in pts) / var if var else 0.0
    change = slope * (pts[-1][0] - pts[0][0])
    vals = [v for _, v in pts]
    limit = max(tol * mv, floor)
    out.update(first=vals[0], last=vals[-1], min=min(vals), max=max(vals), mean=round(mv, 1),
               fitted_change=round(change, 2), fitted_change_pct=round(100.0 * change / mv, 2) if mv else None,
               limit=round(limit, 2), ok=abs(change) <= limit)
    return out


# ---------------------------------------------------------------- facts about the machine


def cpu_flags():
    """The CPU features that choose medserve's kernels (docs/design.md: AVX-512 BF16/VNNI, AVX2, scalar)."""
    try:
        m = re.search(r"^flags\s*:\s*(.+)$", open("/proc/cpuinfo").read(), re.M)
        have = set(m.group(1).split()) if m else set()
    except OSError:
        have = set()
    return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni") if f in have]


def cpu_model():
    """lscpu's Model name, or /proc/cpuinfo's."""
    name = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        name = m.group(1).strip() if m else None
    except (OSError, subprocess.SubprocessError):
        pass
    if not name:
        try:
            m = re.search(r"^model name\s*:\s*(.+)$", open("/proc/cpuinfo").read(), re.M)
            name = m.group(1).strip() if m else None
        except OSError:
            pass
    return name or "unknown"


def mem_total_mb():
    """MemTotal of /proc/meminfo in MB."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def git_describe():
    """The commit being measured (git describe --dirty), or None outside a checkout."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def describe_model(d):
    """The shape of the model in d, from its config.json (Qwen3-0.6B: hidden 1024, 28 layers, 16/8 heads)."""
    try:
        c = json.load(open(os.path.join(d, "config.json")))
        return "Qwen3 shape: hidden %s, %s layers, %s/%s heads of %s, intermediate %s, vocab %s, %s" % (
            c.get("hidden_size"), c.get("num_hidden_layers"), c.get("num_attention_heads"),
            c.get("num_key_value_heads"), c.get("head_dim"), c.get("intermediate_size"), c.get("vocab_size"),
            c.get("torch_dtype"))
    except (OSError, ValueError) as e:
        return "unknown (%s)" % e


def dir_bytes(d):
    """Total size of the files under d."""
    total = 0
    for base, _, files in os.walk(d):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(base, f))
            except OSError:
                pass
    return total


# ---------------------------------------------------------------- the run


def parse_args(argv):
    """The options, with the defaults of the full run or of --quick filled in."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="development run: 8 clients, 45 s, --fake-engine unless --model is given, "
                         "4 sequences + queue 8 (so 429s happen), results to bench/work/load/quick.json")
    ap.add_argument("--clients", type=int, help="concurrent clients (default 64; quick 8)")
    ap.add_argument("--duration", type=float, help="seconds of load (default 600; quick 45)")
    ap.add_argument("--model", help="export directory (default bench/work/models/0.6b-bf16, made with "
                                     "build/tools/synth --shape 0.6b --dtype bf16 when missing)")
    ap.add_argument("--fake-engine", action="store_true", help="medserve --fake-engine: no model")
    ap.add_argument("--fake-step-us", type=int, default=20000, help="fake engine: microseconds per step")
    ap.add_argument("--ctx", type=int, default=512, help="medserve --ctx")
    ap.add_argument("--max-seqs", type=int, help="medserve --max-seqs (default 16; quick 4)")
    ap.add_argument("--queue", type=int, help="medserve --queue (default 96; quick 8)")
    ap.add_argument("--threads", type=int, default=0, help="medserve --threads (0: its default, all CPUs)")
    ap.add_argument("--max-connections", type=int,
                    help="medserve --max-connections and --max-connections-per-ip (default 4 x clients, "
                         "at least 64)")
    ap.add_argument("--server-timeout", type=float, default=600, help="medserve --timeout (request deadline)")
    ap.add_argument("--client-timeout", type=float, help="SDK timeout per request (default server timeout + 60)")
    ap.add_argument("--max-tokens", default="16,48", help="max_tokens drawn uniformly from LO,HI")
    ap.add_argument("--omp-wait-policy", default="passive",
                    help="OMP_WAIT_POLICY for medserve (passive: the clients share the CPUs)")
    ap.add_argument("--sample-every", type=float, help="seconds between /proc samples (default 3; quick 1)")
    ap.add_argument("--flat-window", type=float, default=480,
                    help="RSS / fd flatness is checked over the last this many seconds of load "
                         "(at most 80 %% of --duration)")
    ap.add_argument("--flat-tol", type=float, default=0.05, help="flatness tolerance (fraction of the mean)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the request mix")
    ap.add_argument("--build", default=os.environ.get("MEDSERVE_BUILD", "build"))
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "work", "load"),
                    help="request log, server stderr")
    ap.add_argument("--out", help="results JSON (default bench/load/results.json; quick "
                                  "bench/work/load/quick.json)")
    cfg = ap.parse_args(argv)
    q = cfg.quick
    if cfg.clients is None:
        cfg.clients = 8 if q else 64
    if cfg.duration is None:
        cfg.duration = 45.0 if q else 600.0
    if q and not cfg.model:
        cfg.fake_engine = True
    if cfg.max_seqs is None:
        cfg.max_seqs = 4 if q else 16
    if cfg.queue is None:
        cfg.queue = 8 if q else 96
    if cfg.max_connections is None:
        cfg.max_connections = max(64, 4 * cfg.clients)
    if cfg.client_timeout is None:
        cfg.client_timeout = cfg.server_timeout + 60
    if cfg.sample_every is None:
        cfg.sample_every = 1.0 if q else 3.0
    cfg.flat_window = min(cfg.flat_window, 0.8 * cfg.duration)
    lo, hi = (int(x) for x in cfg.max_tokens.split(","))
    if not 1 <= lo <= hi:
        ap.error("--max-tokens: expected LO,HI with 1 <= LO <= HI")
    cfg.max_tokens = (lo, hi)
    if cfg.clients < 1 or cfg.duration <= 0:
        ap.error("--clients and --duration must be positive")
    if not cfg.fake_engine and not cfg.model:
        cfg.model = os.path.join(ROOT, "bench", "work", "models", "0.6b-bf16")
    if cfg.out is None:
        cfg.out = os.path.join(ROOT, "bench", "work", "load", "quick.json") if q else \
            os.path.join(ROOT, "bench", "load", "results.json")
    cfg.model_name = "fake" if cfg.fake_engine else "load-model"
    cfg.stop_strings = not cfg.fake_engine
    return cfg


def ensure_model(cfg):
    """Makes the synthetic 0.6B bf16 model when the directory has none (about 1.2 GB)."""
    if cfg.fake_engine:
        return
    if os.path.exists(os.path.join(cfg.model, "model.safetensors")) or \
            os.path.exists(os.path.join(cfg.model, "model.safetensors.index.json")):
        return
    synth = os.path.join(ROOT, cfg.build, "tools", "synth")
    print("load: synthesizing Qwen3-0.6B-shape bf16 weights into %s (about 1.2 GB)" % cfg.model, flush=True)
    subprocess.run([synth, "--shape", "0.6b", "--dtype", "bf16", "--out", cfg.model, "--force", "--quiet"],
                   check=True, timeout=1800)


def client_main(k, cfg, base, stop_at, results, lock):
    """One client: requests back to back until stop_at (bounded in count too), honouring Retry-After."""
    rng = random.Random(cfg.seed * 1000003 + k)
    client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=cfg.client_timeout)
    try:
        for _ in range(1000000):
            if now() >= stop_at:
                break
            q = plan_request(rng, cfg)
            res = one_request(client, q, cfg)
            res["client"] = k
            with lock:
                results.append(res)
            if res["retry_after"]:
                time.sleep(min(res["retry_after"], 10, max(0.0, stop_at - now())))
            elif res["outcome"] not in OK_CLASSES:  # a failing server is not hammered in a tight loop
                time.sleep(min(1.0, max(0.0, stop_at - now())))
    finally:
        client.close()


def main(argv):
    """Runs the server and the clients, checks, writes the JSON; returns the exit status."""
    cfg = parse_args(argv)
    os.makedirs(cfg.work, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
    binary = os.path.join(ROOT, cfg.build, "medserve")
    if not os.access(binary, os.X_OK):
        sys.exit("load.py: %s is missing; run `make all` first" % binary)
    ensure_model(cfg)
    cfg.reqlog = os.path.join(cfg.work, "requests.jsonl")
    if os.path.exists(cfg.reqlog):
        os.remove(cfg.reqlog)
    argv_srv = server_argv(cfg)
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = cfg.omp_wait_policy
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    print("load: %s" % " ".join(argv_srv), flush=True)
    t_start_srv = now()
    srv = Server(argv_srv, env, os.path.join(cfg.work, "medserve.stderr"), ready_timeout=600)
    load_s = now() - t_start_srv
    cfg.ctx = srv.ctx or cfg.ctx
    base = "http://127.0.0.1:%d" % srv.port
    print("load: medserve pid %d ready in %.1f s on %s, context %d; %d clients for %.0f s" %
          (srv.pid, load_s, base, cfg.ctx, cfg.clients, cfg.duration), flush=True)

    run_failures = []  # (class, detail) of the run as a whole
    # a warm-up request, not counted: the server answers at all
    warm = one_request(openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0,
                                     timeout=cfg.client_timeout),
                       {"chat": True, "n": 1, "max_tokens": 4, "temperature": 0.0, "seed": 1, "stop": None,
                        "think": True, "overflow": None, "hangup_after": None, "stream": False,
                        "text": "Hello"}, cfg)
    if warm["outcome"] != "completed":
        run_failures.append(("warm_up", "%s: %s" % (warm["outcome"], warm.get("detail"))))

    samples, stop_sampling = [], threading.Event()
    t0 = now()

    def sampler():
        """Samples the server's RSS / descriptors / threads until told to stop (bounded by the run)."""
        for _ in range(10**7):
            if stop_sampling.is_set():
                break
            s = proc_sample(srv.pid)
            if s is not None:
                samples.append((round(now() - t0, 2),) + s)
            stop_sampling.wait(cfg.sample_every)

    results, lock = [], threading.Lock()
    stop_at = t0 + cfg.duration
    smp = threading.Thread(target=sampler, daemon=True)
    smp.start()
    threads = [threading.Thread(target=client_main, args=(k, cfg, base, stop_at, results, lock), daemon=True)
               for k in range(cfg.clients)]
    for t in threads:
        t.start()
    last_report = t0
    while now() < stop_at:
        time.sleep(min(1.0, max(0.0, stop_at - now())))
        if not srv.alive():
            run_failures.append(("server_died", "medserve exited with %r during the load" % srv.proc.poll()))
            break
        if now() - last_report >= (10 if cfg.quick else 60):
            last_report = now()
            with lock:
                c = collections.Counter(r["outcome"] for r in results)
            s = samples[-1] if samples else None
            print("load: t=%4.0fs %s%s" % (now() - t0, dict(sorted(c.items())),
                                          "  rss %d MB fds %d threads %d" % (s[1] // 1024, s[2], s[3]) if s
                                          else ""), flush=True)
    t_load_end = now()
    # in-flight requests finish: every admitted one must get its final answer
    join_deadline = now() + cfg.client_timeout + 30
    for t in threads:
        t.join(max(0.0, join_deadline - now()))
    hung = [i for i, t in enumerate(threads) if t.is_alive()]
    if hung:
        run_failures.append(("no_final_answer", "clients %s still waiting %.0f s after the load ended" %
                             (hung, cfg.client_timeout + 30)))
    t_drained = now()
    stop_sampling.set()
    smp.join(cfg.sample_every + 5)

    # the server is still healthy, then drains on SIGTERM and exits 0
    st, body = srv.get("/health")
    if st != 200:
        run_failures.append(("health", "/health after the load: %r %r" % (st, body[:200] if body else body)))
    rc = srv.stop(timeout=120)
    if rc != 0:
        run_failures.append(("server_exit", "medserve exit status on SIGTERM: %r" % rc))

    with lock:
        res = list(results)
    report = summarize(cfg, res, samples, run_failures, srv, argv_srv, env, started, load_s,
                       t0, t_load_end, t_drained)
    with open(cfg.out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print_summary(report, cfg.out)
    return 0 if report["passed"] else 1


def check_log(cfg, res):
    """Every request id the clients saw has exactly one request-log line with the same status; returns
    (failures, completion tokens the log counts, lines by id)."""
    lines = {}
    bad = []
    try:
        with open(cfg.reqlog) as f:
            for line in f:
                o = json.loads(line)
                lines.setdefault(o.get("id"), []).append(o)
    except (OSError, ValueError) as e:
        return [("log_mismatch", "cannot read the request log %s: %s" % (cfg.reqlog, e))], 0, {}
    want = {"completed": (200,), "hung_up": (200, 499), "refused_429": (429,), "refused_503": (503,),
            "context_400": (400,)}
    for r in res:
        if r["outcome"] not in want:
            continue
        if not r.get("id"):
            bad.append(("log_mismatch", "a %s %s answer without a request id" % (r["kind"], r["outcome"])))
            continue
        got = lines.get(r["id"], [])
        if len(got) != 1:
            bad.append(("log_mismatch", "request %s (%s): %d log lines" % (r["id"], r["outcome"], len(got))))
        elif got[0].get("status") not in want[r["outcome"]]:
            bad.append(("log_mismatch", "request %s: client saw %s, log says status %r outcome %r" %
                        (r["id"], r["outcome"], got[0].get("status"), got[0].get("outcome"))))
        elif r["outcome"] == "completed" and got[0].get("outcome") != "ok":
            bad.append(("log_mismatch", "request %s completed, log outcome %r" % (r["id"], got[0].get("outcome"))))
    server_tokens = sum(o.get("completion_tokens") or 0 for v in lines.values() for o in v)
    return bad, server_tokens, lines


def summarize(cfg, res, samples, run_failures, srv, argv_srv, env, started, load_s, t0, t_load_end, t_drained):
    """The results document."""
    counts = collections.Counter(r["outcome"] for r in res)
    by_kind = collections.defaultdict(collections.Counter)
    for r in res:
        by_kind[r["kind"]][r["outcome"]] += 1
    fails = [r for r in res if r["outcome"] not in OK_CLASSES]
    log_bad, server_tokens, log_lines = check_log(cfg, res)
    run_failures = run_failures + log_bad
    done = [r for r in res if r["outcome"] == "completed"]
    ttft = [r["ttft"] for r in done if r["ttft"] is not None]
    e2e = [r["t1"] - r["t0"] for r in done]
    e2e_stream = [r["t1"] - r["t0"] for r in done if "/stream" in r["kind"]]
    e2e_json = [r["t1"] - r["t0"] for r in done if "/json" in r["kind"]]
    tokens = sum(r["tokens"] for r in done)
    finish = collections.Counter()
    for r in done:
        finish.update(r["finish"])
    wall = max(t_drained - t0, 1e-9)
    srv_ttft = [o["ttft_ms"] for v in log_lines.values() for o in v if o.get("ttft_ms") is not None
                and o.get("status") == 200]
    w_hi = t_load_end - t0
    w_lo = max(0.0, w_hi - cfg.flat_window)
    rss = trend(samples, 1, w_lo, w_hi, cfg.flat_tol, floor=1024)  # kB: at least 1 MB
    fds = trend(samples, 2, w_lo, w_hi, cfg.flat_tol, floor=2)
    thr = trend(samples, 3, w_lo, w_hi, cfg.flat_tol, floor=2)
    if not rss["ok"]:
        run_failures.append(("rss_not_flat", "RSS trend over the last %.0f s: %r" % (cfg.flat_window, rss)))
    if not fds["ok"]:
        run_failures.append(("fds_not_flat", "open descriptors trend over the last %.0f s: %r" %
                             (cfg.flat_window, fds)))
    bucket = 10.0 if cfg.duration <= 120 else 60.0
    timeline = collections.OrderedDict()
    for r in res:
        b = int((r["t1"] - t0) // bucket)
        e = timeline.setdefault(b, {"t_s": b * bucket, "completed": 0, "refused": 0, "other_ok": 0,
                                    "failed": 0, "tokens": 0})
        o = r["outcome"]
        e["completed" if o == "completed" else "refused" if o.startswith("refused") else
          "other_ok" if o in OK_CLASSES else "failed"] += 1
        e["tokens"] += r["tokens"] if o == "completed" else 0
    failure_list = [{"class": r["outcome"], "kind": r["kind"], "client": r["client"],
                     "t_s": round(r["t0"] - t0, 2), "id": r.get("id"), "detail": r.get("detail")}
                    for r in fails]
    failure_list += [{"class": c, "detail": d} for c, d in run_failures]
    fail_counts = collections.Counter(f["class"] for f in failure_list)
    return {
        "benchmark": "medserve load and soak (bench/load/load.py)",
        "mode": "quick" if cfg.quick else "full",
        "started_utc": started,
        "git": git_describe(),
        "machine": {"cpu_model": cpu_model(), "cpu_flags": cpu_flags(), "cpus": os.cpu_count(),
                    "mem_total_mb": mem_total_mb(),
                    "kernel": platform.release()},
        "software": {"python": platform.python_version(), "openai": openai.__version__},
        "model": {"engine": "fake" if cfg.fake_engine else "real",
                  "dir": None if cfg.fake_engine else os.path.relpath(cfg.model, ROOT),
                  "what": "medserve --fake-engine (no model compute)" if cfg.fake_engine else describe_model(cfg.model),
                  "bytes": None if cfg.fake_engine else dir_bytes(cfg.model),
                  "context": cfg.ctx, "load_to_ready_s": round(load_s, 2)},
        "medserve": {"argv": [os.path.relpath(a, ROOT) if a.startswith(ROOT + os.sep) else a for a in argv_srv],
                     "env": {"OMP_WAIT_POLICY": env.get("OMP_WAIT_POLICY")}},
        "load": {"clients": cfg.clients, "duration_s": cfg.duration, "max_tokens": list(cfg.max_tokens),
                 "n": [1, 3], "client_timeout_s": cfg.client_timeout, "seed": cfg.seed,
                 "mix": {"overflow": P_OVERFLOW, "hangup": P_HANGUP, "stream_of_rest": P_STREAM,
                         "chat_of_all": P_CHAT, "stop_strings_of_rest": P_STOP if cfg.stop_strings else 0.0,
                         "no_thinking_of_chat": P_NO_THINK},
                 "sdk": "openai.OpenAI per client, max_retries=0",
                 "tail_s": round(t_drained - t_load_end, 1)},
        "requests": len(res),
        "outcomes": dict(sorted(counts.items())),
        "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "finish_reasons_of_completed_choices": dict(sorted(finish.items())),
        "failure_counts": dict(sorted(fail_counts.items())),
        "failures": failure_list[:200],
        "latency": {"ttft_s": dist(ttft), "e2e_s": dist(e2e), "e2e_stream_s": dist(e2e_stream),
                    "e2e_json_s": dist(e2e_json),
                    "server_ttft_s": dist(srv_ttft, scale=1e-3)},
        "throughput": {"completion_tokens": tokens, "wall_s": round(wall, 1),
                       "tokens_per_s": round(tokens / wall, 2),
                       "server_completion_tokens": server_tokens,
                       "server_tokens_per_s": round(server_tokens / wall, 2),
                       "completed_per_s": round(len(done) / wall, 3)},
        "resources": {"sample_every_s": cfg.sample_every, "flat_tolerance": cfg.flat_tol,
                      "rss_kb": rss, "fds": fds, "threads": thr,
                      "samples": [list(s) for s in samples]},
        "timeline": list(timeline.values()),
        "checks": {"every_request_classified_ok": not fails, "run_checks_ok": not run_failures,
                   "rss_flat": rss["ok"], "fds_flat": fds["ok"]},
        "passed": not fails and not run_failures,
    }


def print_summary(rep, out):
    """The outcome counts, latencies, resources and every failure, on stdout."""
    print("load: %d requests: %s" % (rep["requests"], rep["outcomes"]))
    lat = rep["latency"]
    print("load: TTFT p50 %s s p99 %s s; end-to-end p50 %s s p99 %s s; %s tok/s (%s completion tokens)" %
          (lat["ttft_s"]["p50"], lat["ttft_s"]["p99"], lat["e2e_s"]["p50"], lat["e2e_s"]["p99"],
           rep["throughput"]["tokens_per_s"], rep["throughput"]["completion_tokens"]))
    for k in ("rss_kb", "fds", "threads"):
        r = rep["resources"][k]
        print("load: %s over the last %s s: %s -> %s (min %s max %s), fitted change %s (%s %%), %s" %
              (k, r.get("window_s"), r.get("first"), r.get("last"), r.get("min"), r.get("max"),
               r.get("fitted_change"), r.get("fitted_change_pct"),
               "flat" if r.get("ok") else "checked" if k == "threads" else "NOT FLAT"))
    print("load: results in %s" % out)
    if rep["passed"]:
        print("load: PASSED: every request classified as an allowed outcome, every run check held")
        return
    print("load: FAILED: %s" % rep["failure_counts"])
    for f in rep["failures"][:50]:
        print("  FAIL %s" % json.dumps(f))
    if len(rep["failures"]) > 50:
        print("  ... %d more in %s" % (len(rep["failures"]) - 50, out))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
