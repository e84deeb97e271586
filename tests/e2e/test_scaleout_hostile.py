"""Hostile multi-node probes of one region (docs/scale-out.md, PostgreSQL only): two nodes
on one database and one data directory; requests of one client land on either node, as a
balancer without affinity would send them."""

import concurrent.futures
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

import pg_metastore
from conftest import OCI, canonical_json, digest_of, random_bytes, unique_name, wait_until
from test_scaleout_nodes import start_second_node

pytestmark = pytest.mark.skipif(not pg_metastore.is_pg(),
                                reason="needs the servers on PostgreSQL (MERIDIAN_TEST_METASTORE=pg)")

pytest_plugins = ["geo_plugin"]

REGION = "eastus"
NODE_ARGS = ["--region", REGION]
OCT = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def two(server_factory):
    a = server_factory(*NODE_ARGS)
    b = server_factory(*NODE_ARGS, data_dir=a.data_dir)
    return a, b


def path_of(location):
    return location if location.startswith("/") else "/" + location.split("/", 3)[3]


def assert_blob_on(nodes, repo, data):
    """Every node serves blob `data` of repo, whole."""
    for s in nodes:
        g = requests.get(s.url + "/v2/%s/blobs/%s" % (repo, digest_of(data)), timeout=30)
        assert g.status_code == 200 and g.content == data, (s.url, g.status_code)


def test_post_on_one_node_put_on_the_other(two):
    a, b = two
    repo = unique_name("e2e/mono")
    data = random_bytes(50_000)
    dig = digest_of(data)
    r = requests.post(a.url + "/v2/%s/blobs/uploads/" % repo, data=b"", timeout=30)
    assert r.status_code == 202, r.text
    p = path_of(r.headers["Location"])
    r = requests.get(b.url + p, timeout=30)
    assert r.status_code == 204, (r.status_code, r.text)
    r = requests.put(b.url + p, params={"digest": dig}, data=data, headers=OCT, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    assert_blob_on((a, b), repo, data)
    # the session is gone on both nodes
    for s in (a, b):
        r = requests.get(s.url + p, timeout=30)
        assert r.status_code == 404, (s.url, r.status_code, r.text)


def test_patch_on_a_put_with_body_on_b_then_status_on_a(two):
    a, b = two
    repo = unique_name("e2e/mix")
    data = random_bytes(90_000)
    r = requests.post(b.url + "/v2/%s/blobs/uploads/" % repo, data=b"", timeout=30)
    p = path_of(r.headers["Location"])
    r = requests.patch(a.url + p, data=data[:30_000], headers=OCT, timeout=30)
    assert r.status_code == 202, r.text
    r = requests.get(b.url + p, timeout=30)
    assert r.status_code == 204 and r.headers["Range"] == "0-29999", (r.status_code, r.headers)
    r = requests.patch(b.url + p, data=data[30_000:60_000], headers=OCT, timeout=30)
    assert r.status_code == 202, r.text
    r = requests.get(a.url + p, timeout=30)
    assert r.status_code == 204 and r.headers["Range"] == "0-59999", (r.status_code, r.headers)
    # a stale Content-Range through A (as if the client retried a chunk B took) is refused
    r = requests.patch(a.url + p, data=data[30_000:60_000], timeout=30,
                       headers=dict(OCT, **{"Content-Range": "30000-59999"}))
    assert r.status_code == 416, (r.status_code, r.text)
    r = requests.put(a.url + p, params={"digest": digest_of(data)}, data=data[60_000:],
                     headers=OCT, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    g = requests.get(b.url + "/v2/%s/blobs/%s" % (repo, digest_of(data)), timeout=30)
    assert g.status_code == 200 and g.content == data


def test_cross_repo_mount_on_b_of_a_blob_pushed_on_a(two):
    a, b = two
    src, dst = unique_name("e2e/src"), unique_name("e2e/dst")
    data = random_bytes(20_000)
    dig = OCI(a.url).push_blob(src, data)
    r = requests.post(b.url + "/v2/%s/blobs/uploads/" % dst,
                      params={"mount": dig, "from": src}, data=b"", timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    assert_blob_on((a, b), dst, data)


def test_same_blob_to_both_nodes_at_once(two):
    a, b = two
    repo = unique_name("e2e/same")
    for round_ in range(5):
        data = random_bytes(200_000)
        dig = digest_of(data)
        flows = ["post", "post_put", "chunked", "stream"]

        def push(i):
            srv = (a, b)[i % 2]
            return OCI(srv.url).push_blob(repo, data, how=flows[i % 4])
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(push, range(8))) == [dig] * 8
        assert_blob_on((a, b), repo, data)


def test_same_tag_pushed_on_both_nodes_at_once(two):
    a, b = two
    repo = unique_name("e2e/tag")
    for round_ in range(8):
        barrier = threading.Barrier(2)
        imgs = {}

        def push(i):
            srv = (a, b)[i]
            oci = OCI(srv.url)
            cfg = canonical_json({"architecture": "amd64", "os": "linux", "n": i, "r": round_})
            layer = random_bytes(1000)
            oci.push_blob(repo, cfg)
            oci.push_blob(repo, layer)
            m = canonical_json({"schemaVersion": 2,
                                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                           "digest": digest_of(cfg), "size": len(cfg)},
                                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                            "digest": digest_of(layer), "size": len(layer)}]})
            barrier.wait()
            r = oci.put_manifest(repo, "latest", m)
            imgs[i] = (r.status_code, digest_of(m))
        ts = [threading.Thread(target=push, args=(i,)) for i in range(2)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert [imgs[i][0] for i in range(2)] == [201, 201], imgs
        got = [requests.get(s.url + "/v2/%s/manifests/latest" % repo, timeout=30,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
               .headers.get("Docker-Content-Digest") for s in (a, b)]
        assert got[0] == got[1] and got[0] in (imgs[0][1], imgs[1][1]), (got, imgs)
        for i in range(2):
            r = requests.get(a.url + "/v2/%s/manifests/%s" % (repo, imgs[i][1]), timeout=30,
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 200


def test_blob_delete_racing_a_manifest_push_on_the_other_node(two):
    """A blob DELETE through B and a manifest PUT naming it through A at once: either the
    manifest is refused (the blob is gone) or it is stored and its blob pulls."""
    a, b = two
    repo = unique_name("e2e/race")
    for i in range(12):
        oci_a = OCI(a.url)
        cfg = canonical_json({"architecture": "amd64", "os": "linux", "i": i})
        layer = random_bytes(3000)
        oci_a.push_blob(repo, cfg)
        oci_a.push_blob(repo, layer)
        m = canonical_json({"schemaVersion": 2,
                            "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                       "digest": digest_of(cfg), "size": len(cfg)},
                            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                        "digest": digest_of(layer), "size": len(layer)}]})
        barrier = threading.Barrier(2)
        res = {}

        def put():
            barrier.wait()
            res["put"] = oci_a.put_manifest(repo, "t%d" % i, m).status_code

        def delete():
            barrier.wait()
            res["del"] = requests.delete(b.url + "/v2/%s/blobs/%s" % (repo, digest_of(layer)),
                                         timeout=30).status_code
        ts = [threading.Thread(target=put), threading.Thread(target=delete)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        assert not (res["put"] == 201 and res["del"] == 202), res
        if res["put"] == 201:
            assert_blob_on((a, b), repo, layer)


def test_upload_delete_on_b_while_patching_on_a(two):
    a, b = two
    repo = unique_name("e2e/cancel")
    r = requests.post(a.url + "/v2/%s/blobs/uploads/" % repo, data=b"", timeout=30)
    p = path_of(r.headers["Location"])
    r = requests.patch(a.url + p, data=random_bytes(10_000), headers=OCT, timeout=30)
    assert r.status_code == 202
    r = requests.delete(b.url + p, timeout=30)
    assert r.status_code == 204, (r.status_code, r.text)
    for s in (a, b):
        r = requests.get(s.url + p, timeout=30)
        assert r.status_code == 404, (s.url, r.status_code)
        r = requests.patch(s.url + p, data=b"x" * 10, headers=OCT, timeout=30)
        assert r.status_code == 404, (s.url, r.status_code, r.text)
        r = requests.put(s.url + p, params={"digest": digest_of(b"x")}, data=b"x",
                         headers=OCT, timeout=30)
        assert r.status_code == 404, (s.url, r.status_code, r.text)


def test_kill_mid_monolithic_put_then_finish_on_b(two):
    a, b = two
    repo = unique_name("e2e/killmono")
    data = random_bytes(400_000)
    dig = digest_of(data)
    r = requests.post(a.url + "/v2/%s/blobs/uploads/" % repo, data=b"", timeout=30)
    p = path_of(r.headers["Location"])
    sep = "&" if "?" in p else "?"
    sock = socket.create_connection(("127.0.0.1", a.port), timeout=30)
    sock.sendall(("PUT %s%sdigest=%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                  "Content-Length: %d\r\n\r\n" % (p, sep, dig, len(data))).encode())
    sock.sendall(data[:250_000])
    a.kill()
    sock.close()
    r = requests.get(b.url + p, timeout=30)
    assert r.status_code == 204, (r.status_code, r.text)
    assert r.headers.get("Range") in (None, "0-0"), r.headers
    g = requests.get(b.url + "/v2/%s/blobs/%s" % (repo, dig), timeout=30)
    assert g.status_code == 404
    r = requests.put(b.url + p, params={"digest": dig}, data=data, headers=OCT, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    g = requests.get(b.url + "/v2/%s/blobs/%s" % (repo, dig), timeout=30)
    assert g.status_code == 200 and g.content == data


def test_kill_mid_monolithic_post_digest_on_a(two):
    """POST ?digest= with the body, cut by kill -9: nothing served, B takes the same push."""
    a, b = two
    repo = unique_name("e2e/killpost")
    data = random_bytes(400_000)
    dig = digest_of(data)
    sock = socket.create_connection(("127.0.0.1", a.port), timeout=30)
    sock.sendall(("POST /v2/%s/blobs/uploads/?digest=%s HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                  % (repo, dig, len(data))).encode())
    sock.sendall(data[:250_000])
    a.kill()
    sock.close()
    assert requests.get(b.url + "/v2/%s/blobs/%s" % (repo, dig), timeout=30).status_code == 404
    r = requests.post(b.url + "/v2/%s/blobs/uploads/" % repo, params={"digest": dig},
                      data=data, headers=OCT, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    g = requests.get(b.url + "/v2/%s/blobs/%s" % (repo, dig), timeout=30)
    assert g.status_code == 200 and g.content == data


class HoldingReceiver:
    """Records every delivery; holds the first request unanswered until released."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ids = []
        self.first = threading.Event()
        self.release = threading.Event()
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with rcv.lock:
                    rcv.ids.append(json.loads(body)["id"])
                    hold = len(rcv.ids) == 1
                if hold:
                    rcv.first.set()
                    rcv.release.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.httpd.server_address[1]

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_webhook_sender_killed_mid_send_other_node_sends_it_once(server_factory):
    a = server_factory(*NODE_ARGS, "--webhook-backoff-max", "1s")
    rcv = HoldingReceiver()
    try:
        name = "kill" + unique_name("h").replace("-", "")[:20]
        r = requests.post(a.url + "/_meridian/v1/webhooks", timeout=30, json={
            "name": name, "location": REGION, "uri": rcv.url, "actions": ["push"]})
        assert r.status_code == 201, r.text
        repo = unique_name("e2e/hookkill")
        OCI(a.url).push_image(repo, tag="one", layers=1, layer_size=256)
        assert rcv.first.wait(30), "A never sent"
        b = server_factory(*NODE_ARGS, "--webhook-backoff-max", "1s", data_dir=a.data_dir)
        a.kill()
        t0 = time.monotonic()
        # a second push through B is delivered by B
        OCI(b.url).push_image(repo, tag="two", layers=1, layer_size=256)

        def settled():
            r = requests.get(b.url + "/_meridian/v1/webhooks/%s/events" % name, timeout=30)
            assert r.status_code == 200
            states = [d["state"] for d in r.json()]
            return len(states) == 2 and all(s == "delivered" for s in states)
        wait_until(settled, timeout_s=90, what="both deliveries delivered")
        took = time.monotonic() - t0
        with rcv.lock:
            ids = list(rcv.ids)
        # A's send (cut), then B's: the first delivery once more, the second once
        assert len(ids) == 3 and len(set(ids)) == 2 and ids.count(ids[0]) == 2, ids
        assert 30 <= took <= 60, took  # the dead node's claim ran out first (40 s)
    finally:
        rcv.stop()


@pytest.mark.parametrize("resume_on", ["same", "other"])
def test_patch_during_database_outage_leaves_the_session_as_acknowledged(two, resume_on):
    a, b = two
    repo = unique_name("e2e/pgout")
    data = random_bytes(300_000)
    r = requests.post(a.url + "/v2/%s/blobs/uploads/" % repo, data=b"", timeout=30)
    p = path_of(r.headers["Location"])
    r = requests.patch(a.url + p, data=data[:100_000], headers=OCT, timeout=30)
    assert r.status_code == 202
    pg_metastore.cluster_stop()
    try:
        r = requests.patch(a.url + p, data=data[100_000:200_000], timeout=30,
                           headers=dict(OCT, **{"Content-Range": "100000-199999"}))
        assert r.status_code == 503, (r.status_code, r.text)
        r = requests.put(a.url + p, params={"digest": digest_of(data[:200_000])}, timeout=30,
                         data=b"", headers=OCT)
        assert r.status_code == 503, (r.status_code, r.text)
    finally:
        pg_metastore.cluster_start()
    nxt = a if resume_on == "same" else b
    wait_until(lambda: requests.get(nxt.url + "/readyz", timeout=10).status_code == 200,
               timeout_s=20, what="ready")
    r = requests.get(nxt.url + p, timeout=30)
    if r.status_code == 503:
        r = requests.get(nxt.url + p, timeout=30)
    assert r.status_code == 204 and r.headers["Range"] == "0-99999", (r.status_code, r.headers)
    r = requests.patch(nxt.url + p, data=data[100_000:], timeout=30,
                       headers=dict(OCT, **{"Content-Range": "100000-299999"}))
    assert r.status_code == 202, (r.status_code, r.text)
    r = requests.put(a.url + p, params={"digest": digest_of(data)}, data=b"", headers=OCT,
                     timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    g = requests.get(b.url + "/v2/%s/blobs/%s" % (repo, digest_of(data)), timeout=30)
    assert g.status_code == 200 and g.content == data


@pytest.mark.parametrize("how", ["mount", "post", "post_put"])
def test_blob_delete_racing_a_commit_of_the_same_digest_elsewhere(two, how):
    """DELETE of a blob's last link through B while A links the same digest into another
    repository (mount, or an upload that finds the bytes there): whatever wins, a blob the
    registry answers for has its bytes."""
    a, b = two
    r1, r2 = unique_name("e2e/del1"), unique_name("e2e/del2")
    bad = []
    for i in range(25):
        data = random_bytes(5000)
        dig = digest_of(data)
        OCI(b.url).push_blob(r1, data)
        barrier = threading.Barrier(2)
        res = {}

        def link():
            barrier.wait()
            if how == "mount":
                res["link"] = requests.post(a.url + "/v2/%s/blobs/uploads/" % r2, timeout=30,
                                            params={"mount": dig, "from": r1}, data=b"").status_code
            elif how == "post":
                res["link"] = requests.post(a.url + "/v2/%s/blobs/uploads/" % r2, timeout=30,
                                            params={"digest": dig}, data=data,
                                            headers=OCT).status_code
            else:
                res["link"] = requests.put(a.url + res["loc"], params={"digest": dig},
                                           data=data, headers=OCT, timeout=30).status_code

        def delete():
            barrier.wait()
            res["del"] = requests.delete(b.url + "/v2/%s/blobs/%s" % (r1, dig),
                                         timeout=30).status_code
        if how == "post_put":
            res["loc"] = path_of(requests.post(a.url + "/v2/%s/blobs/uploads/" % r2,
                                               data=b"", timeout=30).headers["Location"])
        ts = [threading.Thread(target=link), threading.Thread(target=delete)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        for s in (a, b):
            for repo in (r1, r2):
                h = requests.head(s.url + "/v2/%s/blobs/%s" % (repo, dig), timeout=30)
                if h.status_code == 200:
                    g = requests.get(s.url + "/v2/%s/blobs/%s" % (repo, dig), timeout=30)
                    if g.status_code != 200 or g.content != data:
                        bad.append((i, repo, s.url, g.status_code, res))
    assert not bad, bad


def test_replication_holder_killed_mid_fetch_other_node_completes(geo):
    cluster = geo(2)
    r1, r2 = cluster
    wait_until(lambda: "this node runs the region's background work" in r2.log_text(),
               timeout_s=15, what="r2 holds the lease")
    proc, url_b, log = start_second_node(r2)
    try:
        repo = unique_name("e2e/replkill")
        oci = OCI(r1.url)
        pushed = {}
        for i in range(6):
            img = oci.push_image(repo, tag="t%d" % i, layers=2, layer_size=1_500_000)
            pushed["t%d" % i] = img
        # kill r2's first node while it fetches
        wait_until(lambda: requests.get(r2.url + "/v2/%s/tags/list" % repo, timeout=10)
                   .status_code == 200, timeout_s=30, what="r2 started pulling", interval_s=0.02)
        r2.kill9()

        def has_all():
            r = requests.get(url_b + "/v2/%s/tags/list" % repo, params={"n": 1000}, timeout=30)
            return r.status_code == 200 and sorted(r.json().get("tags") or []) == sorted(pushed)
        wait_until(has_all, timeout_s=120, what="every tag on r2's second node")
        for tag, img in pushed.items():
            r = requests.get(url_b + "/v2/%s/manifests/%s" % (repo, tag), timeout=30,
                             headers={"Accept": img.media_type})
            assert r.status_code == 200 and r.content == img.body
            for d, blob in img.blobs.items():
                def blob_ok():
                    g = requests.get(url_b + "/v2/%s/blobs/%s" % (repo, d), timeout=30)
                    return g.status_code == 200 and g.content == blob
                wait_until(blob_ok, timeout_s=60, what="blob %s on r2" % d)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_session_finished_on_b_is_gone_on_a(two):
    a, b = two
    repo = unique_name("e2e/fin")
    data = random_bytes(60_000)
    r = requests.post(a.url + "/v2/%s/blobs/uploads/" % repo, data=b"", timeout=30)
    p = path_of(r.headers["Location"])
    assert requests.patch(a.url + p, data=data[:30_000], headers=OCT, timeout=30).status_code == 202
    r = requests.put(b.url + p, params={"digest": digest_of(data)}, data=data[30_000:],
                     headers=OCT, timeout=30)
    assert r.status_code == 201, r.text
    r = requests.patch(a.url + p, data=b"y" * 100, headers=OCT, timeout=30)
    assert r.status_code == 404, (r.status_code, r.text)
    r = requests.put(a.url + p, params={"digest": digest_of(data[:30_000])}, data=b"",
                     headers=OCT, timeout=30)
    assert r.status_code == 404, (r.status_code, r.text)
    r = requests.delete(a.url + p, timeout=30)
    assert r.status_code == 404, (r.status_code, r.text)
    g = requests.get(a.url + "/v2/%s/blobs/%s" % (repo, digest_of(data)), timeout=30)
    assert g.status_code == 200 and g.content == data


def test_manifest_delete_racing_an_index_naming_it_on_the_other_node(two):
    a, b = two
    repo = unique_name("e2e/idx")
    bad = []
    for i in range(15):
        child = OCI(a.url).push_image(repo, layers=1, layer_size=300)
        idx = canonical_json({"schemaVersion": 2,
                              "mediaType": "application/vnd.oci.image.index.v1+json",
                              "manifests": [{"mediaType": child.media_type,
                                             "digest": child.digest,
                                             "size": len(child.body)}]})
        barrier = threading.Barrier(2)
        res = {}

        def put():
            barrier.wait()
            res["put"] = OCI(a.url).put_manifest(repo, "i%d" % i, idx,
                                                 "application/vnd.oci.image.index.v1+json").status_code

        def delete():
            barrier.wait()
            res["del"] = requests.delete(b.url + "/v2/%s/manifests/%s" % (repo, child.digest),
                                         timeout=30).status_code
        ts = [threading.Thread(target=put), threading.Thread(target=delete)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        if res["put"] == 201:
            for s in (a, b):
                g = requests.get(s.url + "/v2/%s/manifests/%s" % (repo, child.digest), timeout=30,
                                 headers={"Accept": child.media_type})
                if g.status_code != 200:
                    bad.append((i, s.url, g.status_code, res))
    assert not bad, bad


def test_tag_delete_racing_a_push_of_the_tag_nodes_agree(two):
    a, b = two
    repo = unique_name("e2e/tagdel")
    for i in range(15):
        first = OCI(a.url).push_image(repo, tag="t", layers=1, layer_size=200)
        nxt = OCI(a.url).push_image(repo, layers=1, layer_size=200, by_digest=True)
        barrier = threading.Barrier(2)
        res = {}

        def put():
            barrier.wait()
            res["put"] = OCI(a.url).put_manifest(repo, "t", nxt.body).status_code

        def delete():
            barrier.wait()
            res["del"] = requests.delete(b.url + "/v2/%s/manifests/t" % repo,
                                         timeout=30).status_code
        ts = [threading.Thread(target=put), threading.Thread(target=delete)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        got = [requests.get(s.url + "/v2/%s/manifests/t" % repo, timeout=30,
                            headers={"Accept": nxt.media_type}) for s in (a, b)]
        st = [(g.status_code, g.headers.get("Docker-Content-Digest")) for g in got]
        assert st[0] == st[1], (res, st)
        assert res["put"] == 201 and res["del"] in (202, 404), res
        assert st[0] in ((404, None), (200, nxt.digest)), (res, st, first.digest)


def test_one_send_at_a_time_per_webhook_across_nodes(two):
    """docs/webhooks.md: one send in flight per webhook, its deliveries in order, across
    the nodes too: each node's dispatcher knew only its own senders, so the other node
    sent the webhook's next delivery while the first was in flight (two at once)."""
    a, b = two
    lock = threading.Lock()
    state = {"in": 0, "max": 0, "ids": []}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state["in"] += 1
                state["max"] = max(state["max"], state["in"])
                state["ids"].append(json.loads(body)["id"])
            time.sleep(0.5)  # a slow receiver: sends overlap unless serialized
            with lock:
                state["in"] -= 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        name = "seq" + unique_name("h").replace("-", "")[:20]
        r = requests.post(a.url + "/_meridian/v1/webhooks", timeout=30, json={
            "name": name, "location": REGION,
            "uri": "http://127.0.0.1:%d/hook" % httpd.server_address[1], "actions": ["push"]})
        assert r.status_code == 201, r.text
        repo = unique_name("e2e/seq")
        for i in range(8):
            OCI((a, b)[i % 2].url).push_image(repo, tag="t%d" % i, layers=1, layer_size=100)

        def settled():
            r = requests.get(a.url + "/_meridian/v1/webhooks/%s/events" % name, timeout=30)
            return all(d["state"] == "delivered" for d in r.json()) and len(r.json()) == 8
        wait_until(settled, timeout_s=60, what="delivered")
        assert state["max"] == 1, state
        r = requests.get(a.url + "/_meridian/v1/webhooks/%s/events" % name, timeout=30)
        assert state["ids"] == [d["id"] for d in reversed(r.json())], "not in order"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_database_restart_under_pushes_through_both_nodes(two):
    """PostgreSQL stopped and started under pushes whose requests alternate between the
    nodes (each blob POSTed on one node and PUT on the other): every failure is a 5xx,
    every push acknowledged (manifest 201) is whole on both nodes afterwards."""
    a, b = two
    repo = unique_name("e2e/pgboth")
    acked, errors = {}, []
    stop = threading.Event()

    def pusher(t):
        n = 0
        while not stop.is_set():
            n += 1
            tag = "t%d-%d" % (t, n)
            first, second = (a, b) if (t + n) % 2 else (b, a)
            try:
                blobs = [canonical_json({"architecture": "amd64", "os": "linux", "tag": tag}),
                         random_bytes(20_000)]
                ok = True
                for blob in blobs:
                    r = requests.post(first.url + "/v2/%s/blobs/uploads/" % repo, data=b"",
                                      timeout=30)
                    if r.status_code != 202:
                        errors.append(r.status_code)
                        ok = False
                        break
                    r = requests.put(second.url + path_of(r.headers["Location"]),
                                     params={"digest": digest_of(blob)}, data=blob,
                                     headers=OCT, timeout=30)
                    if r.status_code != 201:
                        errors.append(r.status_code)
                        ok = False
                        break
                if not ok:
                    continue
                m = canonical_json({
                    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": digest_of(blobs[0]), "size": len(blobs[0])},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": digest_of(blobs[1]), "size": len(blobs[1])}]})
                r = OCI(first.url).put_manifest(repo, tag, m)
                if r.status_code == 201:
                    acked[tag] = (digest_of(m), blobs)
                else:
                    errors.append(r.status_code)
            except requests.RequestException as exc:
                errors.append(str(exc))

    ts = [threading.Thread(target=pusher, args=(t,)) for t in range(3)]
    [t.start() for t in ts]
    try:
        wait_until(lambda: len(acked) >= 5, timeout_s=30, what="pushes before the restart")
        pg_metastore.cluster_stop()
        n_before = len(acked)
        wait_until(lambda: len(errors) >= 3, timeout_s=30, what="refusals while it is down")
        pg_metastore.cluster_start()
        wait_until(lambda: len(acked) >= n_before + 5, timeout_s=60,
                   what="pushes after the restart")
    finally:
        stop.set()
        [t.join() for t in ts]
    assert all(isinstance(x, int) and 500 <= x <= 599 for x in errors), errors
    for tag, (dig, blobs) in acked.items():
        for s in (a, b):
            r = requests.get(s.url + "/v2/%s/manifests/%s" % (repo, tag), timeout=30,
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == dig, (tag, s.url)
            for blob in blobs:
                assert_blob_on((s,), repo, blob)


def test_collector_killed_mid_run_frees_the_fence_and_leaves_no_half_blob(server_factory):
    """A GC run through A killed (-9) in its middle: B commits at once (the fence went
    with A's connections), B's own run finishes the job, and every blob a node answers
    for has its bytes."""
    args = NODE_ARGS + ["--gc-grace", "1s", "--gc-interval", "1h"]
    a = server_factory(*args)
    b = server_factory(*args, data_dir=a.data_dir)
    repo = unique_name("e2e/gckill")
    blobs = {}
    for i in range(150):  # linked, named by no manifest: collected after the grace
        data = random_bytes(2000)
        blobs[OCI((a, b)[i % 2].url).push_blob(repo, data)] = data
    time.sleep(1.5)  # the grace, a property of the data, not a race
    out = {}

    def run():
        try:
            out["r"] = requests.post(a.url + "/_meridian/v1/gc/run", timeout=60).status_code
        except requests.RequestException as exc:
            out["r"] = str(exc)
    t = threading.Thread(target=run)
    t.start()
    wait_until(lambda: any(not OCI(b.url).blob_exists(repo, d) for d in list(blobs)[:20]),
               timeout_s=30, what="A's run removing blobs", interval_s=0.01)
    a.kill()
    t.join()
    t0 = time.monotonic()
    OCI(b.url).push_image(repo, tag="after", layers=1, layer_size=500)
    assert time.monotonic() - t0 < 5
    r = requests.post(b.url + "/_meridian/v1/gc/run", timeout=60)
    assert r.status_code == 200, r.text
    for d, data in blobs.items():
        h = requests.head(b.url + "/v2/%s/blobs/%s" % (repo, d), timeout=30)
        assert h.status_code == 404, (d, h.status_code)
    img = OCI(b.url).get_manifest(repo, "after")
    assert img.status_code == 200
