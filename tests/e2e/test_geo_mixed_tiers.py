"""Three regions of one registry on different tiers (issue 11): r1 and r3 on the embedded
default (SQLite, blobs in files), r2 on the scale-out tier (PostgreSQL, blobs in S3). What
each region writes is served by the two others byte for byte, deletes propagate both ways,
and r2 really keeps its metadata in PostgreSQL and its blobs in the bucket.

In the e2e-scaleout stage every region is on the scale-out tier except r2's own choice of
database and prefix, which this test makes itself; the test then checks the same flows on
one tier. PostgreSQL (pg-up.sh) and Ceph RGW (ceph-rgw-up.sh) are started on first use.
"""

import os
import random

import pytest
import requests

import pg_metastore
import s3_blobstore
from regions import (MANIFEST_ACCEPT, canonical_json, manifest_digest, sha256_digest,
                     unique_repo, wait_converged, wait_for, wait_replicated_cli)

pytest_plugins = ["geo_plugin"]

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _tiers_available():
    try:
        pg_metastore._tools_dir()
    except RuntimeError:
        return False
    return s3_blobstore.available()


pytestmark = pytest.mark.skipif(not _tiers_available(),
                                reason="needs pg-up.sh and an S3 server (or a Ceph RGW to start)")


def _push(region, repo, tag, label):
    """A one-layer image pushed to region; returns (manifest digest, layer bytes)."""
    oci = region.oci()
    layer = random.randbytes(64 * 1024) + label.encode()
    config = canonical_json({"architecture": "amd64", "os": "linux", "author": label,
                             "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}})
    oci.push_blob(repo, layer)
    oci.push_blob(repo, config)
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256_digest(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": sha256_digest(layer), "size": len(layer)}]})
    r = oci.put_manifest(repo, tag, body)
    assert r.status_code == 201, (region.name, r.status_code, r.text)
    return sha256_digest(body), layer


def _blob_bytes(region, repo, digest):
    r = requests.get("%s/v2/%s/blobs/%s" % (region.url, repo, digest), timeout=30)
    assert r.status_code == 200, (region.name, digest, r.status_code, r.text[:300])
    return r.content


def test_regions_on_both_tiers_replicate_both_ways(geo, tmp_path):
    os.environ.update(s3_blobstore.server())  # the endpoint and keys reach r2 by environment
    prefix = "mixed-" + os.urandom(6).hex()
    tier_args = ["--metastore", pg_metastore.database_uri(tmp_path / "r2-metastore"),
                 "--blobstore", "s3://%s/%s" % (s3_blobstore.BUCKET, prefix)]
    cluster = geo(3, region_args=lambda n: tier_args if n == 2 else [])
    r1, r2, r3 = cluster
    repo = unique_repo("mixed")

    # one image written in each region, each served by every region, byte for byte
    pushed = {}
    for region in cluster:
        tag = "from-" + region.name
        pushed[tag] = _push(region, repo, tag, tag)
    for tag in pushed:
        p = wait_replicated_cli(r1, repo, tag)
        assert p.returncode == 0, (tag, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    expect = {repo: {tag: d for tag, (d, _) in pushed.items()}}
    wait_converged(cluster, repos=[repo], expect=expect, what="images from every tier")
    for region in cluster:
        for tag, (digest, layer) in pushed.items():
            assert manifest_digest(region, repo, tag) == digest, (region.name, tag)
            assert _blob_bytes(region, repo, sha256_digest(layer)) == layer, (region.name, tag)

    # r2 keeps its metadata in PostgreSQL and every layer in the bucket, under its prefix
    rows = pg_metastore.query_rows(tmp_path / "r2-metastore",
                                   "SELECT count(*) FROM manifests WHERE is_visible = 1")
    assert int(rows[0][0]) >= len(pushed), rows
    keys = set(s3_blobstore.list_keys(prefix + "/"))
    for tag, (_, layer) in pushed.items():
        hexd = sha256_digest(layer).split(":", 1)[1]
        assert any(k.endswith("/" + hexd) for k in keys), (tag, hexd, sorted(keys)[:20])
    assert not os.path.exists(os.path.join(r2.data_dir, "meta.db"))

    # a tag deleted on the scale-out region is gone everywhere, and one deleted on the
    # default tier is gone from the scale-out region
    for region, tag in ((r2, "from-r1"), (r1, "from-r2")):
        r = requests.delete("%s/v2/%s/manifests/%s" % (region.url, repo, tag), timeout=30)
        assert r.status_code == 202, (region.name, tag, r.status_code, r.text)
        del expect[repo][tag]
    wait_converged(cluster, repos=[repo], expect=expect, what="deletes across tiers")
    for region in cluster:
        r = requests.get("%s/v2/%s/manifests/from-r2" % (region.url, repo),
                         headers={"Accept": MANIFEST_ACCEPT}, timeout=30)
        assert r.status_code == 404, (region.name, r.status_code)

    # the scale-out region restarted catches up on what it missed while down
    r2.stop()
    late_digest, late_layer = _push(r3, repo, "while-r2-down", "late")
    r2.start()
    wait_for(lambda: manifest_digest(r2, repo, "while-r2-down") == late_digest, 90,
             "r2 catching up after its restart")
    wait_for(lambda: requests.get("%s/v2/%s/blobs/%s" % (r2.url, repo, sha256_digest(late_layer)),
                                  timeout=30).status_code == 200, 90, "the late layer on r2")
    assert _blob_bytes(r2, repo, sha256_digest(late_layer)) == late_layer
