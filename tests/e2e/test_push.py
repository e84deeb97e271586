"""Push workflow (distribution-spec "Push"): upload sessions, monolithic POST+PUT,
single POST, chunked PATCH, streamed PATCH, 416 on out-of-order chunks, resuming
with GET, cancel, bad digests, cross-repository mount and its fallback."""

import re
import secrets
import socket
import time
import urllib.parse

import pytest
import requests

from conftest import (UPLOAD_PATH_RE, assert_error, digest_of, path_of, random_bytes)

OCTET = {"Content-Type": "application/octet-stream"}


def session_id(location):
    m = UPLOAD_PATH_RE.match(path_of(location))
    assert m, "upload Location %r is not /v2/<name>/blobs/uploads/<32 hex>" % location
    return m.group("id")


def check_session_headers(r, repo, offset):
    """Headers every upload-session response carries (Location, Range, Docker-Upload-UUID)."""
    loc = r.headers.get("Location")
    assert loc, r.headers
    m = UPLOAD_PATH_RE.match(path_of(loc))
    assert m and m.group("name") == repo, loc
    assert r.headers.get("Docker-Upload-UUID") == m.group("id"), r.headers
    want = "0-%d" % (offset - 1) if offset > 0 else "0-0"
    assert r.headers.get("Range") == want, (r.headers.get("Range"), want)
    return loc


def check_blob_created(oci, r, repo, data):
    dig = digest_of(data) if not isinstance(data, tuple) else data[1]
    body = data if not isinstance(data, tuple) else data[0]
    assert r.status_code == 201, (r.status_code, r.text)
    loc = r.headers.get("Location")
    assert loc, r.headers
    assert r.headers.get("Docker-Content-Digest") == dig
    g = oci.get(loc)  # the Location is a pullable blob URL
    assert g.status_code == 200
    assert g.content == body
    assert oci.get_blob(repo, dig) == body


def test_post_starts_a_session(oci, repo):
    r = oci.post("/v2/%s/blobs/uploads/" % repo, data=b"")
    assert r.status_code == 202, r.text
    loc = check_session_headers(r, repo, 0)
    r2 = oci.post("/v2/%s/blobs/uploads/" % repo, data=b"")
    assert r2.status_code == 202
    assert session_id(r2.headers["Location"]) != session_id(loc), "session ids must be unique"


def test_monolithic_post_then_put(oci, repo):
    data = random_bytes(10_000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.put(loc, params={"digest": digest_of(data)}, data=data, headers=OCTET)
    check_blob_created(oci, r, repo, data)


def test_blob_is_invisible_until_the_upload_completes(oci, repo):
    data = random_bytes(3000)
    d = digest_of(data)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "0-999"})
    assert r.status_code == 202
    assert not oci.blob_exists(repo, d)
    r = oci.put(r.headers["Location"], params={"digest": d}, data=data[1000:],
                headers={**OCTET, "Content-Range": "1000-2999"})
    assert r.status_code == 201, r.text
    assert oci.blob_exists(repo, d)


def test_single_post_with_digest(oci, repo):
    data = random_bytes(5000)
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": digest_of(data)},
                 data=data, headers=OCTET)
    check_blob_created(oci, r, repo, data)


def test_single_post_of_an_existing_blob_is_idempotent(oci, repo):
    data = random_bytes(500)
    d = oci.push_blob(repo, data)
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": d}, data=data, headers=OCTET)
    check_blob_created(oci, r, repo, data)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.put(loc, params={"digest": d}, data=data, headers=OCTET)
    check_blob_created(oci, r, repo, data)


def test_chunked_upload(oci, repo):
    data = random_bytes(3 * 64 * 1024 - 5)
    loc = oci.post("/v2/%s/blobs/uploads/" % repo, data=b"",
                   headers={"Content-Length": "0"}).headers["Location"]
    off = 0
    for size in (64 * 1024, 64 * 1024, 64 * 1024 - 5):
        r = oci.patch(loc, data=data[off:off + size],
                      headers={**OCTET, "Content-Range": "%d-%d" % (off, off + size - 1)})
        assert r.status_code == 202, r.text
        off += size
        loc = check_session_headers(r, repo, off)
    r = oci.put(loc, params={"digest": digest_of(data)}, data=b"", headers=OCTET)
    check_blob_created(oci, r, repo, data)


def test_chunked_upload_with_final_chunk_in_put(oci, repo):
    data = random_bytes(100_001)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:50_001], headers={**OCTET, "Content-Range": "0-50000"})
    assert r.status_code == 202
    loc = check_session_headers(r, repo, 50_001)
    r = oci.put(loc, params={"digest": digest_of(data)}, data=data[50_001:],
                headers={**OCTET, "Content-Range": "50001-100000"})
    check_blob_created(oci, r, repo, data)


def test_chunks_with_the_rfc_content_range_form(oci, repo):
    """Content-Range in RFC 9110's form (unit, range, complete length or *) is read as the
    spec's <start>-<end>; a range past the length it states is refused."""
    data = random_bytes(3000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "bytes 0-999/3000"})
    assert r.status_code == 202, r.text
    loc = check_session_headers(r, repo, 1000)
    assert_error(oci.patch(loc, data=data[1000:2000],
                           headers={**OCTET, "Content-Range": "bytes 1000-1999/1500"}), 400,
                 "BLOB_UPLOAD_INVALID")
    r = oci.patch(loc, data=data[1000:], headers={**OCTET, "Content-Range": "bytes 1000-2999/*"})
    assert r.status_code == 202, r.text
    loc = check_session_headers(r, repo, 3000)
    r = oci.put(loc, params={"digest": digest_of(data)}, data=b"", headers=OCTET)
    check_blob_created(oci, r, repo, data)


def test_streamed_patch_without_content_range(oci, repo):
    data = random_bytes(70_000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data, headers=OCTET)
    assert r.status_code == 202, r.text
    loc = check_session_headers(r, repo, len(data))
    r = oci.put(loc, params={"digest": digest_of(data)}, data=b"")
    check_blob_created(oci, r, repo, data)


def test_sha512_uploads(oci, repo):
    for how in ("post_put", "post", "chunked", "stream"):
        data = random_bytes(4097)
        d = oci.push_blob(repo, data, how=how, alg="sha512")
        r = oci.get(oci.blob_path(repo, d))
        assert r.status_code == 200 and r.content == data, how
        assert r.headers.get("Docker-Content-Digest") == d


def test_empty_blob_via_post_put(oci, repo):
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.put(loc, params={"digest": digest_of(b"")}, data=b"")
    check_blob_created(oci, r, repo, b"")


def test_get_status_of_a_fresh_session(oci, repo):
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.get(loc)
    assert r.status_code == 204, r.text
    assert r.content == b""
    check_session_headers(r, repo, 0)


def test_head_status_answers_like_get(oci, repo):
    """RFC 9110 9.1 and 9.3.2: the upload status answers HEAD as it answers GET."""
    loc = oci.start_upload(repo).headers["Location"]
    assert oci.patch(loc, data=b"abc", headers={"Content-Range": "0-2"}).status_code == 202
    get = oci.get(loc)
    r = oci.head(loc)
    assert r.status_code == 204, (r.status_code, r.headers)
    for h in ("Location", "Range", "Docker-Upload-UUID"):
        assert r.headers.get(h) == get.headers.get(h), h
    check_session_headers(r, repo, 3)
    assert_error(oci.head("/v2/%s/blobs/uploads/%s" % (repo, "0" * 32)), 404)


def test_out_of_order_chunk_is_416_and_session_survives(oci, repo):
    data = random_bytes(3000)
    loc = oci.start_upload(repo).headers["Location"]
    # skipping ahead on an empty session
    r = oci.patch(loc, data=data[1000:2000], headers={**OCTET, "Content-Range": "1000-1999"})
    assert r.status_code == 416, (r.status_code, r.text)
    r = oci.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "0-999"})
    assert r.status_code == 202
    loc = r.headers["Location"]
    # re-sending the chunk already received
    r = oci.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "0-999"})
    assert r.status_code == 416
    # skipping ahead again
    r = oci.patch(loc, data=data[2000:], headers={**OCTET, "Content-Range": "2000-2999"})
    assert r.status_code == 416
    # overlapping the received bytes
    r = oci.patch(loc, data=data[500:1500], headers={**OCTET, "Content-Range": "500-1499"})
    assert r.status_code == 416
    # nothing was appended by the rejected chunks
    g = oci.get(loc)
    assert g.status_code == 204
    loc = check_session_headers(g, repo, 1000)
    r = oci.patch(loc, data=data[1000:], headers={**OCTET, "Content-Range": "1000-2999"})
    assert r.status_code == 202
    r = oci.put(r.headers["Location"], params={"digest": digest_of(data)}, data=b"")
    check_blob_created(oci, r, repo, data)


def test_out_of_order_final_chunk_in_put_is_416(oci, repo):
    data = random_bytes(2000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "0-999"})
    assert r.status_code == 202
    loc = r.headers["Location"]
    r = oci.put(loc, params={"digest": digest_of(data)}, data=data[1500:],
                headers={**OCTET, "Content-Range": "1500-1999"})
    assert r.status_code == 416, (r.status_code, r.text)
    assert not oci.blob_exists(repo, digest_of(data))
    g = oci.get(loc)
    assert g.status_code == 204
    check_session_headers(g, repo, 1000)


def test_resume_after_interruption_using_get_status(oci, repo):
    """The resumable-push use case: the client lost track, asks where the upload is,
    and sends only the remaining bytes."""
    data = random_bytes(200_000)
    loc = oci.start_upload(repo).headers["Location"]
    for off in (0, 40_000, 80_000):
        r = oci.patch(loc, data=data[off:off + 40_000],
                      headers={**OCTET, "Content-Range": "%d-%d" % (off, off + 39_999)})
        assert r.status_code == 202
        loc = r.headers["Location"]
    original = loc
    st = oci.get(original)
    assert st.status_code == 204
    rng = st.headers.get("Range")
    m = re.fullmatch(r"0-(\d+)", rng or "")
    assert m, rng
    resume_at = int(m.group(1)) + 1
    assert resume_at == 120_000
    loc = st.headers["Location"]
    r = oci.patch(loc, data=data[resume_at:],
                  headers={**OCTET, "Content-Range": "%d-%d" % (resume_at, len(data) - 1)})
    assert r.status_code == 202
    r = oci.put(r.headers["Location"], params={"digest": digest_of(data)}, data=b"")
    check_blob_created(oci, r, repo, data)


def test_status_while_a_stalled_patch_holds_the_session(oci, repo):
    """A PATCH whose client stalls mid-body holds the session until its body deadline; a
    status GET meanwhile (how a client that lost track resumes) is still 204 with the
    acknowledged Range (distribution-spec: a status GET of an active upload MUST be 204),
    and the upload resumes there once the stalled request is gone."""
    data = random_bytes(8000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "0-999"})
    assert r.status_code == 202
    loc = r.headers["Location"]
    u = urllib.parse.urlparse(oci.base)

    def stall():
        s = socket.create_connection((u.hostname, u.port), timeout=10)
        s.sendall(("PATCH %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/"
                   "octet-stream\r\nContent-Length: 5000\r\nContent-Range: 1000-5999"
                   "\r\n\r\n" % (path_of(loc), u.netloc)).encode() + data[1000:2000])
        return s

    def was_answered(s):
        s.setblocking(False)
        try:
            return s.recv(65536) is not None
        except BlockingIOError:
            return False
        finally:
            s.setblocking(True)

    stalled = stall()
    try:
        # The stalled PATCH holds the session once an empty PATCH is refused as busy. A
        # probe may itself hold the session when the stalled PATCH asks for it: that one is
        # then refused as busy (answered at once) and another takes its place.
        deadline = time.monotonic() + 30
        while True:
            busy = oci.patch(loc, data=b"", headers=OCTET)
            if busy.status_code == 400:
                break
            assert busy.status_code == 202, (busy.status_code, busy.text)
            assert time.monotonic() < deadline, "the stalled PATCH never took the session"
            if was_answered(stalled):
                stalled.close()
                stalled = stall()
            time.sleep(0.02)
        st = oci.get(loc)
        assert st.status_code == 204, (st.status_code, st.text)
        check_session_headers(st, repo, 1000)
    finally:
        stalled.close()
    # Once the server has seen the stalled request end, the upload resumes at the Range.
    deadline = time.monotonic() + 10
    while True:
        r = oci.patch(loc, data=data[1000:], headers={**OCTET, "Content-Range": "1000-7999"})
        if r.status_code == 202:
            break
        assert r.status_code == 400, (r.status_code, r.text)
        assert time.monotonic() < deadline, "the stalled PATCH never let the session go"
        time.sleep(0.02)
    r = oci.put(r.headers["Location"], params={"digest": digest_of(data)}, data=b"")
    check_blob_created(oci, r, repo, data)


def test_cancel_upload(oci, repo):
    data = random_bytes(1000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data, headers=OCTET)
    assert r.status_code == 202
    loc = r.headers["Location"]
    r = oci.delete(loc)
    assert r.status_code == 204, (r.status_code, r.text)
    assert_error(oci.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.patch(loc, data=b"x", headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.put(loc, params={"digest": digest_of(data)}, data=b""), 404,
                 "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.delete(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert not oci.blob_exists(repo, digest_of(data))


def test_session_is_gone_after_completion(oci, repo):
    data = random_bytes(100)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.put(loc, params={"digest": digest_of(data)}, data=data, headers=OCTET)
    assert r.status_code == 201
    assert_error(oci.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.put(loc, params={"digest": digest_of(data)}, data=data, headers=OCTET),
                 404, "BLOB_UPLOAD_UNKNOWN")


def test_unknown_session_id(oci, repo):
    loc = "/v2/%s/blobs/uploads/%s" % (repo, secrets.token_hex(16))
    assert_error(oci.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.patch(loc, data=b"abc", headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.put(loc, params={"digest": digest_of(b"abc")}, data=b"abc"), 404,
                 "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.delete(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert not oci.blob_exists(repo, digest_of(b"abc"))


def test_session_belongs_to_its_repository(oci, repo):
    data = random_bytes(100)
    loc = oci.start_upload(repo + "/a").headers["Location"]
    sid = session_id(loc)
    other = "/v2/%s/blobs/uploads/%s" % (repo + "/b", sid)
    assert_error(oci.get(other), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.put(other, params={"digest": digest_of(data)}, data=data), 404,
                 "BLOB_UPLOAD_UNKNOWN")
    assert not oci.blob_exists(repo + "/b", digest_of(data))
    # the session still works in its own repository
    r = oci.put(loc, params={"digest": digest_of(data)}, data=data, headers=OCTET)
    check_blob_created(oci, r, repo + "/a", data)


def test_put_with_wrong_digest_stores_nothing(registry, oci, repo):
    data = random_bytes(2000)
    claimed = digest_of(b"something else entirely")
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.put(loc, params={"digest": claimed}, data=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert not oci.blob_exists(repo, claimed)
    assert not oci.blob_exists(repo, digest_of(data))
    assert registry.blob_files(claimed.split(":")[1]) == []
    assert registry.blob_files(digest_of(data).split(":")[1]) == []


def test_chunked_upload_with_wrong_digest_stores_nothing(registry, oci, repo):
    data = random_bytes(5000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data, headers={**OCTET, "Content-Range": "0-4999"})
    assert r.status_code == 202
    bad = digest_of(data + b"oh no")
    r = oci.put(r.headers["Location"], params={"digest": bad}, data=b"")
    assert_error(r, 400, "DIGEST_INVALID")
    assert not oci.blob_exists(repo, bad)
    assert not oci.blob_exists(repo, digest_of(data))
    assert registry.blob_files(digest_of(data).split(":")[1]) == []


def test_single_post_with_wrong_digest_stores_nothing(oci, repo):
    data = random_bytes(700)
    bad = digest_of(b"nope")
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": bad}, data=data,
                 headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert not oci.blob_exists(repo, bad)
    assert not oci.blob_exists(repo, digest_of(data))


@pytest.mark.parametrize("bad", [
    "sha256:xyz",
    "sha256:" + "A" * 64,
    "sha256:" + "a" * 63,
    "sha512:" + "a" * 64,
    "sha256",
    ":" + "a" * 64,
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "",
])
def test_put_with_invalid_digest_parameter(oci, repo, bad):
    data = b"payload"
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.put(loc, params={"digest": bad}, data=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert not oci.blob_exists(repo, digest_of(data))


def test_put_without_digest_parameter(oci, repo):
    data = b"payload without digest"
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.put(loc, data=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert not oci.blob_exists(repo, digest_of(data))


def test_single_post_with_invalid_digest(oci, repo):
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": "sha256:nothex"},
                 data=b"abc", headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")


def test_patch_content_range_not_matching_body_length(oci, repo):
    data = random_bytes(100)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data, headers={**OCTET, "Content-Range": "0-199"})
    assert r.status_code in (400, 416), (r.status_code, r.text)
    g = oci.get(loc)
    assert g.status_code == 204
    check_session_headers(g, repo, 0)


@pytest.mark.parametrize("bad", ["bytes=abc", "10", "5-1", "-5", "0-", "a-b", "0-9-9"])
def test_patch_malformed_content_range(oci, repo, bad):
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=b"0123456789", headers={**OCTET, "Content-Range": bad})
    assert r.status_code in (400, 416), (bad, r.status_code, r.text)
    g = oci.get(loc)
    assert g.status_code == 204
    check_session_headers(g, repo, 0)


# -- cross-repository mount

def test_mount_from_repository_that_has_the_blob(oci, repo):
    data = random_bytes(3000)
    d = oci.push_blob(repo + "/src", data)
    r = oci.post("/v2/%s/blobs/uploads/" % (repo + "/dst"), params={"mount": d,
                                                                    "from": repo + "/src"})
    assert r.status_code == 201, (r.status_code, r.text)
    assert path_of(r.headers["Location"]) == "/v2/%s/blobs/%s" % (repo + "/dst", d)
    assert r.headers.get("Docker-Content-Digest") == d
    assert oci.get_blob(repo + "/dst", d) == data
    # the source keeps it
    assert oci.get_blob(repo + "/src", d) == data


def test_mount_sha512_blob(oci, repo):
    data = random_bytes(3000)
    d = oci.push_blob(repo + "/src", data, alg="sha512")
    r = oci.post("/v2/%s/blobs/uploads/" % (repo + "/dst"), params={"mount": d,
                                                                    "from": repo + "/src"})
    assert r.status_code == 201, (r.status_code, r.text)
    assert oci.get_blob(repo + "/dst", d) == data


def test_mount_from_repository_without_the_blob_falls_back_to_a_session(oci, repo):
    """The blob exists in the registry, but not in `from`: no mount (that would leak
    content across repositories); a 202 session instead, which completes normally."""
    data = random_bytes(3000)
    d = oci.push_blob(repo + "/holder", data)
    oci.push_blob(repo + "/empty", random_bytes(10))
    r = oci.post("/v2/%s/blobs/uploads/" % (repo + "/dst"), params={"mount": d,
                                                                    "from": repo + "/empty"})
    assert r.status_code == 202, (r.status_code, r.text)
    loc = check_session_headers(r, repo + "/dst", 0)
    assert not oci.blob_exists(repo + "/dst", d)
    r = oci.put(loc, params={"digest": d}, data=data, headers=OCTET)
    check_blob_created(oci, r, repo + "/dst", data)


def test_mount_of_unknown_blob_falls_back_to_a_session(oci, repo):
    data = random_bytes(500)
    d = digest_of(data)
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"mount": d, "from": repo + "/nowhere"})
    assert r.status_code == 202, (r.status_code, r.text)
    loc = check_session_headers(r, repo, 0)
    r = oci.put(loc, params={"digest": d}, data=data, headers=OCTET)
    check_blob_created(oci, r, repo, data)


def test_mount_without_from_of_unknown_blob_yields_a_session(oci, repo):
    d = digest_of(b"hello world")
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"mount": d})
    assert r.status_code == 202, (r.status_code, r.text)
    check_session_headers(r, repo, 0)


def test_mount_without_from_of_known_blob(oci, repo):
    # The registry MAY cross-mount without `from`; either way the result is usable.
    data = random_bytes(800)
    d = oci.push_blob(repo + "/src", data)
    r = oci.post("/v2/%s/blobs/uploads/" % (repo + "/dst"), params={"mount": d})
    assert r.status_code in (201, 202), (r.status_code, r.text)
    if r.status_code == 201:
        assert oci.get_blob(repo + "/dst", d) == data
    else:
        loc = check_session_headers(r, repo + "/dst", 0)
        r = oci.put(loc, params={"digest": d}, data=data, headers=OCTET)
        check_blob_created(oci, r, repo + "/dst", data)


def test_mount_with_invalid_digest(oci, repo):
    # either refused as DIGEST_INVALID, or ignored like distribution does (a plain
    # session, no mount): never a 201
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"mount": "sha256:zz", "from": repo})
    if r.status_code == 202:
        check_session_headers(r, repo, 0)
    else:
        assert_error(r, 400, "DIGEST_INVALID")


def _pieces(data, size=64 * 1024):
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize("streamed", [False, True])
def test_back_to_back_requests_on_a_session_are_never_refused_as_busy(oci, repo, streamed):
    """A client sends PATCH, then PUT once the PATCH was answered, each on its own
    connection (as Go clients such as skopeo may). The PUT must never be told the
    session is still in use by the finished PATCH."""
    failures = []
    for i in range(100):
        data = random_bytes(300_000 + i)
        loc = oci.start_upload(repo).headers["Location"]
        with requests.Session() as c1:
            if streamed:  # chunked transfer encoding, no Content-Range
                r = c1.patch(oci.url(loc), data=_pieces(data),
                             headers={**OCTET, "Connection": "close"}, timeout=30)
            else:
                r = c1.patch(oci.url(loc), data=data,
                             headers={**OCTET, "Connection": "close",
                                      "Content-Range": "0-%d" % (len(data) - 1)}, timeout=30)
        if r.status_code != 202:
            failures.append(("PATCH", r.status_code, r.text))
            continue
        with requests.Session() as c2:
            r = c2.put(oci.url(r.headers["Location"]), params={"digest": digest_of(data)},
                       data=b"", headers={"Connection": "close"}, timeout=30)
        if r.status_code != 201:
            failures.append(("PUT", r.status_code, r.text))
    assert not failures, "%d of 100 uploads refused: %s" % (len(failures), failures[:3])


def test_uploads_leave_no_session_files(server_factory):
    """Completed, failed and cancelled sessions leave nothing under DATA/uploads."""
    srv = server_factory()
    oci = srv.oci()
    repo = "push/cleanup"
    for how in ("post_put", "post", "chunked", "stream"):
        oci.push_blob(repo, random_bytes(10_000), how=how)
    loc = oci.start_upload(repo).headers["Location"]
    assert oci.patch(loc, data=b"abc", headers=OCTET).status_code == 202
    assert oci.delete(loc).status_code == 204
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.put(loc, params={"digest": digest_of(b"other")}, data=b"abc", headers=OCTET)
    assert r.status_code == 400
    r = oci.post("/v2/%s/blobs/uploads/" % repo, params={"digest": digest_of(b"x")},
                 data=b"abc", headers=OCTET)
    assert r.status_code == 400
    leftovers = srv.upload_files()
    if leftovers:
        # a session that failed its digest check may stay open for a retry, but
        # then it must still be a live session, not an orphaned file
        for f in leftovers:
            m = re.search(r"[0-9a-f]{32}", f)
            assert m, "stray file under uploads/: %s" % f
            st = oci.get("/v2/%s/blobs/uploads/%s" % (repo, m.group(0)))
            assert st.status_code == 204, "orphaned upload file %s" % f


def test_open_session_survives_a_restart(server_factory):
    """Resumable push across a registry restart: the session, its offset and its
    bytes are still there, and the upload completes."""
    srv = server_factory()
    oci = srv.oci()
    repo = "push/restart"
    data = random_bytes(150_000)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=data[:100_000], headers={**OCTET, "Content-Range": "0-99999"})
    assert r.status_code == 202
    loc = r.headers["Location"]
    assert srv.stop() == 0
    srv.start()
    oci = srv.oci()
    g = oci.get(loc)
    assert g.status_code == 204, (g.status_code, g.text)
    assert g.headers.get("Range") == "0-99999"
    r = oci.patch(g.headers["Location"], data=data[100_000:],
                  headers={**OCTET, "Content-Range": "100000-149999"})
    assert r.status_code == 202, r.text
    r = oci.put(r.headers["Location"], params={"digest": digest_of(data)}, data=b"")
    check_blob_created(oci, r, repo, data)
