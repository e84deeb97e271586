"""The fault-injecting proxy of the multi-region tests, checked on its own against tiny servers:
an echo server and a "source" that sends N bytes on connect. Quick (a few seconds)."""

import http.client
import socket
import socketserver
import threading
import time

import pytest

from faultproxy import FaultProxy

MIB = 1 << 20


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.accepted += 1
        while True:
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.request.sendall(data)


class _Source(socketserver.BaseRequestHandler):
    """Sends server.size bytes (a counting pattern) as soon as a client connects."""

    def handle(self):
        self.server.accepted += 1
        try:
            self.request.sendall(pattern(self.server.size))
        except OSError:
            pass


class _Http(socketserver.StreamRequestHandler):
    """Just enough HTTP/1.1: GET /N answers N bytes, keep-alive."""

    def handle(self):
        self.server.accepted += 1
        while True:
            line = self.rfile.readline()
            if not line:
                return
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            n = int(line.split()[1].strip(b"/"))
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
            self.wfile.write(pattern(n))
            self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler, size=0):
        super().__init__(("127.0.0.1", 0), handler)
        self.accepted = 0
        self.size = size
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self):
        self.shutdown()
        self.server_close()


def pattern(n):
    block = bytes(range(256)) * 4096
    return (block * (n // len(block) + 1))[:n]


@pytest.fixture
def echo():
    s = _Server(_Echo)
    yield s
    s.close()


@pytest.fixture
def proxy_to():
    proxies = []

    def make(server, listen=("127.0.0.1", 0)):
        p = FaultProxy(listen, server.server_address, name="t%d" % len(proxies)).start()
        proxies.append(p)
        return p
    yield make
    for p in proxies:
        p.close()


def connect(proxy, src=None, timeout=5):
    s = socket.create_connection(proxy.address, timeout=timeout,
                                 source_address=(src, 0) if src else None)
    return s


def recv_exact(s, n, timeout=5):
    s.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def echo_ok(proxy, src=None, payload=b"ping", timeout=3):
    with connect(proxy, src) as s:
        s.sendall(payload)
        return recv_exact(s, len(payload), timeout) == payload


def read_until_end(s, timeout=10):
    """(bytes read, how it ended: 'eof' | 'reset' | 'timeout')."""
    s.settimeout(timeout)
    out = bytearray()
    while True:
        try:
            chunk = s.recv(1 << 16)
        except ConnectionResetError:
            return bytes(out), "reset"
        except socket.timeout:
            return bytes(out), "timeout"
        if not chunk:
            return bytes(out), "eof"
        out += chunk


def settled(fn, timeout=3):
    """fn() once the proxy's counters have caught up with what the client saw (a chunk is
    counted just after send() returns, so a fast client can be ahead by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _eq(a, b):
    assert a == b, (a, b)


def refused(proxy, src=None):
    """True if a new connection is reset: at connect (the proxy's RST can beat the end of
    connect()) or at the first read."""
    try:
        s = connect(proxy, src)
    except ConnectionResetError:
        return True
    with s:
        return read_until_end(s, 3) == (b"", "reset")


def no_reply_within(s, seconds):
    s.settimeout(seconds)
    try:
        s.recv(100)
    except socket.timeout:
        return True
    except OSError:
        return False
    return False  # data, or EOF: either way not a silent hang


def test_forwards_both_ways_and_counts_bytes(echo, proxy_to):
    p = proxy_to(echo)
    payload = pattern(MIB + 123)
    with connect(p) as s:
        t = threading.Thread(target=s.sendall, args=(payload,))
        t.start()
        got = recv_exact(s, len(payload))
        t.join()
    assert got == payload

    def check():
        st = p.stats()
        assert st["up"] == len(payload) and st["down"] == len(payload)
        assert st["connections"] == 1
        assert p.stats("127.0.0.1") == st
    settled(check)
    assert p.stats("127.0.1.99")["up"] == 0
    assert p.sources() == ["127.0.0.1"]


def test_half_close_is_passed_on(proxy_to):
    src = _Server(_Source, size=300_000)
    try:
        p = proxy_to(src)
        with connect(p) as s:
            s.shutdown(socket.SHUT_WR)
            data, how = read_until_end(s)
        assert how == "eof" and data == pattern(300_000)
    finally:
        src.close()


def test_latency_is_added_per_chunk_and_pipelined(echo, proxy_to):
    p = proxy_to(echo)
    p.latency(100)
    with connect(p) as s:
        t0 = time.monotonic()
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        rtt = time.monotonic() - t0
        assert 0.19 <= rtt < 1.0, rtt
        # ten messages 20 ms apart: pipelined they all arrive ~200 ms after the last was sent,
        # not 10 x 200 ms later
        t0 = time.monotonic()
        for i in range(10):
            s.sendall(b"%d" % i)
            time.sleep(0.02)
        got = recv_exact(s, 10)
        elapsed = time.monotonic() - t0
    assert got == b"0123456789"
    assert elapsed < 1.0, elapsed
    p.latency(0)
    t0 = time.monotonic()
    assert echo_ok(p)
    assert time.monotonic() - t0 < 0.15


def test_bandwidth_cap_per_direction(proxy_to):
    src = _Server(_Http)
    try:
        p = proxy_to(src)

        def fetch(n):
            c = http.client.HTTPConnection(p.host, p.port, timeout=20)
            t0 = time.monotonic()
            c.request("GET", "/%d" % n)
            body = c.getresponse().read()
            c.close()
            assert body == pattern(n)
            return time.monotonic() - t0

        assert fetch(2 * MIB) < 1.0
        p.bandwidth(MIB)
        elapsed = fetch(2 * MIB)
        assert 1.6 <= elapsed < 4.0, elapsed
        p.bandwidth(None)
        assert fetch(2 * MIB) < 1.0
    finally:
        src.close()


def test_cut_refuses_new_connections_and_drops_existing(echo, proxy_to):
    p = proxy_to(echo)
    s = connect(p)
    s.sendall(b"a")
    assert recv_exact(s, 1) == b"a"
    p.cut()
    data, how = read_until_end(s, timeout=3)
    assert (data, how) == (b"", "reset")
    s.close()
    accepted = echo.accepted
    assert refused(p)
    assert p.stats()["refused"] >= 1
    assert echo.accepted == accepted, "a cut connection reached the upstream"
    p.heal()
    assert echo_ok(p)


def test_blackhole_accepts_but_never_forwards(echo, proxy_to):
    p = proxy_to(echo)
    old = connect(p)
    old.sendall(b"a")
    assert recv_exact(old, 1) == b"a"
    p.blackhole()
    old.sendall(b"b")
    assert no_reply_within(old, 0.5)
    accepted = echo.accepted
    new = connect(p)
    new.sendall(b"c")
    assert no_reply_within(new, 0.5)
    assert echo.accepted == accepted
    assert p.stats()["held"] == 1
    p.heal()
    assert echo_ok(p), "a new connection after heal does not go through"
    # a connection caught in the blackhole stays dead: only reconnecting helps
    assert no_reply_within(old, 0.3)
    assert no_reply_within(new, 0.3)
    # cutting drops the frozen ones too
    p.cut()
    assert read_until_end(old, 3)[1] == "reset"
    assert read_until_end(new, 3)[1] == "reset"
    old.close()
    new.close()


def test_reset_after_n_bytes_on_the_next_connections(proxy_to):
    size = 2 * MIB
    src = _Server(_Source, size=size)
    try:
        p = proxy_to(src)
        p.reset_after(300_000, times=2)
        for _ in range(2):
            with connect(p) as s:
                data, how = read_until_end(s)
            assert how == "reset"
            assert len(data) <= 300_000 and data == pattern(len(data))
        settled(lambda: _eq(p.stats()["down"], 600_000))
        assert p.stats()["resets"] == 2
        assert p.resets_pending() == 0
        with connect(p) as s:
            data, how = read_until_end(s)
        assert (len(data), how) == (size, "eof")
    finally:
        src.close()


def test_reset_counts_from_the_arming_on_an_open_connection(proxy_to):
    src = _Server(_Http)
    try:
        p = proxy_to(src)
        c = http.client.HTTPConnection(p.host, p.port, timeout=10)
        c.request("GET", "/%d" % 500_000)
        assert c.getresponse().read() == pattern(500_000)
        head = len(b"HTTP/1.1 200 OK\r\nContent-Length: 500000\r\n\r\n")
        settled(lambda: _eq(p.stats()["down"], 500_000 + head))
        p.reset_after(100_000)
        before = p.stats()["down"]
        c.request("GET", "/%d" % 500_000)
        with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
            c.getresponse().read()
        settled(lambda: _eq(p.stats()["down"] - before, 100_000))
        c.close()
    finally:
        src.close()


def test_rules_per_source_address(echo, proxy_to):
    p = proxy_to(echo)
    a, b = "127.0.1.201", "127.0.1.202"
    p.cut(src=a)
    assert refused(p, src=a)
    assert echo_ok(p, src=b)
    p.latency(150, src=b)
    t0 = time.monotonic()
    assert echo_ok(p, src=b)
    assert time.monotonic() - t0 >= 0.29
    p.heal(src=a)
    t0 = time.monotonic()
    assert echo_ok(p, src=a, payload=b"x" * 1000)
    assert time.monotonic() - t0 < 0.25

    def check():
        sa, sb = p.stats(a), p.stats(b)
        assert sa["refused"] == 1 and sa["up"] == 1000 and sa["down"] == 1000
        assert sb["refused"] == 0 and sb["up"] == 8 and sb["down"] == 8
        assert sb["connections"] == 2
        assert p.stats([a, b])["up"] == 1008
    settled(check)
    assert set(p.sources()) == {a, b}
    # a blackhole for one source leaves the others alone
    p.blackhole(src=a)
    with connect(p, src=a) as s:
        s.sendall(b"q")
        assert no_reply_within(s, 0.4)
    assert echo_ok(p, src=b)
    p.clear()
    assert echo_ok(p, src=a)


def test_upstream_can_change_and_unset(echo, proxy_to):
    p = proxy_to(echo)
    assert echo_ok(p)
    other = _Server(_Source, size=10)
    try:
        p.upstream = other.server_address
        with connect(p) as s:
            assert read_until_end(s)[0] == pattern(10)
        p.upstream = None
        assert refused(p)
    finally:
        other.close()


def test_link_reset_counts_over_connections_and_resets_them_all(proxy_to):
    src = _Server(_Source, size=4 * MIB)
    try:
        p = proxy_to(src)
        p.bandwidth(8 * MIB)          # slow enough that both connections are mid-transfer
        p.reset_after(MIB, scope="link")
        s1, s2 = connect(p), connect(p)
        results = [None, None]

        def read(i, s):
            results[i] = read_until_end(s)
        ts = [threading.Thread(target=read, args=(i, s)) for i, s in enumerate((s1, s2))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        s1.close()
        s2.close()
        assert [how for _data, how in results] == ["reset", "reset"]
        total = sum(len(data) for data, _how in results)
        assert total <= MIB
        assert all(0 < len(data) < MIB for data, _how in results), [len(d) for d, _ in results]
        assert p.stats()["resets"] == 1
        with connect(p) as s:       # disarmed after `times` resets
            assert len(read_until_end(s)[0]) == 4 * MIB
    finally:
        src.close()
