"""test_reqlog_audit.py: the request log (`--log`) as an audit trail, on the
fake engine, as real processes on loopback (docs/threats.md §3 "Request log",
T6 (c) and (d)): `kill -9` under load leaves only whole JSON lines; a torn
last line left by a crash is removed at the next start and recorded; a full
disk under the log is counted on /metrics, warned once, recorded as a
`log_gap` line when writing works again, and with `--log-required` turns new
requests away with 503 until then. The full-disk tests mount a 64 KiB tmpfs
and need root (skipped, saying so, otherwise)."""
import errno
import http.client
import json
import os
import subprocess
import threading
import time

import pytest

from srvutil import BIN, Server, tmpdir, wait_for

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
# fields every request line has (reqlog.h reqlog_line); generation routes have more
BASE_FIELDS = {"ts", "id", "key_id", "client", "method", "route", "status", "outcome", "duration_ms"}
GEN_FIELDS = {"stream", "n", "prompt_tokens", "completion_tokens", "reasoning_tokens", "ttft_ms",
              "finish_reason", "seed"}
ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/tokenize",
          "/detokenize", "other"}
WARNING = "cannot write the request log"
RECOVERED = "request log is writable again"


def fake(*args):
    """A ready `medserve --fake-engine` with the given options."""
    return Server(["--fake-engine", "--model-name", "fake"] + list(args)).wait_ready()


def records(path):
    """Every line of the log as a JSON object; fails on a torn or malformed line."""
    data = open(path, "rb").read()
    assert not data or data.endswith(b"\n"), "torn last line: %r" % data[-200:]
    out = []
    for i, line in enumerate(data.split(b"\n")[:-1]):
        try:
            rec = json.loads(line)
        except ValueError:
            pytest.fail("line %d is not JSON: %r" % (i + 1, line[:300]))
        assert isinstance(rec, dict), (i + 1, line[:300])
        out.append(rec)
    return out


def check_request_line(rec):
    """A request line has the documented fields (and generation routes theirs)."""
    assert BASE_FIELDS <= set(rec), rec
    assert rec["route"] in ROUTES and isinstance(rec["status"], int), rec
    if rec["route"] in ("/v1/chat/completions", "/v1/completions"):
        assert GEN_FIELDS <= set(rec), rec


def newlines(path):
    """Number of newlines in the file (whole lines written so far)."""
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def stderr_count(s, text):
    """How many stderr lines of the server contain text."""
    return sum(text in line for line in s.lines)


class Load:
    """16 clients sending a mix of requests (chat, streamed chat, completions,
    a 400, models) with prompts of 0..6000 bytes, so that with --log-text the
    lines are of very different sizes and many span a page. Bounded: each
    client stops after 3000 requests, 60 s, or when told to."""

    CLIENTS = 16

    def __init__(self, s):
        self.s = s
        self.stop = threading.Event()
        self.sent = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.CLIENTS)]
        for t in self.threads:
            t.start()

    def _one(self, tid, i):
        """Request i of client tid: (method, path, body)."""
        k = (tid + i) % 5
        text = "p%d-%d " % (tid, i) + "x\u00e9\"" * ((tid * 977 + i * 331) % 2000)
        msgs = [{"role": "user", "content": text}]
        if k == 0:
            return "POST", "/v1/chat/completions", dict(CHAT, messages=msgs)
        if k == 1:
            return "POST", "/v1/chat/completions", dict(CHAT, messages=msgs, stream=True)
        if k == 2:
            return "POST", "/v1/completions", {"model": "fake", "prompt": text, "max_tokens": 6}
        if k == 3:
            return "POST", "/v1/chat/completions", dict(CHAT, messages=msgs, temperature=-1)  # 400
        return "GET", "/v1/models", None

    def _run(self, tid):
        """One client: requests one after another on fresh connections."""
        end = time.time() + 60
        for i in range(3000):
            if self.stop.is_set() or time.time() > end:
                return
            method, path, body = self._one(tid, i)
            with self.lock:
                self.sent += 1
            c = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=30)
            try:
                c.request(method, path, body=json.dumps(body) if body else None,
                          headers={"Content-Type": "application/json"})
                c.getresponse().read()
            except (OSError, http.client.HTTPException):
                if self.stop.is_set():
                    return
            finally:
                c.close()

    def join(self):
        """Stops the clients and waits for them."""
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads)


def test_kill9_under_load_leaves_whole_lines():
    """T6 (c): three rounds of load, each ended by SIGKILL once at least 1000
    more lines are in the file; after each, every line of the file is a whole
    request line (no torn last line, no two lines run together), none
    repeated, and the count lies between what was seen before the kill and
    what was sent. The next round appends to the same file."""
    log = os.path.join(tmpdir(), "kill9.log")
    ids = set()
    for rnd in range(3):
        s = fake("--fake-step-us", "200", "--max-seqs", "8", "--queue", "64", "--log", log, "--log-text")
        assert stderr_count(s, "torn") == 0, s.lines
        before = newlines(log) if os.path.exists(log) else 0
        load = Load(s)
        try:
            assert wait_for(lambda: newlines(log) >= before + 1000, timeout=60), (before, newlines(log))
            seen = newlines(log)
            assert not load.stop.is_set() and any(t.is_alive() for t in load.threads)
            s.proc.kill()  # SIGKILL, mid-load
            s.proc.wait(30)
        finally:
            load.join()
            s.kill()
        recs = records(log)
        for r in recs[before:]:
            check_request_line(r)
            assert r["id"] not in ids, r["id"]
            ids.add(r["id"])
        assert seen <= len(recs) <= before + load.sent, (rnd, before, seen, len(recs), load.sent)
        assert any("prompt" in r and len(json.dumps(r)) > 4096 for r in recs[before:])


def test_torn_last_line_is_removed_at_start():
    """A last line without its newline (a crash inside the kernel's copy of a
    line, or power loss) is cut off when the server opens the log, said on
    stderr and recorded as a log_repaired line; a file whose last 256 KiB
    hold no newline is not a request log and is left alone (exit 2)."""
    log = os.path.join(tmpdir(), "torn.log")
    whole = json.dumps({"ts": "2024-01-01T00:00:00.000Z", "id": "req-1"}).encode() + b"\n"
    torn = b'{"ts":"2024-01-01T00:00:01.000Z","id":"chatcmpl-2","route":"/v1/chat'
    with open(log, "wb") as f:
        f.write(whole + torn)
    os.chmod(log, 0o600)
    with fake("--log", log) as s:
        assert stderr_count(s, "removed a torn last line (%d bytes)" % len(torn)) == 1, s.lines
        st, h, out = s.request("POST", "/v1/chat/completions", body=CHAT)
        assert st == 200
        rid = h["x-request-id"]
        assert wait_for(lambda: rid.encode() in open(log, "rb").read())
    recs = records(log)
    assert recs[0] == json.loads(whole)
    assert recs[1]["event"] == "log_repaired" and recs[1]["removed_bytes"] == len(torn), recs[1]
    assert any(r.get("id") == rid for r in recs[2:])
    assert torn not in open(log, "rb").read()

    other = os.path.join(tmpdir(), "not-a-log")
    junk = b"x" * (300 << 10)
    with open(other, "wb") as f:
        f.write(junk)
    r = subprocess.run([BIN, "--fake-engine", "--port", "0", "--log", other],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--log" in r.stderr and "newline" in r.stderr, r.stderr
    assert open(other, "rb").read() == junk


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs, unmounted at the end whatever happens; skips when not root."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if os.geteuid() != 0:
            pytest.skip("needs root to mount a 64 KiB tmpfs for the full-disk test (not root: %s)"
                        % r.stderr.strip())
        pytest.fail("mount -t tmpfs failed as root: " + r.stderr)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)])


def fill(mnt):
    """Fills the filesystem with a file of zeros until ENOSPC; returns its path."""
    path = os.path.join(str(mnt), "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(100000):
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                return path
        pytest.fail("the filesystem never filled")
    finally:
        os.close(fd)


def lost_total(s):
    """medserve_log_write_errors_total on /metrics."""
    return s.metric("medserve_log_write_errors_total")


def test_full_disk_counted_warned_once_and_recovered(small_fs):
    """T6 (d) without --log-required: the server keeps serving on a full log
    disk, counts every lost line, warns once, and once space is back writes a
    log_gap line whose lost_lines add up to the counter, then logs again."""
    log = os.path.join(str(small_fs), "log")
    with fake("--log", log) as s:
        st, h, out = s.request("POST", "/v1/chat/completions", body=CHAT)
        assert st == 200
        first = h["x-request-id"]
        assert wait_for(lambda: first.encode() in open(log, "rb").read())
        assert lost_total(s) == 0 and s.metric("medserve_log_writable") == 1
        filler = fill(small_fs)
        for i in range(100):  # the log's last page may still take a few lines
            st, h, out = s.request("POST", "/v1/chat/completions", body=CHAT)
            assert st == 200, out  # keeps serving
            if lost_total(s) >= 3:
                break
        assert wait_for(lambda: lost_total(s) >= 3), lost_total(s)
        assert wait_for(lambda: s.metric("medserve_log_writable") == 0)
        st, h, out = s.request("GET", "/health")
        assert st == 200 and json.loads(out) == {"status": "ok"}
        assert wait_for(lambda: stderr_count(s, WARNING) >= 1), s.lines
        for i in range(20):
            assert s.request("POST", "/v1/chat/completions", body=CHAT)[0] == 200
        os.unlink(filler)
        assert wait_for(lambda: s.metric("medserve_log_writable") == 1, timeout=30)
        assert wait_for(lambda: stderr_count(s, RECOVERED) == 1, timeout=30), s.lines
        lost = lost_total(s)
        st, h, out = s.request("POST", "/v1/chat/completions", body=CHAT)
        assert st == 200
        last = h["x-request-id"]
        assert wait_for(lambda: last.encode() in open(log, "rb").read())
        assert lost_total(s) == lost
        assert stderr_count(s, WARNING) == 1, [line for line in s.lines if WARNING in line]
        assert "No space left on device" in next(line for line in s.lines if WARNING in line)
    recs = records(log)
    gaps = [r for r in recs if r.get("event") == "log_gap"]
    assert gaps and all(g["lost_lines"] >= 0 and g["error"] and g["since"] <= g["ts"] for g in gaps), gaps
    assert sum(g["lost_lines"] for g in gaps) == lost, (gaps, lost)
    for r in recs:
        if "event" not in r:
            check_request_line(r)
    assert recs[0]["id"] == first and any(r.get("id") == last for r in recs)


def test_full_disk_log_required_refuses_then_recovers(small_fs):
    """T6 (d) with --log-required: once the log cannot take another 16 KiB,
    new requests get 503 (OpenAI error shape, code audit_log_unavailable) and
    /health 503 audit_log_unwritable, while /metrics still answers; every
    request served was logged; lines lost later (the disk full) are counted
    and recorded by log_gap lines; freeing space brings the server back by
    itself (within seconds, no request that checks the room needed)."""
    log = os.path.join(str(small_fs), "log")
    with fake("--log", log, "--log-required") as s:
        st, h, out = s.request("POST", "/v1/chat/completions", body=CHAT)
        assert st == 200
        served = [h["x-request-id"]]
        assert s.request("GET", "/health")[0] == 200
        filler = fill(small_fs)
        refused = None
        for i in range(40):  # space already reserved at the log's end may take a few more lines
            st, h, out = s.request("POST", "/v1/chat/completions", body=CHAT)
            if st == 503:
                refused = (h, out)
                break
            assert st == 200, out
            served.append(h["x-request-id"])
        assert refused, "never refused on a full disk"
        h, out = refused
        e = json.loads(out)["error"]
        assert set(e) == {"message", "type", "param", "code"}, e
        assert e["code"] == "audit_log_unavailable" and e["type"] == "server_error", e
        assert "audit log" in e["message"] and "--log-required" in e["message"], e
        assert h["retry-after"] == "1"
        for path in ("/v1/models", "/v1/completions"):
            st, h, out = s.request("GET" if path == "/v1/models" else "POST", path,
                                   body=None if path == "/v1/models" else {"model": "fake", "prompt": "x"})
            assert st == 503 and json.loads(out)["error"]["code"] == "audit_log_unavailable", (path, out)
        st, h, out = s.request("GET", "/health")
        assert st == 503 and json.loads(out) == {"status": "audit_log_unwritable"}
        assert s.metric("medserve_log_writable") == 0
        assert wait_for(lambda: lost_total(s) >= 1, timeout=30)  # /metrics lines fill what room is left
        assert wait_for(lambda: stderr_count(s, WARNING) >= 1), s.lines
        assert "--log-required" in next(line for line in s.lines if WARNING in line)
        os.unlink(filler)
        # /health does not check the room: the server's thread does, every second
        assert wait_for(lambda: s.request("GET", "/health")[0] == 200, timeout=30, step=0.2)
        st, h, out = s.request("POST", "/v1/chat/completions", body=CHAT)
        assert st == 200, out
        served.append(h["x-request-id"])
        lost = lost_total(s)
        assert wait_for(lambda: all(i.encode() in open(log, "rb").read() for i in served))
        assert stderr_count(s, WARNING) == 1, [line for line in s.lines if WARNING in line]
        assert wait_for(lambda: stderr_count(s, RECOVERED) == 1, timeout=30), s.lines
    recs = records(log)
    gaps = [r for r in recs if r.get("event") == "log_gap"]
    assert gaps and sum(g["lost_lines"] for g in gaps) == lost and lost >= 1, (gaps, lost)
    logged = {r.get("id") for r in recs}
    assert all(i in logged for i in served)  # every request served was logged
    for r in recs:
        if "event" not in r:
            check_request_line(r)


def test_log_required_without_space_at_start(small_fs):
    """A full disk before the start: with --log-required the very first
    request is refused (the server checks for room when it opens the log)."""
    filler = fill(small_fs)
    log = os.path.join(str(small_fs), "log")
    with fake("--log", log, "--log-required") as s:
        st, h, out = s.request("POST", "/v1/chat/completions", body=CHAT)
        assert st == 503 and json.loads(out)["error"]["code"] == "audit_log_unavailable", out
        assert s.request("GET", "/health")[0] == 503
        assert wait_for(lambda: lost_total(s) >= 1)  # (lines are written after the reply)
        os.unlink(filler)
        assert wait_for(lambda: s.request("GET", "/health")[0] == 200, timeout=30)
        assert s.request("POST", "/v1/chat/completions", body=CHAT)[0] == 200
    recs = records(log)
    assert recs[0]["event"] == "log_gap", recs[0]
