"""PostgreSQL going away and coming back under a running server (MERIDIAN_TEST_METASTORE=pg
only): while the database is down, requests that need it answer 503 UNAVAILABLE (a client
retries), never a 500; once it is back the server goes on without a restart, every
connection made again, and what was acknowledged before is all there."""

import concurrent.futures
import time

import pytest
import requests

import pg_metastore
from conftest import HTTP_TIMEOUT_S, assert_error, random_bytes, wait_until
from fault_clients import ClientLoad

pytestmark = pytest.mark.skipif(not pg_metastore.is_pg(),
                                reason="needs the servers on PostgreSQL (MERIDIAN_TEST_METASTORE=pg)")


def test_database_restart_is_unavailable_then_recovered(registry, oci, repo):
    before = oci.push_image(repo, "before", layer_blobs=[random_bytes(2048)])
    url = oci.url(oci.manifest_path(repo, "before"))

    def get(_):
        r = requests.get(url, headers={"Accept": before.media_type, "Connection": "close"},
                         timeout=HTTP_TIMEOUT_S)
        return r.status_code, r.content

    def get_many():
        """Requests on new connections, at once: they reach many of the server's threads."""
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            return list(pool.map(get, range(64)))

    assert [code for code, _ in get_many()] == [200] * 64  # threads with a connection each
    pg_metastore.cluster_stop()
    try:
        r = oci.get(oci.manifest_path(repo, "before"),
                    headers={"Accept": before.media_type})
        assert_error(r, 503, "UNAVAILABLE")
        r = oci.post("/v2/%s/blobs/uploads/" % repo, data=b"")
        assert_error(r, 503, "UNAVAILABLE")
        # Readiness names the database; liveness stays 200 (the process is sound).
        wait_until(lambda: requests.get(registry.url + "/readyz", timeout=10).status_code
                   == 503, timeout_s=5, what="/readyz 503")
        body = requests.get(registry.url + "/readyz", timeout=10).json()
        assert body["failed"] == ["metastore"], body
        assert body["checks"]["blobstore"] == {"ok": True}
        assert requests.get(registry.url + "/healthz", timeout=10).status_code == 200
    finally:
        pg_metastore.cluster_start()
    wait_until(lambda: requests.get(registry.url + "/readyz", timeout=10).status_code == 200,
               timeout_s=10, what="/readyz 200 once the database is back")
    # Those threads' connections are stale now: each request still goes through.
    got = get_many()
    assert [code for code, _ in got] == [200] * 64, got
    assert all(body == before.body for _, body in got)
    after = oci.push_image(repo, "after", layer_blobs=[random_bytes(2048)])
    r = oci.get("/v2/%s/tags/list" % repo)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["tags"]) == ["after", "before"]
    assert oci.get_manifest(repo, "after").content == after.body


def test_database_restart_mid_push_loses_nothing_acknowledged(server_factory, tmp_path):
    """PostgreSQL stopped and started again while clients push and pull (chunked layers of
    up to 2 MiB, manifests): every failure is a 5xx with an OCI error body and takes less
    than a bound, every blob and manifest acknowledged before, during or after the restart
    pulls afterwards, and pushes succeed again without restarting the server."""
    srv = server_factory(data_dir=str(tmp_path / "data"))
    base = srv.url
    oci = srv.oci()
    pulled = {oci.push_blob("pgr/pull", random_bytes(100_000)): None}
    pulled = {d: oci.get(oci.blob_path("pgr/pull", d)).content for d in pulled}
    load = ClientLoad(base, "pgr/push", "pgr/pull", pulled, pullers=1, pause_s=0).start()
    rec = load.rec
    wait_until(lambda: len(rec.acked_manifests) >= 3, timeout_s=30, what="pushes going")
    down_at = time.monotonic()
    pg_metastore.cluster_stop()
    try:
        time.sleep(3)
    finally:
        pg_metastore.cluster_start()
    up_at = time.monotonic()
    acked_at_restart = len(rec.acked_manifests)
    wait_until(lambda: len(rec.acked_manifests) >= acked_at_restart + 3, timeout_s=30,
               what="pushes going again after the restart")
    load.stop()
    failed = load.failed()
    assert [r for r in failed if down_at <= r[0] <= up_at + 1], "the restart went unseen"
    for _, what, outcome, code, took in failed:
        assert isinstance(outcome, int) and 500 <= outcome < 600 and code is not None, \
            (what, outcome, code)
    assert max(r[4] for r in rec.rows) < 15, sorted(rec.rows, key=lambda r: -r[4])[:5]
    load.assert_acked_all_there(srv.oci())
    print("PostgreSQL restart: %d requests, %d failed, %d manifests acknowledged"
          % (len(rec.rows), len(failed), len(rec.acked_manifests)))
