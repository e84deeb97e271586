"""The front under faults between it and a region (docs/front.md, "Health" and "Uploads
stay in one region"): what a client sees when a region is killed (kill -9) or black-holed
in the middle of its requests (a pinned upload, a monolithic upload, a chunked PATCH, a
large blob GET resumed with Range), real clients with their region down, a region back
from a black hole, and absolute Locations. The front reaches each region through the
region's fault proxy where a black hole is needed (faultproxy.py)."""

import http.client
import json
import os
import re
import threading
import time
from types import SimpleNamespace

import pytest

from clients_helpers import OciLayout, clients, tool_missing  # noqa: F401
from regions import MT_OCI_MANIFEST, sha256_digest, unique_repo, wait_converged
from test_front import (FRONT_HOST, NET_R1, FramingRegion, config_and_manifest,  # noqa: F401
                        front, push_blob, request)

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


def test_requests_with_a_body_to_a_region_blackholed_in_flight_end_within_seconds(geo, front):
    """Requests with a body sent to r1 as its link is black-holed (the region holds them,
    never answers) end once the probes take r1 out of rotation, not after the front's
    60 s stall bound: a monolithic upload gets 503 UNAVAILABLE (and its retry is stored by
    r2), a chunk of an upload pinned to r1 gets 404 BLOB_UPLOAD_UNKNOWN. Neither is a
    success for something not stored."""
    cluster = geo(2)
    r1, r2 = cluster
    f = front(via_proxies(cluster), routes=[("127.0.5.0/24", "r1")],
              extra=["--probe-interval", "2000"])
    repo = unique_repo("bodyhole")
    loc = start_upload(f, repo)
    blob = os.urandom(1 << 20)
    mono = "/v2/%s/blobs/uploads/?digest=%s" % (repo, sha256_digest(blob))
    r1.proxy.blackhole()
    results = {}

    def send(name, method, target):
        t0 = time.monotonic()
        results[name] = request(f, method, target, source=NET_R1, body=blob, headers=OCTET,
                                timeout_s=30) + (time.monotonic() - t0,)
    threads = [threading.Thread(target=send, args=("patch", "PATCH", loc)),
               threading.Thread(target=send, args=("mono", "POST", mono))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status, h, body, took = results["mono"]
    assert status == 503, (status, body)
    assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    assert took < 10, took
    status, h, body, took = results["patch"]
    assert_upload_unknown(status, h, body)
    assert took < 10, took
    # The client's retry lands in r2, which stores the blob.
    status, h, body = request(f, "POST", mono, source=NET_R1, body=blob, headers=OCTET)
    assert status == 201 and h["meridian-region"] == "r2", (status, body)
    status, h, _ = request(f, "HEAD", "/v2/%s/blobs/%s" % (repo, sha256_digest(blob)),
                           source=NET_R1)
    assert status == 200 and h["meridian-region"] == "r2"
    r1.proxy.heal()


@pytest.mark.skipif(tool_missing("skopeo") or tool_missing("podman"),
                    reason="skopeo or podman is not installed")
def test_skopeo_and_podman_through_the_front_with_a_region_down(geo, front, clients,  # noqa: F811
                                                                 tmp_path):
    """Real clients through the front while the region they are routed to is down: with r1
    killed (kill -9), skopeo pushes and podman pulls; with r1 back (in rotation again) and
    then its link black-holed just before, podman pushes the image under another tag and
    skopeo pulls it. r2 serves each time; nothing is left to the 60 s stall bound."""
    cluster = geo(2)
    r1, r2 = cluster
    # The clients connect from 127.0.0.1: routed to r1 while it is healthy.
    f = front(via_proxies(cluster), routes=[("127.0.0.1/32", "r1")],
              extra=["--probe-interval", "500"])
    repo = unique_repo("down")
    src = OciLayout(tmp_path / "src")
    desc, _ = src.add_image([{"a/data.bin": os.urandom(2 << 20), "a/hi.txt": b"down\n"}])
    src.tag(desc, "v1")
    r1.kill9()
    t0 = time.monotonic()
    clients.skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", src.ref("v1"),
                   "docker://%s/%s:v1" % (f.hostport, repo))
    clients.podman("pull", "--tls-verify=false", "%s/%s:v1" % (f.hostport, repo))
    r1.start()
    wait_converged([r1, r2], repos=[repo])
    deadline = time.monotonic() + 10
    while request(f, "GET", "/v2/", source="127.0.0.1")[1].get("meridian-region") != "r1":
        assert time.monotonic() < deadline, "r1 not back in rotation"
        time.sleep(0.1)
    r1.proxy.blackhole()
    clients.podman("push", "--tls-verify=false", "%s/%s:v1" % (f.hostport, repo),
                   "docker://%s/%s:v2" % (f.hostport, repo))
    dst = OciLayout(tmp_path / "dst")
    clients.skopeo("copy", "--src-tls-verify=false",
                   "docker://%s/%s:v2" % (f.hostport, repo), dst.ref("v2"))
    assert len(dst.closure(dst.resolve("v2")["digest"])) == 3  # manifest, config, layer
    assert time.monotonic() - t0 < 60
    r1.proxy.heal()
    with open(f.log_path, errors="replace") as log:
        text = log.read()
    assert text.count("region r1 out of rotation") >= 2, text[-3000:]
    assert re.search(r"method=PUT path=/v2/%s/manifests/v2 status=201" % repo, text)


def test_region_back_from_a_blackhole_serves_at_once(geo, front):
    """A black hole that heals leaves the connections it froze dead (as a NAT that lost its
    state does): the front must not reuse the kept-alive ones it had to r1 when r1 is back
    in rotation, or each would hold a request for the 60 s stall bound."""
    cluster = geo(2)
    r1, r2 = cluster
    f = front(via_proxies(cluster), routes=[("127.0.5.0/24", "r1")],
              extra=["--probe-interval", "500"])
    # Several kept-alive connections to r1 in the front's pool.
    results = []

    repo = unique_repo("healed")

    def get():
        results.append(request(f, "GET", "/v2/", source=NET_R1))
        results.append(request(f, "POST", "/v2/%s/blobs/uploads/" % repo, source=NET_R1,
                               body=b"z", headers=OCTET))
    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s in (200, 202) and h["meridian-region"] == "r1" for s, h, _ in results)
    r1.proxy.blackhole()
    deadline = time.monotonic() + 10
    while request(f, "GET", "/v2/", source=NET_R1, timeout_s=30)[1].get("meridian-region") != "r2":
        assert time.monotonic() < deadline, "r1 still in rotation"
    r1.proxy.heal()
    deadline = time.monotonic() + 10
    while True:
        t0 = time.monotonic()
        status, h, _ = request(f, "GET", "/v2/", source=NET_R1, timeout_s=30)
        assert time.monotonic() - t0 < 3, "a request waited on a dead kept-alive connection"
        if h.get("meridian-region") == "r1":
            break
        assert time.monotonic() < deadline, "r1 not back in rotation"
        time.sleep(0.05)
    for _ in range(20):
        t0 = time.monotonic()
        status, h, _ = request(f, "GET", "/v2/", source=NET_R1, timeout_s=30)
        assert status == 200 and time.monotonic() - t0 < 3, (status, h)
        # Requests with a body too (relayed through libcurl's connections).
        status, h, _ = request(f, "POST", "/v2/%s/blobs/uploads/" % repo, source=NET_R1,
                               body=b"z", headers=OCTET, timeout_s=30)
        assert status == 202 and time.monotonic() - t0 < 3, (status, h)


def test_chunked_upload_whose_region_is_killed_mid_body_restarts_elsewhere(geo, front):
    """A PATCH streamed with Transfer-Encoding: chunked (as podman and buildah send it) is
    half through when its region is killed (kill -9): the client gets 404
    BLOB_UPLOAD_UNKNOWN, never a success; the upload started again lands in r2, and the
    blob it stores there is whole."""
    cluster = geo(2)
    r1, r2 = cluster
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1")])
    repo = unique_repo("chunkkill")
    blob = os.urandom(4 << 20)
    loc = start_upload(f, repo)

    def body():
        for k in range(0, len(blob), 256 << 10):
            if k == 1 << 20:
                r1.kill9()
                time.sleep(0.3)   # the front's relay sees the region gone mid-body
            yield blob[k:k + (256 << 10)]
    conn = http.client.HTTPConnection(FRONT_HOST, f.port, timeout=30,
                                      source_address=(NET_R1, 0))
    try:
        conn.request("PATCH", loc, body=body(), headers=OCTET, encode_chunked=True)
        resp = conn.getresponse()
        status, h, data = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
    assert_upload_unknown(status, h, data)
    status, h, data = request(f, "POST", "/v2/%s/blobs/uploads/" % repo, source=NET_R1)
    assert status == 202 and h["meridian-region"] == "r2", (status, data)
    loc = h["location"]
    sep = "&" if "?" in loc else "?"
    status, h, data = request(f, "PUT", loc + sep + "digest=" + sha256_digest(blob),
                              source=NET_R1, body=blob, headers=OCTET)
    assert status == 201 and h["meridian-region"] == "r2", (status, data)
    status, h, data = request(f, "GET", "/v2/%s/blobs/%s" % (repo, sha256_digest(blob)),
                              source=NET_R1)
    assert status == 200 and sha256_digest(data) == sha256_digest(blob)
    r1.start()


class AbsoluteLocationRegion(FramingRegion):
    """A stand-in region that names itself in absolute Locations (as a registry configured
    with its own URL does), with a query string of its own."""

    def answer(self, conn, method, target):
        if target == "/readyz":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        elif method == "POST" and target == "/v2/a/app/blobs/uploads/":
            conn.sendall(b"HTTP/1.1 202 Accepted\r\nLocation: %s/v2/a/app/blobs/uploads/u1"
                         b"?state=s%%3D1\r\nContent-Length: 0\r\n\r\n" % self.url.encode())
        elif method == "GET" and target == "/v2/a/app/manifests/v1":
            conn.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: %s/v2/a/app/manifests/"
                         b"sha256:ab?x=1\r\nContent-Length: 0\r\n\r\n" % self.url.encode())
        elif method == "GET" and target == "/v2/a/app/blobs/sha256:cd":
            conn.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://data.example:5001"
                         b"/v2/a/app/blobs/sha256:cd?sig=1\r\nContent-Length: 0\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True


def test_absolute_locations_naming_the_region_are_made_relative(front):
    """A Location under the region's own URL would send the client around the front,
    straight to the region (and an upload past its pin): the front makes it relative,
    keeping its query (and pins an upload's); a Location elsewhere (a data endpoint) is
    passed on as it is."""
    region = AbsoluteLocationRegion("abs")
    try:
        f = front([region])
        status, h, _ = request(f, "POST", "/v2/a/app/blobs/uploads/")
        assert status == 202
        assert h["location"] == "/v2/a/app/blobs/uploads/u1?state=s%3D1&_region=abs", h
        status, h, _ = request(f, "GET", "/v2/a/app/manifests/v1")
        assert status == 307 and h["location"] == "/v2/a/app/manifests/sha256:ab?x=1", h
        status, h, _ = request(f, "GET", "/v2/a/app/blobs/sha256:cd")
        assert status == 307, h
        assert h["location"] == "http://data.example:5001/v2/a/app/blobs/sha256:cd?sig=1", h
    finally:
        region.close()


@pytest.mark.skipif(tool_missing("skopeo") or tool_missing("podman"),
                    reason="skopeo or podman is not installed")
def test_podman_push_survives_its_region_killed_mid_layer(geo, front, clients,  # noqa: F811
                                                          tmp_path):
    """podman pushes a 16 MiB layer through the front (a chunked PATCH) and the region is
    killed once 4 MiB of it are in: the front answers 404 BLOB_UPLOAD_UNKNOWN, podman retries the
    copy and the push completes in r2. (With the old 503, podman 4.3 gave up: "received
    unexpected HTTP status: 503 Service Unavailable".)"""
    cluster = geo(2)
    r1, r2 = cluster
    f = front(via_proxies(cluster), routes=[("127.0.0.1/32", "r1")],
              extra=["--probe-interval", "500"])
    repo = unique_repo("podkill")
    src = OciLayout(tmp_path / "src")
    desc, _ = src.add_image([{"a/data.bin": os.urandom(16 << 20)}])
    src.tag(desc, "v1")
    clients.skopeo("copy", src.ref("v1"), "containers-storage:[vfs@%s+%s]localhost/pk:v1"
                   % (clients.storage[1], clients.runroot))
    r1.proxy.bandwidth(4 << 20)   # the layer takes about 4 s to go up
    before = r1.proxy.stats()["up"]

    def kill_mid_layer():   # once 4 MiB of the layer have reached r1
        deadline = time.monotonic() + 120
        while r1.proxy.stats()["up"] - before < (4 << 20) and time.monotonic() < deadline:
            time.sleep(0.02)
        r1.kill9()
    killer = threading.Thread(target=kill_mid_layer)
    killer.start()
    try:
        clients.podman("push", "--tls-verify=false", "localhost/pk:v1",
                       "docker://%s/%s:v1" % (f.hostport, repo))
    finally:
        killer.join()
    with open(f.log_path, errors="replace") as log:
        text = log.read()
    assert re.search(r"method=PATCH path=/v2/%s/blobs/uploads/\S+ status=404" % repo, text)
    assert re.search(r"method=PUT path=/v2/%s/manifests/v1 status=201" % repo, text)
    status, h, _ = request(f, "GET", "/v2/%s/manifests/v1" % repo, source="127.0.0.1",
                           headers={"Accept": MT_OCI_MANIFEST})
    assert status == 200 and h["meridian-region"] == "r2"
