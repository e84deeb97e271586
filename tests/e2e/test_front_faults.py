"""The front under faults between it and a region (docs/front.md, "Uploads stay in one
region"): what a client sees when the region its upload session lives in is killed or
black-holed. The front reaches each region through the region's fault proxy here, so a
black hole between the front and a region can be made (faultproxy.py)."""

import http.client
import json
import os
import time
from types import SimpleNamespace

from regions import MT_OCI_MANIFEST, sha256_digest, unique_repo, wait_converged
from test_front import (FRONT_HOST, NET_R1, config_and_manifest, front,  # noqa: F401
                        push_blob, request)

pytest_plugins = ["geo_plugin"]

OCTET = {"Content-Type": "application/octet-stream"}


def via_proxies(cluster):
    """The regions as the front sees them: through their fault proxies."""
    return [SimpleNamespace(name=r.name, url=r.proxy.url) for r in cluster]


def start_upload(f, repo):
    status, h, body = request(f, "POST", "/v2/%s/blobs/uploads/" % repo, source=NET_R1)
    assert status == 202 and h["meridian-region"] == "r1", (status, body)
    assert "_region=r1" in h["location"]
    return h["location"]


def assert_upload_unknown(status, h, body):
    assert status == 404, (status, body)
    assert json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    assert h["docker-distribution-api-version"] == "registry/2.0"


def test_upload_pinned_to_a_killed_region_is_unknown_at_once(geo, front):
    """The session's region is gone (kill -9): its PATCH, PUT and status GET are answered
    404 BLOB_UPLOAD_UNKNOWN by the front at once (never sent to another region), so the
    client starts the upload again, and the new upload lands in a live region."""
    cluster = geo(2)
    r1, r2 = cluster
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1")])
    repo = unique_repo("pindead")
    loc = start_upload(f, repo)
    r1.kill9()
    data = b"x" * 1000
    sep = "&" if "?" in loc else "?"
    for method, target, body in (("PATCH", loc, data), ("GET", loc, None),
                                 ("PUT", loc + sep + "digest=" + sha256_digest(data), data)):
        t0 = time.monotonic()
        status, h, resp = request(f, method, target, source=NET_R1, body=body, headers=OCTET)
        assert_upload_unknown(status, h, resp)
        assert "meridian-region" not in h
        assert time.monotonic() - t0 < 2, method
    # Restarting the upload works, in r2.
    status, h, body = request(f, "POST", "/v2/%s/blobs/uploads/" % repo, source=NET_R1)
    assert status == 202 and h["meridian-region"] == "r2", (status, body)
    r1.start()


def test_upload_pinned_to_a_blackholed_region_does_not_hang(geo, front):
    """The link to r1 is black-holed (connections accepted, no byte moves). A GET sent to
    r1 just then is served by r2 once the probes take r1 out of rotation (about a second),
    not after the front's 60 s stall bound; and the requests of an upload session pinned
    to r1 are 404 BLOB_UPLOAD_UNKNOWN from the front at once, body or not."""
    cluster = geo(2)
    r1, r2 = cluster
    f = front(via_proxies(cluster), routes=[("127.0.5.0/24", "r1")],
              extra=["--probe-interval", "500"])
    repo = unique_repo("pinhole")
    loc = start_upload(f, repo)
    r1.proxy.blackhole()
    t0 = time.monotonic()
    status, h, body = request(f, "GET", "/v2/", source=NET_R1, timeout_s=30)
    assert status == 200 and h["meridian-region"] == "r2", (status, body)
    assert time.monotonic() - t0 < 5
    for method, body in (("PATCH", b"y" * 70_000), ("GET", None)):
        t0 = time.monotonic()
        status, h, resp = request(f, method, loc, source=NET_R1, body=body, headers=OCTET,
                                  timeout_s=30)
        assert_upload_unknown(status, h, resp)
        assert time.monotonic() - t0 < 2, method
    r1.proxy.heal()


def test_blob_get_broken_by_a_blackhole_ends_soon_and_resumes_elsewhere(geo, front):
    """A large blob GET is streaming from r1 when the link to r1 is black-holed: the
    client's transfer ends short within seconds (not after the 60 s stall bound), and
    its Range request for the rest is served by r2; the bytes put together are the blob."""
    cluster = geo(2)
    r1, r2 = cluster
    f = front(via_proxies(cluster), routes=[("127.0.5.0/24", "r1")],
              extra=["--probe-interval", "500"])
    repo = unique_repo("blobhole")
    blob = os.urandom(24 << 20)
    digest = sha256_digest(blob)
    assert push_blob(f, repo, blob, NET_R1) == "r1"
    config, manifest = config_and_manifest(digest, len(blob))
    assert push_blob(f, repo, config, NET_R1) == "r1"
    status, _, body = request(f, "PUT", "/v2/%s/manifests/v1" % repo, source=NET_R1,
                              body=manifest, headers={"Content-Type": MT_OCI_MANIFEST})
    assert status == 201, body
    wait_converged([r1, r2], repos=[repo], expect={repo: {"v1": sha256_digest(manifest)}})
    r1.proxy.bandwidth(2 << 20)   # a transfer that takes a while
    conn = http.client.HTTPConnection(FRONT_HOST, f.port, timeout=30,
                                      source_address=(NET_R1, 0))
    try:
        conn.request("GET", "/v2/%s/blobs/%s" % (repo, digest))
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Meridian-Region") == "r1"
        assert int(resp.getheader("Content-Length")) == len(blob)
        got = resp.read(1 << 20)
        r1.proxy.blackhole()
        t0 = time.monotonic()
        while True:
            try:
                part = resp.read1(1 << 20)
            except http.client.IncompleteRead as e:
                part = e.partial
                got += part
                break
            if not part:
                break
            got += part
        assert time.monotonic() - t0 < 10
    finally:
        conn.close()
    assert 0 < len(got) < len(blob)
    status, h, rest = request(f, "GET", "/v2/%s/blobs/%s" % (repo, digest), source=NET_R1,
                              headers={"Range": "bytes=%d-" % len(got)})
    assert status == 206 and h["meridian-region"] == "r2", (status, h)
    assert h["content-range"] == "bytes %d-%d/%d" % (len(got), len(blob) - 1, len(blob))
    assert sha256_digest(got + rest) == digest
    r1.proxy.heal()
