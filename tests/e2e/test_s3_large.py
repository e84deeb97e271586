"""Blobs over S3's single-copy limit (issue 11): CopyObject and UploadPartCopy copy at most
5 GiB per request, and a blob pushed in one request is one chunk object, so commit must copy
a chunk over the limit as ranges (UploadPartCopy with x-amz-copy-source-range) into a
multipart upload.

- test_chunk_over_the_copy_limit_is_copied_as_ranges: the same path with the limit lowered
  (MERIDIAN_S3_COPY_MAX_BYTES=15 MiB, its floor): a 47 MiB monolithic push (one chunk of
  three 16 MiB parts) is assembled from four ranges of about 12 MiB (its ETag says "-4").
- test_parts_grow_to_64_mib_within_the_budget: a request's chunk is sent as a 16 MiB part,
  then 64 MiB parts (RGW spends CPU per part) while the process's budget of part buffers
  has room (MERIDIAN_S3_PART_BUDGET_BYTES set to one upload's share): an upload in flight
  holds it, so a second one meanwhile stays on 16 MiB parts, and a third after both gets it
  back. Each chunk's ETag ("-N") counts its parts.
- test_blob_over_5_gib_in_one_request (slow, about 9 min here: MERIDIAN_SLOW_S3=1, apart from
  MERIDIAN_SLOW which scripts/test.sh sets): 5 GiB + 1 MiB in one PUT,
  generated on the fly (never held in memory or on disk), pulled back and hashed, on a
  bluestore RGW of its own (memstore holds 4 GiB).
"""

import hashlib
import http.client
import os
import re
import shlex
import subprocess
import tempfile
import urllib.parse

import pytest
import requests

import s3_blobstore
from conftest import random_bytes

pytestmark = pytest.mark.skipif(not s3_blobstore.available(),
                                reason="no S3 server (S3_ENDPOINT) and no Ceph RGW to start")


def blob_key(data_dir, digest):
    alg, hexd = digest.split(":")
    return "%s/blobs/%s/%s" % (s3_blobstore.prefix_of(data_dir), alg, hexd)


def test_chunk_over_the_copy_limit_is_copied_as_ranges(server_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("MERIDIAN_S3_COPY_MAX_BYTES", str(15 << 20))
    os.environ.update(s3_blobstore.server())
    data_dir = tmp_path / "data"
    srv = server_factory("--blobstore", "s3://%s/%s" % (s3_blobstore.BUCKET,
                                                        s3_blobstore.prefix_of(data_dir)),
                         data_dir=str(data_dir))
    oci = srv.oci()
    data = random_bytes(47 << 20)
    d = oci.push_blob("s3/large", data, how="post_put")
    status, head = s3_blobstore.request("HEAD", blob_key(data_dir, d))
    assert status == 200
    etag = re.search(r'(?im)^etag:\s*"?([^"\r\n]*)', head.decode()).group(1)
    assert etag.endswith("-4"), etag  # four ranged part copies, not one CopyObject
    r = oci.get(oci.blob_path("s3/large", d))
    assert r.status_code == 200 and r.content == data
    r = oci.get(oci.blob_path("s3/large", d), headers={"Range": "bytes=%d-%d" % (
        (16 << 20) - 3, (16 << 20) + 4)})
    assert r.status_code == 206 and r.content == data[(16 << 20) - 3:(16 << 20) + 5]
    # No session object stays behind.
    assert s3_blobstore.list_keys(s3_blobstore.prefix_of(data_dir) + "/uploads/") == []


def chunk_etag(prefix, loc):
    """The ETag of the one chunk object of the session at loc (its parts: "-N")."""
    sid = urllib.parse.urlparse(loc).path.rstrip("/").rsplit("/", 1)[1]
    chunks = [k for k in s3_blobstore.list_keys(prefix) if "/%s/c-" % sid in k]
    assert len(chunks) == 1, chunks
    status, head = s3_blobstore.request("HEAD", chunks[0])
    assert status == 200
    return re.search(r'(?im)^etag:\s*"?([^"\r\n]*)', head.decode()).group(1)


def test_parts_grow_to_64_mib_within_the_budget(server_factory, tmp_path, monkeypatch):
    from conftest import digest_of, wait_until
    from test_s3_faults import start_body
    mib = 1 << 20
    monkeypatch.setenv("MERIDIAN_S3_PART_BUDGET_BYTES", str(96 * mib))  # one upload's share
    os.environ.update(s3_blobstore.server())
    data_dir = tmp_path / "data"
    srv = server_factory("--blobstore", "s3://%s/%s" % (s3_blobstore.BUCKET,
                                                        s3_blobstore.prefix_of(data_dir)),
                         data_dir=str(data_dir))
    oci = srv.oci()
    repo = "s3/parts"
    prefix = s3_blobstore.prefix_of(data_dir) + "/uploads/"
    # A: one PATCH of 90 MiB, held after 40 MiB (its first 16 MiB part sent: it holds the
    # budget from then on).
    loc_a = oci.start_upload(repo).headers["Location"]
    sock_a, data_a = start_body(srv.url, "PATCH", loc_a, 90 * mib, 40 * mib)

    def first_part_sent():
        status, body = s3_blobstore.request("GET", "", query="prefix=%s&uploads=" %
                                            urllib.parse.quote(prefix, safe=""))
        m = re.search(r"<Key>([^<]*)</Key>\s*<UploadId>([^<]*)</UploadId>", body.decode())
        if m is None:
            return False
        status, parts = s3_blobstore.request("GET", m.group(1), query="uploadId=%s" %
                                             urllib.parse.quote(m.group(2), safe=""))
        return status == 200 and b"<PartNumber>1</PartNumber>" in parts
    wait_until(first_part_sent, timeout_s=60, what="A's first part in S3")
    # B meanwhile: 90 MiB in 16 MiB parts (5 + the 10 MiB rest).
    data_b = random_bytes(90 * mib)
    loc_b = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc_b, data=data_b, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    loc_b = r.headers["Location"]
    assert chunk_etag(prefix, loc_b).endswith("-6")
    # A goes on: 16 + 64 + 10 MiB.
    sock_a.sendall(data_a[40 * mib:])
    answer = sock_a.recv(65536).decode(errors="replace")
    sock_a.close()
    assert answer.startswith("HTTP/1.1 202"), answer[:300]
    assert chunk_etag(prefix, loc_a).endswith("-3")
    # C after both: the budget is back.
    data_c = random_bytes(90 * mib)
    loc_c = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc_c, data=data_c, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    loc_c = r.headers["Location"]
    assert chunk_etag(prefix, loc_c).endswith("-3")
    for loc, data in ((loc_a, data_a), (loc_b, data_b), (loc_c, data_c)):
        sep = "&" if "?" in loc else "?"
        r = oci.put(loc + sep + "digest=" + digest_of(data))
        assert r.status_code == 201, r.text
        r = oci.get(oci.blob_path(repo, digest_of(data)))
        assert r.status_code == 200 and r.content == data
    assert s3_blobstore.list_keys(prefix) == []


BLOCK = 1 << 20


def own_bluestore_rgw(tmp):
    tools = s3_blobstore._tools_dir()
    env = dict(os.environ, CEPH_OSD_STORE="bluestore", CEPH_STORE_BYTES=str(16 << 30))
    out = subprocess.run([os.path.join(tools, "ceph-rgw-up.sh"), tmp,
                          str(s3_blobstore._free_port())],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = {}
    for line in out.stdout.splitlines():
        k, _, v = line.partition("=")
        if k.startswith("S3_"):
            got[k] = shlex.split(v)[0] if v else ""
    return tools, got


@pytest.mark.skipif(os.environ.get("MERIDIAN_SLOW_S3") != "1",
                    reason="slow (minutes, a 16 GiB sparse RGW): set MERIDIAN_SLOW_S3=1")
def test_blob_over_5_gib_in_one_request(server_factory, tmp_path):
    total = (5 << 30) + (1 << 20)
    ceph = tempfile.mkdtemp(prefix="meridian-rgw-large-")
    tools, s3 = own_bluestore_rgw(ceph)
    try:
        env_keep = {k: os.environ.get(k) for k in s3}
        os.environ.update(s3)
        data_dir = tmp_path / "data"
        srv = server_factory("--blobstore", "s3://big/%s" % s3_blobstore.prefix_of(data_dir),
                             data_dir=str(data_dir))
        for k, v in env_keep.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _push_and_pull(srv, total)
    finally:
        subprocess.run([os.path.join(tools, "ceph-rgw-down.sh"), ceph, "--rm"],
                       capture_output=True, timeout=300)


def _push_and_pull(srv, total):
    """One PUT of total generated bytes (a random 1 MiB block with its index in its first
    8 bytes: hashed once, then sent), pulled back and hashed."""
    base = os.urandom(BLOCK)

    def gen():
        sent, i = 0, 0
        while sent < total:
            n = min(BLOCK, total - sent)
            yield (i.to_bytes(8, "big") + base[8:])[:n]
            sent += n
            i += 1

    h = hashlib.sha256()
    for b in gen():
        h.update(b)
    digest = "sha256:" + h.hexdigest()
    u = urllib.parse.urlparse(srv.url)
    r = requests.post(srv.url + "/v2/s3/huge/blobs/uploads/", timeout=60)
    assert r.status_code == 202, r.text
    loc = urllib.parse.urlparse(urllib.parse.urljoin(srv.url + "/", r.headers["Location"]))
    path = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + digest
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=1800)
    conn.putrequest("PUT", path)
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(total))
    conn.endheaders()
    for b in gen():
        conn.send(b)
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 201, (resp.status, body[:500])
    conn.close()
    got = hashlib.sha256()
    n = 0
    with requests.get(srv.url + "/v2/s3/huge/blobs/" + digest, stream=True, timeout=1800) as r:
        assert r.status_code == 200
        for piece in r.iter_content(BLOCK):
            got.update(piece)
            n += len(piece)
    assert n == total and "sha256:" + got.hexdigest() == digest
