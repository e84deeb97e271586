"""Faults of the S3 tier on a real Ceph RGW (issue 11 item 4): the server reaches RGW
through a fault proxy (faultproxy.py) that drops every connection for 10 s.

- While RGW is unreachable, pushes and pulls fail with a retryable answer: a 5xx with an
  OCI error body (never a 404 for a blob that exists, never a 2xx that is not whole), each
  within a bound; /readyz is 503 naming the blob store and /healthz stays 200.
- Nothing acknowledged is lost: every blob and manifest answered 201, before, during or
  after the outage, pulls afterwards with its exact bytes.
- The service resumes by itself (no restart) once RGW answers again.
- The file sweep of `gc run` while RGW is unreachable reports its listing failed (an
  error, `files_complete` false), not an empty store; healed, it sweeps.

And kill -9 of a node mid-upload: a chunked upload resumes on the restarted node from what
was acknowledged, a monolithic one cut short leaves nothing behind, and no half-written
blob is ever served.

With MERIDIAN_TEST_METASTORE=pg the servers keep their metadata in PostgreSQL too (the
whole scale-out tier)."""

import itertools
import os
import time
import urllib.parse

import pytest
import requests

import s3_blobstore
import tier
from conftest import assert_error, digest_of, random_bytes, wait_until
from fault_clients import ClientLoad, Recorder, pull_one, push_one
from faultproxy import FaultProxy

pytestmark = pytest.mark.skipif(not s3_blobstore.available(),
                                reason="no S3 server (S3_ENDPOINT) and no Ceph RGW to start")

OUTAGE_S = 10
REQUEST_BOUND_S = 15      # no request may take longer than this, outage or not


@pytest.fixture
def rgw_proxy():
    s = s3_blobstore.server()
    os.environ.update(s)
    u = urllib.parse.urlparse(s["S3_ENDPOINT"])
    p = FaultProxy(upstream=(u.hostname, u.port), name="rgw").start()
    yield p
    p.close()


def s3_server_args(data_dir, endpoint):
    return ("--blobstore", "s3://%s/%s" % (s3_blobstore.BUCKET, s3_blobstore.prefix_of(data_dir)),
            "--s3-endpoint", endpoint)


def readyz(url):
    r = requests.get(url + "/readyz", timeout=10)
    return r.status_code, r.json()


def test_rgw_unreachable_for_10s_pushes_and_pulls(server_factory, tmp_path, rgw_proxy):
    data = tmp_path / "data"
    srv = server_factory(*s3_server_args(data, rgw_proxy.url), data_dir=str(data))
    base = srv.url
    # Pulled throughout: one small and one large layer (several S3 reads each).
    big, small = random_bytes(3 * 1024 * 1024 + 5), random_bytes(4096)
    oci = srv.oci()
    pulled = {oci.push_blob("s3f/pull", big): big, oci.push_blob("s3f/pull", small): small}
    load = ClientLoad(base, "s3f/push", "s3f/pull", pulled).start()
    rec = load.rec
    after_tags = itertools.count()
    time.sleep(2)
    rgw_proxy.cut()
    cut_at = time.monotonic()
    try:
        # Readiness names the blob store within a couple of probes; liveness stays 200.
        wait_until(lambda: readyz(base)[0] == 503, timeout_s=5, what="/readyz 503")
        status, body = readyz(base)
        assert status == 503 and body["failed"] == ["blobstore"], body
        assert body["checks"]["metastore"] == {"ok": True}
        assert requests.get(base + "/healthz", timeout=10).status_code == 200
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
    finally:
        rgw_proxy.heal()
    healed_at = time.monotonic()
    # Recovery without a restart: /readyz, a push and a pull all succeed again.
    wait_until(lambda: readyz(base)[0] == 200, timeout_s=10, what="/readyz 200 after the heal")

    def fresh_push_works():
        return push_one(base, "s3f/after", "a%d" % next(after_tags), Recorder(), 10_000)
    wait_until(fresh_push_works, timeout_s=10, what="a push after the heal")
    recovered_s = time.monotonic() - healed_at
    wait_until(lambda: pull_one(base, "s3f/pull", pulled, Recorder()), timeout_s=10,
               what="a pull after the heal")
    time.sleep(2)  # the clients run on after the heal too
    load.stop()

    during = [r for r in rec.rows if cut_at + 0.5 <= r[0] <= healed_at]
    failed = load.failed()
    # The outage was seen by pushes and pulls alike.
    assert any(r[1].startswith("push") for r in failed if r in during), rec.rows[-40:]
    assert any(r[1].startswith("pull") for r in failed if r in during), rec.rows[-40:]
    for t, what, outcome, code, took in failed:
        # Retryable: a 5xx with an OCI error body (or a pull stream cut short). A 404 would
        # tell a client that a blob it pushed is gone.
        if isinstance(outcome, int):
            assert 500 <= outcome < 600 and code is not None, (what, outcome, code)
        else:
            assert what == "pull-blob", (what, outcome)
    # Error messages say what failed, never where: no endpoint, bucket or key.
    for body in rec.error_bodies:
        for secret in (str(rgw_proxy.port), s3_blobstore.BUCKET, "uploadId"):
            assert secret not in body, body
    slowest = max(r[4] for r in rec.rows)
    assert slowest < REQUEST_BOUND_S, sorted(rec.rows, key=lambda r: -r[4])[:5]
    # Nothing acknowledged is lost.
    assert rec.acked_manifests, "no push went through at all"
    load.assert_acked_all_there(srv.oci())
    print("S3 outage: %d requests, %d failed (%d during the outage), slowest %.2f s, "
          "a push went through %.2f s after the heal"
          % (len(rec.rows), len(failed), len([r for r in failed if r in during]), slowest,
             recovered_s))


def test_sweep_while_rgw_unreachable_reports_its_listing_failed(server_factory, tmp_path,
                                                                rgw_proxy):
    data = tmp_path / "data"
    srv = server_factory(*s3_server_args(data, rgw_proxy.url), "--gc-grace", "1s",
                         "--gc-interval", "1h", data_dir=str(data))
    stray = random_bytes(2000)
    d = digest_of(stray)
    key = "%s/blobs/sha256/%s" % (s3_blobstore.prefix_of(data), d.split(":")[1])
    assert s3_blobstore.request("PUT", key, stray)[0] == 200  # no row names it
    time.sleep(2.1)  # past the grace (LastModified has whole seconds)

    def gc_run():
        r = requests.post(srv.url + "/_meridian/v1/gc/run", params={"dry_run": "false"},
                          timeout=REQUEST_BOUND_S * 4)
        assert r.status_code == 200, r.text
        return r.json()
    rgw_proxy.cut()
    try:
        out = gc_run()
    finally:
        rgw_proxy.heal()
    assert out["errors"] == 1, out  # the listing; nothing else touched S3
    assert out["files_complete"] is False
    assert out["files"] == [] and out["files_removed"] == 0
    out = gc_run()
    assert out["files_complete"] is True and out["errors"] == 0, out
    assert out["files"] == [{"digest": d, "size": len(stray)}]


def start_body(url, method, path, total, send):
    """Opens a request with Content-Length total and sends only the first `send` bytes of
    a random body; returns (socket, the whole body) without reading an answer."""
    import socket
    u = urllib.parse.urlparse(url)
    body = random_bytes(total)
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    s.sendall(("%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/octet-stream\r\n"
               "Content-Length: %d\r\n\r\n" % (method, path, u.hostname, u.port, total)).encode())
    s.sendall(body[:send])
    return s, body


def multipart_uploads(prefix):
    """Multipart uploads S3 still holds under prefix (not completed, not aborted)."""
    status, body = s3_blobstore.request("GET", "", query="prefix=%s&uploads=" %
                                        urllib.parse.quote(prefix, safe=""))
    assert status == 200, body
    import re
    return re.findall(r"<Key>([^<]*)</Key>", body.decode())


def test_kill9_mid_upload_resumes_and_never_serves_half_a_blob(server_factory, tmp_path):
    """kill -9 while three uploads stream their bytes into S3 (each past the 16 MiB a
    request stages, so a multipart upload of its chunk is open): a chunked session goes on
    from the size acknowledged before; the two cut monolithic pushes leave no blob; no
    multipart upload is left behind once the sessions are gone."""
    data = tmp_path / "data"
    os.environ.update(s3_blobstore.server())
    srv = server_factory(*s3_server_args(data, s3_blobstore.server()["S3_ENDPOINT"]),
                         data_dir=str(data))
    oci = srv.oci()
    repo = "s3f/kill"
    mib = 1024 * 1024
    # 1. a chunked upload with 6 MiB acknowledged, then a PATCH of 40 MiB cut at 24 MiB
    layer = random_bytes(46 * mib)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=layer[:6 * mib], headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202 and r.headers["Range"] == "0-%d" % (6 * mib - 1)
    loc = r.headers["Location"]
    cut_patch, _ = start_body(srv.url, "PATCH", loc, 40 * mib, 24 * mib)
    # 2. POST + PUT ?digest= with its body cut at 20 MiB of 30
    mono = random_bytes(30 * mib)
    loc2 = oci.start_upload(repo).headers["Location"]
    sep = "&" if "?" in loc2 else "?"
    cut_put, _ = start_body(srv.url, "PUT", loc2 + sep + "digest=" + digest_of(mono),
                            30 * mib, 20 * mib)
    # 3. a single-request POST ?digest= cut at 18 MiB of 25
    single = random_bytes(25 * mib)
    cut_post, _ = start_body(srv.url, "POST", "/v2/%s/blobs/uploads/?digest=%s"
                             % (repo, digest_of(single)), 25 * mib, 18 * mib)
    prefix = s3_blobstore.prefix_of(data) + "/uploads/"
    wait_until(lambda: len(multipart_uploads(prefix)) >= 3, timeout_s=30,
               what="three chunks being built by multipart uploads")
    srv.kill()
    for s in (cut_patch, cut_put, cut_post):
        s.close()
    srv.start()
    oci = srv.oci()
    # No half-written blob is served, before or after the sessions are finished.
    for d in (digest_of(layer), digest_of(mono), digest_of(single)):
        assert_error(oci.get(oci.blob_path(repo, d)), 404, "BLOB_UNKNOWN")
    # The chunked session resumes at what was acknowledged.
    r = oci.get(loc)
    assert r.status_code == 204 and r.headers["Range"] == "0-%d" % (6 * mib - 1), r.headers
    r = oci.patch(loc, data=layer[6 * mib:], headers={"Content-Type": "application/octet-stream",
                                                      "Content-Range": "%d-%d" % (
                                                          6 * mib, len(layer) - 1)})
    assert r.status_code == 202, r.text
    sep = "&" if "?" in r.headers["Location"] else "?"
    r = oci.put(r.headers["Location"] + sep + "digest=" + digest_of(layer))
    assert r.status_code == 201, r.text
    r = oci.get(oci.blob_path(repo, digest_of(layer)))
    assert r.status_code == 200 and r.content == layer
    # The cut monolithic session is cancelled by its client; the single POST's session
    # went at the restart (SQLite) or goes at the sweeps after it (a shared metastore:
    # another node's may be in flight, so only once no request holds it; its expiry, set
    # when it was made, is a day away). Nothing of theirs stays in the bucket.
    assert oci.delete(loc2).status_code == 204
    for d in (digest_of(mono), digest_of(single)):
        assert_error(oci.get(oci.blob_path(repo, d)), 404, "BLOB_UNKNOWN")
    if not tier.on_sqlite():
        assert s3_blobstore.list_keys(prefix), "the cut POST's session went at the restart"
        srv.stop()
        srv.extra_args += ["--upload-sweep-interval", "1"]
        srv.start()
        wait_until(lambda: s3_blobstore.list_keys(prefix) == [], timeout_s=30,
                   what="the sweep to remove the cut POST's session")
    assert s3_blobstore.list_keys(prefix) == []
    assert multipart_uploads(prefix) == []
