"""A network partition between {r1} and {r2, r3}: writes go on on both sides (new images, the
same tag moved on both sides, a tag delete); each side converges on its own; after the heal
every region ends with identical repositories, tags and manifests, and nothing acknowledged on
either side is lost.

The partition is built from per-source cuts on the proxies in front of the regions (regions.py):
r1's address is refused by the proxies of r2 and r3, theirs by r1's.
"""

from regions import (manifest_digest, registry_state, unique_repo, wait_converged, wait_for,
                     wait_replicated_cli)

pytest_plugins = ["geo_plugin"]


def test_partition_writes_on_both_sides_then_heal_converges(geo):
    cluster = geo(3)
    a, b, c = cluster
    shared = unique_repo("shared")
    only_a, only_b, only_c = unique_repo("only-a"), unique_repo("only-b"), unique_repo("only-c")

    base = a.oci().push_image(shared, "common")
    a.oci().push_manifest(shared, "old", base.body, base.media_type)
    wait_converged(cluster, repos=[shared],
                   expect={shared: {"common": base.digest, "old": base.digest}})

    cluster.partition([a], [b, c])

    acked = {}                                   # digest -> (repo) written during the split
    img_a = a.oci().push_image(only_a, "a1")
    acked[img_a.digest] = only_a
    common_a = a.oci().push_image(shared, "common")
    acked[common_a.digest] = shared
    r = a.oci().delete("/v2/%s/manifests/old" % shared)
    assert r.status_code == 202, (r.status_code, r.text)

    img_b = b.oci().push_image(only_b, "b1")
    acked[img_b.digest] = only_b
    common_b = b.oci().push_image(shared, "common")
    acked[common_b.digest] = shared
    img_c = c.oci().push_image(only_c, "c1")
    acked[img_c.digest] = only_c

    # the side of r2 and r3 converges without r1 ...
    side = wait_converged([b, c], repos=[shared, only_b, only_c], timeout_s=60,
                          what="r2 and r3 to converge during the partition")
    assert side[only_b] == {"b1": img_b.digest} and side[only_c] == {"c1": img_c.digest}
    assert side[shared]["common"] == common_b.digest
    assert side[shared]["old"] == base.digest
    # ... and nothing crossed the cut
    assert manifest_digest(a, only_b, "b1") is None
    assert manifest_digest(a, only_c, "c1") is None
    assert manifest_digest(b, only_a, "a1") is None
    assert manifest_digest(c, only_a, "a1") is None
    assert registry_state(a, [shared])[shared] == {"common": common_a.digest}

    cluster.heal()
    final = wait_converged(cluster, timeout_s=120, what="every region to converge after heal")

    assert final[only_a] == {"a1": img_a.digest}
    assert final[only_b] == {"b1": img_b.digest}
    assert final[only_c] == {"c1": img_c.digest}
    # one winner for the tag moved on both sides; the delete made in r1 holds (it came
    # after r1's view of "old", and nobody wrote "old" since)
    assert final[shared]["common"] in (common_a.digest, common_b.digest), final[shared]
    assert "old" not in final[shared], final[shared]
    # every manifest acknowledged on either side is served by digest in every region
    for digest, repo in acked.items():
        wait_for(lambda: all(manifest_digest(r, repo, digest) == digest for r in cluster), 60,
                 "%s@%s to be served everywhere" % (repo, digest))

    # and the status agrees: the image written in r2 during the split is Completed everywhere
    p = wait_replicated_cli(a, only_b, "b1", timeout="1m", timeout_s=90)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])


def test_one_region_cut_off_catches_up_when_its_links_return(geo):
    """A region (not the home one) isolated from both others misses the writes made meanwhile,
    then catches up by itself; the writes it took while isolated spread."""
    cluster = geo(3)
    lonely = cluster[1]
    others = [r for r in cluster if r is not lonely]
    repo = unique_repo("isolated")
    cluster.partition([lonely], others)

    written = {}
    for r in others:
        img = r.oci().push_image(repo, "from-%s" % r.name)
        written["from-%s" % r.name] = img.digest
    img = lonely.oci().push_image(repo, "from-%s" % lonely.name)
    written["from-%s" % lonely.name] = img.digest

    wait_converged(others, repos=[repo], timeout_s=60,
                   expect={repo: {k: v for k, v in written.items()
                                  if k != "from-%s" % lonely.name}},
                   what="the connected regions to converge")
    assert registry_state(lonely, [repo]) == {repo: {"from-%s" % lonely.name:
                                                     written["from-%s" % lonely.name]}}
    cluster.heal()
    wait_converged(cluster, repos=[repo], timeout_s=90, expect={repo: written},
                   what="the isolated region to catch up")
