"""A peer whose answers about its own log do not add up (a bug, or a log restored from an
older copy): the positions it reports are not taken past its head, and a head below what
this region has read of it sends this region back to the start of that log (the version
vector skips what was applied), so no later event of that peer is skipped for ever.

The peer here is a stand-in served by the test (introduced with the peer secret) that
answers `replication/events` from a list the test controls; its events are replicated
objects (quotas), visible through the management API once applied."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import requests

from regions import wait_for

pytest_plugins = ["geo_plugin"]


class FakePeer:
    """A region named `fake`: its log is self.log (positions 1..n), reported with the
    `last` and `head` the test sets (None: the honest values)."""

    def __init__(self, host="127.0.1.77"):
        self.log = []
        self.last = None
        self.head = None
        self.asked_after = []
        self.mu = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                u = urlparse(self.path)
                if u.path.endswith("/replication/events"):
                    after = int(parse_qs(u.query).get("after", ["0"])[0])
                    body = peer.events(after)
                elif u.path.endswith("/replication/summary"):
                    body = {}
                else:
                    body = {}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = "http://%s:%d" % self.server.server_address
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_quota(self, pattern, nbytes, origin_seq):
        with self.mu:
            self.log.append({"origin": "fake", "originSeq": origin_seq,
                             "hlc": int(time.time() * 1000) << 16, "kind": "object_put",
                             "repo": None, "name": pattern, "digest": None,
                             "payload": {"kind": "quota", "value": {"bytes": nbytes}}})

    def events(self, after):
        with self.mu:
            self.asked_after.append(after)
            evs = [dict(e, seq=i + 1) for i, e in enumerate(self.log) if i + 1 > after]
            head = self.head if self.head is not None else len(self.log)
            last = self.last if self.last is not None else (evs[-1]["seq"] if evs else after)
        if not evs:
            time.sleep(0.2)  # a long poll that found nothing, briefly
        return {"events": evs, "last": last, "head": head}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def quotas(region):
    r = region.api("GET", "quotas")
    assert r.status_code == 200, r.text
    return {q["pattern"]: q["bytes"] for q in r.json()}


def introduce(region, fake, secret):
    r = requests.post(region.url + "/_meridian/v1/replication/introduce", auth=("peer", secret),
                      json={"registry": "meridian", "location": "fake", "endpoint": fake.url},
                      timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)


def test_a_position_past_the_peers_head_is_not_taken(geo):
    cluster = geo(1)
    r1 = cluster[0]
    fake = FakePeer()
    try:
        fake.add_quota("fake-a/*", 1000, 1)
        fake.last = 10 ** 15          # absurd: far past the head it reports
        introduce(r1, fake, cluster.secret)
        wait_for(lambda: "fake-a/*" in quotas(r1), 30, "r1 to apply the fake's first event")
        fake.last = None
        fake.add_quota("fake-b/*", 2000, 2)
        wait_for(lambda: "fake-b/*" in quotas(r1), 30,
                 "r1 to apply the fake's next event (asked after: %s)" % fake.asked_after[-5:])
        assert max(fake.asked_after) <= 2, fake.asked_after[-10:]
    finally:
        fake.close()


def test_a_head_below_what_was_read_sends_the_reader_back_to_the_start(geo):
    cluster = geo(1)
    r1 = cluster[0]
    fake = FakePeer()
    try:
        for k in range(3):
            fake.add_quota("old-%d/*" % k, 1000 + k, k + 1)
        introduce(r1, fake, cluster.secret)
        wait_for(lambda: all("old-%d/*" % k in quotas(r1) for k in range(3)), 30,
                 "r1 to apply the fake's three events")
        # the fake's log restarts shorter (restored from an older copy), then grows again
        # with a new event of its origin at position 2
        with fake.mu:
            del fake.log[1:]
        fake.add_quota("new/*", 3000, 4)
        wait_for(lambda: "new/*" in quotas(r1), 30,
                 "r1 to read the fake's log again and apply its new event (asked after: %s)"
                 % fake.asked_after[-5:])
        assert "restarted below what this region read" in r1.log_text(), r1.log_tail()
    finally:
        fake.close()
