"""/readyz reports whether the region can serve: the metadata store answers a query and the
blob store takes writes (filesystem) or answers for its bucket (S3). 503 with a JSON body
naming what failed; /healthz stays liveness only (200 while the process answers). The
PostgreSQL case is in test_pg_restart.py, the S3 one in test_s3_faults.py."""

import os
import shutil

import pytest
import requests

import s3_blobstore
from conftest import wait_until


def readyz(url):
    r = requests.get(url + "/readyz", timeout=10)
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    return r.status_code, r.json()


def test_readyz_names_both_stores(registry):
    status, body = readyz(registry.url)
    assert status == 200, body
    assert body["status"] == "ready"
    assert body["checks"] == {"metastore": {"ok": True}, "blobstore": {"ok": True}}
    assert body["failed"] == []
    r = requests.get(registry.url + "/healthz", timeout=10)
    assert r.status_code == 200 and r.text == "ok\n"


@pytest.mark.skipif(s3_blobstore.is_on(), reason="damages the filesystem blob store")
def test_readyz_fails_while_the_blob_directory_takes_no_writes(server_factory, tmp_path):
    """DATA/tmp replaced by a file (root ignores permissions): the store cannot write,
    /readyz says so within about a second and recovers by itself once it is back."""
    srv = server_factory(data_dir=str(tmp_path / "data"))
    assert readyz(srv.url)[0] == 200
    tmp = os.path.join(srv.data_dir, "tmp")
    shutil.rmtree(tmp)
    with open(tmp, "w") as f:
        f.write("not a directory")
    try:
        wait_until(lambda: readyz(srv.url)[0] == 503, timeout_s=5, what="/readyz 503")
        status, body = readyz(srv.url)
        assert status == 503 and body["status"] == "unavailable", body
        assert body["failed"] == ["blobstore"], body
        assert body["checks"]["metastore"] == {"ok": True}
        assert body["checks"]["blobstore"]["ok"] is False
        assert srv.data_dir not in body["checks"]["blobstore"]["error"]  # no path shown
        r = requests.get(srv.url + "/healthz", timeout=10)
        assert r.status_code == 200 and r.text == "ok\n"
    finally:
        os.remove(tmp)
        os.mkdir(tmp, 0o700)
    wait_until(lambda: readyz(srv.url)[0] == 200, timeout_s=5, what="/readyz 200 again")
