"""Upload sessions expire after --upload-ttl: the sweeper removes them (polled with a
deadline), later requests get 404 BLOB_UPLOAD_UNKNOWN, their bytes are deleted, and
completed blobs are untouched."""

import re
import time

import pg_metastore
from conftest import (assert_error, digest_of, metric_sum, random_bytes, wait_until)

TTL_S = 2
MERIDIAN_ARGS = ["--upload-ttl", str(TTL_S), "--upload-sweep-interval", "1"]
OCTET = {"Content-Type": "application/octet-stream"}


def session_gone(oci, loc):
    r = oci.get(loc)
    # Never 400 "in use" while the sweeper removes it: a session being removed is gone for
    # the client (upload_sessions.c). On PostgreSQL one round trip remains in which another
    # node's sweep holds the claim and has not yet deleted the row: "in use" there.
    assert r.status_code in (204, 404) or (
        pg_metastore.is_pg() and r.status_code == 400 and "in use" in r.text), \
        (r.status_code, r.text)
    if r.status_code == 404:
        assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    return r.status_code == 404


def test_idle_session_expires(registry, oci, repo):
    data = random_bytes(5000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:2000], headers={**OCTET, "Content-Range": "0-1999"})
    assert r.status_code == 202
    loc = r.headers["Location"]
    sid = re.search(r"[0-9a-f]{32}", loc).group(0)
    wait_until(lambda: session_gone(oci, loc), timeout_s=TTL_S + 30,
               what="upload session to expire")
    assert_error(oci.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.patch(loc, data=data[2000:], headers={**OCTET,
                                                            "Content-Range": "2000-4999"}),
                 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.put(loc, params={"digest": digest_of(data)}, data=data[2000:]),
                 404, "BLOB_UPLOAD_UNKNOWN")
    assert not oci.blob_exists(repo, digest_of(data))
    # the sweeper also removes the session's bytes
    wait_until(lambda: not any(sid in f for f in registry.upload_files()), timeout_s=30,
               what="expired session's files to be removed")


def test_expiry_does_not_touch_completed_blobs_or_manifests(oci, repo):
    img = oci.push_image(repo, tag="keep", layers=2)
    loc = oci.start_upload(repo).headers["Location"]
    wait_until(lambda: session_gone(oci, loc), timeout_s=TTL_S + 30,
               what="upload session to expire")
    assert oci.get_manifest(repo, "keep").content == img.body
    for d, b in img.blobs.items():
        assert oci.get_blob(repo, d) == b


def test_uploads_in_progress_returns_to_zero_and_stays_there(server_factory):
    srv = server_factory(*MERIDIAN_ARGS)
    oci = srv.oci()
    repo = "expiry/gauge"

    def gauge():
        v = metric_sum(oci.metrics(), "meridian_uploads_in_progress")
        assert v >= 0, "uploads_in_progress went negative: %s" % v
        return v

    for _ in range(3):
        oci.start_upload(repo)
    loc = oci.start_upload(repo).headers["Location"]
    assert oci.put(loc, params={"digest": digest_of(b"x")}, data=b"y").status_code == 400
    loc = oci.start_upload(repo).headers["Location"]
    assert oci.put(loc, params={"digest": digest_of(b"ok")}, data=b"ok").status_code == 201
    assert gauge() >= 3
    wait_until(lambda: gauge() == 0, timeout_s=TTL_S + 30,
               what="uploads_in_progress to drop to 0")
    # several more sweeps must not count the same sessions again
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert gauge() == 0
        time.sleep(0.25)


def test_a_fresh_session_works_within_the_ttl(oci, repo):
    data = random_bytes(100)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.put(loc, params={"digest": digest_of(data)}, data=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert oci.get_blob(repo, digest_of(data)) == data


def test_expired_session_does_not_block_a_new_upload_of_the_same_blob(oci, repo):
    data = random_bytes(3000)
    loc = oci.start_upload(repo).headers["Location"]
    assert oci.patch(loc, data=data[:1000],
                     headers={**OCTET, "Content-Range": "0-999"}).status_code == 202
    wait_until(lambda: session_gone(oci, loc), timeout_s=TTL_S + 30,
               what="upload session to expire")
    assert oci.push_blob(repo, data, how="chunked") == digest_of(data)
    assert oci.get_blob(repo, digest_of(data)) == data


def test_sweeper_leaves_live_sessions_alone(server_factory):
    """With a long TTL and a fast sweeper, an open session keeps its bytes across many
    sweeps and completes normally."""
    srv = server_factory("--upload-ttl", "3600", "--upload-sweep-interval", "1")
    oci = srv.oci()
    repo = "expiry/long"
    data = random_bytes(5000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:2000], headers={**OCTET, "Content-Range": "0-1999"})
    assert r.status_code == 202
    loc = r.headers["Location"]
    # a negative check: the session must stay whole across several sweep intervals
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        r = oci.get(loc)
        assert r.status_code == 204, r.status_code
        assert r.headers.get("Range") == "0-1999"
        time.sleep(0.25)
    r = oci.patch(loc, data=data[2000:], headers={**OCTET, "Content-Range": "2000-4999"})
    assert r.status_code == 202, r.text
    r = oci.put(r.headers["Location"], params={"digest": digest_of(data)}, data=b"")
    assert r.status_code == 201, r.text
    assert oci.get_blob(repo, digest_of(data)) == data
    assert metric_sum(oci.metrics(), "meridian_uploads_in_progress") == 0


def test_status_of_a_session_another_node_sweeps_is_unknown(server_factory):
    """Shared PostgreSQL: another node's sweep holds the session's claim (an advisory lock)
    and has deleted its row while it removes the bytes. A status GET then answers 404
    BLOB_UPLOAD_UNKNOWN (the session is gone for the client), not 400 "in use"; a session
    whose claim a live request holds answers its status (204, its acknowledged Range) and
    stays "in use" for a PATCH."""
    if not pg_metastore.is_pg():
        import pytest
        pytest.skip("needs the servers on PostgreSQL (MERIDIAN_TEST_METASTORE=pg)")
    import subprocess
    srv = server_factory()
    oci = srv.oci()
    repo = "expiry/othernode"
    locs = []
    for _ in range(2):
        r = oci.patch(oci.start_upload(repo).headers["Location"], data=b"abc",
                      headers={**OCTET, "Content-Range": "0-2"})
        assert r.status_code == 202, r.text
        locs.append(r.headers["Location"])
    swept, busy = (re.search(r"[0-9a-f]{32}", loc).group(0) for loc in locs)
    # The other node: one session holding both claims (as upload_claim keys them).
    other = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d",
                              pg_metastore.database_uri(srv.data_dir)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        other.stdin.write("SELECT pg_advisory_lock(%d), pg_advisory_lock(%d);"
                          " DELETE FROM uploads WHERE id = '%s'; SELECT 'held';\n"
                          % (int(swept[:15], 16), int(busy[:15], 16), swept))
        other.stdin.flush()
        line = other.stdout.readline()
        while line.strip() != "held":
            assert line, "psql failed"
            line = other.stdout.readline()
        assert_error(oci.get(locs[0]), 404, "BLOB_UPLOAD_UNKNOWN")
        r = oci.get(locs[1])
        assert r.status_code == 204 and r.headers["Range"] == "0-2", (r.status_code, r.text)
        assert_error(oci.patch(locs[1], data=b"", headers=OCTET), 400, "BLOB_UPLOAD_INVALID")
        # Released before psql exits: a backend frees a leaving client's locks only after
        # the client is gone, so the next GET could still find them held.
        other.stdin.write("SELECT pg_advisory_unlock_all(); SELECT 'released';\n")
        other.stdin.flush()
        line = other.stdout.readline()
        while line.strip() != "released":
            assert line, "psql failed"
            line = other.stdout.readline()
    finally:
        other.stdin.close()
        other.wait(timeout=30)
    r = oci.get(locs[1])
    assert r.status_code == 204 and r.headers["Range"] == "0-2", (r.status_code, r.text)
