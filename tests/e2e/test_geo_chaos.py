"""Faults between regions (hostile scenarios): kill -9 in the middle of pushes on both sides, a
one-way link while both sides write the same tags, a region restored from an older copy of its
data directory, a restart while a peer's poll is parked, kill -9 while a region completes a
backlog of replicated images (its status must still reach the others), a tag written
concurrently with its manifest's delete, and replication status after a delete and a push of
the same manifest again (the other regions' old reports of it must not count, whether they
arrived before the delete or after it).

Every wait polls observable state against a deadline (regions.wait_for)."""

import threading
import time

import pytest
import requests

from regions import (manifest_digest, replication_states, unique_repo, wait_converged,
                     wait_for, wait_replicated_cli)

pytest_plugins = ["geo_plugin"]


def delete_manifest(region, repo, ref):
    r = region.oci().delete("/v2/%s/manifests/%s" % (repo, ref))
    assert r.status_code == 202, (region.name, r.status_code, r.text[:300])


def test_status_of_a_repushed_manifest_is_not_completed_where_it_is_missing(geo):
    """M replicates to r2 (Completed there), r1 deletes it and r2 applies the delete; then r2
    can no longer pull from r1 and r1 pushes the same M again. r2 does not have it: r1 must
    not report r2 Completed, and `wait --replicated` must not return 0."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("stale-status")
    img = a.oci().push_image(repo, "v1")
    p = wait_replicated_cli(a, repo, "v1", timeout="1m", timeout_s=90)
    assert p.returncode == 0, (p.stdout[-1000:], p.stderr[-1000:])

    delete_manifest(a, repo, img.digest)
    wait_for(lambda: manifest_digest(b, repo, img.digest) is None, 30,
             "r2 to apply the delete")
    cluster.cut_link(b, a)                       # r2 can no longer pull from r1
    assert a.oci().push_manifest(repo, "v2", img.body, img.media_type) == img.digest
    assert manifest_digest(b, repo, "v2") is None

    agg, states = replication_states(a, repo, "v2")
    p = wait_replicated_cli(a, repo, "v2", timeout="3s", timeout_s=60)
    missing = manifest_digest(b, repo, img.digest) is None
    assert missing
    assert states.get("r2") != "Completed", (agg, states, "r2 does not hold %s" % img.digest)
    assert p.returncode == 2, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])


def test_status_reported_before_a_delete_and_arriving_after_it_does_not_count(geo):
    """r2 completes M but r1 does not hear of it (r1 cannot pull from r2); r1 deletes M, r2
    applies the delete, then r2 can no longer pull from r1 and r1 pushes M again. When r1
    hears from r2 again, r2's report of the old copy arrives after the delete: it must not
    make r2 Completed for the new push, which r2 does not hold."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("late-status")
    cluster.cut_link(a, b)                       # r1 can no longer pull from r2
    img = a.oci().push_image(repo, "v1")
    wait_for(lambda: manifest_digest(b, repo, "v1") == img.digest, 60,
             "r2 to hold v1 (its report stays at r2)")
    assert replication_states(a, repo, "v1")[1].get("r2") != "Completed"

    delete_manifest(a, repo, img.digest)
    wait_for(lambda: manifest_digest(b, repo, img.digest) is None, 30,
             "r2 to apply the delete")
    cluster.cut_link(b, a)                       # r2 can no longer pull from r1
    assert a.oci().push_manifest(repo, "v2", img.body, img.media_type) == img.digest

    b.proxy.heal(src=a.host)                     # r1 hears from r2 again
    marker = b.oci().push_image(unique_repo("late-status-marker"), "m")
    wait_for(lambda: manifest_digest(a, marker.repo, "m") == marker.digest, 60,
             "r1 to apply r2's log past its old report")
    assert manifest_digest(b, repo, img.digest) is None
    agg, states = replication_states(a, repo, "v2")
    assert states.get("r2") != "Completed", (agg, states, "r2 does not hold %s" % img.digest)
    p = wait_replicated_cli(a, repo, "v2", timeout="3s", timeout_s=60)
    assert p.returncode == 2, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])

    a.proxy.heal(src=b.host)                     # and once r2 can fetch it, it counts
    p = wait_replicated_cli(a, repo, "v2", timeout="1m", timeout_s=90)
    assert p.returncode == 0, (p.stdout[-1000:], p.stderr[-1000:])


class Pusher(threading.Thread):
    """Pushes small images to one region in a loop; records every acknowledged push."""

    def __init__(self, region, repo, prefix):
        super().__init__(daemon=True)
        self.region, self.repo, self.prefix = region, repo, prefix
        self.acked = {}
        self.errors = 0
        self.halt = threading.Event()

    def run(self):
        i = 0
        while not self.halt.is_set():
            tag = "%s-%d" % (self.prefix, i)
            i += 1
            try:
                img = self.region.oci().push_image(self.repo, tag, layers=1, layer_size=4096)
            except (requests.RequestException, AssertionError, OSError):
                self.errors += 1
                if self.errors > 200:
                    return
                time.sleep(0.05)
                continue
            self.acked[tag] = img.digest


def test_kill9_during_pushes_on_both_sides_loses_no_acknowledged_push(geo):
    cluster = geo(3)
    a, b, c = cluster
    repo = unique_repo("kill-pushes")
    pa, pb = Pusher(a, repo, "a"), Pusher(b, repo, "b")
    pa.start()
    pb.start()
    wait_for(lambda: len(pb.acked) >= 10 and len(pa.acked) >= 10, 60, "pushes to start")
    b.kill9()
    wait_for(lambda: pb.errors >= 3, 30, "pushes to r2 to fail")
    n_before = len(pa.acked)
    wait_for(lambda: len(pa.acked) >= n_before + 5, 60, "more pushes to r1 while r2 is down")
    b.start()
    pb.errors = 0
    wait_for(lambda: len(pb.acked) >= 15, 60, "pushes to r2 to resume")
    a.kill9()
    wait_for(lambda: pa.errors >= 3, 30, "pushes to r1 to fail")
    a.start()
    pa.errors = 0
    n_before = len(pa.acked)
    wait_for(lambda: len(pa.acked) >= n_before + 5, 60, "pushes to r1 to resume")
    pa.halt.set()
    pb.halt.set()
    pa.join(60)
    pb.join(60)
    expect = dict(pa.acked)
    expect.update(pb.acked)
    got = wait_converged(cluster, repos=[repo], timeout_s=120)
    lost = {t: d for t, d in expect.items() if got.get(repo, {}).get(t) != d}
    assert not lost, ("acknowledged pushes missing or different", lost)


def test_one_way_link_while_both_sides_write_the_same_tags(geo):
    """r2 cannot pull from r1 (r1 still pulls from r2) while both move, delete and re-push
    the same tags; after the heal all regions hold the same tags -> digests."""
    cluster = geo(3)
    a, b, c = cluster
    repo = unique_repo("one-way")
    base = a.oci().push_image(repo, "x")
    a.oci().push_manifest(repo, "y", base.body, base.media_type)
    wait_converged(cluster, repos=[repo], expect={repo: {"x": base.digest, "y": base.digest}})
    cluster.cut_link(b, a)
    cluster.cut_link(c, a)
    ia = a.oci().push_image(repo, "x")
    ib = b.oci().push_image(repo, "x")
    r = b.oci().delete("/v2/%s/manifests/y" % repo)
    assert r.status_code == 202, r.text
    a.oci().push_manifest(repo, "y", ia.body, ia.media_type)
    ic = c.oci().push_image(repo, "z")
    delete_manifest(a, repo, base.digest)
    cluster.heal()
    final = wait_converged(cluster, repos=[repo], timeout_s=90)
    assert final[repo]["z"] == ic.digest, final
    assert final[repo]["x"] in (ia.digest, ib.digest), final
    assert final[repo].get("y") == ia.digest, final


def test_region_restored_from_an_older_copy_gets_back_what_it_acknowledged(geo):
    """r2's data directory is copied (stopped), r2 then acknowledges pushes that replicate to
    r1, is killed and restarted from the copy. What it acknowledged after the copy comes back
    to it from r1; once it reads Ready its new writes replicate; all converge."""
    import shutil
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("restore")
    before = b.oci().push_image(repo, "before")
    wait_converged(cluster, repos=[repo], expect={repo: {"before": before.digest}})
    b.stop()
    backup = b.data_dir + ".bak"
    shutil.copytree(b.data_dir, backup)
    b.start()
    after = b.oci().push_image(repo, "after")
    moved = b.oci().push_image(repo, "before")          # moves a tag written before the copy
    a_side = a.oci().push_image(repo, "from-a")
    b.oci().delete("/v2/%s/manifests/%s" % (repo, before.digest))
    expect = {repo: {"after": after.digest, "before": moved.digest,
                     "from-a": a_side.digest}}
    wait_converged(cluster, repos=[repo], expect=expect, what="before the crash")
    b.kill9()
    shutil.rmtree(b.data_dir)
    shutil.copytree(backup, b.data_dir)
    b.start()
    cluster.wait_members(timeout_s=60)
    wait_converged(cluster, repos=[repo], expect=expect, timeout_s=60,
                   what="the restored region to get back what it acknowledged")
    new = b.oci().push_image(repo, "new")
    expect[repo]["new"] = new.digest
    wait_converged(cluster, repos=[repo], expect=expect, timeout_s=60,
                   what="a write after the restore to replicate")
    # the status of the restored region's writes tells the truth from both sides
    for region in cluster:
        p = wait_replicated_cli(region, repo, "new", timeout="30s", timeout_s=60)
        assert p.returncode == 0, (region.name, p.stdout[-1000:], p.stderr[-1000:])
        p = wait_replicated_cli(region, repo, "after", timeout="30s", timeout_s=60)
        assert p.returncode == 0, (region.name, p.stdout[-1000:], p.stderr[-1000:])


def test_restart_of_a_region_while_its_peer_long_polls_it(geo):
    """r2's poll is parked in r1 when r1 is frozen, then killed and restarted; a push to r1
    afterwards reaches r2 within a bounded time."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("longpoll-restart")
    first = a.oci().push_image(repo, "first")
    wait_converged(cluster, repos=[repo], expect={repo: {"first": first.digest}})
    wait_for(lambda: a.proxy.live_connections(b.host) > 0, 10, "r2's poll to be open")
    a.sigstop()
    wait_for(lambda: b.replication_states().get("r1") == "Unreachable", 30,
             "r2 to see r1 Unreachable")
    a.kill9()
    a.start()
    second = a.oci().push_image(repo, "second")
    t0 = time.monotonic()
    wait_converged(cluster, repos=[repo], timeout_s=40,
                   expect={repo: {"first": first.digest, "second": second.digest}})
    print("second push reached r2 %.1fs after the restart" % (time.monotonic() - t0))


def test_kill9_while_a_region_completes_replicated_images_status_still_tells_the_truth(geo):
    """r2 fetches a backlog of small images and is killed -9 several times while it makes them
    visible. Once r2 serves every image, r1 must see r2 Completed for every one of them (a
    manifest made visible whose Completed status event was never written leaves r2 InProgress
    in every other region for ever, and `wait --replicated` never returns)."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("kill-status")
    cluster.cut_link(b, a)
    tags = {}
    for i in range(120):
        img = a.oci().push_image(repo, "i%d" % i, layers=1, layer_size=512)
        tags["i%d" % i] = img.digest
    cluster.heal()
    done_before = 0
    for cycle in range(8):
        def visible_count():
            r = requests.get("%s/v2/%s/tags/list?n=1000" % (b.url, repo), timeout=10)
            return len(r.json().get("tags") or []) if r.status_code == 200 else 0
        wait_for(lambda: visible_count() > done_before, 60,
                 "r2 to make more images visible (cycle %d)" % cycle, interval_s=0.02)
        b.kill9()
        b.start()
        done_before = visible_count()
        if done_before >= len(tags):
            break
    wait_converged(cluster, repos=[repo], expect={repo: tags}, timeout_s=120)

    def not_completed():
        bad = {}
        for t in tags:
            agg, states = replication_states(a, repo, t)
            if states.get("r2") != "Completed":
                bad[t] = states
        return bad
    deadline = time.monotonic() + 40
    bad = not_completed()
    while bad and time.monotonic() < deadline:
        time.sleep(1)
        bad = not_completed()
    assert not bad, ("r2 serves these images but r1 does not see them Completed there",
                     {t: s for t, s in list(bad.items())[:10]}, len(bad))



def test_tag_of_a_deleted_manifest_stays_deleted_when_the_manifest_is_pushed_again(geo):
    """A tag written in one region while another, not having seen it, deletes its manifest
    later: the delete ends it in both, and a push of the same manifest again under another
    tag does not bring it back (its register used to stay, hidden)."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("zombie")
    img = a.oci().push_image(repo, "t1")
    wait_converged(cluster, repos=[repo], expect={repo: {"t1": img.digest}})
    cluster.partition([a], [b])
    assert b.oci().push_manifest(repo, "t2", img.body, img.media_type) == img.digest
    time.sleep(0.01)  # the clocks are wall-time milliseconds: the delete is later than t2
    delete_manifest(a, repo, img.digest)
    cluster.heal()
    wait_converged(cluster, repos=[repo], expect={}, timeout_s=60,
                   what="the delete (the latest write) to win in both")
    assert a.oci().push_manifest(repo, "t3", img.body, img.media_type) == img.digest
    wait_converged(cluster, repos=[repo], expect={repo: {"t3": img.digest}}, timeout_s=20,
                   what="only the new tag to name the manifest pushed again")
