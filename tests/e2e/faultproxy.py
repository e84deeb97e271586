"""A fault-injecting TCP proxy for the multi-region end-to-end tests (no third-party code).

One FaultProxy listens on one address and forwards every connection to one upstream. It runs
in threads inside the test process and is controlled from it at run time:

  latency(ms)           added to every chunk, in each direction (chunks are pipelined: a
                        100 ms link still moves many chunks per 100 ms)
  bandwidth(bps)        cap in bytes/s, per direction, shared by the connections it covers
  cut()                 new connections are reset as soon as they are accepted, existing
                        ones are dropped with RST (both sides)
  blackhole()           new connections are accepted and never forwarded; existing ones
                        freeze: no byte moves in either direction, nothing is closed. Frozen
                        connections stay frozen after heal() (a dead path, like a NAT that
                        lost its state), so only a client that detects the stall and
                        reconnects gets through again
  reset_after(n, times) the next `times` connections that carry n more bytes upstream->client
                        (counted from the call, or from the connection's start if later) get
                        exactly n of them, then an RST (SO_LINGER 0), mid-transfer; with
                        scope="link", n counts over all the source's connections and all of
                        them are reset together (for clients that split a transfer)
  heal()                lifts cut and blackhole
  clear()               forgets every rule and armed reset

Every control call takes `src=`: None (default) for every client, or one source IP (or a list):
a rule for "127.0.1.1" affects only connections whose source address is 127.0.1.1. For each
setting, a rule for the source wins over the rule for everyone; cut and blackhole apply if
either rule says so. Regions bind outbound traffic to their own 127.0.1.N, so per-source rules
on the proxies in front of the regions build partitions.

stats(src=None) counts bytes forwarded per direction ("up" = client->upstream, "down" =
upstream->client), connections accepted, refused (cut), reset (by reset_after), and held
(blackholed on accept), in total or for one source.

Run as a program for manual experiments:
  python3 faultproxy.py LISTEN_HOST:PORT UPSTREAM_HOST:PORT [--latency-ms N] [--bandwidth BPS]
"""

import argparse
import select
import socket
import struct
import threading
import time

CHUNK = 256 * 1024          # bytes read at once
QUEUE_MAX = 8 * 1024 * 1024  # bytes queued per direction before the reader waits (backpressure)
TICK_S = 0.05               # how often blocked threads look at the connection's state
CONNECT_TIMEOUT_S = 5.0

ALL = None                  # the rule key that covers every source


def _rst_close(sock):
    """Closes sock so that the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _keys(src):
    if src is None or isinstance(src, str):
        return [src]
    return list(src)


class _Pacer:
    """Shapes a byte stream to `rate` bytes/s: each send reserves its slot on a shared clock."""

    def __init__(self, rate):
        self.rate = float(rate)
        self.next_t = 0.0
        self.lock = threading.Lock()

    def reserve(self, n):
        """Returns the monotonic time at which n bytes may be sent."""
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_t)
            self.next_t = start + n / self.rate
            return start


class _Rule:
    def __init__(self):
        self.latency_s = None
        self.pacers = None          # (up, down) or None
        self.cut = False
        self.blackhole = False

    def empty(self):
        return (self.latency_s is None and self.pacers is None and not self.cut
                and not self.blackhole)


class _Stats:
    FIELDS = ("up", "down", "connections", "refused", "resets", "held")

    def __init__(self):
        for f in self.FIELDS:
            setattr(self, f, 0)

    def as_dict(self):
        return {f: getattr(self, f) for f in self.FIELDS}


class _Conn:
    """One proxied connection: two directions, each a reader thread (socket -> queue) and a
    writer thread (queue -> socket, after latency and pacing). The last thread to leave
    closes both sockets, with RST if the connection was killed."""

    def __init__(self, proxy, client, src):
        self.proxy = proxy
        self.client = client
        self.src = src
        self.upstream = None
        self.lock = threading.Condition()
        self.dead = False
        self.rst = False
        self.frozen = False
        self.running = 0
        self.down = 0               # bytes forwarded upstream->client on this connection
        self.up = 0
        self.reset_base = 0         # reset_after counts down - reset_base
        self.queues = {"up": [], "down": []}
        self.queued = {"up": 0, "down": 0}

    # -- state
    def kill(self, rst=True):
        with self.lock:
            if self.dead:
                return
            self.dead = True
            self.rst = self.rst or rst
            self.lock.notify_all()
            held = self.running == 0
        if held:
            self._close()
        # else: every thread notices within TICK_S (all sockets are non-blocking) and the
        # last one closes the sockets

    def freeze(self):
        with self.lock:
            self.frozen = True
            self.lock.notify_all()

    def _close(self):
        for s in (self.client, self.upstream):
            if s is None:
                continue
            if self.rst:
                _rst_close(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass
        self.proxy._forget(self)

    def _leave(self):
        with self.lock:
            self.running -= 1
            last = self.running == 0
        if last:
            self._close()

    def start(self):
        """Starts the four threads (the caller has set running = 4 under the lock)."""
        for direction in ("up", "down"):
            for fn in (self._reader, self._writer):
                t = threading.Thread(target=fn, args=(direction,), daemon=True,
                                     name="faultproxy-%s-%s" % (fn.__name__, direction))
                t.start()

    def _socks(self, direction):
        """(source socket, destination socket) of a direction."""
        if direction == "up":
            return self.client, self.upstream
        return self.upstream, self.client

    def _wait_frozen(self):
        """Parks the calling thread while the connection is frozen. Returns False if dead."""
        with self.lock:
            while self.frozen and not self.dead:
                self.lock.wait(TICK_S * 4)
            return not self.dead

    # -- threads
    def _reader(self, direction):
        src, _dst = self._socks(direction)
        try:
            poller = select.poll()
            poller.register(src, select.POLLIN | select.POLLERR | select.POLLHUP)
            while True:
                if not self._wait_frozen():
                    return
                with self.lock:
                    while self.queued[direction] >= QUEUE_MAX and not self.dead:
                        self.lock.wait(TICK_S)
                    if self.dead:
                        return
                if not poller.poll(TICK_S * 1000):
                    continue
                with self.lock:
                    if self.dead:
                        return
                    if self.frozen:
                        continue
                try:
                    data = src.recv(CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    self.kill(rst=True)   # a reset on one side is passed on as a reset
                    return
                latency = self.proxy._latency(self.src)
                with self.lock:
                    if self.dead:
                        return
                    due = time.monotonic() + latency
                    self.queues[direction].append((due, data))
                    self.queued[direction] += len(data)
                    self.lock.notify_all()
                if not data:
                    return                # EOF queued: the writer half-closes after the data
        finally:
            self._leave()

    def _writer(self, direction):
        _src, dst = self._socks(direction)
        try:
            while True:
                with self.lock:
                    while not self.queues[direction] and not self.dead:
                        self.lock.wait(TICK_S)
                    if self.dead:
                        return
                    due, data = self.queues[direction][0]
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                if not self._sleep_until(due):
                    return
                if not self._send(direction, dst, data):
                    return
                with self.lock:
                    self.queues[direction].pop(0)
                    self.queued[direction] -= len(data)
                    self.lock.notify_all()
        finally:
            self._leave()

    def _sleep_until(self, t):
        while True:
            if not self._wait_frozen():
                return False
            now = time.monotonic()
            if now >= t:
                return True
            with self.lock:
                if self.dead:
                    return False
                self.lock.wait(min(TICK_S, t - now))

    def _send(self, direction, dst, data):
        """Sends data (paced, checked for an armed reset). False if the connection ended."""
        view = memoryview(data)
        poller = select.poll()
        poller.register(dst, select.POLLOUT | select.POLLERR | select.POLLHUP)
        while len(view):
            if not self._wait_frozen():
                return False
            pacer = self.proxy._pacer(self.src, direction)
            piece = len(view)
            if pacer is not None:
                piece = min(piece, max(1024, int(pacer.rate / 50)))
                if not self._sleep_until(pacer.reserve(piece)):
                    return False
            reset_now = False
            if direction == "down":
                piece, reset_now = self.proxy._reset_check(self, piece)
            sent = 0
            while sent < piece:
                with self.lock:
                    if self.dead:
                        return False
                try:
                    if not poller.poll(TICK_S * 1000):
                        continue
                    n = dst.send(view[sent:piece])
                except BlockingIOError:
                    continue
                except OSError:
                    self.kill(rst=True)
                    return False
                sent += n
                self.proxy._count(self, direction, n)
            view = view[piece:]
            if reset_now:
                self.kill(rst=True)
                return False
        return True


class FaultProxy:
    """A TCP proxy from `listen` (host, port; port 0 picks one) to `upstream` (host, port,
    settable later). start() binds and starts the accept thread; close() stops everything."""

    def __init__(self, listen=("127.0.0.1", 0), upstream=None, name="proxy"):
        self.name = name
        self._listen_addr = listen
        self.upstream = upstream
        self._lock = threading.Lock()
        self._rules = {}
        self._resets = {}           # key -> [nbytes, times]
        self._conns = set()
        self._stats = {}            # src -> _Stats
        self._total = _Stats()
        self._sock = None
        self._address = None
        self._thread = None
        self._closing = False

    # -- lifecycle
    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(self._listen_addr)
        s.listen(128)
        s.settimeout(TICK_S * 4)
        self._sock = s
        self._address = s.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name="faultproxy-accept-" + self.name)
        self._thread.start()
        return self

    @property
    def address(self):
        """(host, port) listened on (still known after close())."""
        return self._address

    @property
    def host(self):
        return self.address[0]

    @property
    def port(self):
        return self.address[1]

    @property
    def url(self):
        return "http://%s:%d" % self.address

    def close(self):
        self._closing = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        for c in self._live():
            c.kill(rst=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<FaultProxy %s %s -> %s>" % (self.name, self._sock and self.url, self.upstream)

    # -- control
    def _rule(self, key):
        r = self._rules.get(key)
        if r is None:
            r = self._rules[key] = _Rule()
        return r

    def latency(self, ms, src=ALL):
        """Adds ms milliseconds to every chunk in each direction (0 or None removes it)."""
        with self._lock:
            for k in _keys(src):
                self._rule(k).latency_s = (ms / 1000.0) if ms else None
        return self

    def bandwidth(self, bytes_per_s, src=ALL):
        """Caps each direction at bytes_per_s, shared by the connections the rule covers
        (None removes the cap)."""
        with self._lock:
            for k in _keys(src):
                rule = self._rule(k)
                if not bytes_per_s:
                    rule.pacers = None
                elif rule.pacers is None:
                    rule.pacers = (_Pacer(bytes_per_s), _Pacer(bytes_per_s))
                else:
                    for p in rule.pacers:
                        p.rate = float(bytes_per_s)
        return self

    def cut(self, src=ALL, drop_existing=True):
        """Refuses new connections from src (reset on accept) and drops existing ones (RST)."""
        keys = _keys(src)
        with self._lock:
            for k in keys:
                self._rule(k).cut = True
        if drop_existing:
            for c in self._live():
                if ALL in keys or c.src in keys:
                    c.kill(rst=True)
        return self

    def blackhole(self, src=ALL):
        """Accepts new connections from src without ever forwarding them; freezes existing
        ones for good (see the module comment)."""
        keys = _keys(src)
        with self._lock:
            for k in keys:
                self._rule(k).blackhole = True
        for c in self._live():
            if ALL in keys or c.src in keys:
                c.freeze()
        return self

    def heal(self, src=ALL):
        """Lifts cut and blackhole for src (src=ALL: the rule for everyone and every
        per-source rule)."""
        with self._lock:
            keys = list(self._rules) if src is ALL else _keys(src)
            for k in keys:
                if k in self._rules:
                    self._rules[k].cut = False
                    self._rules[k].blackhole = False
        return self

    def reset_after(self, nbytes, times=1, src=ALL, scope="connection"):
        """Arms a reset, `times` times over.

        scope="connection": the next connection from src that forwards nbytes more bytes
        upstream->client (counted from now, or from its start if later) gets exactly that
        many, then an RST.
        scope="link": once nbytes more bytes have gone upstream->client to src over any
        number of connections, the connection carrying the last of them gets exactly up to
        there, then an RST, and every other connection from src is reset with it (a link
        flap); the count then starts again. This is the one to use when the client may
        split a transfer over several connections."""
        assert scope in ("connection", "link"), scope
        keys = _keys(src)
        with self._lock:
            for k in keys:
                self._resets[k] = {"nbytes": int(nbytes), "times": int(times),
                                   "scope": scope, "counted": 0}
            for c in self._conns:
                if ALL in keys or c.src in keys:
                    c.reset_base = c.down
        return self

    def resets_pending(self, src=ALL):
        with self._lock:
            return sum(v["times"] for k, v in self._resets.items() if src is ALL or k == src)

    def clear(self):
        """Forgets every rule and armed reset (frozen connections stay frozen)."""
        with self._lock:
            self._rules.clear()
            self._resets.clear()
        return self

    def drop_connections(self, src=ALL):
        """Resets the existing connections from src, without refusing new ones."""
        keys = _keys(src)
        for c in self._live():
            if ALL in keys or c.src in keys:
                c.kill(rst=True)

    # -- observation
    def stats(self, src=ALL):
        """{"up", "down", "connections", "refused", "resets", "held"} for src, or in total;
        src may be a list (summed)."""
        with self._lock:
            if src is ALL:
                return self._total.as_dict()
            out = _Stats().as_dict()
            for k in _keys(src):
                st = self._stats.get(k)
                if st:
                    for f, v in st.as_dict().items():
                        out[f] += v
            return out

    def sources(self):
        """Every source address seen so far."""
        with self._lock:
            return sorted(self._stats)

    def live_connections(self, src=ALL):
        return sum(1 for c in self._live() if src is ALL or c.src in _keys(src))

    # -- internals used by connections
    def _live(self):
        with self._lock:
            return list(self._conns)

    def _forget(self, conn):
        with self._lock:
            self._conns.discard(conn)

    def _effective(self, src, attr):
        r = self._rules.get(src)
        if r is not None and getattr(r, attr) is not None:
            return getattr(r, attr)
        r = self._rules.get(ALL)
        return getattr(r, attr) if r is not None else None

    def _latency(self, src):
        with self._lock:
            return self._effective(src, "latency_s") or 0.0

    def _pacer(self, src, direction):
        with self._lock:
            pacers = self._effective(src, "pacers")
        if pacers is None:
            return None
        return pacers[0] if direction == "up" else pacers[1]

    def _flag(self, src, attr):
        with self._lock:
            return any(getattr(self._rules[k], attr) for k in (ALL, src) if k in self._rules)

    def _stat(self, src):
        st = self._stats.get(src)
        if st is None:
            st = self._stats[src] = _Stats()
        return st

    def _count(self, conn, direction, n):
        with self._lock:
            for st in (self._total, self._stat(conn.src)):
                setattr(st, direction, getattr(st, direction) + n)
        if direction == "down":
            conn.down += n
        else:
            conn.up += n

    def _count_event(self, src, field):
        with self._lock:
            for st in (self._total, self._stat(src)):
                setattr(st, field, getattr(st, field) + 1)

    def _reset_check(self, conn, piece):
        """(bytes to send, reset after them?) for piece bytes about to go down conn."""
        others = []
        with self._lock:
            result = (piece, False)
            for k in (conn.src, ALL):
                arm = self._resets.get(k)
                if not arm or arm["times"] <= 0:
                    continue
                if arm["scope"] == "link":
                    left = arm["nbytes"] - arm["counted"]
                else:
                    left = arm["nbytes"] - (conn.down - conn.reset_base)
                if left > piece:
                    arm["counted"] += piece
                    continue
                arm["times"] -= 1
                arm["counted"] = 0
                if arm["times"] == 0:
                    del self._resets[k]
                for c in self._conns:       # the next one counts from now
                    if k is ALL or c.src == k:
                        c.reset_base = c.down + (max(left, 0) if c is conn else 0)
                        if arm["scope"] == "link" and c is not conn:
                            others.append(c)
                for st in (self._total, self._stat(conn.src)):
                    st.resets += 1
                result = (max(left, 0), True)
                break
        for c in others:
            c.kill(rst=True)
        return result

    def _accept_loop(self):
        while not self._closing:
            try:
                client, addr = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._closing:
                    return
                time.sleep(TICK_S)
                continue
            src = addr[0]
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._flag(src, "cut") or self.upstream is None:
                self._count_event(src, "refused")
                _rst_close(client)
                continue
            conn = _Conn(self, client, src)
            with self._lock:
                self._conns.add(conn)
                self._stat(src).connections += 1
                self._total.connections += 1
            if self._flag(src, "blackhole"):
                conn.frozen = True
                self._count_event(src, "held")
                continue                  # never connected upstream; closed by cut or close()
            threading.Thread(target=self._connect, args=(conn,), daemon=True,
                             name="faultproxy-connect-" + self.name).start()

    def _connect(self, conn):
        try:
            up = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT_S)
        except OSError:
            self._count_event(conn.src, "refused")
            conn.kill(rst=True)
            return
        up.setblocking(False)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn.lock:
            conn.upstream = up
            dead = conn.dead
            if not dead:
                conn.running = 4
        if dead:
            _rst_close(up)
            return
        conn.start()


def _hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def main():
    ap = argparse.ArgumentParser(description="fault-injecting TCP proxy (Meridian e2e tests)")
    ap.add_argument("listen", help="HOST:PORT to listen on")
    ap.add_argument("upstream", help="HOST:PORT to forward to")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--bandwidth", type=int, default=0, help="bytes/s per direction")
    args = ap.parse_args()
    p = FaultProxy(_hostport(args.listen), _hostport(args.upstream), name="cli").start()
    p.latency(args.latency_ms).bandwidth(args.bandwidth or None)
    print("forwarding %s -> %s:%d" % (p.url, *p.upstream), flush=True)
    try:
        while True:
            time.sleep(5)
            print(p.stats(), flush=True)
    except KeyboardInterrupt:
        p.close()


if __name__ == "__main__":
    main()
