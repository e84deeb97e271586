"""Pulls that never miss (issue 14, item 3; docs/front.md, docs/replication.md): a manifest
or tag pushed to one region a moment ago is served by another region to its clients at once,
with 50 ms (each way) between the regions (the fault proxies): the region looks the
reference up in its peers, keeps what it finds (blobs linked in the repository before the
manifest shows), and serves it. Concurrent misses make one lookup; a true 404 stays bounded
by one round trip to the peers.
"""

import json
import os
import re
import threading
import time

import requests

from regions import MANIFEST_ACCEPT, sha256_digest, unique_repo
from test_front import (NET_R1, NET_R2, config_and_manifest, front, push_blob,  # noqa: F401
                        request)

pytest_plugins = ["geo_plugin"]

FAR_MS = 50


def far_apart(cluster):
    for r in cluster:
        r.proxy.latency(FAR_MS)


def lookups(region):
    text = requests.get(region.url + "/metrics", timeout=30).text
    m = re.search(r"^meridian_pull_through_lookups_total (\d+)", text, re.M)
    assert m, "no meridian_pull_through_lookups_total in /metrics"
    return int(m.group(1))


def push_image(f, repo, tag, source):
    layer = os.urandom(300_000)
    layer_digest = sha256_digest(layer)
    assert push_blob(f, repo, layer, source) == "r1"
    config, manifest = config_and_manifest(layer_digest, len(layer))
    assert push_blob(f, repo, config, source) == "r1"
    status, h, body = request(f, "PUT", "/v2/%s/manifests/%s" % (repo, tag), source=source,
                              body=manifest, headers={"Content-Type": MT_OCI_MANIFEST_})
    assert status == 201 and h["meridian-region"] == "r1", (status, body)
    return manifest, [sha256_digest(config), layer_digest]


MT_OCI_MANIFEST_ = "application/vnd.oci.image.manifest.v1+json"


def test_immediate_cross_region_pull_of_a_just_pushed_tag(geo, front):  # noqa: F811
    """Pushed through the front to r1, pulled through the front by a client routed to r2
    right after: the tag, the manifest by digest and every blob answer 200 from r2, and r2
    itself answers HEAD for each blob (visible means pullable, also straight after)."""
    cluster = geo(2)
    r1, r2 = cluster
    far_apart(cluster)
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2")])
    repo = unique_repo("instant")
    for trial in range(5):
        tag = "v%d" % trial
        manifest, blobs = push_image(f, repo, tag, NET_R1)
        status, h, body = request(f, "GET", "/v2/%s/manifests/%s" % (repo, tag), source=NET_R2,
                                  headers={"Accept": MANIFEST_ACCEPT})
        assert status == 200, (trial, status, body[:300])
        assert h["meridian-region"] == "r2" and body == manifest
        for d in blobs:
            status, _, _ = request(f, "HEAD", "/v2/%s/blobs/%s" % (repo, d), source=NET_R2)
            assert status == 200, (trial, d)
            assert requests.head(r2.url + "/v2/%s/blobs/%s" % (repo, d), timeout=30).ok
        status, h, body = request(f, "GET", "/v2/%s/manifests/%s" % (repo, sha256_digest(manifest)),
                                  source=NET_R2)
        assert status == 200 and body == manifest


def test_pull_of_a_digest_only_pushed_elsewhere(geo, front):  # noqa: F811
    """A manifest pushed by digest (no tag) to r1 is served by r2 by digest at once."""
    cluster = geo(2)
    r1, r2 = cluster
    far_apart(cluster)
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2")])
    repo = unique_repo("bydigest")
    layer = os.urandom(100_000)
    assert push_blob(f, repo, layer, NET_R1) == "r1"
    config, manifest = config_and_manifest(sha256_digest(layer), len(layer))
    assert push_blob(f, repo, config, NET_R1) == "r1"
    d = sha256_digest(manifest)
    status, _, body = request(f, "PUT", "/v2/%s/manifests/%s" % (repo, d), source=NET_R1,
                              body=manifest, headers={"Content-Type": MT_OCI_MANIFEST_})
    assert status == 201, body
    status, h, body = request(f, "GET", "/v2/%s/manifests/%s" % (repo, d), source=NET_R2)
    assert status == 200 and h["meridian-region"] == "r2" and body == manifest


def test_concurrent_misses_of_one_tag_make_one_lookup(geo, front):  # noqa: F811
    """Two hundred clients routed to r2 ask for a tag pushed to r1 a moment ago, at once:
    all get it, r2 looked it up in its peers once, and r1 sent each blob once."""
    # Behind a front, regions see one client address (docs/front.md): no per-address cap.
    cluster = geo(2, extra_args=["--conn-limit-per-ip", "0"])
    r1, r2 = cluster
    far_apart(cluster)
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2")],
              extra=["--conn-limit-per-ip", "0"])
    repo = unique_repo("herd")
    before = lookups(r2)
    go = threading.Event()
    results = []

    def pull():
        go.wait()
        results.append(request(f, "GET", "/v2/%s/manifests/v1" % repo, source=NET_R2,
                               headers={"Accept": MANIFEST_ACCEPT}, timeout_s=60))
    threads = [threading.Thread(target=pull) for _ in range(200)]
    for t in threads:
        t.start()
    manifest, blobs = push_image(f, repo, "v1", NET_R1)
    go.set()
    for t in threads:
        t.join()
    assert len(results) == 200
    for status, h, body in results:
        assert status == 200, (status, body[:300])
        assert h["meridian-region"] == "r2" and body == manifest
    assert lookups(r2) - before == 1
    log = r1.log_text()
    for d in blobs:
        path = "/v2/%s/blobs/%s" % (repo, d)
        assert log.count("method=GET path=%s status=200" % path) == 1, d


def test_true_404_stays_fast(geo, front):  # noqa: F811
    """A tag no region has is a 404 after one round trip to the peer (not after the
    replication lag), and a hung peer does not hold it beyond its bound."""
    cluster = geo(2)
    r1, r2 = cluster
    far_apart(cluster)
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2")])
    repo = unique_repo("absent")
    push_image(f, repo, "v1", NET_R1)
    for _ in range(3):
        t0 = time.monotonic()
        status, h, body = request(f, "GET", "/v2/%s/manifests/nope" % repo, source=NET_R2)
        took = time.monotonic() - t0
        assert status == 404 and h["meridian-region"] == "r2"
        assert json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        # one round trip (0.1 s) to the peer; the rest is slack for a loaded machine
        assert took < 2 * FAR_MS / 1000 + 0.6, took
    r1.sigstop()
    try:
        t0 = time.monotonic()
        status, _, _ = request(f, "GET", "/v2/%s/manifests/nope2" % repo, source=NET_R2)
        took = time.monotonic() - t0
        assert status == 404
        # bounded by twice the peer's round trip plus 0.5 s, not by connect or read timeouts
        assert took < 4 * FAR_MS / 1000 + 0.5 + 0.4, took
    finally:
        r1.sigcont()
