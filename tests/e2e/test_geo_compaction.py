"""Event-log compaction (docs/replication.md, "Compaction"): events every live region has
acknowledged are dropped and applied tombstones expire; a region that joins afterwards, or
one back from beyond --compact-horizon, catches up from a snapshot of a peer's tables and
converges to the same state, deletes winning; a region on a build without compaction keeps
replicating with compacting ones (the events are unchanged)."""

import os
import time

import pytest

from regions import manifest_digest, registry_state, unique_repo, wait_converged, wait_for

pytest_plugins = ["geo_plugin"]

FAST = ["--compact-interval", "1s", "--tombstone-retention", "1s"]


def compaction(region):
    r = region.api("GET", "compaction")
    assert r.status_code == 200, (region.name, r.status_code, r.text)
    return r.json()


def compact_now(region):
    r = region.api("POST", "compaction/run")
    assert r.status_code == 200, (region.name, r.status_code, r.text)
    return r.json()


def churn(cluster, repos, n_tags=12):
    """Pushes, retags and deletes in every region; returns the deleted (repo, digest)."""
    deleted = []
    for i, repo in enumerate(repos):
        src = cluster[i % len(cluster)]
        imgs = [src.oci().push_image(repo, "t%d" % k) for k in range(n_tags)]
        for k in range(0, n_tags, 3):          # tag moves
            src.oci().push_manifest(repo, "t%d" % k, imgs[k + 1].body, imgs[k + 1].media_type)
        for k in range(2, n_tags, 4):          # manifest deletes (tombstones + tag deletes)
            r = src.oci().delete("/v2/%s/manifests/%s" % (repo, imgs[k].digest))
            assert r.status_code == 202, (r.status_code, r.text)
            deleted.append((repo, imgs[k].digest))
    return deleted


def wait_compacted(regions, what, n_origins=3, may_hold_none=()):
    """Compacts until each region keeps only the newest event of each origin and has
    expired tombstones. A region named in may_hold_none needs only to hold none: one that
    caught up from a snapshot may never have held one."""
    last = {}

    def done():
        ok = True
        for r in regions:
            compact_now(r)
            s = last[r.name] = compaction(r)
            # the newest event of each origin stays (it seeds the clock), and so does a
            # tombstone such an event wrote
            if r.name in may_hold_none:
                ok &= s["tombstones"] == 0 and s["log_events"] <= n_origins
            else:
                ok &= s["tombstones_removed"] > 0 and s["log_events"] <= n_origins
            ok &= all(s["log_horizon"].get(o.name, 0) > 0 for o in regions)
        return ok
    wait_for(done, 60, lambda: "%s; last: %s" % (what, last), interval_s=0.5)


def test_fresh_region_joins_after_compaction_and_converges(geo):
    cluster = geo(3, extra_args=FAST)
    repos = [unique_repo("compact-%d" % i) for i in range(3)]
    deleted = churn(cluster, repos)
    before = wait_converged(cluster, repos=repos, what="three regions before compaction")
    events_before = [compaction(r)["log_events"] for r in cluster]
    wait_compacted(cluster, "every region to compact its log and expire its tombstones")
    after = [compaction(r)["log_events"] for r in cluster]
    assert all(a < b for a, b in zip(after, events_before)), (events_before, after)

    # the same through the CLI and /metrics
    shown = cluster[0].cli_json("compaction", "status")
    assert shown["events_dropped"] > 0 and shown["log_horizon"], shown
    ran = cluster[1].cli("compaction", "run").stdout
    assert "events_dropped" in ran or "EVENTS_DROPPED" in ran.upper(), ran
    metrics = cluster[2].get("/metrics").text
    dropped = [ln for ln in metrics.splitlines()
               if ln.startswith("meridian_compaction_events_dropped_total ")]
    assert dropped and float(dropped[0].split()[1]) > 0, dropped

    d = cluster.add()                        # joins through r1, whose log starts above 0
    cluster.wait_members()
    wait_converged(cluster, repos=repos, expect=before, timeout_s=90,
                   what="the new region r4 to converge from a snapshot")
    assert "caught up from a snapshot" in d.log_text(), d.log_tail()
    for repo, digest in deleted:
        assert manifest_digest(d, repo, digest) is None, (repo, digest)
    # the log flows both ways afterwards, and compaction goes on with r4 acknowledging
    img = d.oci().push_image(repos[0], "from-r4")
    wait_for(lambda: all(manifest_digest(r, repos[0], "from-r4") == img.digest
                         for r in cluster), 60, "a push in r4 to reach every region")
    img2 = cluster[0].oci().push_image(repos[1], "from-r1")
    wait_for(lambda: manifest_digest(d, repos[1], "from-r1") == img2.digest, 60,
             "a push in r1 to reach r4")
    wait_converged(cluster, repos=repos, what="four regions after the join")


def test_region_offline_past_the_horizon_rejoins_with_deletes_winning(geo):
    cluster = geo(3, extra_args=FAST + ["--compact-horizon", "12s"])
    a, b, c = cluster
    repo = unique_repo("offline")
    keep = a.oci().push_image(repo, "keep")
    doomed = a.oci().push_image(repo, "doomed")
    wait_converged(cluster, repos=[repo], expect={repo: {"keep": keep.digest,
                                                         "doomed": doomed.digest}})
    c.terminate()
    c.wait()
    r = a.oci().delete("/v2/%s/manifests/%s" % (repo, doomed.digest))
    assert r.status_code == 202, (r.status_code, r.text)
    moved = b.oci().push_image(repo, "keep")
    fresh = a.oci().push_image(repo, "fresh")
    expect = {repo: {"keep": moved.digest, "fresh": fresh.digest}}
    wait_converged([a, b], repos=[repo], expect=expect, what="r1 and r2 without r3")
    # r3 is silent past the horizon: r1 and r2 compact their logs without it, but keep
    # their tombstones (a silent region may be cut off and writing, not stopped: a put it
    # made before the delete would come back with its log if the tombstone were gone)
    time.sleep(12)
    last = {}

    def compacted_keeping_tombstones():
        for r in (a, b):
            compact_now(r)
            last[r.name] = compaction(r)
        return all(s["log_horizon"].get("r1", 0) > 0 and s["tombstones"] > 0
                   and s["tombstones_removed"] == 0 for s in last.values())
    wait_for(compacted_keeping_tombstones, 60,
             lambda: "r1 and r2 to compact past the offline r3; last: %s" % last,
             interval_s=0.5)

    c.start()
    wait_converged(cluster, repos=[repo], expect=expect, timeout_s=90,
                   what="r3 to rejoin from a snapshot with the delete winning")
    assert "caught up from a snapshot" in c.log_text(), c.log_tail()
    # the deleted manifest does not come back anywhere (anti-entropy runs every 2 s)
    time.sleep(5)
    for r in cluster:
        assert manifest_digest(r, repo, doomed.digest) is None, r.name
    assert all(registry_state(r, [repo]) == expect for r in cluster)
    # with r3 back and acknowledging, the tombstones expire everywhere. r3 removes one only
    # if its snapshot carried it: its first acknowledgement makes it live again, and a peer's
    # next pass (every second here) may expire the tombstone before r3 reads the snapshot.
    # Either way the delete won (checked above).
    wait_compacted(cluster, "the tombstones to expire once r3 is back", may_hold_none=(c.name,))


def test_a_put_from_a_region_not_yet_pulled_meets_the_tombstone_it_predates(geo):
    """A link that fails one way: r2 keeps pulling from r1 (and so acknowledging r1's
    delete) while r1 cannot pull r2's writes. A put r2 made of the manifest before r1
    deleted it must still meet the tombstone when it finally arrives: the delete is newer
    and wins in both regions. r1 keeps the tombstone past its retention until it has pulled
    what r2 acknowledged holding."""
    cluster = geo(2, extra_args=FAST)
    a, b = cluster
    repo = unique_repo("one-way")
    keep = a.oci().push_image(repo, "keep")
    early_ms = int(time.time() * 1000)
    early = b.oci().push_image(repo, "early")
    wait_converged(cluster, repos=[repo], expect={repo: {"keep": keep.digest,
                                                         "early": early.digest}})
    split_ms = int(time.time() * 1000)
    cluster.partition([a], [b])
    # the same image put in both regions during the split: first in r2, then in r1, which
    # deletes it (its tombstone is newer than r2's put) and writes on
    img = b.oci().push_image(repo, "from-r2")
    for blob in img.blobs.values():
        a.oci().push_blob(repo, blob)
    a.oci().push_manifest(repo, "from-r1", img.body, img.media_type)
    r = a.oci().delete("/v2/%s/manifests/%s" % (repo, img.digest))
    assert r.status_code == 202, (r.status_code, r.text)
    later = a.oci().push_image(repo, "later")     # the delete is not r1's newest event
    expect = {repo: {"keep": keep.digest, "early": early.digest, "later": later.digest}}
    assert registry_state(a, [repo]) == expect

    # the link comes back one way: r2 pulls r1's log (the delete wins there) and
    # acknowledges it, so r1 compacts its log past the delete; r1 still cannot pull r2
    a.proxy.heal(src=b.host)
    wait_converged([b], repos=[repo], expect=expect, timeout_s=60,
                   what="r2 to apply r1's delete")
    last = {}

    def r1_compacted_past_the_delete():
        compact_now(a)
        s = last["r1"] = compaction(a)
        return s["log_events"] <= 2 and s["log_horizon"].get("r1", 0) > 0
    wait_for(r1_compacted_past_the_delete, 60,
             lambda: "r1 to compact its log past the delete; last: %s" % last, interval_s=0.5)
    # the tombstone is older than the retention and r2 has applied it, but r2 holds writes
    # r1 has not pulled yet: the tombstone stays for them
    for _ in range(3):
        compact_now(a)
    s = compaction(a)
    assert s["tombstones"] > 0 and s["tombstones_removed"] == 0, s
    # held at the clock of the newest event of r2 applied in r1: from before the split
    assert s["tombstones_held_by"] == {"peer": "r2", "origin": "r2"}, s
    assert early_ms <= s["tombstone_cutoff_ms"] <= split_ms + 1000, (early_ms, split_ms, s)

    cluster.heal()
    wait_converged(cluster, repos=[repo], expect=expect, timeout_s=90,
                   what="both regions to converge with the delete winning")
    time.sleep(5)  # anti-entropy runs every 2 s: the manifest does not come back
    for r in cluster:
        assert manifest_digest(r, repo, img.digest) is None, r.name
        assert registry_state(r, [repo]) == expect, r.name
    # once r1 has pulled r2's writes its tombstones expire as usual
    wait_compacted([a], "r1's tombstones to expire once it has pulled r2", n_origins=2)


OLD_BIN = os.environ.get("MERIDIAN_OLD_BIN", "/tmp/compact_old/build/meridian")


@pytest.mark.skipif(not os.path.exists(OLD_BIN), reason="no build without compaction "
                    "(MERIDIAN_OLD_BIN)")
def test_region_on_a_build_without_compaction_keeps_replicating(geo):
    # No scheduled pass: the old region joins before anything is compacted (a build without
    # compaction cannot join a registry whose logs are; docs/replication.md), then the test
    # runs the passes.
    manual = ["--compact-interval", "0", "--tombstone-retention", "1s"]
    cluster = geo(2, extra_args=manual)
    old = cluster.add(start=False)
    new_argv = old.argv
    # the old build knows none of the compaction options
    old.argv = lambda port: [OLD_BIN if a == cluster.binary else a for a in new_argv(port)
                             if a not in manual]
    old.start()
    cluster.join(old)
    cluster.wait_members()
    repos = [unique_repo("mixed-%d" % i) for i in range(3)]
    churn(cluster, repos, n_tags=8)
    before = wait_converged(cluster, repos=repos, what="new and old builds")
    wait_compacted([cluster[0], cluster[1]], "the new builds to compact")
    img = old.oci().push_image(repos[0], "from-old")
    img2 = cluster[0].oci().push_image(repos[1], "from-new")
    before[repos[0]]["from-old"] = img.digest
    before[repos[1]]["from-new"] = img2.digest
    wait_converged(cluster, repos=repos, expect=before, what="writes after compaction, both ways")
    assert "caught up from a snapshot" not in old.log_text()
    # the old region keeps every tombstone; anti-entropy does not bring the expired ones back
    # into the new regions (each would be merged, then expired again, every sync interval)
    removed = [compact_now(r) and compaction(r)["tombstones_removed"] for r in (cluster[0], cluster[1])]
    time.sleep(3 * 2 + 1)
    again = [compact_now(r) and compaction(r)["tombstones_removed"] for r in (cluster[0], cluster[1])]
    assert again == removed, (removed, again)


def test_a_region_that_joins_from_a_snapshot_gets_nothing_a_residency_policy_forbids(geo):
    cluster = geo(3, extra_args=FAST)
    open_repo, eu_repo = unique_repo("open"), "eu/" + unique_repo("data").split("/")[-1]
    r = cluster[0].api("PUT", "policies/residency/eu-only",
                       json={"repositories": "eu/*", "deniedRegions": ["r4"]})
    assert r.status_code in (200, 201), (r.status_code, r.text)
    a = cluster[0].oci().push_image(open_repo, "v1")
    eu = cluster[1].oci().push_image(eu_repo, "v1")
    wait_converged(cluster, repos=[open_repo, eu_repo],
                   expect={open_repo: {"v1": a.digest}, eu_repo: {"v1": eu.digest}})
    def compacted():
        for region in cluster:
            compact_now(region)
        return all(compaction(region)["log_horizon"].get("r1", 0) > 0 for region in cluster)
    wait_for(compacted, 60, "every region to compact r1's events", interval_s=0.5)
    d = cluster.add()                        # r4 catches up from a snapshot
    cluster.wait_members()
    wait_for(lambda: manifest_digest(d, open_repo, "v1") == a.digest, 90,
             "r4 to catch up from a snapshot")
    assert "caught up from a snapshot" in d.log_text(), d.log_tail()
    # what r1 serves r4 as a snapshot: the forbidden repository is not named
    snap = cluster[0].api("GET", "replication/snapshot", params={"from": "r4"},
                          auth=("peer", cluster[0].cluster.secret))
    assert snap.status_code == 200, (snap.status_code, snap.text)
    assert eu_repo not in snap.text and open_repo in snap.text, snap.text[:500]

    time.sleep(3)  # an anti-entropy round: waiting for something that must not happen
    for ref in ("v1", eu.digest):             # refused by the policy, and not held
        r = d.oci().get_manifest(eu_repo, ref)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text
    assert eu_repo not in d.oci().get("/v2/_catalog").text
    assert eu.body not in b"".join(open(os.path.join(root, f), "rb").read()
                                   for root, _, files in os.walk(d.data_dir) for f in files)


def test_catching_up_from_a_peer_residency_keeps_out_forgets_nothing_of_it(geo):
    """r2 alone may hold eu/*; r1's horizon passes eu's events as redacted stand-ins. When
    r2 comes back from beyond the horizon and catches up from r1's snapshot, r1 having no
    eu record must not read as "deleted there": r2 keeps its only copy."""
    cluster = geo(2, extra_args=FAST + ["--compact-horizon", "8s"])
    a, b = cluster
    r = a.api("PUT", "policies/residency/eu-only",
              json={"repositories": "eu/*", "deniedRegions": ["r1"]})
    assert r.status_code in (200, 201), r.text
    wait_for(lambda: b.api("GET", "policies/residency/eu-only").status_code == 200, 30,
             "the policy in r2")
    eu_repo = "eu/" + unique_repo("data").split("/")[-1]
    imgs = [b.oci().push_image(eu_repo, "v%d" % i) for i in range(3)]
    open_repo = unique_repo("open")
    o = a.oci().push_image(open_repo, "v1")
    wait_for(lambda: manifest_digest(b, open_repo, "v1") == o.digest, 60, "r1's push in r2")
    wait_for(lambda: compact_now(a) is not None and
             compaction(a)["log_horizon"].get("r2", 0) > 0, 30, "r1 to compact r2's events",
             interval_s=0.5)
    b.terminate()
    b.wait()
    for i in range(3):
        a.oci().push_image(open_repo, "w%d" % i)
    time.sleep(9)  # r2 silent past the 8 s horizon
    wait_for(lambda: compact_now(a) is not None and compaction(a)["log_events"] <= 2, 30,
             "r1 to compact past the silent r2", interval_s=0.5)
    b.start()
    wait_for(lambda: "caught up from a snapshot" in b.log_text(), 90, "r2's catch-up")
    wait_for(lambda: manifest_digest(b, open_repo, "w2") is not None, 60, "r1's pushes in r2")
    for i, img in enumerate(imgs):
        assert manifest_digest(b, eu_repo, "v%d" % i) == img.digest, (i, b.log_tail())
