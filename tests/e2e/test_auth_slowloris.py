"""Slow clients (slowloris): hundreds of connections that send their request headers a
byte at a time, never finishing, must neither starve other clients nor live forever.
The attackers trickle bytes faster than the idle timeout, so only the header deadline
(--header-timeout) can close them; the per-address cap (--conn-limit-per-ip) bounds how
many one address holds. Every loop here is bounded in count and time; traffic stays on
loopback (attackers on 127.0.0.2, the legitimate client on 127.0.0.1)."""

import os
import select
import socket
import threading
import time

import pytest
import requests

from auth_helpers import push_image, server_pool  # noqa: F401

N_ATTACKERS = 300
PER_IP = 100
ATTACK_S = 6.0


class Slowloris:
    """Opens connections from src_ip and trickles header bytes on each until stopped."""

    def __init__(self, host, port, src_ip, n):
        self.host, self.port, self.src_ip, self.n = host, port, src_ip, n
        self.socks = []
        self.opened = 0
        self.closed_by_server = 0
        self.first_close_s = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open_all(self):
        for _ in range(self.n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((self.src_ip, 0))
            s.settimeout(2)
            try:
                s.connect((self.host, self.port))
                s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: %s\r\n" % self.host.encode())
                s.setblocking(False)
                self.socks.append(s)
                self.opened += 1
            except OSError:
                s.close()
        self.t0 = time.monotonic()

    def run(self):
        deadline = time.monotonic() + ATTACK_S + 5
        while not self.stop.is_set() and time.monotonic() < deadline and self.socks:
            # one more header byte on every connection, slower than any sane client
            for s in list(self.socks):
                try:
                    s.send(b"X")
                except OSError:
                    self._closed(s)
            readable, _, _ = select.select(self.socks, [], [], 0.5)
            for s in readable:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data or b"HTTP/1.1 " in data:
                    self._closed(s)

    def _closed(self, s):
        if s in self.socks:
            self.socks.remove(s)
            s.close()
            self.closed_by_server += 1
            if self.first_close_s is None:
                self.first_close_s = time.monotonic() - self.t0

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=10)
        for s in self.socks:
            s.close()


def test_slowloris_does_not_starve_others(server_pool):
    srv = server_pool("--header-timeout", "3s", "--conn-timeout", "60s",
                      "--conn-limit-per-ip", str(PER_IP), "--threads", "4", auth=False)
    host, port = srv.hostport.rsplit(":", 1)
    port = int(port)
    push_image(srv, None, "slow/app")
    attack = Slowloris(host, port, "127.0.0.2", N_ATTACKERS)
    attack.open_all()
    attack.thread.start()
    try:
        # the per-address cap: connections beyond it are closed at once
        time.sleep(1.0)
        held = len(attack.socks)
        assert held <= PER_IP, held
        # meanwhile a well-behaved client is served promptly, again and again
        latencies = []
        session = requests.Session()
        end = time.monotonic() + ATTACK_S - 2
        while time.monotonic() < end:
            t = time.monotonic()
            r = session.get(srv.url + "/v2/slow/app/manifests/v1", timeout=5,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 200
            r = requests.get(srv.url + "/v2/slow/app/tags/list", timeout=5)  # new connection
            assert r.status_code == 200
            latencies.append(time.monotonic() - t)
            time.sleep(0.05)
        assert len(latencies) >= 20
        assert max(latencies) < 1.0, max(latencies)
        # the trickling connections were cut by the header deadline, not the idle timeout
        wait = time.monotonic() + 5
        while attack.socks and time.monotonic() < wait:
            time.sleep(0.1)
        assert not attack.socks, "%d slow connections still open" % len(attack.socks)
        assert attack.first_close_s is not None
    finally:
        attack.finish()
    assert "sent no complete request in time" in srv.log_text()
    assert srv.is_running()
    assert requests.get(srv.url + "/healthz", timeout=5).status_code == 200


def test_oversized_headers_are_refused(server_pool):
    srv = server_pool(auth=False)
    r = requests.get(srv.url + "/v2/", headers={"X-Big": "a" * (300 * 1024)}, timeout=10)
    assert r.status_code in (413, 431, 400), r.status_code
    assert requests.get(srv.url + "/v2/", timeout=5).status_code == 200


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(bool(os.environ.get("TSAN_OPTIONS") or os.environ.get("ASAN_OPTIONS")),
                    reason="a sanitizer's allocator replaces glibc's: malloc_trim does not apply")
def test_memory_of_a_connection_burst_is_given_back(server_pool):
    """600 connections, each with an answered request, then all closed: the server's
    resident memory comes back to within 8 MiB of where it started. Each connection's
    32 KiB pool is malloc'd and cleared per request; without malloc_trim once a burst
    has closed, glibc kept them all (+19 MiB here)."""
    srv = server_pool("--conn-limit-per-ip", "0", "--conn-limit", "2000", auth=False)
    host, port = srv.hostport.rsplit(":", 1)
    before = rss_kib(srv.proc.pid)
    socks = []
    try:
        for _ in range(600):
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        for s in socks:
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        peak = rss_kib(srv.proc.pid)
        assert peak - before > 12 * 1024, (before, peak)  # the burst did cost memory
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 10
    while rss_kib(srv.proc.pid) - before > 8 * 1024 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rss_kib(srv.proc.pid) - before <= 8 * 1024, (before, rss_kib(srv.proc.pid))
    assert requests.get(srv.url + "/v2/", timeout=5).status_code == 200
