"""test_scaleout_nginx.py: deploy/nginx-medserve.conf in front of three
`medserve --fake-engine` replicas, all on loopback, as it ships: the test
replaces only the listen addresses, the certificate paths (a self-signed
certificate made here with openssl) and the upstream addresses, and wraps the
file in an nginx.conf of its own (pid, logs and temporary files in a temp
dir, an access log of the upstream attempts, and an X-Medserve-Upstream
response header naming the replica that answered). nginx runs as the
current user with `-p DIR -c CONF -g 'daemon off;'` and is stopped at the end.

- failover: one replica draining (SIGTERM, a long stream keeps it alive) and
  one killed; every request through nginx succeeds, and the access log shows
  the 503 of the draining replica and the refused connection of the dead one
  were each passed on to the next replica (proxy_next_upstream with http_503
  and non_idempotent: these are POSTs).
- rolling restart under a steady, bounded load of streaming and
  non-streaming requests: SIGTERM one replica at a time, wait for it to
  drain and exit 0, start it again on the same port, wait until nginx sends
  it requests again; no request fails.
- kill -9 of one replica under the same load: only streams that replica was
  sending when it died fail; every request started after it succeeds.

Every wait has a deadline; the load stops itself after a bounded count and
time. Figures (sent, failed, retried) are printed (pytest -s) and recorded in
deploy/README.md. docs/threats.md G3 and §3."""
import dataclasses
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from srvutil import ROOT, Server, stream_chat, tmpdir, wait_for

SITE = os.path.join(ROOT, "deploy", "nginx-medserve.conf")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
STEP_US = 50000  # fake engine: 50 ms per token
# temperature 0 and prompt "a": the fake engine answers 36 tokens (1.8 s at STEP_US)
STREAM = {"model": "fake", "messages": [{"role": "user", "content": "a"}], "temperature": 0, "stream": True}
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "e"}], "temperature": 0, "max_tokens": 8}
SERVED = 'medserve_requests_total{route="/v1/chat/completions",code="200"}'


def free_port():
    """A loopback TCP port that is free now, below the ephemeral range (so that
    outgoing connections do not take it between a replica's exit and restart)."""
    for _ in range(200):
        p = random.randrange(20000, 32000)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port in 20000-32000")


def need(path, what):
    """Fails the test, naming make deps, when a program the test needs is missing."""
    if not path or not os.path.exists(path):
        pytest.fail("%s not found: run make deps" % what)


_cert = {}


def cert():
    """(certificate, key) of a self-signed certificate for 127.0.0.1, made once."""
    if not _cert:
        need(shutil.which("openssl"), "openssl")
        d = tempfile.mkdtemp(prefix="cert-", dir=tmpdir())
        c, k = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", k, "-out", c], check=True, capture_output=True, timeout=60)
        _cert.update(cert=c, key=k)
    return _cert["cert"], _cert["key"]


def render_site(text, https_port, http_port, upstreams, crt, key):
    """The committed site file with only addresses and certificate paths replaced.
    Fails when the file no longer has the shape this relies on."""
    def listen(m):
        """A listen line on loopback: the TLS port for the ssl server, else the plain one."""
        rest = m.group(2)
        port = https_port if re.search(r"\bssl\b", rest) else http_port
        return "%slisten 127.0.0.1:%d%s;" % (m.group(1), port, rest)

    text, n = re.subn(r"^(\s*)listen\s+[^\s;]+([^;]*);", listen, text, flags=re.M)
    assert n == 2, "expected two listen lines (TLS and the redirect), found %d" % n
    text, n1 = re.subn(r"^(\s*ssl_certificate)\s+[^;]+;", lambda m: "%s %s;" % (m.group(1), crt), text, flags=re.M)
    text, n2 = re.subn(r"^(\s*ssl_certificate_key)\s+[^;]+;", lambda m: "%s %s;" % (m.group(1), key), text,
                       flags=re.M)
    assert n1 == 1 and n2 == 1, "expected one ssl_certificate and one ssl_certificate_key"
    m = re.search(r"^upstream medserve \{\n(.*?)^\}", text, flags=re.M | re.S)
    assert m, "no 'upstream medserve { ... }' block"
    block = m.group(1)
    params = set(re.findall(r"^\s*server\s+\S+([^;]*);", block, flags=re.M))
    assert len(params) == 1, "the upstream's server lines should share their parameters: %r" % params
    p = params.pop()
    lines = [l for l in block.split("\n") if not re.match(r"\s*server\s", l)]
    first = next(i for i, l in enumerate(block.split("\n")) if re.match(r"\s*server\s", l))
    lines[first:first] = ["    server %s%s;" % (u, p) for u in upstreams]
    return text[:m.start(1)] + "\n".join(lines) + text[m.end(1):]


class Nginx:
    """nginx running the committed site file in front of the given upstreams."""

    def __init__(self, upstreams):
        need(NGINX, "nginx")
        crt, key = cert()
        self.cafile = crt
        for attempt in range(3):  # a port picked as free may be taken before nginx binds it
            self.dir = tempfile.mkdtemp(prefix="nginx-", dir=tmpdir())
            self.port, http_port = free_port(), free_port()
            site = render_site(open(SITE).read(), self.port, http_port, upstreams, crt, key)
            with open(os.path.join(self.dir, "medserve-site.conf"), "w") as f:
                f.write(site)
            user = ""
            if os.geteuid() == 0:  # workers would otherwise switch to nobody
                user = "user root;"
            d = self.dir
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write("""worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log info;
%(user)s
events { worker_connections 1024; }
http {
    log_format attempts '$status up="$upstream_addr" us="$upstream_status"';
    access_log %(d)s/access.log attempts;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    # test only: which replica answered (inherited: the site file adds no headers)
    add_header X-Medserve-Upstream $upstream_addr always;
    include %(d)s/medserve-site.conf;
}
""" % {"d": d, "user": user})
            self.out = open(os.path.join(d, "stderr.log"), "w")
            self.proc = subprocess.Popen([NGINX, "-p", d + "/", "-c", conf, "-e", os.path.join(d, "error.log"),
                                          "-g", "daemon off;"], stdout=self.out, stderr=subprocess.STDOUT)
            if wait_for(lambda: self.proc.poll() is not None or self._connects(), timeout=20) and \
                    self.proc.poll() is None:
                self.ctx = ssl.create_default_context(cafile=crt)
                return
            self.stop()
            log = ""
            for name in ("error.log", "stderr.log"):
                if os.path.exists(os.path.join(d, name)):
                    log += open(os.path.join(d, name)).read()
            if "Address already in use" not in log:
                break
        raise RuntimeError("nginx did not start:\n" + log)

    def _connects(self):
        """True once nginx accepts TCP connections on its TLS port."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2):
            return True

    def conn(self, timeout=30):
        """A new TLS connection to nginx, checking its certificate."""
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=timeout)

    def attempts(self):
        """Per logged request: (final status, [(upstream address, status), ...])."""
        out = []
        for line in open(os.path.join(self.dir, "access.log")):
            m = re.match(r'(\d+) up="([^"]*)" us="([^"]*)"', line)
            assert m, line
            # attempts are separated by ", " (and " : " across internal redirects)
            ups = re.split(r",\s*|\s+:\s+", m.group(2)) if m.group(2) != "-" else []
            sts = re.split(r",\s*|\s+:\s+", m.group(3)) if m.group(3) != "-" else []
            out.append((int(m.group(1)), list(zip(ups, sts))))
        return out

    def stop(self):
        """Stops nginx (its workers too), by force after 15 s."""
        if self.proc.poll() is None:
            self.proc.terminate()  # fast shutdown: the master stops its workers
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                kids = []
                try:
                    with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                        kids = [int(x) for x in f.read().split()]
                except OSError:
                    pass
                self.proc.kill()
                self.proc.wait()
                for k in kids:
                    try:
                        os.kill(k, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.out.close()


def replica(port, step_us=STEP_US):
    """A ready fake-engine medserve on the given port."""
    return Server(["--fake-engine", "--model-name", "fake", "--fake-step-us", str(step_us),
                   "--drain-timeout", "20", "--port", str(port)]).wait_ready(30)


def metric(rep, name):
    """A replica's metric, 0 when it has no sample yet."""
    v = rep.metric(name)
    return v or 0


class Cluster:
    """Three replicas on fixed loopback ports and nginx in front."""

    def __init__(self, steps=(STEP_US, STEP_US, STEP_US)):
        self.steps = list(steps)
        self.ports = []
        while len(self.ports) < len(steps):
            p = free_port()
            if p not in self.ports:
                self.ports.append(p)
        self.reps = []
        self.nginx = None
        try:
            self.reps = [replica(p, s) for p, s in zip(self.ports, self.steps)]
            self.nginx = Nginx(self.addrs())
        except BaseException:
            self.close()
            raise

    def addrs(self):
        """The replicas' addresses as nginx names them."""
        return ["127.0.0.1:%d" % p for p in self.ports]

    def restart(self, i):
        """Starts replica i again on its port."""
        self.reps[i] = replica(self.ports[i], self.steps[i])

    def close(self):
        """Stops nginx and kills every replica."""
        if self.nginx:
            self.nginx.stop()
        for r in self.reps:
            r.kill()


@pytest.fixture
def cluster():
    """Three equal replicas behind nginx, torn down after the test."""
    c = Cluster()
    yield c
    c.close()


@dataclasses.dataclass
class Rec:
    """One request through nginx, as the client saw it."""
    kind: str
    t0: float = 0.0
    t_first: float = None  # first SSE event received (the stream had started)
    t_end: float = None
    status: int = None
    upstream: str = None  # the replica that answered
    upstreams: str = None  # every replica tried, as nginx lists them
    ok: bool = False
    why: str = ""


def send(ng, kind, rec, body=None):
    """Sends one chat request through nginx and fills rec; never raises."""
    rec.t0 = time.monotonic()
    c = ng.conn()
    try:
        c.request("POST", "/v1/chat/completions", body=json.dumps(body or (STREAM if kind == "stream" else CHAT)),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        rec.status, rec.upstreams = r.status, r.getheader("X-Medserve-Upstream") or ""
        rec.upstream = re.split(r",\s*|\s+:\s+", rec.upstreams)[-1]  # the replica that answered
        if r.status != 200:
            rec.why = "HTTP %d: %r" % (r.status, r.read()[:200])
        elif kind == "chat":
            out = json.loads(r.read())
            rec.ok = out["choices"][0]["finish_reason"] in ("length", "stop")
            rec.why = "" if rec.ok else "finish_reason %r" % out["choices"][0]["finish_reason"]
        else:
            while True:
                line = r.readline()
                if not line:
                    rec.why = "stream ended without [DONE]"
                    break
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].strip()
                if payload == b"[DONE]":
                    rec.ok = True
                    break
                ev = json.loads(payload)
                if "error" in ev:
                    rec.why = "error event %r" % ev["error"]
                    break
                if rec.t_first is None:
                    rec.t_first = time.monotonic()
    except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
        rec.why = repr(e)
    finally:
        c.close()
        rec.t_end = time.monotonic()
    return rec


class Load:
    """Workers sending streaming and non-streaming requests back to back until
    stopped, at most max_each requests each and max_s seconds."""

    def __init__(self, ng, n_stream=3, n_chat=3, max_each=200, max_s=45):
        self.ng, self.recs, self.lock = ng, [], threading.Lock()
        self.stopping = threading.Event()
        self.deadline = time.monotonic() + max_s
        self.threads = [threading.Thread(target=self._work, args=(k, max_each), daemon=True)
                        for k in ["stream"] * n_stream + ["chat"] * n_chat]
        for t in self.threads:
            t.start()

    def _work(self, kind, max_each):
        """One client: requests of one kind back to back."""
        for _ in range(max_each):
            if self.stopping.is_set() or time.monotonic() > self.deadline:
                return
            rec = Rec(kind)
            with self.lock:
                self.recs.append(rec)
            send(self.ng, kind, rec)

    def snapshot(self):
        """The requests so far (their fields keep changing until they end)."""
        with self.lock:
            return list(self.recs)

    def finish(self):
        """Stops the workers after their current request; returns every request."""
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a load worker did not finish"
        return self.snapshot()


def figures(name, recs, ng):
    """Prints and returns (sent, failed, retried); retried = requests nginx passed on."""
    att = ng.attempts()
    failed = [r for r in recs if not r.ok]
    retried = [a for _, a in att if len(a) > 1]
    n503 = sum(1 for a in retried for _, s in a[:-1] if s == "503")
    print("\n%s: sent %d (%d streaming), failed %d, retried by nginx %d (after a 503: %d, after a connection "
          "error: %d)" % (name, len(recs), sum(r.kind == "stream" for r in recs), len(failed), len(retried), n503,
                          sum(1 for a in retried for _, s in a[:-1] if s != "503")))
    return len(recs), failed, retried


def test_failover_on_draining_and_dead_replicas():
    # A decodes slowly, so one stream keeps it draining for seconds
    c = Cluster(steps=(200000, STEP_US, STEP_US))
    a, b, _ = c.reps
    addr_a, addr_b, addr_c = c.addrs()
    held = {}

    def hold():
        """A stream straight to A that keeps it draining."""
        try:
            held["r"] = stream_chat(a, STREAM, timeout=60)
        except (OSError, http.client.HTTPException) as e:
            held["r"] = e

    t = threading.Thread(target=hold, daemon=True)
    try:
        t.start()
        assert wait_for(lambda: metric(a, "medserve_running_sequences") == 1, timeout=20)
        a.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: a.request("GET", "/health")[0] == 503, timeout=20)
        b.kill()
        # one after another, so nginx offers each replica a first try in turn
        recs = [send(c.nginx, k, Rec(k), dict(STREAM if k == "stream" else CHAT, max_tokens=2))
                for k in ["chat", "stream"] * 3]
        draining = a.proc.poll() is None
        assert all(r.ok for r in recs), [r for r in recs if not r.ok]
        assert all(r.upstream == addr_c for r in recs), [r.upstream for r in recs]
        att = [a_ for _, a_ in c.nginx.attempts()]
        tried = [x for a_ in att for x in a_]
        assert draining, "replica A finished draining before the requests were sent"
        assert (addr_a, "503") in tried, att  # the draining replica's 503 was passed on
        assert any(u == addr_b and s in ("502", "504") for u, s in tried), att  # so was the refused connection
        assert all(a_[-1] == (addr_c, "200") for a_ in att), att
    finally:
        c.close()
        t.join(30)


def test_rolling_restart_under_load(cluster):
    ng = cluster.nginx
    load = Load(ng)
    drained = []
    try:
        for rep in cluster.reps:
            assert wait_for(lambda: metric(rep, SERVED) >= 1, timeout=30), "nginx never sent work to a replica"
        for i in range(len(cluster.reps)):
            rep = cluster.reps[i]
            assert wait_for(lambda: metric(rep, "medserve_running_sequences") >= 1, timeout=30)
            rc = rep.stop(signal.SIGTERM, timeout=30)  # drains: in-flight requests finish, new ones get 503
            assert rc == 0, "".join(rep.lines[-20:])
            drained.append("".join(l for l in rep.lines if "draining (" in l).strip())
            cluster.restart(i)
            new = cluster.reps[i]
            assert wait_for(lambda: new.request("GET", "/health")[0] == 200, timeout=30)
            # nginx sends it work again (after fail_timeout) before the next one goes down
            assert wait_for(lambda: metric(new, SERVED) >= 1, timeout=30), "nginx did not take replica %d back" % i
    finally:
        recs = load.finish()
    sent, failed, retried = figures("rolling restart", recs, ng)
    print("\n".join(drained))
    assert sent >= 30 and sum(r.kind == "stream" for r in recs) >= 10, sent
    assert not failed, ["%s %s: %s" % (r.kind, r.upstream, r.why) for r in failed]


def test_kill9_fails_only_its_streams(cluster):
    ng = cluster.nginx
    victim, addr = cluster.reps[0], cluster.addrs()[0]
    load = Load(ng)
    t_kill = None
    try:
        def fresh_stream():
            """Streams on the victim that started < 0.3 s ago (more than a second of tokens to go)."""
            now = time.monotonic()
            return [r for r in load.snapshot() if r.kind == "stream" and r.upstream == addr and
                    r.t_first is not None and r.t_end is None and now - r.t_first < 0.3]

        assert wait_for(fresh_stream, timeout=30, step=0.005), "no stream went to the victim"
        t_kill = time.monotonic()
        victim.proc.kill()
        victim.proc.wait(10)
        assert wait_for(lambda: sum(1 for r in load.snapshot() if r.t0 > t_kill and r.t_end) >= 30, timeout=40)
    finally:
        recs = load.finish()
    sent, failed, retried = figures("kill -9", recs, ng)
    print("cut streams: %d" % len(failed))
    assert failed, "the kill cut no stream"
    for r in failed:  # only streams the victim was sending when it died: asked before
        # the kill, and begun (its first bytes may still reach the client just after)
        assert r.kind == "stream" and r.upstream == addr and r.t_first is not None and r.t0 < t_kill, r
    later = [r for r in recs if r.t0 > t_kill]
    assert len(later) >= 30 and all(r.ok for r in later)
