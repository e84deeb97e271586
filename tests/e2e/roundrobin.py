"""A round-robin TCP load balancer for the scale-out tests: each new connection goes to the
next backend in turn, and bytes are relayed both ways until either side closes. A client
that opens one connection per request (`Connection: close`) thus sends its requests to the
nodes of a region in turn, as a load balancer without affinity would.

    lb = RoundRobin([("127.0.0.1", 8001), ("127.0.0.1", 8002)]).start()
    lb.url            # http://127.0.0.1:PORT
    lb.counts         # connections sent to each backend
    lb.stop()

Also a command for a local run (scripts/scaleout-up.sh):
    python3 tests/e2e/roundrobin.py LISTEN_PORT HOST:PORT [HOST:PORT ...]
"""

import socket
import threading


class RoundRobin:
    def __init__(self, backends, host="127.0.0.1", port=0):
        self.backends = list(backends)
        self.host = host
        self.port = port
        self.counts = [0] * len(self.backends)
        self._next = 0
        self._lock = threading.Lock()
        self._sock = None
        self._stopping = False
        self._conns = set()

    @property
    def url(self):
        return "http://%s:%d" % self._sock.getsockname()[:2]

    def start(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self.port))
        self._sock.listen(128)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self._stopping = True
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while not self._stopping:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                i = self._next
                self._next = (self._next + 1) % len(self.backends)
                self.counts[i] += 1
            threading.Thread(target=self._serve, args=(client, self.backends[i]),
                             daemon=True).start()

    def _serve(self, client, backend):
        try:
            upstream = socket.create_connection(backend, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._conns.update((client, upstream))
        t = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
        t.start()
        self._pipe(client, upstream)
        t.join()
        with self._lock:
            self._conns.discard(client)
            self._conns.discard(upstream)
        client.close()
        upstream.close()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


if __name__ == "__main__":
    import sys
    import time
    if len(sys.argv) < 3:
        sys.exit("usage: roundrobin.py LISTEN_PORT HOST:PORT [HOST:PORT ...]")
    targets = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in sys.argv[2:]]
    lb = RoundRobin(targets, port=int(sys.argv[1])).start()
    print("round-robin on %s to %s" % (lb.url, " ".join(sys.argv[2:])), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        lb.stop()
