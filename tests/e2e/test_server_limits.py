"""test_server_limits.py: connection limits, client addresses behind proxies
and slow clients, on `medserve --fake-engine` over loopback (docs/threats.md
E1, E3, E5, G2). Over a limit a client gets an answer, never a bare closed
connection: 503 (connections) or 429 (per address, queue full) in OpenAI's
error shape with Retry-After, one request-log line with the reason, and a
counter per reason on /metrics. X-Forwarded-For is believed only from
--trusted-proxy peers. 431 (and the other refusals of the HTTP parser) are
JSON. 300 connections trickling a header byte a second do not hold up a
normal request, and are cut at the header deadline. Other loopback
addresses (127.0.0.2 ...) stand in for other clients."""
import http.client
import json
import os
import select
import signal
import socket
import threading
import time

import pytest

from srvutil import ROOT, Server, tmpdir, wait_for

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
LONG = dict(CHAT, max_tokens=4000)


def fake(*args, binary=None, env=None):
    return Server(["--fake-engine", "--model-name", "fake"] + list(args), binary=binary, env=env).wait_ready()


def conn(s, src="127.0.0.1", timeout=10):
    """An http.client connection from loopback address src."""
    return http.client.HTTPConnection("127.0.0.1", s.port, timeout=timeout, source_address=(src, 0))


def get(c, path="/health", xff=()):
    """One request on connection c (kept alive); (status, headers, body). xff: X-Forwarded-For fields."""
    c.putrequest("GET", path)
    for v in xff:
        c.putheader("X-Forwarded-For", v)
    c.endheaders()
    r = c.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def ask(s, src="127.0.0.1", path="/health", xff=()):
    """The status of one request on a connection of its own (closed after)."""
    c = conn(s, src)
    try:
        return get(c, path, xff)[0]
    finally:
        c.close()


def hold(s, n, src="127.0.0.1", xff=()):
    """n keep-alive connections that each had a request answered (so each counts to the limits)."""
    out = []
    for _ in range(n):
        c = conn(s, src)
        st, h, body = get(c, xff=xff)
        assert st == 200, (st, body)
        out.append(c)
    return out


def metric(s, sample, src="127.0.0.9"):
    """The value of one /metrics sample, asked from loopback address src (None if absent)."""
    c = conn(s, src)
    try:
        st, h, data = get(c, "/metrics")
    finally:
        c.close()
    assert st == 200, data
    for line in data.decode().splitlines():
        if not line.startswith("#") and line.rsplit(" ", 1)[0] == sample:
            return float(line.rsplit(" ", 1)[1])
    return None


def fds(s):
    """Open files of the server process (its connections are among them)."""
    return len(os.listdir("/proc/%d/fd" % s.proc.pid))


def refused(reason):
    return 'medserve_requests_refused_total{reason="%s"}' % reason


def error_of(body):
    """The OpenAI error object of a body, checking its shape."""
    e = json.loads(body)["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert isinstance(e["message"], str) and e["message"]
    return e


def raw_error(resp, status):
    """The error object of a raw HTTP/1.1 reply with this status, checked to be JSON."""
    assert resp.startswith(b"HTTP/1.1 %d " % status), resp[:300]
    head, body = resp.split(b"\r\n\r\n", 1)
    assert b"Content-Type: application/json" in head, head
    return error_of(body)


def raw(s, data, src="127.0.0.1", timeout=10):
    """Sends raw bytes from src; everything read until the server closes (or timeout)."""
    sk = socket.create_connection(("127.0.0.1", s.port), timeout=timeout, source_address=(src, 0))
    out = b""
    try:
        sk.sendall(data)
        while True:
            d = sk.recv(65536)
            if not d:
                break
            out += d
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        pass
    finally:
        sk.close()
    return out


def log_records(path, pred, n=1, timeout=10):
    """Waits until the log at path has n records matching pred; returns them."""
    def found():
        if not os.path.exists(path):
            return []
        recs = [json.loads(l) for l in open(path) if l.strip()]
        return [r for r in recs if pred(r)]
    assert wait_for(lambda: len(found()) >= n, timeout=timeout), found()
    return found()


def closed_unanswered(s, src):
    """Whether a connection from src is closed without any answer to a request."""
    sk = socket.create_connection(("127.0.0.1", s.port), timeout=10, source_address=(src, 0))
    try:
        sk.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        return sk.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        sk.close()


def open_stream(s, xff=None, src="127.0.0.1"):
    """A streaming chat on a raw socket, in flight once this returns (its reply has started)."""
    sk = socket.create_connection(("127.0.0.1", s.port), timeout=30, source_address=(src, 0))
    data = json.dumps(dict(LONG, stream=True)).encode()
    sk.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
               (b"X-Forwarded-For: %s\r\n" % xff.encode() if xff else b"") +
               b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    first = sk.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first[:300]
    return sk


def test_per_address_limit_answers_429():
    log = os.path.join(tmpdir(), "limits-peraddr.log")
    with fake("--trusted-proxy", "none", "--max-connections-per-ip", "3", "--log", log) as s:
        base = fds(s)
        held = hold(s, 3)
        c = conn(s)
        st, h, body = get(c)
        e = error_of(body)
        assert st == 429 and e["code"] == "too_many_connections_per_address", (st, body)
        assert e["type"] == "rate_limit_error" and "127.0.0.1" in e["message"] and "3" in e["message"]
        assert h["retry-after"] == "1" and h["connection"] == "close" and h["content-type"] == "application/json"
        c.close()
        # another address is not affected
        assert ask(s, "127.0.0.2") == 200
        rec = log_records(log, lambda r: r["status"] == 429)[0]
        assert rec["outcome"] == "rejected" and rec["reason"] == "too_many_connections_per_address"
        assert rec["client"] == "127.0.0.1" and rec["id"] == h["x-request-id"]
        assert metric(s, refused("too_many_connections_per_address")) == 1
        for c in held:  # the address is let in again once its connections close
            c.close()
        assert wait_for(lambda: ask(s) == 200, timeout=10)
        # the hard cap for one (untrusted) address, 3 + max(16, 3/4) = 19: past it, accept closes unanswered
        idle = [socket.create_connection(("127.0.0.1", s.port), timeout=10, source_address=("127.0.0.3", 0))
                for _ in range(19)]
        assert wait_for(lambda: fds(s) == base + 19, timeout=30), (fds(s), base)
        assert closed_unanswered(s, "127.0.0.3")
        assert metric(s, 'medserve_connections_dropped_total{reason="per_address"}') >= 1
        for sk in idle:
            sk.close()
        assert wait_for(lambda: ask(s, "127.0.0.3") == 200, timeout=10)


def test_total_limit_answers_503():
    log = os.path.join(tmpdir(), "limits-total.log")
    # long header and idle timeouts: the silent connections below must stay open
    # however long a loaded machine takes to count them
    args = ("--trusted-proxy", "none", "--max-connections", "3", "--log", log, "--header-timeout", "600",
            "--idle-timeout", "600")
    with fake(*args) as s:
        base = fds(s)
        held = [hold(s, 1, "127.0.0.%d" % (i + 2))[0] for i in range(3)]
        c = conn(s, "127.0.0.6")
        st, h, body = get(c)
        e = error_of(body)
        assert st == 503 and e["code"] == "too_many_connections" and e["type"] == "server_error", (st, body)
        assert h["retry-after"] == "1" and h["connection"] == "close"
        c.close()
        # connections that never sent a request do not count to the limit ...
        idle = [socket.create_connection(("127.0.0.1", s.port), timeout=10, source_address=("127.0.0.7", 0))
                for _ in range(5)]
        for c in held:
            c.close()
        assert wait_for(lambda: ask(s, "127.0.0.8") == 200, timeout=10)  # may meet 503 till closes land
        recs = log_records(log, lambda r: r["status"] == 503)
        assert all(r["outcome"] == "rejected" and r["reason"] == "too_many_connections" for r in recs), recs
        # the refusal of 127.0.0.6 is logged (log lines are written after the
        # reply, so a later refusal's line can come first)
        assert wait_for(lambda: any(r["client"] == "127.0.0.6" for r in log_records(log, lambda r: r["status"] == 503)))
        assert wait_for(lambda: metric(s, refused("too_many_connections")) ==
                        len(log_records(log, lambda r: r["status"] == 503)))
        # ... but to the hard cap, 3 + 16 = 19 open connections: past it, accept closes unanswered.
        # First the server must have closed its side of every earlier connection
        # (ask, metric): one still open would take a place under the cap.
        assert wait_for(lambda: fds(s) == base + 5, timeout=30), (fds(s), base)
        idle += [socket.create_connection(("127.0.0.1", s.port), timeout=10,
                                          source_address=("127.0.0.%d" % (10 + i % 4), 0)) for i in range(14)]
        assert wait_for(lambda: fds(s) == base + 19, timeout=30), (fds(s), base)
        assert closed_unanswered(s, "127.0.0.20")
        for sk in idle:
            sk.close()
        assert wait_for(lambda: ask(s, "127.0.0.20") == 200, timeout=10)
        assert metric(s, 'medserve_connections_dropped_total{reason="connections"}') >= 1


def test_queue_full_answers_429_logged_and_counted():
    log = os.path.join(tmpdir(), "limits-queue.log")
    with fake("--fake-step-us", "20000", "--max-seqs", "1", "--queue", "1", "--log", log) as s:
        a = open_stream(s)
        assert wait_for(lambda: metric(s, "medserve_running_sequences") == 1)
        b = open_stream(s)  # waits in the queue (its headers are sent at once)
        assert wait_for(lambda: metric(s, "medserve_queue_depth") == 1)
        st, h, body = s.request("POST", "/v1/chat/completions", body=LONG)
        e = error_of(body)
        assert st == 429 and e["code"] == "queue_full" and e["type"] == "rate_limit_error"
        assert h["retry-after"] == "1"
        rec = log_records(log, lambda r: r["status"] == 429)[0]
        assert rec["outcome"] == "rejected" and rec["reason"] == "queue_full"
        assert metric(s, refused("queue_full")) == 1
        a.close()
        b.close()
        assert wait_for(lambda: metric(s, "medserve_running_sequences") == 0 and
                        metric(s, "medserve_queue_depth") == 0, timeout=10)


def test_loading_and_draining_refusals_are_counted():
    log = os.path.join(tmpdir(), "limits-drain.log")
    s = fake("--fake-step-us", "50000", "--drain-timeout", "20", "--log", log)
    a = open_stream(s)
    s.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: s.request("GET", "/health")[0] == 503, timeout=10)
    st, h, body = s.request("POST", "/v1/chat/completions", body=CHAT)
    assert st == 503 and error_of(body)["code"] == "shutting_down" and h["retry-after"] == "1"
    assert wait_for(lambda: metric(s, refused("shutting_down")) == 1)  # counted as the request ends
    a.close()
    assert s.proc.wait(30) == 0
    rec = [r for r in log_records(log, lambda r: r["status"] == 503 and r["route"] == "/v1/chat/completions")]
    assert rec and rec[0]["outcome"] == "rejected" and rec[0]["reason"] == "shutting_down"


def test_trusted_proxy_forwarded_for():
    log = os.path.join(tmpdir(), "limits-xff.log")
    with fake("--trusted-proxy", "127.0.0.1/32", "--max-connections-per-ip", "2", "--fake-step-us", "20000",
              "--log", log) as s:
        cases = [(["203.0.113.7"], "203.0.113.7"),
                 (["198.51.100.9, 127.0.0.1"], "198.51.100.9"),      # the rightmost that is not a proxy
                 (["10.1.1.1, 198.51.100.9 , 127.0.0.1"], "198.51.100.9"),  # what is left of it is not believed
                 (["198.51.100.1", "192.0.2.5"], "192.0.2.5"),        # two fields are one list
                 (["2001:db8::7"], "2001:db8::7"),
                 (["::ffff:192.0.2.9"], "192.0.2.9"),
                 (["127.0.0.1"], "127.0.0.1"),                        # only proxies: the leftmost
                 (["junk,, 192.0.2.2"], "192.0.2.2"),                 # the client's own part is not read
                 ([], "127.0.0.1")]
        # malformed where it is read (from the right up to the client): the peer address, counted
        bad = [["not-an-ip"], ["192.0.2.1:443"], [""], ["192.0.2.1, junk"], ["junk, 127.0.0.1"], ["192.0.2.300"],
               ["192.0.2.1,"]]
        for xff, client in cases + [(b, "127.0.0.1") for b in bad]:
            c = conn(s)
            st, h, body = get(c, "/v1/models", xff)
            c.close()
            assert st == 200, (xff, body)
            rec = log_records(log, lambda r: r["id"] == h["x-request-id"])[0]
            assert rec["client"] == client, (xff, rec)
        assert metric(s, "medserve_forwarded_for_invalid_total") == len(bad)
        # the per-address limit applies to the client the proxy names, not to the proxy
        a1, a2 = open_stream(s, "203.0.113.50"), open_stream(s, "203.0.113.50")
        c = conn(s)
        st, h, body = get(c, "/health", ["203.0.113.50"])
        assert st == 429 and error_of(body)["code"] == "too_many_connections_per_address", body
        assert "203.0.113.50" in error_of(body)["message"]
        c.close()
        c = conn(s)
        assert get(c, "/health", ["203.0.113.51"])[0] == 200
        c.close()
        a1.close()
        a2.close()
        assert wait_for(lambda: ask(s, xff=["203.0.113.50"]) == 200, timeout=10)
        rec = log_records(log, lambda r: r["status"] == 429)[0]
        assert rec["client"] == "203.0.113.50" and rec["reason"] == "too_many_connections_per_address"


def test_untrusted_peer_forwarded_for_is_ignored():
    log = os.path.join(tmpdir(), "limits-noxff.log")
    with fake("--trusted-proxy", "10.0.0.0/8,fd00::/8", "--max-connections-per-ip", "2", "--log", log) as s:
        held = [conn(s), conn(s)]
        for i, c in enumerate(held):  # a client cannot spread itself over made-up addresses
            assert get(c, "/health", ["203.0.113.%d" % i])[0] == 200
        c = conn(s)
        st, h, body = get(c, "/health", ["203.0.113.9"])
        assert st == 429 and "127.0.0.1" in error_of(body)["message"], body
        c.close()
        recs = log_records(log, lambda r: True, n=3)
        assert all(r["client"] == "127.0.0.1" for r in recs), recs
        c = conn(s, "127.0.0.2")
        assert get(c, "/health", ["not-an-ip"])[0] == 200
        c.close()
        assert metric(s, "medserve_forwarded_for_invalid_total") == 0


@pytest.mark.parametrize("value,words", [
    ("10.0.0.0/8,bogus", "'bogus'"),
    ("10.0.0.1/8", "10.0.0.0/8"),
    ("192.0.2.0/33", "0..32"),
    ("::1/129", "0..128"),
    ("fd00::/x", "0..128"),
    ("10.0.0.0/8,,::1", "empty entry"),
    ("", "empty entry"),
    ("example.org", "'example.org'"),
])
def test_trusted_proxy_is_validated(value, words):
    s = Server(["--fake-engine", "--trusted-proxy", value])
    rc = s.proc.wait(30)
    out = "".join(s.lines)
    assert rc == 2 and "--trusted-proxy" in out and words in out, out


@pytest.mark.parametrize("cidr,trusted", [
    ("127.0.0.0/31", True), ("127.0.0.2/31", False), ("126.0.0.0/7", True), ("128.0.0.0/1", False),
    ("0.0.0.0/0", True), ("127.0.0.1", True), ("::ffff:127.0.0.0/104", True), ("::/0", False)])
def test_trusted_proxy_prefixes(cidr, trusted):
    log = os.path.join(tmpdir(), "limits-cidr.log")
    if os.path.exists(log):
        os.unlink(log)
    with fake("--trusted-proxy", cidr, "--log", log) as s:
        c = conn(s)
        st, h, body = get(c, "/health", ["192.0.2.77"])
        c.close()
        assert st == 200
        rec = log_records(log, lambda r: r["id"] == h["x-request-id"])[0]
        assert rec["client"] == ("192.0.2.77" if trusted else "127.0.0.1"), rec


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as sk:
            sk.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_listener_and_proxy():
    log = os.path.join(tmpdir(), "limits-v6.log")
    with fake("--host", "::1", "--max-connections-per-ip", "1", "--log", log) as s:  # ::1 trusted by default
        ids = []
        for xff in (["2001:db8::1"], []):
            c = http.client.HTTPConnection("::1", s.port, timeout=10)
            st, h, body = get(c, "/health", xff)
            c.close()
            assert st == 200, body
            ids.append(h["x-request-id"])
        recs = {r["id"]: r["client"] for r in log_records(log, lambda r: r["id"] in ids, n=2)}
        assert [recs[i] for i in ids] == ["2001:db8::1", "::1"]


def test_trusted_proxy_none_and_ipv6_entries():
    with fake("--trusted-proxy", " ::1/128 , 192.0.2.0/24 ") as s:
        assert "trusted proxies: ::1/128,192.0.2.0/24" in "".join(s.lines)
    with fake("--trusted-proxy", "none") as s:
        assert "trusted proxies: none" in "".join(s.lines)


def test_parser_refusals_are_json():
    log = os.path.join(tmpdir(), "limits-431.log")
    with fake("--log", log) as s:
        # over the 32 KiB of connection memory: libmicrohttpd's own refusal, answered by us
        resp = raw(s, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        e = raw_error(resp, 431)
        assert e["code"] == "headers_too_large" and e["type"] == "invalid_request_error"
        assert b"X-Request-Id: req-" in resp and b"Connection: close" in resp
        resp = raw(s, b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(65)) +
                   b"\r\n")
        assert raw_error(resp, 431)["code"] == "headers_too_large"
        # the same on a kept-alive connection's second request, and for a request line too long there
        ok = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        for second, status in [(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431),
                               (b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414)]:
            resp = raw(s, ok + second)
            assert resp.startswith(b"HTTP/1.1 200"), resp[:200]
            assert raw_error(resp[resp.index(b"HTTP/1.1 %d" % status):], status)
        resp = raw(s, b"GET /health HTTP/1.1\r\n\r\n")  # HTTP/1.1 without Host
        assert raw_error(resp, 400)["code"] == "malformed_request"
        recs = log_records(log, lambda r: r["status"] in (400, 414, 431), n=5)
        assert all(r["outcome"] == "error" and r["client"] == "127.0.0.1" for r in recs), recs
        assert metric(s, 'medserve_requests_total{route="/health",code="431"}') == 3
        st, h, body = s.request("GET", "/health")
        assert st == 200


def test_slow_clients_do_not_hold_up_a_normal_client():
    """docs/threats.md E3: 300 connections from 10 addresses each trickle a request
    head one byte a second. A normal request (defaults, other address) is served
    within 10 s while they are all held; the header deadline (10 s by default)
    then closes every one of them. On the code before the header deadline and the
    split of soft and hard caps, the 257th connection found the server full."""
    with fake() as s:
        base = fds(s)
        t0 = time.time()
        st, h, body = s.request("POST", "/v1/chat/completions", body=CHAT, timeout=10)
        baseline = time.time() - t0
        assert st == 200, body
        socks = [socket.create_connection(("127.0.0.1", s.port), timeout=10, source_address=("127.0.0.%d" % (2 + i % 10), 0))
                 for i in range(300)]
        payload = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
        stop = threading.Event()

        def trickle():
            for i in range(len(payload)):  # bounded: at most len(payload) s, ended by the test
                for sk in socks:
                    try:
                        sk.send(payload[i:i + 1])
                    except OSError:
                        pass
                if stop.wait(1.0):
                    return

        th = threading.Thread(target=trickle, daemon=True)
        th.start()
        try:
            held = wait_for(lambda: fds(s) >= base + 300, timeout=20)
            t0 = time.time()
            try:
                st, h, body = s.request("POST", "/v1/chat/completions", body=CHAT, timeout=10)
            except (OSError, http.client.HTTPException) as ex:
                st, body = None, repr(ex)
            took = time.time() - t0
            assert st == 200, ("a normal request during the slow ones", body, fds(s) - base)
            assert took < 10, (took, baseline)
            assert held, ("the slow connections were not all held", fds(s) - base)
            # every slow connection is closed at the header deadline, however it trickles
            open_ = set(socks)
            end = time.time() + 40
            while open_ and time.time() < end:
                r, _, _ = select.select(list(open_), [], [], 1.0)
                for sk in r:
                    try:
                        if sk.recv(4096) == b"":
                            open_.discard(sk)
                    except OSError:
                        open_.discard(sk)
            assert not open_, "%d slow connections still open" % len(open_)
            assert wait_for(lambda: metric(s, "medserve_connections_header_timeout_total") >= 300)
        finally:
            stop.set()
            th.join(5)
            for sk in socks:
                sk.close()
        assert wait_for(lambda: fds(s) <= base + 1, timeout=10), (fds(s), base)


ASAN_BIN = os.path.join(ROOT, "build", "asan", "medserve")


@pytest.mark.skipif(not os.path.exists(ASAN_BIN), reason="no ASan build (make asan)")
def test_limits_under_sanitizers():
    """The paths of this file once more under ASan+UBSan+LSan: refusals, proxies,
    answers written for libmicrohttpd, the header deadline, a drop at the hard cap."""
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1",
               OMP_WAIT_POLICY="passive")
    s = fake("--trusted-proxy", "127.0.0.1", "--max-connections", "4", "--max-connections-per-ip", "1",
             "--header-timeout", "1", "--fake-step-us", "20000", binary=ASAN_BIN, env=env)
    try:
        a = open_stream(s, "203.0.113.1")
        c = conn(s)
        assert get(c, "/health", ["203.0.113.1"])[0] == 429
        c.close()
        assert ask(s, xff=["bad"]) == 200
        resp = raw(s, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        assert raw_error(resp, 431)
        held = [conn(s, "127.0.0.%d" % i) for i in (2, 3, 4)]
        for c in held:
            assert get(c)[0] == 200
        c = conn(s, "127.0.0.5")
        assert get(c)[0] == 503
        c.close()
        slow = socket.create_connection(("127.0.0.1", s.port), timeout=10, source_address=("127.0.0.6", 0))
        slow.sendall(b"GET /he")
        assert slow.recv(100) == b""  # cut by the 1 s header deadline
        slow.close()
        idle = [socket.create_connection(("127.0.0.1", s.port), timeout=10, source_address=("127.0.0.7", 0))
                for _ in range(16)]  # 1 + 16 for one untrusted address
        assert wait_for(lambda: closed_unanswered(s, "127.0.0.7"), timeout=10)
        for sk in idle + held:
            sk.close()
        a.close()
    finally:
        rc = s.stop()
    out = "".join(s.lines)
    assert rc == 0 and "Sanitizer" not in out and "runtime error" not in out, out[-4000:]
