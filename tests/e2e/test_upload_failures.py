"""Issue 9, items 4 and 16: what failed uploads leave behind.

- A failed single-request upload (a monolithic `POST ?digest=` with its body, or a
  `PUT ?digest=` bringing the whole body to a session that held nothing) deletes its session
  and its file at once: wrong digest, a client gone mid-body, a full disk. Such failures no
  longer pile up against the per-identity cap.
- A chunked session keeps its acknowledged bytes when a later request fails (resumable).
- Without auth, sessions are capped per client address (`--upload-limit-per-ip`).
- A crash in the middle of a PATCH: after the restart the session resumes at the last
  acknowledged byte, and the upload can be finished from there.
"""

import concurrent.futures
import os
import shutil
import socket
import stat
import subprocess
import threading
import time

import pytest
import requests

import tier
from auth_helpers import ADMIN_PASSWORD, server_pool  # noqa: F401 (fixture)
from conftest import (MeridianServer, assert_error, digest_of, path_of, random_bytes,
                      unique_name, wait_until)

OCTET = {"Content-Type": "application/octet-stream"}
MIB = 1 << 20
# libmicrohttpd 0.9.75 ends a request whose client closed mid-body only when the
# connection's idle timeout fires (120 s by default): the disconnect tests use 2 s.
SHORT_TIMEOUT = ("--conn-timeout", "2s")
WRONG = "sha256:" + "0" * 64


def repo_name(tag):
    return "e2e/upload-failures/%s" % unique_name(tag)


def uploads_dir_files(srv):
    """The sessions with bytes or a marker in the store (files or S3 objects)."""
    return tier.upload_sessions(srv.data_dir)


def raw_upload_start(srv, method, path, total, sent_bytes):
    """Sends a request with Content-Length `total` but only `sent_bytes` of its body and
    returns the open socket (the caller closes it)."""
    host, port = srv.url.rsplit("//", 1)[1].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=30)
    head = ("%s %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: %d\r\n" % (method, path, host, port, total))
    return s, head


# --------------------------------------------------------------------------- wrong digest

def test_wrong_digest_monolithic_post_leaves_no_session_and_no_file(server_factory):
    srv = server_factory()
    oci = srv.oci()
    repo = repo_name("post")
    data = random_bytes(3 * MIB + 5)  # past the inline first MiB: staged writes too
    for body in (b"small", data):
        r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": WRONG}, data=body,
                     headers=OCTET)
        assert_error(r, 400, "DIGEST_INVALID")
        assert uploads_dir_files(srv) == []
    # the right digest still works, and leaves nothing either
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": digest_of(data)}, data=data,
                 headers=OCTET)
    assert r.status_code == 201, r.text
    assert uploads_dir_files(srv) == []


def test_wrong_digest_put_with_the_whole_body_deletes_the_session(server_factory):
    srv = server_factory()
    oci = srv.oci()
    repo = repo_name("put")
    data = random_bytes(2 * MIB + 7)
    loc = oci.start_upload(repo).headers["Location"]
    assert len(uploads_dir_files(srv)) == 1
    r = oci.put(loc, params={"digest": WRONG}, data=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(oci.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert uploads_dir_files(srv) == []


def test_failed_requests_on_a_chunked_session_keep_its_acknowledged_bytes(server_factory):
    """Only single-request uploads are deleted: a chunked session stays resumable after a
    failed PATCH or a failed final PUT."""
    srv = server_factory()
    oci = srv.oci()
    repo = repo_name("chunked")
    data = random_bytes(3 * MIB)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:MIB], headers={**OCTET, "Content-Range": "0-%d" % (MIB - 1)})
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    # a PATCH longer than its Content-Range fails; the acknowledged MiB stays
    r = oci.patch(loc, data=data[MIB:2 * MIB + 1],
                  headers={**OCTET, "Content-Range": "%d-%d" % (MIB, 2 * MIB - 1)})
    assert r.status_code in (400, 416), r.text
    assert oci.get(loc).headers["Range"] == "0-%d" % (MIB - 1)
    # a final PUT with the rest and a wrong digest fails; the acknowledged MiB stays
    r = oci.put(loc, params={"digest": WRONG}, data=data[MIB:], headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert oci.get(loc).headers["Range"] == "0-%d" % (MIB - 1)
    r = oci.put(loc, params={"digest": digest_of(data)}, data=data[MIB:], headers=OCTET)
    assert r.status_code == 201, r.text
    assert oci.get_blob(repo, digest_of(data)) == data
    assert uploads_dir_files(srv) == []


# --------------------------------------------------------------------------- disconnects

@pytest.mark.parametrize("how", ["post", "put"])
def test_client_gone_mid_monolithic_body_leaves_nothing(server_factory, how):
    srv = server_factory(*SHORT_TIMEOUT)
    oci = srv.oci()
    repo = repo_name("gone-" + how)
    total = 4 * MIB
    if how == "post":
        path = "/v2/%s/blobs/uploads/?digest=%s" % (repo, WRONG)
        method = "POST"
    else:
        path = path_of(oci.start_upload(repo).headers["Location"])
        path += ("&" if "?" in path else "?") + "digest=" + WRONG
        method = "PUT"
    s, head = raw_upload_start(srv, method, path, total, 0)
    s.sendall(head.encode() + b"\r\n" + random_bytes(2 * MIB))
    # the server has the session open and bytes in its file
    wait_until(lambda: uploads_dir_files(srv), what="an upload file")
    s.close()
    wait_until(lambda: uploads_dir_files(srv) == [], timeout_s=20,
               what="the session of the broken request to go")
    if how == "put":
        # a new client: the pooled connection idled past --conn-timeout and the server closed it
        assert_error(srv.oci().get(path.split("?")[0]), 404, "BLOB_UPLOAD_UNKNOWN")


# --------------------------------------------------------------------------- caps

def test_failed_monolithic_pushes_do_not_lock_an_identity_out(server_pool):  # noqa: F811
    """65 failed pushes with the default cap of 64 sessions per identity: the next push
    must still be admitted."""
    srv = server_pool()
    auth = ("admin", ADMIN_PASSWORD)
    repo = repo_name("identity")
    for i in range(65):
        how = i % 2
        if how == 0:
            r = srv.request("POST", "/v2/%s/blobs/uploads/" % repo, auth=auth,
                            params={"digest": WRONG}, data=b"x" * 100, headers=OCTET)
        else:
            r = srv.request("POST", "/v2/%s/blobs/uploads/" % repo, auth=auth)
            assert r.status_code == 202, r.text
            r = srv.request("PUT", srv.url + r.headers["Location"], auth=auth,
                            params={"digest": WRONG}, data=b"y" * 100, headers=OCTET)
        assert r.status_code == 400, (i, r.status_code, r.text)
    data = b"finally"
    r = srv.request("POST", "/v2/%s/blobs/uploads/" % repo, auth=auth,
                    params={"digest": digest_of(data)}, data=data, headers=OCTET)
    assert r.status_code == 201, r.text
    r = srv.request("POST", "/v2/%s/blobs/uploads/" % repo, auth=auth)
    assert r.status_code == 202, r.text


def test_sessions_capped_per_address_without_auth(server_factory):
    srv = server_factory("--upload-limit-per-ip", "3")
    oci = srv.oci()
    repo = repo_name("per-ip")
    locs = []
    for _ in range(3):
        r = oci.start_upload(repo)
        assert r.status_code == 202, r.text
        locs.append(r.headers["Location"])
    r = oci.post("/v2/%s/blobs/uploads/" % repo)
    assert_error(r, 429, "TOOMANYREQUESTS")
    # a monolithic push is refused as well while the address holds three sessions
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": digest_of(b"m")}, data=b"m",
                 headers=OCTET)
    assert_error(r, 429, "TOOMANYREQUESTS")
    # cancelling one frees a slot
    assert oci.delete(locs.pop(0)).status_code == 204
    r = oci.start_upload(repo)
    assert r.status_code == 202, r.text
    locs.append(r.headers["Location"])
    assert_error(oci.post("/v2/%s/blobs/uploads/" % repo), 429, "TOOMANYREQUESTS")
    # completing one frees a slot
    data = b"complete me"
    r = oci.put(locs.pop(0), params={"digest": digest_of(data)}, data=data, headers=OCTET)
    assert r.status_code == 201, r.text
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": digest_of(data)}, data=data,
                 headers=OCTET)
    assert r.status_code == 201, r.text
    # a failed single-request upload does not keep a slot
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": WRONG}, data=data,
                 headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert oci.start_upload(repo).status_code == 202


def test_sessions_cap_holds_for_concurrent_starts(server_factory):
    """Sixty starts at once from one address with a cap of 10: exactly ten sessions open
    (the cap is counted with the creation in one step, not before it)."""
    srv = server_factory("--upload-limit-per-ip", "10")
    repo = repo_name("per-ip-burst")
    barrier = threading.Barrier(12)

    def burst(_):
        s = requests.Session()
        barrier.wait()
        return [s.post(srv.url + "/v2/%s/blobs/uploads/" % repo, timeout=30).status_code
                for _ in range(5)]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        codes = [c for batch in pool.map(burst, range(12)) for c in batch]
    assert sorted(set(codes)) == [202, 429], codes
    assert codes.count(202) == 10, codes
    assert_error(srv.oci().post("/v2/%s/blobs/uploads/" % repo), 429, "TOOMANYREQUESTS")


def test_sessions_capped_per_address_with_auth_too(server_pool):  # noqa: F811
    """The address cap holds whatever the identity: two users from one address share it."""
    srv = server_pool("--upload-limit-per-ip", "2")
    adm = srv.admin()
    a = adm.user("alpha", role="publisher", pattern="*")
    b = adm.user("beta", role="publisher", pattern="*")
    assert srv.request("POST", "/v2/ip/a/blobs/uploads/", auth=a).status_code == 202
    assert srv.request("POST", "/v2/ip/b/blobs/uploads/", auth=b).status_code == 202
    r = srv.request("POST", "/v2/ip/b/blobs/uploads/", auth=b)
    assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS", r.text


# --------------------------------------------------------------------------- disk full

def _tmpfs_server(tmp_path, meridian_bin, size_mib):
    """A server whose data directory is a private tmpfs of size_mib (its own mount
    namespace, so nothing is mounted on the host). Skips if namespaces are not allowed."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run([unshare, "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs %s"
                            % tmp_path], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs in a user namespace here: %s" % probe.stderr)
    data = tmp_path / "data"
    data.mkdir()
    wrapper = tmp_path / "meridian-on-tmpfs"
    wrapper.write_text("#!/bin/sh\nexec %s -rm sh -c 'mount -t tmpfs -o size=%dm tmpfs %s "
                       "&& exec \"$0\" \"$@\"' %s \"$@\"\n"
                       % (unshare, size_mib, data, meridian_bin))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    srv = MeridianServer(str(wrapper), str(data), str(tmp_path / "meridian.log"))
    srv.start()
    return srv


@pytest.mark.skipif(not tier.on_fs_blobs(), reason="fills the data directory's disk, where the "
                    "S3 blob store keeps no upload bytes")
def test_full_disk_monolithic_push_leaves_nothing(tmp_path, meridian_bin):
    srv = _tmpfs_server(tmp_path, meridian_bin, 8)
    # the files as the server sees them, inside its mount namespace
    inside = "/proc/%d/root%s/uploads" % (srv.proc.pid, srv.data_dir)
    try:
        oci = srv.oci()
        repo = repo_name("full")
        big = random_bytes(12 * MIB)
        for how in ("post", "put"):
            if how == "post":
                r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": digest_of(big)},
                             data=big, headers=OCTET)
            else:
                loc = oci.start_upload(repo).headers["Location"]
                r = oci.put(loc, params={"digest": digest_of(big)}, data=big, headers=OCTET)
            assert r.status_code == 507, (how, r.status_code, r.text)
            assert os.listdir(inside) == [], how
        # the space came back: a push that fits succeeds
        small = random_bytes(2 * MIB)
        assert oci.push_blob(repo, small, how="post") == digest_of(small)
        assert os.listdir(inside) == []
    finally:
        srv.stop()


# --------------------------------------------------------------------------- crash mid-PATCH

# On S3 a request's bytes stay in memory until they are acknowledged (docs/scale-out.md):
# test_s3_faults.py::test_kill9_mid_upload_resumes_and_never_serves_half_a_blob is the
# crash mid-PATCH and mid-POST there.
WATCHES_UPLOAD_FILE = pytest.mark.skipif(
    not tier.on_fs_blobs(), reason="watches unacknowledged bytes reach the filesystem store's "
    "upload file; test_s3_faults.py kills mid-upload on S3")


@WATCHES_UPLOAD_FILE
def test_crash_mid_patch_resumes_at_the_last_acknowledged_byte(server_factory):
    srv = server_factory()
    oci = srv.oci()
    repo = repo_name("crash")
    data = random_bytes(9 * MIB + 321)
    acked = MIB + 123  # not a multiple of the writer's alignment
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:acked],
                  headers={**OCTET, "Content-Range": "0-%d" % (acked - 1)})
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    session = path_of(loc).split("?")[0].rsplit("/", 1)[1]
    upload_file = [p for p in srv.upload_files() if os.path.basename(p) == session]
    assert len(upload_file) == 1
    upload_file = upload_file[0]

    # a second PATCH streams, and the server writes part of it before it is killed
    rest = data[acked:]
    s, head = raw_upload_start(srv, "PATCH", path_of(loc), len(rest), 0)
    head += "Content-Range: %d-%d\r\n\r\n" % (acked, len(data) - 1)
    s.sendall(head.encode() + rest[:6 * MIB])
    wait_until(lambda: os.path.getsize(upload_file) >= acked + 4 * MIB, timeout_s=30,
               what="the unacknowledged bytes to reach the file")
    srv.kill()
    s.close()
    assert os.path.getsize(upload_file) > acked
    srv.start()
    oci = srv.oci()

    r = oci.get(loc)
    assert r.status_code == 204, r.text
    assert r.headers["Range"] == "0-%d" % (acked - 1)
    assert os.path.getsize(upload_file) == acked
    # the client resumes from what was acknowledged, and the digest covers exactly the data
    r = oci.patch(loc, data=rest, headers={**OCTET, "Content-Range": "%d-%d" % (
        acked, len(data) - 1)})
    assert r.status_code == 202, r.text
    r = oci.put(r.headers["Location"], params={"digest": digest_of(data)}, data=b"")
    assert r.status_code == 201, r.text
    assert oci.get_blob(repo, digest_of(data)) == data


@WATCHES_UPLOAD_FILE
def test_crash_mid_patch_of_a_fresh_session_resumes_at_zero(server_factory):
    """Nothing acknowledged yet: the session restarts empty and a whole upload works."""
    srv = server_factory()
    oci = srv.oci()
    repo = repo_name("crash0")
    data = random_bytes(5 * MIB)
    loc = oci.start_upload(repo).headers["Location"]
    s, head = raw_upload_start(srv, "PATCH", path_of(loc), len(data), 0)
    s.sendall(head.encode() + b"\r\n" + data[:3 * MIB])
    wait_until(lambda: any(os.path.getsize(p) >= 2 * MIB for p in srv.upload_files()),
               timeout_s=30, what="bytes in the upload file")
    srv.kill()
    s.close()
    srv.start()
    oci = srv.oci()
    r = oci.get(loc)
    assert r.status_code == 204, r.text
    assert r.headers["Range"] == "0-0"
    r = oci.put(loc, params={"digest": digest_of(data)}, data=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert oci.get_blob(repo, digest_of(data)) == data


@WATCHES_UPLOAD_FILE
@pytest.mark.skipif(not tier.on_sqlite(), reason="on a shared metastore a cut monolithic "
                    "session expires instead (another node's may be in flight)")
def test_crash_mid_monolithic_post_leaves_nothing_after_restart(server_factory):
    """The session of a monolithic POST cut by a crash has no client that knows its id:
    it is removed at start, bytes and all, and no longer holds a slot under the caps."""
    srv = server_factory("--upload-limit-per-ip", "1")
    oci = srv.oci()
    repo = repo_name("crash-mono")
    data = random_bytes(6 * MIB)
    s, head = raw_upload_start(srv, "POST", "/v2/%s/blobs/uploads/?digest=%s" % (
        repo, digest_of(data)), len(data), 0)
    s.sendall(head.encode() + b"\r\n" + data[:4 * MIB])
    wait_until(lambda: any(os.path.getsize(p) >= 2 * MIB for p in srv.upload_files()),
               timeout_s=30, what="bytes in the upload file")
    srv.kill()
    s.close()
    assert srv.upload_files()
    srv.start()
    assert srv.upload_files() == []
    oci = srv.oci()
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": digest_of(data)}, data=data,
                 headers=OCTET)
    assert r.status_code == 201, r.text
    assert oci.get_blob(repo, digest_of(data)) == data
