"""Concurrency: the same layer pushed by 20 clients at once is stored once and
pullable; racing tag updates leave one consistent winner; racing chunks on one
session never corrupt it; reads proceed while a large upload streams."""

import hashlib
import http.client
import threading
import time

import requests

import tier
from conftest import (MT_OCI_MANIFEST, OCI, canonical_json, digest_of, random_bytes)

N = 20


def run_threads(n, fn):
    """Runs fn(i, barrier) in n threads released together; returns results in order
    and re-raises the first exception."""
    barrier = threading.Barrier(n)
    results = [None] * n
    errors = []

    def body(i):
        try:
            results[i] = fn(i, barrier)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((i, e))

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "threads hung"
    if errors:
        raise errors[0][1]
    return results


def test_same_layer_pushed_by_20_clients_is_stored_once(registry, repo):
    layer = random_bytes(512 * 1024 + 17)
    d = digest_of(layer)
    repos = [repo + "/r%d" % (i % 4) for i in range(N)]
    flows = ["post_put", "chunked", "stream", "post"]

    def push(i, barrier):
        c = OCI(registry.url)
        barrier.wait()
        return c.push_blob(repos[i], layer, how=flows[i % 4], chunk_size=128 * 1024)

    assert run_threads(N, push) == [d] * N
    c = OCI(registry.url)
    for r in set(repos):
        assert c.get_blob(r, d) == layer
    files = registry.blob_files(d.split(":")[1])
    assert len(files) == 1, files
    assert hashlib.sha256(tier.stored_bytes(files[0])).hexdigest() == d.split(":")[1]

    # and 20 manifests referencing it, pushed at once, are all accepted and pullable
    cfgs = [canonical_json({"architecture": "amd64", "os": "linux", "i": i}) for i in range(N)]
    for i, cfg in enumerate(cfgs):
        c.push_blob(repos[i], cfg)

    def put_manifest(i, barrier):
        cc = OCI(registry.url)
        body = canonical_json({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest_of(cfgs[i]), "size": len(cfgs[i])},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": d, "size": len(layer)}]})
        barrier.wait()
        r = cc.put_manifest(repos[i], "t%02d" % i, body, MT_OCI_MANIFEST)
        assert r.status_code == 201, (r.status_code, r.text)
        return body

    bodies = run_threads(N, put_manifest)
    for i, body in enumerate(bodies):
        assert c.get_manifest(repos[i], "t%02d" % i).content == body
    for r in set(repos):
        assert len(c.tag_list(r)) == N // 4


def test_concurrent_tag_updates_leave_one_consistent_winner(registry, repo):
    c = OCI(registry.url)
    images = [c.push_image(repo, layers=1, layer_size=64) for _ in range(N)]
    candidates = {img.digest: img.body for img in images}
    for rnd in range(3):
        tag = "race%d" % rnd

        def put(i, barrier):
            cc = OCI(registry.url)
            barrier.wait()
            r = cc.put_manifest(repo, tag, images[i].body, MT_OCI_MANIFEST)
            assert r.status_code == 201, (r.status_code, r.text)

        run_threads(N, put)
        seen = set()
        for _ in range(5):
            for method in ("GET", "HEAD"):
                r = c.get_manifest(repo, tag, method=method)
                assert r.status_code == 200
                dig = r.headers.get("Docker-Content-Digest")
                assert dig in candidates, dig
                if method == "GET":
                    assert r.content == candidates[dig]
                    assert digest_of(r.content) == dig
                seen.add(dig)
        assert len(seen) == 1, "the tag flips between %s" % seen
    tags = c.tag_list(repo)
    assert sorted(tags) == ["race0", "race1", "race2"]


def test_racing_chunks_on_one_session_do_not_corrupt_it(registry, repo):
    c = OCI(registry.url)
    loc = c.start_upload(repo).headers["Location"]
    chunks = [random_bytes(64 * 1024) for _ in range(6)]

    def patch(i, barrier):
        cc = OCI(registry.url)
        barrier.wait()
        r = cc.patch(loc, data=chunks[i], headers={"Content-Type": "application/octet-stream",
                                                   "Content-Range": "0-%d" % (64 * 1024 - 1)})
        # the losers are refused: 416 (offset moved on) or 400 BLOB_UPLOAD_INVALID
        # (session busy); what matters is that exactly one chunk lands
        assert r.status_code in (202, 416, 400), (r.status_code, r.text)
        if r.status_code == 400:
            assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID", r.text
        return r.status_code

    statuses = run_threads(len(chunks), patch)
    assert statuses.count(202) == 1, statuses
    st = c.get(loc)
    assert st.status_code == 204
    assert st.headers.get("Range") == "0-%d" % (64 * 1024 - 1)
    winner = chunks[statuses.index(202)]
    r = c.put(st.headers["Location"], params={"digest": digest_of(winner)}, data=b"")
    assert r.status_code == 201, r.text
    assert c.get_blob(repo, digest_of(winner)) == winner


def test_concurrent_distinct_uploads_interleave(registry, repo):
    blobs = [random_bytes(200 * 1024 + i) for i in range(10)]

    def push(i, barrier):
        cc = OCI(registry.url)
        barrier.wait()
        return cc.push_blob(repo, blobs[i], how="chunked", chunk_size=32 * 1024)

    digests = run_threads(len(blobs), push)
    c = OCI(registry.url)
    for b, d in zip(blobs, digests):
        assert c.get_blob(repo, d) == b


def test_reads_proceed_while_a_large_upload_streams(registry, repo):
    c = OCI(registry.url)
    img = c.push_image(repo, tag="live", layers=1, layer_size=100 * 1024)
    size = 48 * 1024 * 1024
    piece = random_bytes(1024 * 1024)
    h = hashlib.sha256()
    for _ in range(size // len(piece)):
        h.update(piece)
    big_digest = "sha256:" + h.hexdigest()

    loc = c.start_upload(repo).headers["Location"]
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=120)
    sep = "&" if "?" in loc else "?"
    conn.putrequest("PUT", "%s%sdigest=%s" % (loc, sep, big_digest))
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    sent = 0
    for _ in range(8):  # first 8 MiB, then hold the request open
        conn.send(piece)
        sent += len(piece)

    # while the upload is mid-body, other clients are served promptly
    def timed(fn):
        t0 = time.monotonic()
        out = fn()
        assert time.monotonic() - t0 < 5, "request stalled behind the upload"
        return out

    for _ in range(5):
        assert timed(lambda: requests.get(registry.url + "/v2/", timeout=10)).status_code == 200
        r = timed(lambda: c.get_manifest(repo, "live"))
        assert r.status_code == 200 and r.content == img.body
        for d, b in img.blobs.items():
            assert timed(lambda: c.get_blob(repo, d)) == b
        small = random_bytes(1000)
        assert timed(lambda: c.push_blob(repo, small)) == digest_of(small)
    assert not c.blob_exists(repo, big_digest)

    while sent < size:
        conn.send(piece)
        sent += len(piece)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 201, resp.status
    r = c.head(c.blob_path(repo, big_digest))
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == size
    g = c.get(c.blob_path(repo, big_digest), stream=True)
    hh = hashlib.sha256()
    for chunk in g.iter_content(1024 * 1024):
        hh.update(chunk)
    assert "sha256:" + hh.hexdigest() == big_digest
