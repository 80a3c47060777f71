"""srvutil.py: helpers for the medserve server end-to-end tests.

Starts real `medserve` processes on 127.0.0.1 with a free port (--port 0; the
port is read from the "listening on" line), talks to them with http.client or
raw sockets, and builds the tiny synthetic model once per pytest process
(build/tools/synth) in a temporary directory. Not a test file itself.

Tests never depend on timing (they also run beside CPU burners, `make
stress-test`): state the server reaches asynchronously (metrics, the request
log, a process exit) is polled with wait_for and a generous deadline (WAIT_S),
never read once; a request that must be in flight when the test acts is
observed to be in flight (Stream.first_event), never assumed after a sleep."""
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("MEDSERVE_BUILD", "build"))
BIN = os.path.join(BUILD, "medserve")
SYNTH = os.path.join(BUILD, "tools", "synth")
SANITIZED = bool(os.environ.get("MEDSERVE_SANITIZED"))
# deadline for state the server reaches asynchronously: a loaded machine may
# delay any process by seconds, and a passing wait returns at once
WAIT_S = 30

_tmp = None
_models = {}


def tmpdir():
    """A per-process temporary directory, removed at exit."""
    global _tmp
    if _tmp is None:
        _tmp = tempfile.mkdtemp(prefix="medserve-e2e-")
        atexit.register(shutil.rmtree, _tmp, True)
    return _tmp


def synth_model(name="tiny", *extra):
    """Path of a synthetic model made by build/tools/synth (made once per process)."""
    key = (name,) + extra
    if key not in _models:
        out = os.path.join(tmpdir(), "model-" + "-".join(key).replace("/", "_"))
        subprocess.run([SYNTH, "--shape", name, "--out", out] + list(extra), check=True,
                       capture_output=True, timeout=300)
        _models[key] = out
    return _models[key]


class Server:
    """A running `medserve` process. args: options after the directory."""

    def __init__(self, args, ready_timeout=60, env=None, binary=None):
        self.args = [binary or BIN] + list(args)
        if "--port" not in args:
            self.args += ["--port", "0"]
        self.lines = []
        if env is None:
            # OpenMP's default spin-waiting collapses on a shared, oversubscribed machine
            env = dict(os.environ)
            env.setdefault("OMP_WAIT_POLICY", "passive")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.port = None
        self.ready = threading.Event()
        self.listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.listening.wait(ready_timeout):
            self.kill()
            raise RuntimeError("medserve did not listen: " + "".join(self.lines))

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"listening on http://[^ ]*:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self.listening.set()
            if "medserve: ready" in line:
                self.ready.set()
        self.listening.set()

    def wait_ready(self, timeout=60):
        if not self.ready.wait(timeout):
            raise RuntimeError("medserve not ready: " + "".join(self.lines))
        return self

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, headers dict with lower-case names, body bytes)."""
        c = self.conn(timeout)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def json(self, method, path, body=None, headers=None, timeout=60):
        st, h, data = self.request(method, path, body, headers, timeout)
        return st, json.loads(data) if data else None

    def raw(self, data, timeout=WAIT_S, read=True):
        """Sends raw bytes; returns everything read until close or timeout."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        out = b""
        try:
            s.sendall(data)
            if read:
                while True:
                    try:
                        d = s.recv(65536)
                    except socket.timeout:
                        break
                    if not d:
                        break
                    out += d
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            s.close()
        return out

    def metric(self, sample, headers=None):
        """Value of the /metrics line whose name{labels} is exactly sample, or None."""
        st, h, data = self.request("GET", "/metrics", headers=headers)
        assert st == 200, data
        for line in data.decode().splitlines():
            if not line.startswith("#") and line.rsplit(" ", 1)[0] == sample:
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._reader.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def sse_events(resp_bytes):
    """The data: payloads of an SSE body, in order (comments skipped)."""
    out = []
    for block in resp_bytes.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append(line[6:])
    return out


def stream_chat(server, body, headers=None, timeout=120):
    """Streams a chat request with http.client; returns (status, [data payloads])."""
    c = server.conn(timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", "/v1/chat/completions", body=json.dumps(dict(body, stream=True)), headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, sse_events(data)


def wait_for(pred, timeout=WAIT_S, step=0.02):
    """Polls pred until it is true or timeout seconds pass; returns its last
    value. For state another process reaches asynchronously: never read it once."""
    end = time.monotonic() + timeout

    def attempt():
        try:
            return pred()
        except (OSError, http.client.HTTPException):
            return False  # e.g. a connection refused while the server settles

    v = attempt()
    while not v and time.monotonic() < end:
        time.sleep(step)
        v = attempt()
    return v


def log_records(path):
    """The request log's complete JSON lines (a line still being written is left out)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    return [json.loads(l) for l in text.split("\n")[:-1] if l]


def wait_log(path, pred, n=1, timeout=WAIT_S):
    """Waits until the log at path holds n records for which pred is true (a
    line is written when its request ends, after the reply has gone out);
    returns those records, or [] on timeout."""

    def matching():
        r = [x for x in log_records(path) if pred(x)]
        return r if len(r) >= n else None

    return wait_for(matching, timeout) or []


class Stream:
    """A streaming chat request read incrementally with http.client, so a test
    can act once the request is provably in flight (its first event, sent when
    the server accepted it, has arrived) and then read the rest:
    Stream(s, body).first_event(), .finish()."""

    def __init__(self, server, body, headers=None, timeout=120, path="/v1/chat/completions"):
        self.conn = server.conn(timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        self.conn.request("POST", path, body=json.dumps(dict(body, stream=True)), headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.buf = b""

    def first_event(self):
        """Reads until the first data: event; returns its payload (None if the
        reply is not 200 or ends first)."""
        while self.status == 200:
            line = self.resp.readline()
            if not line:
                return None
            self.buf += line
            if line.startswith(b"data: "):
                return line[6:].rstrip(b"\r\n").decode()
        return None

    def finish(self):
        """Reads the rest; returns (status, [data payloads])."""
        self.buf += self.resp.read()
        self.conn.close()
        return self.status, sse_events(self.buf)

    def close(self):
        """Leaves without reading the rest (the server sees the client go)."""
        self.conn.close()


class Held:
    """A request sent but for its last byte, so several can be released within
    microseconds of each other and reach the engine together, however slowly
    the client's threads run: Held(s, path, body).release(), then .result()."""

    def __init__(self, server, path, body, timeout=120):
        self.conn = server.conn(timeout)
        self.data = json.dumps(body).encode()
        self.conn.putrequest("POST", path)
        self.conn.putheader("Content-Type", "application/json")
        self.conn.putheader("Content-Length", str(len(self.data)))
        self.conn.endheaders()
        self.conn.send(self.data[:-1])

    def release(self):
        """Sends the last byte: the server now has the whole request."""
        self.conn.send(self.data[-1:])

    def result(self):
        """(status, body bytes) of the reply; the connection is closed."""
        try:
            r = self.conn.getresponse()
            return r.status, r.read()
        finally:
            self.conn.close()
