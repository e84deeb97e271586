"""Issue 11 item 2: the S3 blob store (`--blobstore s3://BUCKET/PREFIX`) on a real server
(Ceph RGW, started once per session by s3_blobstore.py unless S3_ENDPOINT names one).

What only S3 has, beside the suite that runs on it with MERIDIAN_TEST_BLOBSTORE=s3:
- an object rewritten behind the store's back (it loses the verified stamp kept in its
  metadata) is read and checked before it is served: damaged, it is never served and goes
  under PREFIX/quarantine/, intact, it is served and stamped again; the scrub finds it too;
- an upload session lives in the bucket: a restarted server resumes it, and commit leaves
  no session object behind;
- --blob-redirect answers blob GETs 307 to a presigned URL that S3 honours (Range too),
  and skopeo pulls through it;
- a server with wrong credentials refuses to start, and so does one whose
  MERIDIAN_S3_PART_BUDGET_BYTES is not a number (0 still starts: 16 MiB parts only);
- the file sweep of `gc run` lists every page of a listing over 1000 keys (ListObjectsV2's
  continuation tokens), and a DELETE S3 refuses (a bucket policy) is an error, not a file
  removed, until S3 takes it.
"""

import hashlib
import json
import os
import re
import time

import pytest
import requests

import s3_blobstore
from conftest import assert_error, digest_of, random_bytes, wait_until
from clients_helpers import (ClientEnv, OciLayout, RegistryProcess, assert_same_closure,
                             tool_missing)

pytestmark = pytest.mark.skipif(not s3_blobstore.available(),
                                reason="no S3 server (S3_ENDPOINT) and no Ceph RGW to start")


def s3_args(tmp_path, *more):
    s3_blobstore.server()
    os.environ.update(s3_blobstore.server())
    return ("--blobstore", "s3://%s/%s" % (s3_blobstore.BUCKET,
                                            s3_blobstore.prefix_of(tmp_path)), *more)


def blob_key(srv, digest):
    alg, hexd = digest.split(":")
    return "%s/blobs/%s/%s" % (s3_blobstore.prefix_of(srv.data_dir), alg, hexd)


def metric(url, name):
    from conftest import metric_sum, parse_metrics
    return metric_sum(parse_metrics(requests.get(url + "/metrics", timeout=30).text), name)


def scrub_state(url):
    r = requests.get(url + "/_meridian/v1/scrub", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def s3_server(server_factory, tmp_path_factory):
    def start(*more):
        data = tmp_path_factory.mktemp("s3srv") / "data"
        return server_factory(*s3_args(data, *more), data_dir=str(data))
    return start


def test_damaged_object_is_never_served_and_a_repush_repairs_it(s3_server):
    srv = s3_server()
    oci = srv.oci()
    repo = "s3/damaged"
    data = random_bytes(100_000)
    d = oci.push_blob(repo, data)
    damaged = bytearray(data)
    damaged[1000] ^= 0xFF
    assert s3_blobstore.request("PUT", blob_key(srv, d), bytes(damaged))[0] == 200
    for method, headers in (("GET", {}), ("GET", {"Range": "bytes=0-3"})):
        r = oci.request(method, oci.blob_path(repo, d), headers=headers)
        assert_error(r, 404, "BLOB_UNKNOWN")
    assert s3_blobstore.request("HEAD", blob_key(srv, d))[0] == 404
    quarantined = s3_blobstore.list_keys(s3_blobstore.prefix_of(srv.data_dir) + "/quarantine/")
    assert [k.split("/")[-1].startswith("sha256-" + d.split(":")[1] + "-")
            for k in quarantined] == [True]
    assert [(q["digest"], q["repaired"]) for q in scrub_state(srv.url)["quarantined"]] == \
        [(d, False)]
    assert oci.push_blob(repo, data) == d
    r = oci.get(oci.blob_path(repo, d))
    assert r.status_code == 200 and r.content == data
    assert [q["repaired"] for q in scrub_state(srv.url)["quarantined"]] == [True]


def test_truncated_object_is_never_served_short(s3_server):
    srv = s3_server()
    oci = srv.oci()
    data = random_bytes(60_000)
    d = oci.push_blob("s3/short", data)
    assert s3_blobstore.request("PUT", blob_key(srv, d), data[:50_000])[0] == 200
    assert_error(oci.get(oci.blob_path("s3/short", d)), 404, "BLOB_UNKNOWN")


def test_rewritten_but_intact_object_is_served_and_stamped_again(s3_server):
    srv = s3_server()
    oci = srv.oci()
    data = random_bytes(70_000)
    d = oci.push_blob("s3/intact", data)
    head = s3_blobstore.request("HEAD", blob_key(srv, d))[1].decode().lower()
    assert "x-amz-meta-meridian-verified: " + d in head
    assert s3_blobstore.request("PUT", blob_key(srv, d), data)[0] == 200
    head = s3_blobstore.request("HEAD", blob_key(srv, d))[1].decode().lower()
    assert "x-amz-meta-meridian-verified" not in head
    r = oci.get(oci.blob_path("s3/intact", d))
    assert r.status_code == 200 and r.content == data
    head = s3_blobstore.request("HEAD", blob_key(srv, d))[1].decode().lower()
    assert "x-amz-meta-meridian-verified: " + d in head


def test_scrub_quarantines_a_damaged_object(s3_server):
    srv = s3_server("--scrub-interval", "0")
    oci = srv.oci()
    good, bad = random_bytes(30_000), random_bytes(40_000)
    oci.push_blob("s3/scrub", good)
    d = oci.push_blob("s3/scrub", bad)
    damaged = bytearray(bad)
    damaged[7] ^= 0xFF
    assert s3_blobstore.request("PUT", blob_key(srv, d), bytes(damaged))[0] == 200
    before = metric(srv.url, "meridian_scrub_passes_total")
    assert requests.post(srv.url + "/_meridian/v1/scrub", timeout=30).status_code == 202
    wait_until(lambda: metric(srv.url, "meridian_scrub_passes_total") > before, timeout_s=60,
               what="a scrub pass")
    state = scrub_state(srv.url)
    assert [(q["digest"], q["repaired"]) for q in state["quarantined"]] == [(d, False)]
    assert metric(srv.url, "meridian_blobs_quarantined") == 1
    r = oci.get(oci.blob_path("s3/scrub", digest_of(good)))
    assert r.status_code == 200 and r.content == good


def test_upload_session_lives_in_the_bucket(s3_server):
    """A chunked upload resumes on the restarted server from its chunk objects (the tail
    under 5 MiB included), and the commit leaves no object of the session behind."""
    srv = s3_server()
    oci = srv.oci()
    repo = "s3/resume"
    data = random_bytes(9 * 1024 * 1024 + 123)
    r = oci.post("/v2/%s/blobs/uploads/" % repo)
    assert r.status_code == 202
    loc = r.headers["Location"]
    first = 6 * 1024 * 1024 + 17
    r = oci.patch(loc, data=data[:first], headers={
        "Content-Type": "application/octet-stream", "Content-Range": "0-%d" % (first - 1)})
    assert r.status_code == 202, r.text
    sessions = s3_blobstore.prefix_of(srv.data_dir) + "/uploads/"
    assert any("/c-" in k for k in s3_blobstore.list_keys(sessions))
    srv.restart()
    oci = srv.oci()
    r = oci.get(loc)
    assert r.status_code == 204 and r.headers["Range"] == "0-%d" % (first - 1)
    r = oci.patch(loc, data=data[first:], headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": "%d-%d" % (first, len(data) - 1)})
    assert r.status_code == 202, r.text
    d = digest_of(data)
    r = oci.put(r.headers["Location"], params={"digest": d})
    assert r.status_code == 201, r.text
    r = oci.get(oci.blob_path(repo, d))
    assert r.status_code == 200 and r.content == data
    assert s3_blobstore.list_keys(sessions) == []


def test_blob_redirect_answers_a_presigned_url(s3_server):
    srv = s3_server("--blob-redirect")
    oci = srv.oci()
    data = random_bytes(200_000)
    d = oci.push_blob("s3/redirect", data)
    r = oci.get(oci.blob_path("s3/redirect", d), allow_redirects=False)
    assert r.status_code == 307
    url = r.headers["Location"]
    assert url.startswith(s3_blobstore.server()["S3_ENDPOINT"] + "/") and \
        "X-Amz-Signature=" in url
    got = requests.get(url, timeout=30)
    assert got.status_code == 200 and got.content == data
    got = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=30)
    assert got.status_code == 206 and got.content == data[100:200]
    # A URL with its signature changed is refused by S3.
    assert requests.get(url[:-1] + ("0" if url[-1] != "0" else "1"),
                        timeout=30).status_code == 403
    # Followed by the client, the redirect gives the blob.
    r = requests.get(oci.url(oci.blob_path("s3/redirect", d)), timeout=30)
    assert r.status_code == 200 and r.content == data and r.history[0].status_code == 307


@pytest.mark.skipif(tool_missing("skopeo"), reason="skopeo is not installed")
def test_skopeo_pulls_through_redirects(tmp_path):
    reg = RegistryProcess(tmp_path / "reg", kind="meridian",
                          extra_args=list(s3_args(tmp_path / "reg" / "data", "--blob-redirect")))
    reg.start()
    clients = ClientEnv(tmp_path / "clients")
    try:
        src = OciLayout(tmp_path / "src")
        desc, _ = src.add_image([{"a/one.bin": random_bytes(300_000)},
                                 {"b/two.bin": random_bytes(2_000_000)}])
        src.tag(desc, "v1")
        ref = "docker://%s/s3/skopeo:v1" % reg.host
        clients.skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", src.ref("v1"),
                       ref)
        layer = json.loads(src.blob_path(desc["digest"]).read_bytes())["layers"][0]["digest"]
        r = requests.get("%s/v2/s3/skopeo/blobs/%s" % (reg.url, layer), allow_redirects=False,
                         timeout=30)
        assert r.status_code == 307
        dst = OciLayout(tmp_path / "dst")
        clients.skopeo("copy", "--preserve-digests", "--src-tls-verify=false", ref,
                       dst.ref("back"))
        assert_same_closure(src, dst, desc["digest"], "back")
    finally:
        clients.cleanup()
        reg.stop_and_check()


def test_wrong_credentials_refuse_to_start(server_factory, tmp_path):
    args = s3_args(tmp_path / "data", "--s3-secret-key", "not-the-secret")
    with pytest.raises(RuntimeError) as e:
        server_factory(*args, data_dir=str(tmp_path / "data"))
    assert "s3 bucket" in str(e.value)


@pytest.mark.parametrize("value", ["abc", "12x", "-1", "18446744073709551616", " 5", "1e9"])
def test_bad_part_budget_refuses_to_start(server_factory, tmp_path, monkeypatch, value):
    """A typo in MERIDIAN_S3_PART_BUDGET_BYTES stops the server with the variable and the
    value named, instead of becoming 0 or a wrong number."""
    monkeypatch.setenv("MERIDIAN_S3_PART_BUDGET_BYTES", value)
    args = s3_args(tmp_path / "data")
    with pytest.raises(RuntimeError) as e:
        server_factory(*args, data_dir=str(tmp_path / "data"))
    m = re.search(r"meridian exited with (-?\d+) before listening", str(e.value))
    assert m and int(m.group(1)) > 0, str(e.value)
    assert 'MERIDIAN_S3_PART_BUDGET_BYTES="%s" is not a number of bytes' % value in str(e.value)


def test_part_budget_zero_starts(server_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("MERIDIAN_S3_PART_BUDGET_BYTES", "0")  # every part 16 MiB
    srv = server_factory(*s3_args(tmp_path / "data"), data_dir=str(tmp_path / "data"))
    oci = srv.oci()
    data = random_bytes(20 << 20)  # two parts
    d = digest_of(data)
    oci.push_blob("s3/budget0", data)
    assert oci.get_blob("s3/budget0", d) == data


GRACE_S = 1


def gc_run(srv, dry_run=False):
    r = requests.post(srv.url + "/_meridian/v1/gc/run",
                      params={"dry_run": "true" if dry_run else "false"}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def blobs_prefix(srv):
    return "%s/blobs/sha256/" % s3_blobstore.prefix_of(srv.data_dir)


def test_sweep_follows_the_listing_past_1000_keys(s3_server):
    """ListObjectsV2 answers at most 1000 keys a page: 1100 objects no row names, put
    straight into the bucket, are all found (a dry run: the real run's removal of each is
    what the other sweep tests check, and 1100 of them would take 15 s)."""
    srv = s3_server("--gc-grace", "%ds" % GRACE_S, "--gc-interval", "1h")
    digests = ["sha256:" + hashlib.sha256(b"stray %d" % i).hexdigest() for i in range(1100)]
    pre = blobs_prefix(srv)
    s3_blobstore.put_many([pre + d.split(":")[1] for d in digests], b"x")
    assert len(s3_blobstore.list_keys(pre)) == 1100
    time.sleep(GRACE_S + 1.1)  # LastModified has whole seconds: past the grace for sure
    dry = gc_run(srv, dry_run=True)
    assert dry["errors"] == 0 and dry["files_complete"] is True, {k: dry[k] for k in (
        "errors", "files_complete", "files_removed")}
    assert sorted(f["digest"] for f in dry["files"]) == sorted(digests)
    assert dry["files_removed"] == 1100


def _deny_deletes(prefix):
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
        "Resource": "arn:aws:s3:::%s/%s*" % (s3_blobstore.BUCKET, prefix)}]}
    status, body = s3_blobstore.request("PUT", "", json.dumps(policy).encode(), query="policy=")
    assert status in (200, 204), (status, body[:300])


def test_sweep_counts_a_refused_delete_as_an_error(s3_server):
    """A DELETE S3 answers 403 (a bucket policy denies it) leaves the object: the sweep
    says so (an error, not a file removed, not in its list), and removes it once S3 takes
    the DELETE again."""
    srv = s3_server("--gc-grace", "%ds" % GRACE_S, "--gc-interval", "1h")
    data = random_bytes(3000)
    d = digest_of(data)
    pre = blobs_prefix(srv)
    key = pre + d.split(":")[1]
    status, _ = s3_blobstore.request("PUT", key, data)
    assert status == 200
    time.sleep(GRACE_S + 1.1)  # LastModified has whole seconds: past the grace for sure
    _deny_deletes(pre)
    try:
        assert s3_blobstore.request("DELETE", key)[0] == 403  # the policy holds
        out = gc_run(srv)
        assert (out["files"], out["files_removed"], out["errors"]) == ([], 0, 1), out
        assert out["files_complete"] is True
        assert s3_blobstore.list_keys(key) == [key]
        st = requests.get(srv.url + "/_meridian/v1/gc", timeout=30).json()
        assert st["errors_total"] == 1 and st["files_removed_total"] == 0, st
    finally:
        status, body = s3_blobstore.request("DELETE", "", query="policy=")
        assert status in (200, 204), (status, body[:300])
    out = gc_run(srv)
    assert out["files"] == [{"digest": d, "size": len(data)}], out
    assert (out["files_removed"], out["errors"]) == (1, 0)
    assert s3_blobstore.list_keys(key) == []
    st = requests.get(srv.url + "/_meridian/v1/gc", timeout=30).json()
    assert st["errors_total"] == 1 and st["files_removed_total"] == 1, st
