"""Volumes and replica counts (docs/image-versions.md, "Replica counts and storage classes"):
a region started with --volume keeps each image version's blobs on regionalReplicaCount
distinct volumes of the version's storage class; counts above the region's volumes of that
class are refused (each region advertises its volumes in its replicated record); copies are
made when content arrives (push or replication) and when a count is raised, removed when it
is lowered; pulls keep working with one volume's files deleted or damaged, and the lost
copies are repaired from a sibling volume. The volumes here are plain directories.

Harness: regions.py (`meridian serve` processes r1, r2).
"""

import glob
import hashlib
import json
import os

from conftest import buildkit_cache_index
from regions import wait_for, unique_repo

pytest_plugins = ["geo_plugin"]

VOLUMES = ("v0", "v1", "v2")


def volume_args(root):
    """r<n> gets three standard volumes in zones a, b, c and one premium volume."""
    def args(n):
        out = []
        for i, v in enumerate(VOLUMES):
            out += ["--volume", "%s=%s/r%d/%s,zone=%s" % (v, root, n, v, "abc"[i])]
        out += ["--volume", "fast=%s/r%d/fast,class=premium,zone=a" % (root, n)]
        return out
    return args


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_file(root, n, volume, digest):
    hexd = digest.split(":", 1)[1]
    return os.path.join(root, "r%d" % n, volume, "blobs", "sha256", hexd[:2], hexd)


def holders(root, n, digest):
    return [v for v in VOLUMES + ("fast",) if os.path.exists(blob_file(root, n, v, digest))]


def show(region, repo, ver):
    r = region.api("GET", "image-versions", params={"repository": repo, "reference": ver})
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def row(doc, region):
    return [s for s in doc["replicationStatus"]["summary"] if s["region"] == region][0]


def update(region, repo, ver, body):
    return region.api("PATCH", "image-versions",
                      params={"repository": repo, "reference": ver}, json=body)


def test_replica_counts_on_volumes(geo, tmp_path):
    root = str(tmp_path)
    cluster = geo(2, region_args=volume_args(root))
    r1, r2 = cluster
    repo = unique_repo("golden")
    r = r1.api("POST", "image-definitions", params={"repository": repo},
               json={"defaultTargetRegions": ["r1=1", "r2=3"]})
    assert r.status_code == 201, r.text

    # the push lands in r1 (one copy), replication brings it to r2: three copies, one per
    # standard volume (zones a, b, c), none on the premium volume
    img = r1.oci().push_image(repo, "1.0.0", layers=2, layer_size=256 * 1024)
    blobs = sorted(img.blobs)
    wait_for(lambda: all(holders(root, 2, d) == list(VOLUMES) for d in blobs), 60,
             "three copies of each blob in r2")
    assert all(len(holders(root, 1, d)) == 1 for d in blobs), [holders(root, 1, d) for d in blobs]
    doc = wait_for(lambda: (lambda d: d if row(d, "r2").get("replicas") == "3/3" else None)(
        show(r2, repo, "1.0.0")), 30, "r2 reports 3/3")
    assert row(doc, "r2")["copies"] == 3, doc
    assert row(show(r1, repo, "1.0.0"), "r1")["replicas"] == "1/1"
    p = r2.cli("image-version", "show", "%s:1.0.0" % repo, "--expand", "replication-status")
    assert "3/3" in p.stdout, p.stdout

    # a count above the region's volumes of the class is refused and changes nothing
    before = show(r1, repo, "1.0.0")["publishingProfile"]
    for body in ({"addRegions": ["r2=4"]}, {"addRegions": ["r2=2=premium"]},
                 {"addRegions": ["r2=1=archive"]}):
        r = update(r1, repo, "1.0.0", body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "BAD_REQUEST", r.text
        assert "volume" in r.json()["error"]["message"], r.text
    assert show(r1, repo, "1.0.0")["publishingProfile"] == before

    # one volume's files deleted, another's damaged: pulls keep serving the right bytes,
    # and both are repaired from a sibling volume (r2 never asks r1)
    for d in blobs:
        os.unlink(blob_file(root, 2, "v1", d))
        with open(blob_file(root, 2, "v2", d), "r+b") as f:
            f.write(b"\0garbage")
    oci2 = r2.oci()
    for d in blobs:
        for _ in range(len(VOLUMES)):  # consecutive reads start on each volume in turn
            assert oci2.get_blob(repo, d) == img.blobs[d]
    wait_for(lambda: all(holders(root, 2, d) == list(VOLUMES) for d in blobs), 60,
             "lost copies repaired in r2")
    for d in blobs:
        for v in VOLUMES:
            with open(blob_file(root, 2, v, d), "rb") as f:
                assert f.read() == img.blobs[d], (v, d)
    assert glob.glob(os.path.join(root, "r2", "v2", "quarantine", "*")), "damaged copy kept"
    assert "copied blob" in r2.log_text()

    # lowering removes the extra copies; raising in r1 makes new ones there
    r = update(r1, repo, "1.0.0", {"addRegions": ["r2=1", "r1=2"]})
    assert r.status_code == 200, r.text
    wait_for(lambda: all(len(holders(root, 2, d)) == 1 for d in blobs), 60,
             "one copy left in r2")
    wait_for(lambda: all(len(holders(root, 1, d)) == 2 for d in blobs), 60,
             "two copies in r1")
    wait_for(lambda: row(show(r2, repo, "1.0.0"), "r2").get("replicas") == "1/1", 30,
             "r2 reports 1/1")
    for d in blobs:
        assert oci2.get_blob(repo, d) == img.blobs[d]

    # the premium class: one copy, on the premium volume only
    r = update(r1, repo, "1.0.0", {"addRegions": ["r2=1=premium"]})
    assert r.status_code == 200, r.text
    wait_for(lambda: all(holders(root, 2, d) == ["fast"] for d in blobs), 60,
             "the copy moved to the premium volume in r2")

    # a plain repository's blobs are kept once
    plain = r1.oci().push_image(unique_repo("plain"), "v1", layers=1, layer_size=4096)
    for d in plain.blobs:
        assert len(holders(root, 1, d)) == 1


def test_without_volumes_one_copy(geo):
    """The default store (the data directory) is one volume: counts above 1 are refused,
    and the status counts the one copy."""
    cluster = geo(1)
    r1 = cluster[0]
    repo = unique_repo("golden")
    r1.cli("image-definition", "create", repo)
    r1.oci().push_image(repo, "1.0.0", layers=1, layer_size=1024)
    assert row(show(r1, repo, "1.0.0"), "r1")["replicas"] == "1/1"
    r = update(r1, repo, "1.0.0", {"addRegions": ["r1=2"]})
    assert r.status_code == 400 and "volume" in r.json()["error"]["message"], r.text


def test_every_region_shows_every_regions_copies(geo, tmp_path):
    """Each region reports its copies in its status events (repl/copies.c): show from any
    region lists every target region's copies, and follows a changed count."""
    root = str(tmp_path)
    cluster = geo(2, region_args=volume_args(root))
    r1, r2 = cluster
    repo = unique_repo("golden")
    r = r1.api("POST", "image-definitions", params={"repository": repo},
               json={"defaultTargetRegions": ["r1=1", "r2=3"]})
    assert r.status_code == 201, r.text
    img = r1.oci().push_image(repo, "1.0.0", layers=2, layer_size=64 * 1024)
    wait_for(lambda: all(holders(root, 2, d) == list(VOLUMES) for d in img.blobs), 60,
             "three copies of each blob in r2")
    # r2's copies seen from r1, and r1's from r2 (each a report of the other region)
    doc = wait_for(lambda: (lambda d: d if row(d, "r2").get("replicas") == "3/3" else None)(
        show(r1, repo, "1.0.0")), 30, "r1 shows r2's 3/3")
    assert row(doc, "r2")["copies"] == 3 and row(doc, "r1")["replicas"] == "1/1", doc
    wait_for(lambda: row(show(r2, repo, "1.0.0"), "r1").get("replicas") == "1/1", 30,
             "r2 shows r1's 1/1")
    p = r1.cli("image-version", "show", "%s:1.0.0" % repo, "--expand", "replication-status")
    assert "3/3" in p.stdout and "1/1" in p.stdout, p.stdout
    # a lowered count: r2 removes two copies and says so; r1 shows it
    r = update(r1, repo, "1.0.0", {"addRegions": ["r2=1"]})
    assert r.status_code == 200, r.text
    wait_for(lambda: all(len(holders(root, 2, d)) == 1 for d in img.blobs), 60,
             "one copy left in r2")
    wait_for(lambda: row(show(r1, repo, "1.0.0"), "r2").get("replicas") == "1/1", 30,
             "r1 shows r2's 1/1")


def two_copy_definition(geo, root, name):
    """One region on volumes and an image definition whose versions keep two copies there:
    (the region, the repository)."""
    r1 = geo(1, region_args=volume_args(root))[0]
    repo = unique_repo(name)
    r = r1.api("POST", "image-definitions", params={"repository": repo},
               json={"defaultTargetRegions": ["r1=2"]})
    assert r.status_code == 201, r.text
    return r1, repo


def wait_two_copies(root, r1, repo, ver, digests):
    """Every blob of digests on two volumes of r1, and r1 reporting the version's count met."""
    wait_for(lambda: all(len(holders(root, 1, d)) == 2 for d in digests), 60,
             "two copies in r1")
    wait_for(lambda: row(show(r1, repo, ver), "r1").get("replicas") == "2/2", 30,
             "r1 reports 2/2")


def test_replica_counts_of_an_image_with_an_external_layer(geo, tmp_path):
    """A foreign layer clients fetch from its urls (not pushed) is not held here: the
    version's other blobs get their copies and the region reports the count met."""
    root = str(tmp_path)
    r1, repo = two_copy_definition(geo, root, "windows")
    oci = r1.oci()
    layer = os.urandom(8192)
    config = json.dumps({"architecture": "amd64", "os": "windows",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    oci.push_blob(repo, layer)
    oci.push_blob(repo, config)
    mt = "application/vnd.docker.distribution.manifest.v2+json"
    body = json.dumps({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                    "digest": "sha256:" + "cd" * 32, "size": 987654321,
                    "urls": ["https://example.invalid/base.tar.gz"]},
                   {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": digest(layer), "size": len(layer)}]}).encode()
    oci.push_manifest(repo, "10.0.17763", body, mt)
    wait_two_copies(root, r1, repo, "10.0.17763", (digest(layer), digest(config)))


def test_replica_counts_of_an_index_whose_children_are_blobs(geo, tmp_path):
    """BuildKit's registry cache (an index of layers and a cache config) as a version: its
    children are blobs, and each gets the version's copies."""
    root = str(tmp_path)
    r1, repo = two_copy_definition(geo, root, "cache")
    oci = r1.oci()
    body, blobs = buildkit_cache_index([os.urandom(4096)])
    for data in blobs.values():
        oci.push_blob(repo, data)
    oci.push_manifest(repo, "1.0.0", body, "application/vnd.oci.image.index.v1+json")
    wait_two_copies(root, r1, repo, "1.0.0", list(blobs))
