"""Geo-replication, the everyday path (docs/replication.md): an image copied with skopeo into one
region is waited on with `meridian image-version wait --replicated` and then served, byte for
byte, by every other region; concurrent writes of one tag in several regions converge to one
winner everywhere; tag and manifest deletes propagate.

Harness: regions.py (three real `meridian serve` processes on 127.0.1.1-3, each behind a
fault proxy on 127.0.2.N that carries all peer traffic into it).
"""

import json
import random
import threading

import pytest
import requests

from clients_helpers import (OciLayout, assert_same_closure, clients,  # noqa: F401
                             tool_missing)
from conftest import buildkit_cache_index
from regions import (MANIFEST_ACCEPT, MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST,
                     canonical_json, image_version, manifest_digest, replication_summary,
                     sha256_digest, unique_repo, wait_converged, wait_for,
                     wait_replicated_cli)

pytest_plugins = ["geo_plugin"]

SRCNOTLS = "--src-tls-verify=false"
NOTLS = "--dest-tls-verify=false"


def docker_ref(region, repo, ref):
    sep = "@" if ref.startswith("sha256:") else ":"
    return "docker://%s/%s%s%s" % (region.hostport, repo, sep, ref)


def multiarch_index(layout, seed):
    rng = random.Random(seed)
    descs = []
    for arch in ("amd64", "arm64"):
        layers = [{"layer%d/data.bin" % i: rng.randbytes(rng.randrange(50_000, 400_000)),
                   "layer%d/hello.txt" % i: ("%s %s %d\n" % (seed, arch, i)).encode()}
                  for i in range(2)]
        desc, _ = layout.add_image(layers, arch=arch, labels={"seed": str(seed)})
        descs.append(desc)
    return layout.add_index(descs)


def test_skopeo_copy_into_one_region_is_served_identically_by_every_region(
        geo, clients, tmp_path):  # noqa: F811
    if tool_missing("skopeo"):
        pytest.skip("skopeo is not installed")
    cluster = geo(3)
    a, b, c = cluster
    repo = unique_repo("skopeo")
    src = OciLayout(tmp_path / "src")
    index_desc, _ = multiarch_index(src, seed=7)
    src.tag(index_desc, "v1")
    clients.skopeo("copy", "--all", "--preserve-digests", NOTLS, src.ref("v1"),
                   docker_ref(a, repo, "v1"))

    p = wait_replicated_cli(a, repo, "v1", timeout="2m")
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])

    # `wait` returned: every region holds the index, its children and every blob
    iv = image_version(a, repo, "v1")
    assert iv["digest"] == index_desc["digest"]
    assert iv["replicationStatus"]["aggregatedState"] == "Completed", iv
    summary = replication_summary(iv)
    assert set(summary) == {"r1", "r2", "r3"}, iv
    for region, e in summary.items():
        assert e["state"] == "Completed", (region, iv)
        assert e["bytesCopied"] == e["bytesTotal"] > 0, (region, iv)

    for region in (b, c):
        assert manifest_digest(region, repo, "v1") == index_desc["digest"]
        dst = OciLayout(tmp_path / ("from-" + region.name))
        clients.skopeo("copy", "--all", "--preserve-digests", SRCNOTLS,
                       docker_ref(region, repo, "v1"), dst.ref("v1"))
        assert_same_closure(src, dst, index_desc["digest"], "v1")
        # and by digest, a child alone
        child = json.loads(src.read_blob(index_desc["digest"]))["manifests"][1]["digest"]
        dst2 = OciLayout(tmp_path / ("child-from-" + region.name))
        clients.skopeo("copy", "--preserve-digests", SRCNOTLS,
                       docker_ref(region, repo, child), dst2.ref("c"))
        assert_same_closure(src, dst2, child, "c")

    # the same answer from any region
    for region in (b, c):
        iv2 = image_version(region, repo, "v1")
        assert iv2["digest"] == index_desc["digest"]
        assert iv2["replicationStatus"]["aggregatedState"] == "Completed", (region.name, iv2)

    # peer traffic went through the proxies, from each region's own address
    hosts = {r.host for r in cluster}
    for r in cluster:
        seen = set(r.proxy.sources())
        assert seen, "no peer traffic reached %s through its proxy" % r.name
        assert seen <= hosts - {r.host}, (
            "proxy of %s saw sources %s: outbound replication traffic must leave from the "
            "region's listen address" % (r.name, sorted(seen)))


def _prepare_image(region, repo, label):
    """Pushes the blobs of a one-layer image to region; returns (manifest bytes, layer)."""
    oci = region.oci()
    layer = random.randbytes(4096) + label.encode()
    config = canonical_json({"architecture": "amd64", "os": "linux", "author": label,
                             "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}})
    oci.push_blob(repo, layer)
    oci.push_blob(repo, config)
    m = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                        "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256_digest(config),
                                   "size": len(config)},
                        "layers": [{"mediaType": MT_OCI_LAYER, "digest": sha256_digest(layer),
                                    "size": len(layer)}]})
    return m, layer


def test_concurrent_writes_of_one_tag_converge_to_one_winner(geo):
    cluster = geo(3)
    repo = unique_repo("race")
    rounds = 3
    candidates = {}                       # tag -> {digest: layer bytes}
    for i in range(rounds):
        tag = "race%d" % i
        prepared = [(r, *_prepare_image(r, repo, "%s-%s" % (tag, r.name))) for r in cluster]
        barrier = threading.Barrier(len(prepared))
        results = {}

        def put(region, body):
            barrier.wait()
            results[region.name] = requests.put(
                "%s/v2/%s/manifests/%s" % (region.url, repo, tag), data=body,
                headers={"Content-Type": MT_OCI_MANIFEST}, timeout=30)
        threads = [threading.Thread(target=put, args=(r, m)) for r, m, _layer in prepared]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for name, resp in results.items():
            assert resp.status_code == 201, (name, resp.status_code, resp.text[:300])
        candidates[tag] = {sha256_digest(m): layer for _r, m, layer in prepared}

    state = wait_converged(cluster, timeout_s=90, repos=[repo],
                           what="every region to agree on the winners")
    for tag, cands in candidates.items():
        winner = state[repo][tag]
        assert winner in cands, (tag, winner, list(cands))

    # the winners are pullable everywhere, and no acknowledged write is lost: every
    # candidate stays reachable by digest in every region
    for tag, cands in candidates.items():
        winner = state[repo][tag]
        for region in cluster:
            layer = cands[winner]
            r = requests.get("%s/v2/%s/blobs/%s" % (region.url, repo, sha256_digest(layer)),
                             timeout=30)
            assert r.status_code == 200 and r.content == layer, (region.name, tag)
        for d in cands:
            wait_for(lambda: all(manifest_digest(r, repo, d) == d for r in cluster), 60,
                     "manifest %s (written in one region) to be served by digest everywhere"
                     % d)


def test_index_of_blobs_replicates_with_its_blobs(geo):
    """An index whose children are blobs (BuildKit's registry cache) is replicated like any
    other: every region serves it and the blobs it names."""
    a, b = geo(2)
    repo = unique_repo("cache")
    oci = a.oci()
    index, blobs = buildkit_cache_index([random.randbytes(2048 + i) for i in range(2)])
    for x in blobs.values():
        oci.push_blob(repo, x)
    r = requests.put("%s/v2/%s/manifests/cache" % (a.url, repo), data=index,
                     headers={"Content-Type": MT_OCI_INDEX}, timeout=30)
    assert r.status_code == 201, r.text
    wait_for(lambda: manifest_digest(b, repo, "cache") == sha256_digest(index), 60,
             "the index to be served by the other region")
    g = requests.get("%s/v2/%s/manifests/cache" % (b.url, repo),
                     headers={"Accept": MT_OCI_INDEX}, timeout=30)
    assert g.status_code == 200 and g.content == index
    for d, x in blobs.items():
        r = requests.get("%s/v2/%s/blobs/%s" % (b.url, repo, d), timeout=30)
        assert r.status_code == 200 and r.content == x, d


def test_tag_and_manifest_deletes_propagate(geo):
    cluster = geo(3)
    a, b, c = cluster
    repo = unique_repo("deletes")
    oci = a.oci()
    img1 = oci.push_image(repo, "t1")
    oci.push_manifest(repo, "t2", img1.body, img1.media_type)
    img2 = oci.push_image(repo, "t3")
    wait_converged(cluster, repos=[repo],
                   expect={repo: {"t1": img1.digest, "t2": img1.digest, "t3": img2.digest}})

    # a tag delete in b: the tag goes everywhere, the manifest stays (t2 still points to it)
    r = requests.delete("%s/v2/%s/manifests/t1" % (b.url, repo), timeout=30)
    assert r.status_code == 202, (r.status_code, r.text)
    wait_converged(cluster, repos=[repo], expect={repo: {"t2": img1.digest, "t3": img2.digest}},
                   what="the delete of tag t1 (made in r2)")
    for region in cluster:
        assert manifest_digest(region, repo, img1.digest) == img1.digest, region.name

    # a manifest delete in c: gone by digest and by tag everywhere
    r = requests.delete("%s/v2/%s/manifests/%s" % (c.url, repo, img2.digest), timeout=30)
    assert r.status_code == 202, (r.status_code, r.text)
    wait_converged(cluster, repos=[repo], expect={repo: {"t2": img1.digest}},
                   what="the delete of manifest %s (made in r3)" % img2.digest)
    for region in cluster:
        assert manifest_digest(region, repo, img2.digest) is None, region.name
        r = requests.get("%s/v2/%s/manifests/%s" % (region.url, repo, img2.digest),
                         headers={"Accept": MANIFEST_ACCEPT}, timeout=30)
        assert r.status_code == 404 and "MANIFEST_UNKNOWN" in r.text, (region.name, r.text)

    # a tombstone does not block a later write of the same tag
    img3 = oci.push_image(repo, "t1")
    wait_converged(cluster, repos=[repo], expect={repo: {"t1": img3.digest, "t2": img1.digest}},
                   what="tag t1 written again after its delete")
