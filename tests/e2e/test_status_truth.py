"""Is replication status the truth? `image-version wait --replicated` (and aggregatedState)
promises that every target region serves the version, manifest and every blob, byte for byte.
Each test breaks a region's copy or its view under a fault, and checks both ways: when the
wait returns 0, every region serves the version by digest with the bytes pushed; when a
region cannot get it, the wait does not return 0 (2: timeout, 1: Failed) and the status does
not say Completed.

Scenarios: a blob lost or quarantined after Completed (also under an index), a policy that
cleared a region deleted, a target region removed from the registry, a pending manifest
pushed again by a client, kill -9 right after Completed, a region added later, a tag moved
while its old manifest is still copying, the same manifest pushed in two regions under a
partition, a region taken out of a version's targets and added back, wait against a region
that stopped answering, a region restored from an older copy of its data directory (its
reports relayed through a third region too) and one merely restarted; a tag deleted and
pushed again (in the region asked, or in a third), which is Completed only where it is served
by its tag.

Every wait polls observable state against a deadline (regions.wait_for)."""

import os

import pytest
import requests

import tier
from regions import (HTTP_TIMEOUT_S, MANIFEST_ACCEPT, MIB, image_version, manifest_digest,
                     replication_states, replication_summary, unique_repo, wait_for,
                     wait_replicated_cli)

pytest_plugins = ["geo_plugin"]


def serves(region, img):
    """True if region serves img by digest: its manifest and every blob, byte for byte."""
    r = requests.get("%s/v2/%s/manifests/%s" % (region.url, img.repo, img.digest),
                     headers={"Accept": MANIFEST_ACCEPT}, timeout=HTTP_TIMEOUT_S)
    if r.status_code != 200 or r.content != img.body:
        return False
    for d, data in img.blobs.items():
        b = requests.get("%s/v2/%s/blobs/%s" % (region.url, img.repo, d),
                         timeout=HTTP_TIMEOUT_S)
        if b.status_code != 200 or b.content != data:
            return False
    return all(serves(region, child) for child in img.children)


def assert_wait_truthful(region, regions, img, tag):
    """`wait --replicated` on region returns 0, and then every region serves img."""
    p = wait_replicated_cli(region, img.repo, tag, timeout="1m", timeout_s=90)
    assert p.returncode == 0, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])
    for r in regions:
        assert serves(r, img), "%s: wait returned 0 but %s does not serve %s@%s" % (
            region.name, r.name, img.repo, img.digest)


def assert_wait_fails(region, repo, tag):
    """`wait --replicated` does not return 0: 2 (timeout) or 1 (a region Failed)."""
    p = wait_replicated_cli(region, repo, tag, timeout="3s", timeout_s=60)
    assert p.returncode in (1, 2), (region.name, p.returncode, p.stdout[-1000:],
                                    p.stderr[-1000:])
    return p


def heard_from(cluster, src, dst):
    """Waits until dst has applied src's log as far as now (a marker pushed to src)."""
    marker = src.oci().push_image(unique_repo("marker"), "m")
    wait_for(lambda: manifest_digest(dst, marker.repo, "m") == marker.digest, 60,
             "%s to apply %s's log up to now" % (dst.name, src.name))


def assert_not_completed_in(cluster, region, other, repo, tag):
    """region no longer serves repo:tag: at once in its own view, and in other's once it has
    heard from region since, neither shows it Completed and wait does not return 0."""
    agg, states = replication_states(region, repo, tag)
    assert states.get(region.name) != "Completed", (region.name, agg, states)
    assert_wait_fails(region, repo, tag)
    heard_from(cluster, region, other)
    agg, states = replication_states(other, repo, tag)
    assert states.get(region.name) != "Completed", (other.name, agg, states)
    assert agg != "Completed", (other.name, agg, states)
    assert_wait_fails(other, repo, tag)


def blob_file(region, digest):
    paths = tier.stored_blobs(region.data_dir, digest.split(":")[1])
    assert len(paths) == 1, (region.name, digest, paths)
    return paths[0]


on_disk = pytest.mark.skipif(not tier.on_fs_blobs(), reason="damages a blob file on disk")


def layer_of(img):
    """A blob of img that is not its config (the first layer)."""
    import json
    return json.loads(img.body)["layers"][0]["digest"]


@on_disk
def test_blob_lost_after_completed_takes_the_region_out_of_completed(geo):
    """r2 reports M Completed; then its copy of a layer is lost while it cannot reach r1 (a
    read finds it missing and cannot fetch it back). r2 no longer serves M: neither r2 nor r1
    may go on showing r2 Completed, and wait must time out; once r2 can fetch it again, the
    wait returns 0 and both serve it whole."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("lost-blob")
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")

    cluster.cut_link(b, a)                       # r2 can no longer fetch from r1
    layer = layer_of(img)
    os.unlink(blob_file(b, layer))
    r = requests.get("%s/v2/%s/blobs/%s" % (b.url, repo, layer), timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 404, (r.status_code, r.text[:300])
    assert manifest_digest(b, repo, img.digest) is None   # hidden: not pullable there

    assert_not_completed_in(cluster, b, a, repo, "v1")

    a.proxy.heal()
    assert_wait_truthful(a, cluster, img, "v1")
    assert_wait_truthful(b, cluster, img, "v1")


@on_disk
def test_blob_quarantined_by_the_scrub_takes_the_region_out_of_completed(geo):
    """The same through the scrub: r2's copy of a layer is damaged (same size), the scrub
    quarantines it and r2 cannot fetch it back."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("quarantined")
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")

    cluster.cut_link(b, a)
    layer = layer_of(img)
    path = blob_file(b, layer)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(b"\xff" * size)
    r = requests.post(b.url + "/_meridian/v1/scrub", timeout=30)
    assert r.status_code == 202, (r.status_code, r.text[:300])
    wait_for(lambda: manifest_digest(b, repo, img.digest) is None, 60,
             "r2's scrub to hide the manifest needing the damaged layer")

    assert_not_completed_in(cluster, b, a, repo, "v1")

    a.proxy.heal()
    assert_wait_truthful(a, cluster, img, "v1")


def test_region_cleared_by_an_enforced_policy_is_not_completed_when_the_policy_goes(geo):
    """An enforced residency policy makes r2 remove everything of the repository (and
    every region shows r2 Failed); the policy is deleted while r2 cannot fetch from r1. r2
    holds nothing of it: r1 must not fall back on r2's report from before the removal
    (Completed), and wait must not return 0 until r2 has fetched it again."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("residency")
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")

    body = {"repositories": repo, "deniedRegions": ["r2"], "enforce": True}
    assert a.api("PUT", "policies/residency/no-r2", json=body).status_code == 200
    wait_for(lambda: b.api("GET", "audit", params={"action": "residency.enforce"}).json(), 60,
             "r2 to remove %s" % repo)
    assert not serves(b, img)
    assert replication_states(a, repo, "v1")[1].get("r2") == "Failed"

    cluster.cut_link(b, a)                       # r2 can no longer fetch from r1
    assert a.api("DELETE", "policies/residency/no-r2").status_code in (200, 204)
    agg, states = replication_states(a, repo, "v1")
    assert states.get("r2") != "Completed", (agg, states, "r2 removed %s" % repo)
    assert_wait_fails(a, repo, "v1")

    a.proxy.heal()
    assert_wait_truthful(a, cluster, img, "v1")


def test_version_targeting_a_region_removed_from_the_registry(geo):
    """1.0.0 targets r1, r2 and r3 and is Completed in each; then r3 is removed from the
    registry (it stops serving and deletes its blobs). r3 no longer serves the version:
    wait must not return 0 on r1 while r3 is still a target, nor show r3 Completed."""
    cluster = geo(3)
    a, b, c = cluster
    repo = unique_repo("gone-region")
    r = a.api("POST", "image-definitions", params={"repository": repo},
              json={"defaultTargetRegions": ["r1", "r2", "r3"]})
    assert r.status_code == 201, (r.status_code, r.text)
    img = a.oci().push_image(repo, "1.0.0")
    assert_wait_truthful(a, cluster, img, "1.0.0")

    a.cli("replication", "delete", c.name)
    cluster.forget(c)
    cluster.wait_members(names=[a.name, b.name], regions=[a, b])
    wait_for(lambda: not serves(c, img), 30, "r3 to stop serving once removed")
    agg, states = replication_states(a, repo, "1.0.0")
    assert states.get("r3") != "Completed" and agg != "Completed", (agg, states)
    p = assert_wait_fails(a, repo, "1.0.0")
    assert "r3 was removed from the registry" in p.stderr, p.stderr[-1000:]

    # taken out of the targets, the version is Completed again where it is served
    a.cli("image-version", "update", "%s:1.0.0" % repo, "--remove-region", "r3",
          "--allow-deletion-of-replicated-locations")
    assert_wait_truthful(a, [a, b], img, "1.0.0")


@on_disk
def test_blob_lost_under_an_index_takes_the_index_out_of_completed(geo):
    """r2 holds an index of two images; it loses a layer of one child while it cannot fetch
    from r1. That platform is not pullable in r2: the index (its tag) must not stay
    Completed there, nor in r1's view, and wait on the index's tag must not return 0."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("lost-under-index")
    oci = a.oci()
    children = [oci.push_image(repo, None) for _ in range(2)]
    index = oci.push_index(repo, children, tag="multi")
    assert_wait_truthful(a, cluster, index, "multi")

    cluster.cut_link(b, a)
    layer = layer_of(children[0])
    os.unlink(blob_file(b, layer))
    r = requests.get("%s/v2/%s/blobs/%s" % (b.url, repo, layer), timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 404, (r.status_code, r.text[:300])
    assert manifest_digest(b, repo, children[0].digest) is None
    assert not serves(b, index)

    assert_not_completed_in(cluster, b, a, repo, "multi")

    a.proxy.heal()
    assert_wait_truthful(a, cluster, index, "multi")
    assert_wait_truthful(b, cluster, index, "multi")


@on_disk
def test_pending_manifest_pushed_again_by_a_client_is_reported_completed(geo):
    """r2 lost a layer of M (M pending there, reported Pending) and cannot fetch from r1; a
    client pushes M again to r2, which makes it whole there. r2 serves it: its Completed must
    reach r1, and wait must return 0 (the push used to make M visible without a status
    event, so r1 showed r2 Pending for ever and wait hung)."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("pushed-again")
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")

    cluster.cut_link(b, a)
    layer = layer_of(img)
    os.unlink(blob_file(b, layer))
    r = requests.get("%s/v2/%s/blobs/%s" % (b.url, repo, layer), timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 404, (r.status_code, r.text[:300])
    assert manifest_digest(b, repo, img.digest) is None

    oci = b.oci()
    oci.push_blob(repo, img.blobs[layer])
    assert oci.push_manifest(repo, "v1", img.body, img.media_type) == img.digest
    assert serves(b, img)
    assert_wait_truthful(a, cluster, img, "v1")


def test_region_killed_right_after_completed_still_serves_after_restart(geo):
    """r2 is killed -9 as soon as it shows itself Completed, and restarted on its data
    directory: what it announced must still be served, byte for byte."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("kill-after")
    img = a.oci().push_image(repo, "v1", layers=3, layer_size=256 * 1024)

    def r2_completed_at_r2():
        iv = image_version(b, repo, "v1", missing_ok=True)
        return iv is not None and replication_summary(iv)["r2"]["state"] == "Completed"
    wait_for(r2_completed_at_r2, 60, "r2 Completed in its own view")
    b.kill9()
    b.start()
    assert serves(b, img)
    assert_wait_truthful(a, cluster, img, "v1")
    assert_wait_truthful(b, cluster, img, "v1")


def test_region_added_later_is_waited_for(geo):
    """A region joins after v1 was Completed everywhere: it is a target of v1 at once
    (Pending), and wait returns 0 only once it serves v1 too."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("added")
    img = a.oci().push_image(repo, "v1", layers=2, layer_size=512 * 1024)
    assert_wait_truthful(a, cluster, img, "v1")
    c = cluster.add()
    assert "r3" in replication_states(a, repo, "v1")[1]
    assert_wait_truthful(a, cluster, img, "v1")
    assert_wait_truthful(c, cluster, img, "v1")


def test_status_follows_the_tag_to_its_new_manifest(geo):
    """v1 moves to a new manifest while r2 is still copying the old one (slowly): the
    status is that of the new manifest, and wait returns once r2 serves the new one."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("moved")
    a.proxy.bandwidth(256 * 1024, src=b.host)   # r2 copies from r1 at 256 KiB/s
    a.oci().push_image(repo, "v1", layers=1, layer_size=4 * MIB)
    wait_for(lambda: replication_states(a, repo, "v1")[1].get("r2") == "InProgress", 30,
             "r2 copying the old v1")
    new = a.oci().push_image(repo, "v1", layers=1, layer_size=1024)
    assert image_version(a, repo, "v1")["digest"] == new.digest
    assert_wait_truthful(a, cluster, new, "v1")


def test_same_manifest_pushed_in_two_regions_under_a_partition(geo):
    """r1 and r2 cannot reach each other; a client pushes the same image to both. Once
    healed, wait returns 0 in both and both serve it (each announced its own push)."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("twice")
    cluster.partition([a], [b])
    img = a.oci().push_image(repo, "v1")
    oci = b.oci()
    for data in img.blobs.values():
        oci.push_blob(repo, data)
    assert oci.push_manifest(repo, "v1", img.body, img.media_type) == img.digest
    cluster.heal()
    assert_wait_truthful(a, cluster, img, "v1")
    assert_wait_truthful(b, cluster, img, "v1")


def test_push_again_after_a_delete_elsewhere_is_completed_there(geo):
    """v1 is Completed in both; r2 deletes the manifest while it cannot hear r1 (dropping r1's
    report of it), and a client pushes the same manifest to r1 again after that. Healed, the
    push (later) wins in both: r2 takes the manifest back and wait on r2 returns 0, which
    needs r1's report again, later than r2's delete (before: r1 announced nothing for a
    manifest it already held, and r2 showed it Pending for ever)."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("again")
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")
    cluster.partition([a], [b])
    r = b.oci().delete("/v2/%s/manifests/%s" % (repo, img.digest))
    assert r.status_code == 202, (r.status_code, r.text)
    assert a.oci().push_manifest(repo, "v1", img.body, img.media_type) == img.digest
    cluster.heal()
    wait_for(lambda: manifest_digest(b, repo, "v1") == img.digest, 60,
             "r2 to take the pushed manifest back")
    assert_wait_truthful(b, cluster, img, "v1")
    assert_wait_truthful(a, cluster, img, "v1")


def test_tag_deleted_and_pushed_again_is_served_by_tag_where_wait_says_so(geo):
    """v1 is Completed in r2, deleted by tag (r2 drops the tag, keeps the manifest), then
    pushed again in r1 while r2 cannot hear of it. r2's report is about the manifest, which
    it still holds: the version (the tag) is not served there, so it is not Completed and
    wait does not return 0 (before: wait returned 0 and a pull of v1 in r2 found nothing).
    Once healed, r2 applies the tag, acknowledges it, and wait returns 0."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("retag")
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")
    r = a.oci().delete("/v2/%s/manifests/v1" % repo)
    assert r.status_code == 202, (r.status_code, r.text)
    wait_for(lambda: manifest_digest(b, repo, "v1") is None, 30, "r2 to drop the tag")
    cluster.cut_link(b, a)                       # r2 hears nothing more from r1
    assert a.oci().push_manifest(repo, "v1", img.body, img.media_type) == img.digest
    agg, states = replication_states(a, repo, "v1")
    assert states.get(b.name) == "InProgress", (agg, states)
    assert_wait_fails(a, repo, "v1")
    assert manifest_digest(b, repo, "v1") is None, "r2 heard of v1 through a cut link"

    cluster.heal()
    assert_wait_truthful(a, cluster, img, "v1")
    assert manifest_digest(b, repo, "v1") == img.digest, "wait returned 0; r2 has no v1"


def test_tag_set_in_a_third_region_is_completed_where_it_is_served_by_tag(geo):
    """v1 is pushed in r3 and waited on in r1: r1 knows r2 applied r3's tag write from the
    version vector r2 acknowledges pulling from r1 (per origin, whichever way the write came),
    so wait returns 0 and every region serves v1 by its tag. Then r3 deletes v1 by tag and
    pushes it again while r2 hears from no one: in r1's view r2 is not Completed (it holds
    the manifest, not the tag) and wait fails; healed, wait returns 0 and r2 serves v1."""
    cluster = geo(3)
    a, b, c = cluster
    repo = unique_repo("third")
    img = c.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")
    for r in cluster:
        assert manifest_digest(r, repo, "v1") == img.digest, r.name
    r = c.oci().delete("/v2/%s/manifests/v1" % repo)
    assert r.status_code == 202, (r.status_code, r.text)
    for r in cluster:
        wait_for(lambda r=r: manifest_digest(r, repo, "v1") is None, 30,
                 "%s to drop the tag" % r.name)
    cluster.cut_link(b, a)                       # r2 hears from no one
    cluster.cut_link(b, c)
    assert c.oci().push_manifest(repo, "v1", img.body, img.media_type) == img.digest
    wait_for(lambda: manifest_digest(a, repo, "v1") == img.digest, 30, "r1 to apply r3's tag")
    agg, states = replication_states(a, repo, "v1")
    assert states.get(b.name) == "InProgress", (agg, states)
    assert states.get(c.name) == "Completed", (agg, states)
    assert_wait_fails(a, repo, "v1")
    assert manifest_digest(b, repo, "v1") is None, "r2 heard of v1 through a cut link"

    cluster.heal()
    assert_wait_truthful(a, cluster, img, "v1")
    for r in cluster:
        assert manifest_digest(r, repo, "v1") == img.digest, r.name


def test_tag_applied_through_a_relay_is_completed_while_the_direct_link_is_cut(geo):
    """r1 and r3 cannot reach each other either way; r2 relays. v1 pushed in r1 reaches r3
    through r2, which also relays what r3 acknowledged to it when r1 polls it: r1 shows r3
    Completed and wait returns 0 while the link is still cut, and r3 serves v1 by its tag
    (before: r3 acknowledged nothing to r1, so r1 showed it InProgress until the link
    healed). A tag deleted and pushed again while r3 hears from no one is not Completed for
    r3, relay or not; once r3 hears from r2 again it is."""
    cluster = geo(3)
    a, b, c = cluster
    cluster.cut_link(a, c)
    cluster.cut_link(c, a)
    repo = unique_repo("relayed-ack")
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")
    assert manifest_digest(c, repo, "v1") == img.digest
    agg, states = replication_states(a, repo, "v1")
    assert states.get(c.name) == "Completed", (agg, states)

    r = a.oci().delete("/v2/%s/manifests/v1" % repo)
    assert r.status_code == 202, (r.status_code, r.text)
    for r in (b, c):
        wait_for(lambda r=r: manifest_digest(r, repo, "v1") is None, 30,
                 "%s to drop the tag" % r.name)
    cluster.cut_link(c, b)                       # now r3 hears from no one
    assert a.oci().push_manifest(repo, "v1", img.body, img.media_type) == img.digest
    heard_from(cluster, a, b)
    agg, states = replication_states(a, repo, "v1")
    assert states.get(c.name) == "InProgress", (agg, states)
    assert_wait_fails(a, repo, "v1")
    assert manifest_digest(c, repo, "v1") is None, "r3 heard of v1 through a cut link"

    b.proxy.heal(src=c.host)                     # r3 hears from r2 again; r1-r3 still cut
    assert_wait_truthful(a, cluster, img, "v1")
    assert manifest_digest(c, repo, "v1") == img.digest, "wait returned 0; r3 has no v1"


def test_wait_on_a_region_that_stopped_answering_ends_at_its_timeout(geo):
    """The region wait asks is frozen (SIGSTOP: connections open, no answer): wait must
    still end at its --timeout with exit 2, not hang on the request."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("frozen")
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")
    a.sigstop()
    try:
        p = wait_replicated_cli(a, repo, "v1", timeout="3s", timeout_s=60)
    finally:
        a.sigcont()
    assert p.returncode == 2, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])


def test_region_taken_out_of_a_version_and_added_back(geo):
    """1.0.0 targets r1 and r2 (Completed in both); r1 cannot hear from r2 any more, takes
    r2 out of the targets (r2 releases its copy) and adds it back while r2 cannot fetch it.
    r2's report from before its removal (Completed) must not count: wait fails until r2
    has fetched it again."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("readded")
    r = a.api("POST", "image-definitions", params={"repository": repo},
              json={"defaultTargetRegions": ["r1", "r2"]})
    assert r.status_code == 201, (r.status_code, r.text)
    img = a.oci().push_image(repo, "1.0.0")
    assert_wait_truthful(a, cluster, img, "1.0.0")

    cluster.cut_link(a, b)                       # r1 hears nothing more from r2
    a.cli("image-version", "update", "%s:1.0.0" % repo, "--remove-region", "r2",
          "--allow-deletion-of-replicated-locations")
    wait_for(lambda: not serves(b, img), 30, "r2 to release 1.0.0")
    cluster.cut_link(b, a)                       # and r2 cannot fetch it back
    a.cli("image-version", "update", "%s:1.0.0" % repo, "--add-region", "r2")
    agg, states = replication_states(a, repo, "1.0.0")
    assert states.get("r2") != "Completed", (agg, states)
    assert_wait_fails(a, repo, "1.0.0")

    cluster.heal()
    assert_wait_truthful(a, cluster, img, "1.0.0")


def restore_from(region, backup):
    """Kills region and puts back the copy of its data taken earlier (its data directory,
    and its database on the scale-out tier; blobs in S3 stay as they are: newer ones the
    restored metadata does not name are not served)."""
    import shutil
    region.kill9()
    shutil.rmtree(region.data_dir)
    shutil.copytree(backup, region.data_dir)
    tier.meta_restore(region.data_dir)


def copy_data(region):
    """Stops region, copies its data aside, starts it again; returns the directory's copy."""
    import shutil
    region.stop()
    backup = region.data_dir + ".bak"
    shutil.copytree(region.data_dir, backup)
    tier.meta_copy(region.data_dir)
    region.start()
    return backup


def test_region_restored_from_an_older_copy_is_not_completed_for_what_it_lost(geo):
    """r2's data directory is restored from a copy taken after v0 and before v1, and r2 cannot
    reach r1 (nor fetch v1 again). r1, pulling from r2, finds that r2 lost events of its own
    name: r2's reports from before it reopened are void, so r2 is not Completed for v1 (nor
    for v0, until it reports again). Once the link heals, r2 reports v0 again (its restored
    database holds it) and fetches v1, and wait returns 0 for both."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("restored")
    v0 = a.oci().push_image(repo, "v0")
    assert_wait_truthful(a, cluster, v0, "v0")
    backup = copy_data(b)
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")
    restore_from(b, backup)
    cluster.cut_link(b, a)                       # the restored r2 cannot fetch v1 again
    b.start()
    assert not serves(b, img)
    wait_for(lambda: replication_states(a, repo, "v1")[1].get("r2") != "Completed", 30,
             "r1 to stop counting r2's Completed for v1")
    agg, states = replication_states(a, repo, "v1")
    assert agg != "Completed", (agg, states)
    assert_wait_fails(a, repo, "v1")
    cluster.heal()
    assert_wait_truthful(a, cluster, img, "v1")
    assert_wait_truthful(a, cluster, v0, "v0")
    assert_wait_truthful(b, cluster, img, "v1")


def test_region_restored_out_of_reach_is_not_completed_by_what_it_acknowledged_before(geo):
    """r3 held the manifest (as base) when a copy of its data was taken; v1 is then set on it
    in r1 and r3 applies it, and r3 is restored from the copy (v1 lost) where it cannot
    reach r1 either way, and r2 pulls from no one (it never gets v1, so neither does r3). r1
    still holds what r3 acknowledged to it before the restore (v1 applied), but r3 has
    acknowledged less to r2 since, and r2 relays that: the newest counts, so r1 does not show
    r3 Completed for v1, which r3 does not serve (before: any acknowledgement counted, and
    r1 showed r3 Completed for ever on its own stale one)."""
    cluster = geo(3)
    a, b, c = cluster
    repo = unique_repo("restored-acked")
    base = a.oci().push_image(repo, "base")
    assert_wait_truthful(a, cluster, base, "base")
    backup = copy_data(c)
    cluster.cut_link(b, a)                       # r2 pulls from no one: it never gets v1
    cluster.cut_link(b, c)
    assert a.oci().push_manifest(repo, "v1", base.body, base.media_type) == base.digest
    wait_for(lambda: manifest_digest(c, repo, "v1") == base.digest, 30, "r3 to apply v1")
    wait_for(lambda: replication_states(a, repo, "v1")[1].get(c.name) == "Completed", 30,
             "r1 to show r3 Completed for v1")
    restore_from(c, backup)
    cluster.cut_link(c, a)
    cluster.cut_link(a, c)
    c.start()
    assert manifest_digest(c, repo, "v1") is None
    wait_for(lambda: replication_states(a, repo, "v1")[1].get(c.name) != "Completed", 30,
             "r1 to stop counting what r3 acknowledged before its restore")
    assert manifest_digest(c, repo, "v1") is None, "r3 got v1 through a cut link"


def test_region_restored_gets_back_what_it_wrote_after_the_copy(geo):
    """v2 is pushed to r2 after the copy of its data was taken, and replicated; r2 is then
    restored from the copy. The peers hold v2's events under r2's name: r2 applies them as
    it catches up on its own name, fetches v2's content back from r1, and wait returns 0
    with both regions serving v2 (r1 first stops counting r2's report of before)."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("restored-own")
    backup = copy_data(b)
    img = b.oci().push_image(repo, "v2")
    assert_wait_truthful(a, cluster, img, "v2")
    restore_from(b, backup)
    b.start()
    assert_wait_truthful(a, cluster, img, "v2")
    assert_wait_truthful(b, cluster, img, "v2")


def test_region_restored_is_not_completed_where_its_reports_were_relayed(geo):
    """r3 hears of r2 only through r1. r2 is restored from a copy taken before v1 and
    cannot reach anyone: r1 finds it restored, and r3, which held r2's Completed for v1 as
    r1 relayed it, stops counting it too (r1's record of the restore is relayed the same
    way); once healed, wait returns 0 in r3."""
    cluster = geo(3)
    a, b, c = cluster
    cluster.cut_link(c, b)                       # r3 never pulls from r2
    repo = unique_repo("restored-relay")
    backup = copy_data(b)
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(c, cluster, img, "v1")
    restore_from(b, backup)
    cluster.cut_link(b, a)
    cluster.cut_link(b, c)
    b.start()
    wait_for(lambda: replication_states(c, repo, "v1")[1].get("r2") != "Completed", 30,
             "r3 to stop counting r2's Completed for v1")
    assert_wait_fails(c, repo, "v1")
    cluster.heal()
    assert_wait_truthful(c, cluster, img, "v1")


def test_region_restarted_keeps_its_completed(geo):
    """A region merely restarted (stopped, then killed -9) is not one restored from an older
    copy: once r1 has pulled from it again (r1's acknowledgement reached r2 after the
    restart, with the newest event of r2's name r1 holds, which r2 still holds), r1 still
    counts its Completed for v1, and wait returns 0 at once."""
    import time
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("restarted")
    img = a.oci().push_image(repo, "v1")
    assert_wait_truthful(a, cluster, img, "v1")
    for stop in (b.stop, b.kill9):
        stop()
        started_ms = int(time.time() * 1000)
        b.start()

        def r1_pulled_since():
            r = b.api("GET", "compaction")
            peers = {p["region"]: p for p in r.json().get("peers", [])}
            return peers.get("r1", {}).get("acked_ms", 0) > started_ms
        wait_for(r1_pulled_since, 30, "r1 to pull from the restarted r2")
        heard_from(cluster, b, a)
        agg, states = replication_states(a, repo, "v1")
        assert states.get("r2") == "Completed", (stop.__name__, agg, states)
        p = wait_replicated_cli(a, repo, "v1", timeout="5s", timeout_s=60)
        assert p.returncode == 0, (stop.__name__, p.returncode, p.stdout[-1000:])
        assert "was restored from an older copy" not in a.log_text(), stop.__name__
