"""Regional webhooks in a geo-replicated registry (docs/webhooks.md, docs/replication.md): one
webhook per region, each with its own receiver. A push made in one region fires at every
region's receiver once it has taken effect there (the manifest is pullable in that region when
the event arrives); each receiver gets exactly the events of its region, once; deliveries to a
receiver that is failing or down are retried (also across a kill -9 of the region) and arrive
when it is back; `webhook list-events` shows the status codes.

Receivers are python http.server instances in threads on 127.0.0.1.
"""

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from regions import MANIFEST_ACCEPT, unique_repo, wait_for

pytest_plugins = ["geo_plugin"]

WEBHOOK_ARGS = ["--webhook-backoff-max", "1s"]


class Receiver:
    """Records every POST with, for push events, whether the receiver's region served the
    manifest at the moment the event arrived. Answers `status`; stop()/start() close and
    reopen the same port."""

    def __init__(self, region):
        self.region = region
        self.lock = threading.Lock()
        self.got = []
        self.status = 200
        self.port = 0
        self.httpd = None

    def start(self):
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                visible = None
                if isinstance(doc, dict) and doc.get("action") == "push":
                    visible = rcv.serves(doc.get("target") or {})
                with rcv.lock:
                    status = rcv.status
                    rcv.got.append({"json": doc, "visible": visible, "status": status,
                                    "headers": {k.lower(): v for k, v in self.headers.items()}})
                out = b'{"ok":true}' if status < 300 else b"not now\n"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def serves(self, target):
        try:
            r = requests.get("%s/v2/%s/manifests/%s" % (self.region.url, target["repository"],
                                                        target["digest"]),
                             headers={"Accept": MANIFEST_ACCEPT}, timeout=5)
            return r.status_code
        except (requests.RequestException, KeyError) as e:
            return repr(e)

    def events(self, action=None, digest=None, answered=None):
        """Requests received (with action / target digest / the status we answered)."""
        with self.lock:
            out = list(self.got)
        if action is not None:
            out = [e for e in out if (e["json"] or {}).get("action") == action]
        if digest is not None:
            out = [e for e in out
                   if ((e["json"] or {}).get("target") or {}).get("digest") == digest]
        if answered is not None:
            out = [e for e in out if e["status"] == answered]
        return out


@pytest.fixture
def receivers():
    made = []

    def make(cluster):
        for r in cluster:
            made.append(Receiver(r).start())
        return {rcv.region.name: rcv for rcv in made[-len(cluster):]}
    yield make
    for rcv in made:
        rcv.stop()


def hook_name(region):
    # 5-50 letters or digits
    return "geo%s%s" % (region.name, secrets.token_hex(3))


def create_hooks(cluster, rcvs, via=None):
    """One webhook per region, created through `via` (default each region itself); waits until
    every region lists all of them (definitions are registry metadata)."""
    names = {}
    for r in cluster:
        names[r.name] = hook_name(r)
        (via or r).cli("webhook", "create", names[r.name], "--location", r.name,
                       "--uri", rcvs[r.name].url, "--actions", "push,delete", "--scope", "*")

    def everyone_lists_all():
        for r in cluster:
            listed = {w["name"] for w in r.api("GET", "webhooks").json()}
            if not set(names.values()) <= listed:
                return False
        return True
    wait_for(everyone_lists_all, 60, "every region to list every webhook")
    return names


def deliveries(region, hook):
    r = region.api("GET", "webhooks/%s/events" % hook)
    assert r.status_code == 200, (region.name, r.status_code, r.text[:300])
    return r.json()


def test_each_region_webhook_gets_exactly_the_events_of_its_region(geo, receivers):
    cluster = geo(3, extra_args=WEBHOOK_ARGS)
    a, b, c = cluster
    rcvs = receivers(cluster)
    hooks = create_hooks(cluster, rcvs, via=a)
    repo = unique_repo("hooks")

    img1 = a.oci().push_image(repo, "v1")            # written in r1
    for r in cluster:
        wait_for(lambda: rcvs[r.name].events("push", img1.digest), 90,
                 "the push made in r1 to fire in %s" % r.name)
    img2 = b.oci().push_image(repo, "v2")            # written in r2
    for r in cluster:
        wait_for(lambda: rcvs[r.name].events("push", img2.digest), 90,
                 "the push made in r2 to fire in %s" % r.name)
    r = c.oci().delete("/v2/%s/manifests/v1" % repo)  # a tag delete in r3
    assert r.status_code == 202, (r.status_code, r.text)
    for r in cluster:
        wait_for(lambda: rcvs[r.name].events("delete", img1.digest), 90,
                 "the delete made in r3 to fire in %s" % r.name)
    # a last write, so that a duplicate of anything above would have arrived by now
    img3 = c.oci().push_image(repo, "v3")
    for r in cluster:
        wait_for(lambda: rcvs[r.name].events("push", img3.digest), 90,
                 "the push made in r3 to fire in %s" % r.name)

    for r in cluster:
        got = rcvs[r.name].events()
        docs = [e["json"] for e in got]
        summary = [(d["action"], d["target"]["digest"], d["target"].get("tag")) for d in docs]
        assert sorted(summary) == sorted([("push", img1.digest, "v1"),
                                          ("push", img2.digest, "v2"),
                                          ("delete", img1.digest, "v1"),
                                          ("push", img3.digest, "v3")]), (r.name, summary)
        assert len({d["id"] for d in docs}) == 4, (r.name, docs)
        for e in got:
            assert e["headers"].get("x-meridian-webhook") == hooks[r.name], (r.name, e)
            assert e["json"]["region"] == r.name, (r.name, e["json"])
            assert e["json"]["target"]["repository"] == repo
            if e["json"]["action"] == "push":
                # fired when the push took effect here: the manifest was pullable
                assert e["visible"] == 200, (r.name, e["json"], e["visible"])
        # the delivery records live in the webhook's region, delivered with a 200
        recs = deliveries(r, hooks[r.name])
        assert len(recs) == 4, (r.name, recs)
        for rec in recs:
            assert rec["state"] == "delivered" and rec["statusCode"] == 200, (r.name, rec)
        for other in cluster:
            if other is not r:
                assert deliveries(other, hooks[r.name]) == [], (other.name, hooks[r.name])


def test_deliveries_are_retried_until_the_receiver_is_back(geo, receivers):
    cluster = geo(2, extra_args=WEBHOOK_ARGS)
    a, b = cluster
    rcvs = receivers(cluster)
    hooks = create_hooks(cluster, rcvs)
    hb = hooks[b.name]
    repo = unique_repo("hook-retry")

    rcvs[b.name].status = 503
    img = a.oci().push_image(repo, "v1")
    wait_for(lambda: rcvs[a.name].events("push", img.digest), 60, "the event in r1")

    # r2's receiver answers 503: attempts are retried and recorded with their status
    def failing(min_attempts, status):
        recs = [e for e in deliveries(b, hb) if e["action"] == "push"]
        return (recs and recs[0]["state"] == "pending" and recs[0]["attempts"] >= min_attempts
                and recs[0]["statusCode"] == status and recs[0])
    first = wait_for(lambda: failing(2, 503), 90, "two attempts answered 503 in r2")
    p = b.cli("webhook", "list-events", hb)
    assert "503" in p.stdout and "pending" in p.stdout, p.stdout

    # then it is down (port closed), and r2 itself is killed and restarted meanwhile
    rcvs[b.name].stop()
    down = wait_for(lambda: failing(first["attempts"] + 1, None), 60,
                    "an attempt against the closed port")
    b.kill9()
    b.start()
    rcvs[b.name].status = 200
    rcvs[b.name].start()

    def delivered():
        recs = [e for e in deliveries(b, hb) if e["action"] == "push"]
        return recs and recs[0]["state"] == "delivered" and recs[0]
    rec = wait_for(delivered, 90, "the delivery once r2's receiver is back")
    assert rec["id"] == first["id"] == down["id"]
    assert rec["statusCode"] == 200 and rec["attempts"] > down["attempts"]
    assert len(deliveries(b, hb)) == 1, deliveries(b, hb)

    got = rcvs[b.name].events("push", img.digest)
    assert {e["json"]["id"] for e in got} == {first["id"]}
    assert [e["status"] for e in got][-1] == 200
    assert len(rcvs[b.name].events("push", img.digest, answered=200)) == 1
    assert all(e["json"]["region"] == b.name for e in got)
    assert got[-1]["visible"] == 200

    table = b.cli("webhook", "list-events", hb).stdout
    assert "delivered" in table and "200" in table, table
    js = json.loads(b.cli("webhook", "list-events", hb, "--output", "json").stdout)
    assert [(e["id"], e["statusCode"]) for e in js] == [(first["id"], 200)]
    # r1's receiver was never down: one attempt, one event
    assert len(rcvs[a.name].events()) == 1


def test_a_replicated_index_fires_each_push_once(geo, receivers):
    """Every fetcher reads the pending manifests on its own; one that read a list before
    another fetcher showed a manifest must not show it again (a second push event with a
    new id, which receivers cannot deduplicate). Many children make that likely."""
    cluster = geo(2, extra_args=WEBHOOK_ARGS)
    a, b = cluster
    rcvs = receivers(cluster)
    create_hooks(cluster, rcvs)
    repo = unique_repo("hook-index")
    oci = a.oci()
    # r2 paused meanwhile: its fetchers then read the same long pending list at once
    b.sigstop()
    try:
        children = [oci.push_image(repo, layers=1, layer_size=64) for _ in range(300)]
        index = oci.push_index(repo, children, tag="multi")
    finally:
        b.sigcont()
    digests = [c.digest for c in children] + [index.digest]
    wait_for(lambda: all(rcvs[b.name].events("push", d) for d in digests), 120,
             "every child and the index to fire in r2")
    # a last write, so that a duplicate of anything above would have arrived by now
    last = oci.push_image(repo, "last")
    wait_for(lambda: rcvs[b.name].events("push", last.digest), 90, "the last push in r2")

    for r in cluster:
        got = [e["json"] for e in rcvs[r.name].events("push")]
        seen = {}
        for doc in got:
            seen.setdefault(doc["target"]["digest"], []).append(doc["id"])
        twice = {d: ids for d, ids in seen.items() if len(ids) > 1}
        assert twice == {}, (r.name, len(twice), sorted(twice.items())[:3])
        assert set(seen) == set(digests) | {last.digest}, (r.name, len(seen))


def test_a_tag_added_to_a_replicated_manifest_fires_where_it_takes_effect(geo, receivers):
    """A tag pushed in r1 for a manifest r2 already shows (the same manifest under a second
    tag, or a manifest pushed by digest and tagged later) takes effect in r2 when the tag
    event is applied there: r2's push webhook fires for it, once, as r1's does."""
    cluster = geo(2, extra_args=WEBHOOK_ARGS)
    a, b = cluster
    rcvs = receivers(cluster)
    create_hooks(cluster, rcvs)
    repo = unique_repo("hook-retag")
    oci = a.oci()

    img = oci.push_image(repo, "v1")
    wait_for(lambda: rcvs[b.name].events("push", img.digest), 90, "v1 to fire in r2")
    oci.push_manifest(repo, "v2", img.body, img.media_type)      # the same manifest again
    loose = oci.push_image(repo)                                  # by digest: no tag
    wait_for(lambda: rcvs[b.name].events("push", loose.digest), 90, "the digest push in r2")
    oci.push_manifest(repo, "late", loose.body, loose.media_type)  # tagged later
    for r in cluster:
        wait_for(lambda: len(rcvs[r.name].events("push")) >= 4, 90,
                 "the tags v2 and late to fire in %s" % r.name)
    # a last write, so that a duplicate of anything above would have arrived by now
    last = oci.push_image(repo, "last")
    for r in cluster:
        wait_for(lambda: rcvs[r.name].events("push", last.digest), 90,
                 "the last push to fire in %s" % r.name)

    for r in cluster:
        docs = [e["json"] for e in rcvs[r.name].events()]
        summary = sorted((d["action"], d["target"]["digest"], d["target"].get("tag") or "")
                         for d in docs)
        assert summary == sorted([("push", img.digest, "v1"), ("push", img.digest, "v2"),
                                  ("push", loose.digest, ""), ("push", loose.digest, "late"),
                                  ("push", last.digest, "last")]), (r.name, summary)
        assert len({d["id"] for d in docs}) == 5, (r.name, docs)
        for e in rcvs[r.name].events():
            assert e["visible"] == 200, (r.name, e["json"], e["visible"])
