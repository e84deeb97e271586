"""Data endpoints (issue 14, item 2; docs/front.md, "Data endpoints"): with --data-listen a
region answers blob GETs with 307 to a short-lived signed URL on its data listener, which
serves the bytes to whoever holds the URL (no token) and refuses tampered or expired URLs.
Real clients (skopeo, podman) follow the redirect, directly and through the front.
"""

import json
import os
import re
import time
import urllib.parse

import pytest
import requests

from clients_helpers import (OciLayout, RegistryProcess, assert_same_closure,  # noqa: F401
                             clients, sha256_digest, tool_missing)
from regions import unique_repo
from test_front import NET_R1, NET_R2, front, push_blob, request  # noqa: F401

pytest_plugins = ["geo_plugin"]

DATA_RE = re.compile(r"data endpoint at (http://[0-9.:]+)")


@pytest.fixture
def data_reg(tmp_path):
    reg = RegistryProcess(tmp_path / "reg", extra_args=["--data-listen", "127.0.0.1:0",
                                                        "--data-url-ttl", "2s"])
    reg.start()
    yield reg
    reg.stop_and_check()


def data_url_of(reg):
    m = DATA_RE.search(reg.log_path.read_text(errors="replace"))
    assert m, "no data endpoint in the log"
    return m.group(1)


def push(reg, repo, data):
    r = requests.post("%s/v2/%s/blobs/uploads/" % (reg.url, repo), timeout=30)
    assert r.status_code == 202, r.text
    loc = urllib.parse.urljoin(reg.url, r.headers["Location"])
    sep = "&" if "?" in loc else "?"
    r = requests.put(loc + sep + "digest=" + sha256_digest(data), data=data, timeout=30,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return sha256_digest(data)


def redirect_of(reg, repo, digest):
    r = requests.get("%s/v2/%s/blobs/%s" % (reg.url, repo, digest), allow_redirects=False,
                     timeout=30)
    assert r.status_code == 307, (r.status_code, r.text)
    assert r.headers["Docker-Content-Digest"] == digest
    return r.headers["Location"]


def test_blob_get_redirects_to_a_signed_data_url(data_reg):
    data = os.urandom(300_000)
    digest = push(data_reg, "data/a", data)
    loc = redirect_of(data_reg, "data/a", digest)
    assert loc.startswith(data_url_of(data_reg) + "/v2/data/a/blobs/" + digest + "?")
    # The data listener serves the bytes, whole and by range, with no credentials.
    r = requests.get(loc, timeout=30)
    assert r.status_code == 200 and r.content == data
    r = requests.get(loc, headers={"Range": "bytes=100-199"}, timeout=30)
    assert r.status_code == 206 and r.content == data[100:200]
    # HEAD stays on the region (clients probe before they upload), not redirected.
    r = requests.head("%s/v2/data/a/blobs/%s" % (data_reg.url, digest), allow_redirects=False,
                      timeout=30)
    assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(data)
    # A blob the repository does not link is a 404, never a redirect.
    r = requests.get("%s/v2/data/other/blobs/%s" % (data_reg.url, digest),
                     allow_redirects=False, timeout=30)
    assert r.status_code == 404


def test_tampered_or_expired_data_urls_are_refused(data_reg):
    data = os.urandom(10_000)
    digest = push(data_reg, "data/b", data)
    other = push(data_reg, "data/b", os.urandom(10_000))
    push(data_reg, "data/c", data)
    loc = redirect_of(data_reg, "data/b", digest)
    u = urllib.parse.urlsplit(loc)
    q = dict(urllib.parse.parse_qsl(u.query))
    base = "%s://%s" % (u.scheme, u.netloc)

    def get(path, query):
        return requests.get(base + path + "?" + urllib.parse.urlencode(query), timeout=30)

    sig = q["signature"]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    bad = [
        (u.path, dict(q, signature=flipped)),                                 # signature
        (u.path, dict(q, expires=str(int(q["expires"]) + 3600))),            # longer life
        (u.path.replace(digest, other), q),                                  # other blob
        (u.path.replace("/data/b/", "/data/c/"), q),                         # other repo
        (u.path, {"expires": q["expires"]}),                                 # unsigned
        # a name longer than any signed message (the signing buffer must not be overrun)
        (u.path.replace("/data/b/", "/data/" + "b" * 3000 + "/"), q),
    ]
    for path, query in bad:
        r = get(path, query)
        assert r.status_code == 403, (path, query, r.status_code)
        assert r.json()["errors"][0]["code"] == "DENIED"
    # Only blob downloads are served there.
    assert requests.put(loc, data=b"x", timeout=30).status_code == 405
    assert requests.get(base + "/v2/", timeout=30).status_code == 404
    assert requests.get(base + "/_meridian/v1/replications", timeout=30).status_code == 404
    # The good URL works until it expires (--data-url-ttl 2s), then is refused.
    assert get(u.path, q).status_code == 200
    deadline = time.monotonic() + 10
    while get(u.path, q).status_code == 200:
        assert time.monotonic() < deadline, "the signed URL never expired"
        time.sleep(0.2)
    r = get(u.path, q)
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
    assert int(q["expires"]) <= time.time() + 1


@pytest.mark.skipif(tool_missing("skopeo"), reason="skopeo is not installed")
def test_skopeo_and_podman_follow_data_endpoint_redirects(data_reg, clients, tmp_path):  # noqa: F811
    src = OciLayout(tmp_path / "src")
    desc, _ = src.add_image([{"a/data.bin": os.urandom(2 << 20)}, {"b/x": b"data endpoint\n"}])
    src.tag(desc, "v1")
    ref = "docker://%s/data/client:v1" % data_reg.host
    clients.skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", src.ref("v1"), ref)
    dst = OciLayout(tmp_path / "dst")
    clients.skopeo("copy", "--preserve-digests", "--src-tls-verify=false", ref, dst.ref("v1"))
    assert_same_closure(src, dst, desc["digest"], "v1")
    if not tool_missing("podman"):
        clients.podman("pull", "--tls-verify=false", "%s/data/client:v1" % data_reg.host)
    # The bytes came from the data listener: the region redirected every blob GET.
    log = data_reg.log_path.read_text(errors="replace")
    redirected = re.findall(r"method=GET path=/v2/data/client/blobs/(\S+) status=307", log)
    served = re.findall(r"method=GET path=/v2/data/client/blobs/(\S+) status=200", log)
    assert len(redirected) >= 3 and sorted(set(served)) == sorted(set(redirected)), log[-3000:]


@pytest.mark.skipif(tool_missing("skopeo"), reason="skopeo is not installed")
def test_data_endpoints_through_the_front(geo, front, clients, tmp_path):  # noqa: F811
    """Each region redirects to its own data listener; the front passes the 307 on, the
    client fetches the bytes from the region's data endpoint; replication between regions
    (peer fetches) is not redirected."""
    cluster = geo(2, extra_args=["--data-listen", "127.0.0.1:0"])
    r1, r2 = cluster
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2")])
    repo = unique_repo("data")
    blob = os.urandom(100_000)
    digest = sha256_digest(blob)
    assert push_blob(f, repo, blob, NET_R1) == "r1"
    urls = {}
    for region, source in ((r1, NET_R1), (r2, NET_R2)):
        status, h, body = request(f, "GET", "/v2/%s/blobs/%s" % (repo, digest), source=source)
        assert status == 307, (status, body[:300])
        assert h["meridian-region"] == region.name
        m = DATA_RE.search(region.log_text())
        assert h["location"].startswith(m.group(1) + "/"), (h["location"], m.group(1))
        urls[region.name] = h["location"]
        r = requests.get(h["location"], timeout=30)
        assert r.status_code == 200 and r.content == blob
    assert urls["r1"].split("/v2/")[0] != urls["r2"].split("/v2/")[0]
    # A real client through the front.
    src = OciLayout(tmp_path / "src")
    desc, _ = src.add_image([{"f": os.urandom(1 << 20)}])
    src.tag(desc, "v1")
    ref = "docker://%s/%s:v1" % (f.hostport, repo)
    clients.skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", src.ref("v1"), ref)
    dst = OciLayout(tmp_path / "dst")
    clients.skopeo("copy", "--preserve-digests", "--src-tls-verify=false", ref, dst.ref("v1"))
    assert_same_closure(src, dst, desc["digest"], "v1")
    assert json.loads(requests.get(r1.url + "/v2/%s/tags/list" % repo, timeout=30).text)
