"""Base API (/v2/), health endpoints, metrics, and process lifecycle (SIGTERM, restart)."""

import http.client
import os
import signal
import socket
import threading
import time

import requests

import tier
from conftest import (MT_OCI_MANIFEST, assert_error, digest_of, metric_sum, random_bytes,
                      wait_until)


def test_v2_base_answers_200(oci):
    # distribution-spec "Determining Support": 200 means the spec is implemented.
    r = oci.get("/v2/")
    assert r.status_code == 200, r.text
    r = oci.head("/v2/")
    assert r.status_code == 200
    assert r.content == b""


def test_health_and_readiness(registry):
    for path in ("/healthz", "/readyz"):
        r = requests.get(registry.url + path, timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text)


def test_unknown_route_is_404_and_never_2xx(oci):
    for path in ("/v2/foo/bar/baz/qux", "/v2/foo/nothing", "/v3/", "/nope"):
        r = oci.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])


def test_metrics_is_prometheus_text(oci):
    r = oci.get("/metrics")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    names = {line.split("{")[0].split(" ")[0] for line in r.text.splitlines()
             if line and not line.startswith("#")}
    for want in ("meridian_http_requests_total", "meridian_http_bytes_in_total",
                 "meridian_http_bytes_out_total", "meridian_uploads_in_progress"):
        assert want in names or ("# TYPE %s" % want) in r.text, (want, r.text[:2000])


def test_request_counters_move(server_factory):
    """Counters count each request once, labelled by method and status, and byte
    counters grow by at least the payload that crossed the wire."""
    srv = server_factory()
    oci = srv.oci()
    repo = "metrics/count"
    before = oci.metrics()
    put201 = metric_sum(before, "meridian_http_requests_total", method="PUT", status="201")
    get404 = metric_sum(before, "meridian_http_requests_total", method="GET", status="404")
    bytes_in = metric_sum(before, "meridian_http_bytes_in_total")
    bytes_out = metric_sum(before, "meridian_http_bytes_out_total")

    blobs = [random_bytes(64 * 1024) for _ in range(3)]
    digests = [oci.push_blob(repo, b) for b in blobs]           # 3 x PUT 201
    for d in digests:
        assert oci.get_blob(repo, d)                              # 3 x GET 200
    missing = digest_of(b"never pushed")
    assert oci.get(oci.blob_path(repo, missing)).status_code == 404  # 1 x GET 404

    after = oci.metrics()
    assert metric_sum(after, "meridian_http_requests_total", method="PUT", status="201") \
        - put201 == 3
    assert metric_sum(after, "meridian_http_requests_total", method="GET", status="404") \
        - get404 == 1
    assert metric_sum(after, "meridian_http_bytes_in_total") - bytes_in >= 3 * 64 * 1024
    assert metric_sum(after, "meridian_http_bytes_out_total") - bytes_out >= 3 * 64 * 1024
    # every request sample names its route
    for name, labels, _v in after:
        if name == "meridian_http_requests_total":
            assert labels.get("route"), labels
            assert labels.get("method") and labels.get("status"), labels


def test_uploads_in_progress_gauge(server_factory):
    srv = server_factory()
    oci = srv.oci()
    repo = "metrics/gauge"

    def gauge():
        return metric_sum(oci.metrics(), "meridian_uploads_in_progress")

    g0 = gauge()
    loc1 = oci.start_upload(repo).headers["Location"]
    loc2 = oci.start_upload(repo).headers["Location"]
    assert gauge() == g0 + 2
    data = random_bytes(100)
    r = oci.put(loc1, params={"digest": digest_of(data)}, data=data)
    assert r.status_code == 201
    assert gauge() == g0 + 1
    assert oci.delete(loc2).status_code == 204
    assert gauge() == g0


def test_sigterm_exits_cleanly_and_data_survives_restart(server_factory):
    srv = server_factory()
    oci = srv.oci()
    repo = "lifecycle/restart"
    img = oci.push_image(repo, tag="v1")
    assert srv.stop() == 0, srv.log_tail()
    srv.start()
    oci = srv.oci()
    r = oci.get_manifest(repo, "v1")
    assert r.status_code == 200
    assert r.content == img.body
    for d, b in img.blobs.items():
        assert oci.get_blob(repo, d) == b


def tcp_queues(client_port, server_port):
    """(client's unsent bytes, server's unread bytes) of a loopback connection, from
    /proc/net/tcp (tx_queue of one end, rx_queue of the other)."""
    tx = rx = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            local, remote = int(cols[1].split(":")[1], 16), int(cols[2].split(":")[1], 16)
            tx_q, rx_q = (int(v, 16) for v in cols[4].split(":"))
            if (local, remote) == (client_port, server_port):
                tx = tx_q
            elif (local, remote) == (server_port, client_port):
                rx = rx_q
    return tx, rx


def test_sigterm_lets_an_in_flight_upload_finish(server_factory):
    """Graceful shutdown: a request already being received completes and is durable."""
    srv = server_factory()
    oci = srv.oci()
    repo = "lifecycle/inflight"
    data = random_bytes(256 * 1024)
    dig = digest_of(data)
    loc = oci.start_upload(repo).headers["Location"]
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    conn.putrequest("PUT", "%s%sdigest=%s" % (loc, "&" if "?" in loc else "?", dig))
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders()
    conn.send(data[: len(data) // 2])
    # wait until the server is demonstrably streaming this body, so the request is in
    # flight, not merely queued in the socket
    sid = loc.rstrip("/").split("/")[-1].split("?")[0]

    def receiving():
        if tier.on_fs_blobs():  # its session file grows
            return any(sid in f and os.path.getsize(f) > 0 for f in srv.upload_files())
        # S3 stages a request's bytes in memory: the server has read all that was sent
        # (128 KiB, more than libmicrohttpd buffers before the handler takes them)
        return tcp_queues(conn.sock.getsockname()[1], srv.port) == (0, 0)

    wait_until(receiving, timeout_s=10, what="the server to start receiving the body")
    srv.signal(signal.SIGTERM)

    def shutting_down():
        # the server stops accepting or stops reporting ready once it begins to stop
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=1)
        except OSError:
            return True
        s.close()
        try:
            return requests.get(srv.url + "/readyz", timeout=2).status_code != 200
        except requests.RequestException:
            return True

    wait_until(shutting_down, timeout_s=10, what="server to begin shutting down")
    conn.send(data[len(data) // 2:])
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 201, resp.status
    srv.proc.wait(timeout=30)
    assert srv.proc.returncode == 0, srv.log_tail()
    srv.start()
    assert srv.oci().get_blob(repo, dig) == data


def test_idle_keepalive_connection_does_not_block_shutdown(server_factory):
    """A keep-alive client that keeps a connection open does not stop shutdown."""
    srv = server_factory()
    s = requests.Session()
    assert s.get(srv.url + "/v2/", timeout=10).status_code == 200  # idle keep-alive conn
    t0 = time.monotonic()
    rc = srv.stop(timeout_s=20)
    assert rc == 0, srv.log_tail()
    assert time.monotonic() - t0 < 15, "shutdown waited on an idle keep-alive connection"
    s.close()


def test_manifest_and_blob_responses_carry_docker_content_digest(oci, repo):
    img = oci.push_image(repo, tag="latest")
    for method in ("GET", "HEAD"):
        r = oci.get_manifest(repo, "latest", accept=MT_OCI_MANIFEST, method=method)
        assert r.status_code == 200
        assert r.headers.get("Docker-Content-Digest") == img.digest
        for d in img.blobs:
            r = oci.request(method, oci.blob_path(repo, d))
            assert r.status_code == 200
            assert r.headers.get("Docker-Content-Digest") == d


def test_error_body_shape(oci, repo):
    r = oci.get(oci.manifest_path(repo, "nope"))
    code = assert_error(r, 404)
    assert code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")
    assert r.headers.get("Content-Type", "").startswith("application/json")


def test_concurrent_base_requests_are_served(oci):
    errors = []

    def hit():
        try:
            for _ in range(20):
                r = requests.get(oci.base + "/v2/", timeout=10)
                if r.status_code != 200:
                    errors.append(r.status_code)
        except requests.RequestException as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
