"""A push acknowledged after a concurrent delete or move in another region is the latest
write and wins everywhere (docs/replication.md, "Merging"), also when the pushing region
already had the manifest or the tag (a push that changed nothing there used to write no
event, so the older delete or move won). Regions are cut apart so that the writes are
concurrent; every wait polls observable state against a deadline.

Harness: regions.py."""

import time

from regions import manifest_digest, unique_repo, wait_converged

pytest_plugins = ["geo_plugin"]


def test_repush_of_a_deleted_manifest_under_a_new_tag_after_the_delete_survives(geo):
    """r1 deletes manifest M while cut off from r2; afterwards r2's client pushes the same M
    under a new tag. After the heal M and the new tag are in both; the tag the delete
    removed stays removed."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("repush")
    img = a.oci().push_image(repo, "t1")
    wait_converged(cluster, repos=[repo], expect={repo: {"t1": img.digest}})

    cluster.partition([a], [b])
    r = a.oci().delete("/v2/%s/manifests/%s" % (repo, img.digest))
    assert r.status_code == 202, (r.status_code, r.text)
    assert manifest_digest(a, repo, img.digest) is None
    time.sleep(0.01)  # the clocks are wall-time milliseconds: the push is later than the delete
    assert b.oci().push_manifest(repo, "t2", img.body, img.media_type) == img.digest

    cluster.heal()
    wait_converged(cluster, repos=[repo], timeout_s=60, expect={repo: {"t2": img.digest}},
                   what="the push made after the delete to win everywhere")


def test_retag_to_the_same_digest_after_a_concurrent_move_wins(geo):
    """t -> X in both. Cut apart, r2 moves t -> Y; later r1's client pushes X:t again (a no-op
    in r1, where t still names X). After the heal t names X in both: last writer wins."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("retag")
    x = a.oci().push_image(repo, "t")
    wait_converged(cluster, repos=[repo], expect={repo: {"t": x.digest}})

    cluster.partition([a], [b])
    y = b.oci().push_image(repo, "t")
    assert y.digest != x.digest
    time.sleep(0.01)
    assert a.oci().push_manifest(repo, "t", x.body, x.media_type) == x.digest

    cluster.heal()
    wait_converged(cluster, repos=[repo], timeout_s=60, expect={repo: {"t": x.digest}},
                   what="the latest write of t (r1's push of X) to win everywhere")
