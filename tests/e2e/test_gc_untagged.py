"""Issue 15 items 1 (untagged manifests) and 2 (retention rules), on real servers.

- an untagged manifest goes after --gc-untagged-after (a replicated delete), then its blobs
  after --gc-grace; tagged manifests stay; by default (0) untagged manifests are kept;
- what keeps an untagged manifest: an index naming it, a subject it refers to, a lock;
- a multi-arch index pushed while the collector runs flat out: children first, then the
  index; every push succeeds and every index is whole afterwards, while stray untagged
  manifests of the same run are collected; a child pushed again restarts its grace;
- two regions: only the region that put a manifest collects it and both agree; a tag
  written in one region while the other, partitioned, collects the manifest keeps the
  image in both once healed;
- retention rules (API and CLI): keep the newest N tags of a glob, dry run equal to the
  real run, a locked tag left, one audit entry per batch; per-pattern untagged grace; two
  regions select the same tags and each deletes its own; a tag pulled (by tag or digest)
  in one region only is kept by a pulledWithinS rule applied in the other, and the dry
  run lists it as kept; HEAD and replication are not pulls.
"""

import os
import subprocess
import threading
import time

import pytest
import requests

from auth_helpers import server_pool  # noqa: F401 - fixture
from conftest import assert_error, wait_until

pytest_plugins = ["geo_plugin"]

GRACE_S = 1


def api(srv, method, path, expect=200, **kw):
    r = requests.request(method, srv.url + "/_meridian/v1/" + path, timeout=60, **kw)
    assert r.status_code == expect, (r.status_code, r.text)
    return r.json()


def gc_run(srv, dry_run=False):
    return api(srv, "POST", "gc/run", params={"dry_run": "true" if dry_run else "false"})


def past_grace(s=GRACE_S):
    time.sleep(s + 0.2)


def manifests_of(out):
    return sorted((m["repository"], m["digest"]) for m in out["manifests"])


@pytest.fixture
def srv(server_factory):
    # Ticks off (1 h): each test runs passes itself, so what it sees is what it asked.
    return server_factory("--gc-grace", "%ds" % GRACE_S, "--gc-untagged-after",
                          "%ds" % GRACE_S, "--gc-interval", "1h")


def test_untagged_manifest_collected_then_its_blobs(srv):
    oci = srv.oci()
    repo = "gcu/plain"
    kept = oci.push_image(repo, tag="v1", layers=1)
    loose = oci.push_image(repo, layers=2)  # by digest, never tagged
    moved = oci.push_image(repo, tag="v2", layers=1)
    oci.push_image(repo, tag="v2", layers=1)  # v2 moves away from `moved`
    assert gc_run(srv)["manifests"] == []  # within the grace
    past_grace()
    dry = gc_run(srv, dry_run=True)
    assert manifests_of(dry) == sorted([(repo, loose.digest), (repo, moved.digest)])
    assert oci.get_manifest(repo, loose.digest).status_code == 200
    out = gc_run(srv)
    assert manifests_of(out) == manifests_of(dry)
    for img in (loose, moved):
        assert_error(oci.get_manifest(repo, img.digest), 404)
    assert oci.get_manifest(repo, "v1").content == kept.body
    past_grace()
    gone = {b["digest"] for b in gc_run(srv)["blobs"]}
    assert gone == (set(loose.blobs) | set(moved.blobs)) - set(kept.blobs)
    for d, data in kept.blobs.items():
        assert oci.get_blob(repo, d) == data
    st = api(srv, "GET", "gc")
    assert st["manifests_deleted_total"] == 2 and st["untagged_after_s"] == GRACE_S
    audit = api(srv, "GET", "audit", params={"action": "gc.untagged"})
    assert len(audit) == 1 and audit[0]["detail"].startswith("2 untagged manifests"), audit
    text = requests.get(srv.url + "/metrics", timeout=10).text
    assert "\nmeridian_gc_manifests_deleted_total 2\n" in text


def test_default_keeps_untagged_manifests(server_factory):
    srv = server_factory("--gc-grace", "%ds" % GRACE_S, "--gc-interval", "1h")
    oci = srv.oci()
    loose = oci.push_image("gcu/default", layers=1)
    past_grace()
    out = gc_run(srv)
    assert out["manifests"] == [] and out["blobs"] == []
    assert oci.get_manifest("gcu/default", loose.digest).status_code == 200
    st = api(srv, "GET", "gc")
    assert st["untagged_after_s"] == 0 and st["untagged"] == 1


def test_index_children_referrers_and_locks_keep_untagged(srv):
    oci = srv.oci()
    repo = "gcu/keep"
    kids = [oci.push_image(repo, layers=1) for _ in range(2)]
    index = oci.push_index(repo, kids, tag="latest")
    subject = oci.push_image(repo, tag="app", layers=1)
    sig = oci.push_artifact(repo, "application/vnd.example.sig", subject=subject)
    locked = oci.push_image(repo, layers=1)
    r = requests.patch(srv.url + "/_meridian/v1/repositories",
                       params={"repository": repo, "reference": locked.digest},
                       json={"deleteEnabled": False}, timeout=30)
    assert r.status_code == 200, r.text
    past_grace()
    assert gc_run(srv)["manifests"] == []
    # The index untagged: it goes, then its children (named by nothing any more).
    assert oci.delete(oci.manifest_path(repo, "latest")).status_code == 202
    past_grace()
    first = manifests_of(gc_run(srv))
    second = manifests_of(gc_run(srv))
    assert sorted(first + second) == sorted([(repo, index.digest)] +
                                            [(repo, k.digest) for k in kids])
    assert oci.get_manifest(repo, sig.digest).status_code == 200
    assert oci.get_manifest(repo, locked.digest).status_code == 200
    # The subject deleted: its referrer follows.
    assert oci.delete(oci.manifest_path(repo, subject.digest)).status_code == 202
    past_grace()
    assert manifests_of(gc_run(srv)) == [(repo, sig.digest)]


def test_child_pushed_again_restarts_its_grace(server_factory):
    """The grace covers the gap between a child's last put and its index: a client that
    pushes an index puts its children again first (they may be old and untagged)."""
    srv = server_factory("--gc-grace", "2s", "--gc-untagged-after", "2s", "--gc-interval", "1h")
    oci = srv.oci()
    repo = "gcu/again"
    kid = oci.push_image(repo, layers=1)
    time.sleep(1.5)
    oci.push_manifest(repo, kid.digest, kid.body, kid.media_type)  # pushed again
    time.sleep(1.0)  # 2.5 s after its first put, 1 s after the second
    assert gc_run(srv)["manifests"] == []
    index = oci.push_index(repo, [kid], tag="v1")
    assert oci.get_manifest(repo, "v1").content == index.body


def test_multiarch_index_pushes_racing_the_collector(server_factory):
    """Children first, then the index a moment later, twenty times, while the collector
    ticks every second and a thread runs whole passes back to back; a stray untagged
    manifest is pushed beside each. Every index push succeeds and every index is whole
    at the end; the strays are collected meanwhile (the collector was really running)."""
    # A 5 s grace: the gap between a child and its index is under a second, but a loaded
    # machine (PostgreSQL, other jobs) can stretch a push of three children past 2 s.
    srv = server_factory("--gc-grace", "5s", "--gc-untagged-after", "5s", "--gc-interval", "1s")
    oci = srv.oci()
    repo = "gcu/race"
    stop = threading.Event()
    passes = []

    def collector():
        while not stop.is_set():
            passes.append(gc_run(srv)["manifests_deleted"])

    t = threading.Thread(target=collector)
    t.start()
    indexes, strays = [], []
    try:
        for i in range(20):
            kids = [oci.push_image(repo, layers=1, layer_size=512) for _ in range(3)]
            t_kids = time.monotonic()
            strays.append(oci.push_image(repo, layers=1, layer_size=256))
            time.sleep(0.5)  # the client's gap between its children and its index
            try:
                indexes.append((oci.push_index(repo, kids, tag="v%d" % i), kids))
            except AssertionError as exc:  # say whether the machine stretched the gap
                raise AssertionError("index %d, %.1f s after its children: %s"
                                     % (i, time.monotonic() - t_kids, exc))
        time.sleep(5.5)  # past the grace of the last strays
        wait_until(lambda: all(oci.get_manifest(repo, s.digest).status_code == 404
                               for s in strays), timeout_s=30, what="strays collected")
    finally:
        stop.set()
        t.join()
    # the strays went, by the passes or by the ticks; nothing else did
    assert api(srv, "GET", "gc")["manifests_deleted_total"] == len(strays)
    assert len(passes) > 10, passes
    for i, (index, kids) in enumerate(indexes):
        assert oci.get_manifest(repo, "v%d" % i).content == index.body
        for k in kids:
            assert oci.get_manifest(repo, k.digest).content == k.body
            for d, data in k.blobs.items():
                assert oci.get_blob(repo, d) == data


def test_geo_owner_collects_and_regions_agree(geo):
    cluster = geo(n=2, extra_args=("--gc-grace", "5s", "--gc-untagged-after", "5s",
                                   "--gc-interval", "1s"))
    a, b = cluster.regions
    repo = "gcu/geo"
    loose = a.oci().push_image(repo, layers=1)
    tagged = b.oci().push_image(repo, tag="keep", layers=1)
    wait_until(lambda: b.oci().get_manifest(repo, loose.digest).status_code == 200,
               timeout_s=60, what="untagged manifest replicated")
    wait_until(lambda: all(r.oci().get_manifest(repo, loose.digest).status_code == 404
                           for r in (a, b)), timeout_s=60, what="collected in both regions")
    assert api(a, "GET", "gc")["manifests_deleted_total"] == 1
    assert api(b, "GET", "gc")["manifests_deleted_total"] == 0  # a decided, b applied
    for r in (a, b):
        assert r.oci().get_manifest(repo, "keep").content == tagged.body


def test_geo_tag_written_during_partition_keeps_collected_image(geo):
    """a untags M and, partitioned from b, collects it; meanwhile b tags M again. Healed,
    b keeps M (the collector's tombstone loses to a tag b holds) and puts it again: both
    regions serve M by its new tag, with its blobs."""
    cluster = geo(n=2, extra_args=("--gc-grace", "30s", "--gc-untagged-after", "2s",
                                   "--gc-interval", "1s"))
    a, b = cluster.regions
    repo = "gcu/split"
    img = a.oci().push_image(repo, tag="t1", layers=2)
    wait_until(lambda: b.oci().get_manifest(repo, "t1").status_code == 200, timeout_s=60,
               what="t1 replicated")
    cluster.partition([a], [b])
    assert a.oci().delete(a.oci().manifest_path(repo, "t1")).status_code == 202
    r = b.oci().put_manifest(repo, "t2", img.body, img.media_type)
    assert r.status_code == 201, r.text
    wait_until(lambda: a.oci().get_manifest(repo, img.digest).status_code == 404,
               timeout_s=30, what="a collects the untagged manifest")
    cluster.heal()

    def whole(region):
        oci = region.oci()
        if oci.get_manifest(repo, "t2").content != img.body:
            return False
        return all(oci.get(oci.blob_path(repo, d), allow_redirects=True).content == data
                   for d, data in img.blobs.items())
    wait_until(lambda: whole(a) and whole(b), timeout_s=90, what="M back by t2 in both")
    for r in (a, b):
        assert_error(r.oci().get_manifest(repo, "t1"), 404)


def test_geo_index_pushed_during_partition_keeps_collected_child(geo):
    """a collects an untagged child M while, partitioned from a, b pushes an index naming M
    (M visible in b). Healed, b keeps M (the index names it there) and puts it again: both
    regions serve the index and M whole (a fetches M's blobs back from b)."""
    cluster = geo(n=2, extra_args=("--gc-grace", "30s", "--gc-untagged-after", "2s",
                                   "--gc-interval", "1s"))
    a, b = cluster.regions
    repo = "gcu/split-index"
    kid = a.oci().push_image(repo, layers=2)
    wait_until(lambda: b.oci().get_manifest(repo, kid.digest).status_code == 200,
               timeout_s=60, what="the child replicated")
    cluster.partition([a], [b])
    wait_until(lambda: a.oci().get_manifest(repo, kid.digest).status_code == 404,
               timeout_s=30, what="a collects the untagged child")
    index = b.oci().push_index(repo, [kid], tag="v1")
    cluster.heal()

    def whole(region):
        oci = region.oci()
        if oci.get_manifest(repo, "v1").content != index.body or \
                oci.get_manifest(repo, kid.digest).content != kid.body:
            return False
        return all(oci.get(oci.blob_path(repo, d), allow_redirects=True).content == data
                   for d, data in kid.blobs.items())
    wait_until(lambda: whole(a) and whole(b), timeout_s=90,
               what="the index and its child whole in both")


# Retention rules --------------------------------------------------------------------


def test_retention_keep_newest_dry_run_equals_real_run(srv, meridian_bin):
    oci = srv.oci()
    repo = "ret/app"
    for i in range(1, 7):
        oci.push_image(repo, tag="v%d" % i, layers=1, layer_size=64)
    oci.push_image(repo, tag="stable", layers=1, layer_size=64)

    def cli(*args):
        out = subprocess.run([meridian_bin, "retention"] + list(args) + ["--registry", srv.url],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, (out.stdout, out.stderr)
        return out.stdout
    cli("set", "ret/*", "--tags", "v*", "--keep-newest", "3")
    assert "ret/*" in cli("list")
    assert api(srv, "GET", "retention") == [{"pattern": "ret/*", "tags": "v*", "keepNewest": 3}]
    r = requests.patch(srv.url + "/_meridian/v1/repositories",
                       params={"repository": repo, "reference": "v2"},
                       json={"deleteEnabled": False}, timeout=30)
    assert r.status_code == 200, r.text
    dry = api(srv, "POST", "retention/run", params={"dry_run": "true"})
    picked = sorted(t["tag"] for t in dry["tags"])
    assert picked == ["v1", "v2", "v3"], dry
    assert [t["tag"] for t in dry["tags"] if "refused" in t] == ["v2"]
    assert dry["deleted"] == 0 and len(oci.tag_list(repo)) == 7
    out = api(srv, "POST", "retention/run")
    assert sorted(t["tag"] for t in out["tags"]) == picked
    assert sorted(t["tag"] for t in out["tags"] if t["deleted"]) == ["v1", "v3"]
    assert sorted(oci.tag_list(repo)) == ["stable", "v2", "v4", "v5", "v6"]
    audit = api(srv, "GET", "audit", params={"action": "retention."})
    assert len(audit) == 1 and audit[0]["target"] == repo and "2 tags" in audit[0]["detail"]
    assert "would delete" in cli("run", "--dry-run")
    # Bad input changes nothing.
    for body in ({"pattern": "ret/*"}, {"pattern": "ret/*", "keepNewest": -1},
                 {"pattern": "", "keepNewest": 1}, {"pattern": "x", "keepNewest": 1, "y": 1}):
        r = requests.post(srv.url + "/_meridian/v1/retention", json=body, timeout=30)
        assert r.status_code == 400 and "error" in r.json(), (body, r.text)
    assert len(api(srv, "GET", "retention")) == 1
    cli("delete", "ret/*")
    assert api(srv, "GET", "retention") == []


def test_retention_applied_by_the_collector_every_interval(server_factory):
    srv = server_factory("--gc-interval", "1s", "--retention-interval", "1s")
    oci = srv.oci()
    for i in range(1, 4):
        oci.push_image("auto/app", tag="b%d" % i, layers=1, layer_size=64)
    api(srv, "POST", "retention", json={"pattern": "auto/*", "keepNewest": 1})
    wait_until(lambda: oci.tag_list("auto/app") == ["b3"], timeout_s=30,
               what="retention applied by the collector")
    assert api(srv, "GET", "gc")["last_retention_ms"] > 0


def test_retention_untagged_grace_per_pattern(server_factory):
    srv = server_factory("--gc-grace", "1h", "--gc-interval", "1h")
    api(srv, "POST", "retention", json={"pattern": "fast/*", "untaggedAfterS": 1})
    oci = srv.oci()
    fast = oci.push_image("fast/a", layers=1)
    slow = oci.push_image("slow/a", layers=1)
    past_grace()
    assert manifests_of(gc_run(srv)) == [("fast/a", fast.digest)]
    assert oci.get_manifest("slow/a", slow.digest).status_code == 200


def test_geo_retention_same_selection_each_region_deletes_its_own(geo):
    cluster = geo(n=2, extra_args=("--gc-interval", "1h", "--retention-interval", "1h"))
    a, b = cluster.regions
    repo = "ret/geo"
    for i in range(1, 5):
        (a if i % 2 else b).oci().push_image(repo, tag="v%d" % i, layers=1, layer_size=64)
        # one at a time, so the clocks order the tags as they were pushed
        wait_until(lambda: all(r.oci().get_manifest(repo, "v%d" % i).status_code == 200
                               for r in (a, b)), timeout_s=60, what="v%d everywhere" % i)
    api(a, "POST", "retention", json={"pattern": "ret/*", "keepNewest": 2})
    wait_until(lambda: len(api(b, "GET", "retention")) == 1, timeout_s=60,
               what="rule replicated")
    sel = [sorted((t["tag"], t["region"]) for t in
                  api(r, "POST", "retention/run", params={"dry_run": "true"})["tags"])
           for r in (a, b)]
    assert sel[0] == sel[1] == [("v1", a.name), ("v2", b.name)], sel
    out_a = api(a, "POST", "retention/run")
    assert sorted(t["tag"] for t in out_a["tags"] if t["deleted"]) == ["v1"]
    out_b = api(b, "POST", "retention/run")
    assert sorted(t["tag"] for t in out_b["tags"] if t["deleted"]) == ["v2"]
    wait_until(lambda: all(sorted(r.oci().tag_list(repo)) == ["v3", "v4"] for r in (a, b)),
               timeout_s=60, what="both regions keep v3, v4")


def test_geo_retention_keeps_tags_pulled_in_another_region(geo):
    cluster = geo(n=2, extra_args=("--gc-interval", "1h", "--retention-interval", "1h",
                                   "--pull-record-interval", "1s"))
    a, b = cluster.regions
    repo = "pull/geo"
    digests = {}
    for i in range(1, 6):
        digests["v%d" % i] = a.oci().push_image(repo, tag="v%d" % i, layers=1,
                                                layer_size=64).digest
        wait_until(lambda: b.oci().get_manifest(repo, "v%d" % i, method="HEAD").status_code
                   == 200, timeout_s=60, what="v%d in b" % i)
    # pulls in b only: v1 by tag, v2 by digest; v3 only asked about (HEAD), v4 never
    assert b.oci().get_manifest(repo, "v1").status_code == 200
    assert b.oci().get_manifest(repo, digests["v2"]).status_code == 200
    assert b.oci().get_manifest(repo, "v3", method="HEAD").status_code == 200
    api(a, "POST", "retention", json={"pattern": "pull/*", "keepNewest": 1,
                                      "pulledWithinS": 86400})
    assert api(a, "GET", "retention") == [{"pattern": "pull/*", "tags": "*", "keepNewest": 1,
                                           "pulledWithinS": 86400}]
    wait_until(lambda: len(api(b, "GET", "retention")) == 1, timeout_s=60,
               what="rule replicated")

    def dry(r):
        out = api(r, "POST", "retention/run", params={"dry_run": "true"})
        return (sorted(t["tag"] for t in out["tags"]), sorted(t["tag"] for t in out["kept"]))
    # b's pulls reach a through replication: then both regions select the same
    wait_until(lambda: dry(a)[1] == ["v1", "v2"], timeout_s=60, what="b's pulls seen in a")
    assert dry(a) == dry(b) == (["v3", "v4"], ["v1", "v2"])
    kept = api(a, "POST", "retention/run", params={"dry_run": "true"})["kept"]
    assert all(k["rule"] == "pull/*" and k["pulledMs"] > 0 for k in kept), kept
    out = api(a, "POST", "retention/run")
    assert sorted(t["tag"] for t in out["tags"] if t["deleted"]) == ["v3", "v4"]
    wait_until(lambda: all(sorted(r.oci().tag_list(repo)) == ["v1", "v2", "v5"]
                           for r in (a, b)), timeout_s=60, what="both regions keep v1, v2, v5")


def test_pull_times_written_once_per_hour_not_per_get(server_factory):
    srv = server_factory("--gc-interval", "1h", "--pull-record-interval", "1h")
    repo = "pulls/once"
    img = srv.oci().push_image(repo, tag="v1", layers=1, layer_size=64)

    def pull_events():
        r = requests.get(srv.url + "/_meridian/v1/replication/events",
                         params={"from": "local", "after": 0, "wait": 0, "max": 5000},
                         timeout=30)
        assert r.status_code == 200, r.text
        return [e for e in r.json()["events"]
                if e.get("kind") == "object_put" and e.get("name") == repo + "@" + img.digest]
    # a pass flushes this node's pending pull times: here the only flush (interval 1h)
    for ref in ("v1", img.digest, "v1"):
        for _ in range(20):
            assert srv.oci().get_manifest(repo, ref).status_code == 200
        api(srv, "POST", "retention/run", params={"dry_run": "true"})
    assert len(pull_events()) == 1, pull_events()
    api(srv, "POST", "retention", json={"pattern": "pulls/*", "keepNewest": 0,
                                        "pulledWithinS": 60})
    try:
        out = api(srv, "POST", "retention/run", params={"dry_run": "true"})
        assert [k["tag"] for k in out["kept"]] == ["v1"] and out["tags"] == []
    finally:
        api(srv, "DELETE", "retention", params={"pattern": "pulls/*"})


def test_pull_time_removed_with_its_untagged_manifest(server_factory):
    srv = server_factory("--gc-grace", "1h", "--gc-untagged-after", "1s", "--gc-interval", "1h",
                         "--pull-record-interval", "1h")
    repo = "pulls/gone"
    img = srv.oci().push_image(repo, tag="v1", layers=1, layer_size=64)
    keep = srv.oci().push_image(repo, tag="v2", layers=1, layer_size=64)
    for d in (img.digest, keep.digest):
        assert srv.oci().get_manifest(repo, d).status_code == 200
    api(srv, "POST", "retention/run", params={"dry_run": "true"})  # flushes the pull times

    def objects(kind):
        r = requests.get(srv.url + "/_meridian/v1/replication/events",
                         params={"from": "local", "after": 0, "wait": 0, "max": 5000},
                         timeout=30)
        return sorted(e["name"] for e in r.json()["events"] if e.get("kind") == kind
                      and e.get("name", "").startswith(repo + "@"))
    assert objects("object_put") == sorted([repo + "@" + img.digest, repo + "@" + keep.digest])
    assert srv.oci().delete(srv.oci().manifest_path(repo, "v1")).status_code == 202
    def collected():
        gc_run(srv)
        return srv.oci().get_manifest(repo, img.digest, method="HEAD").status_code == 404
    wait_until(collected, timeout_s=30, what="untagged manifest collected")
    assert objects("object_delete") == [repo + "@" + img.digest]


def test_retention_pulled_within_validated(srv):
    for bad in (-1, "1d", 1.5):
        r = requests.post(srv.url + "/_meridian/v1/retention",
                          json={"pattern": "x/*", "pulledWithinS": bad}, timeout=30)
        assert r.status_code == 400 and "pulledWithinS" in r.json()["error"]["message"], r.text
    assert all(rule["pattern"] != "x/*" for rule in api(srv, "GET", "retention"))


def test_retention_is_admin_only(server_pool):
    srv = server_pool("--gc-grace", "1s", "--gc-interval", "1h")
    adm = srv.admin()
    publisher = adm.user("pub-ret", password="pub-ret-password-1", role="publisher", pattern="*")
    for method, path, kw in (("GET", "retention", {}),
                             ("POST", "retention", {"json": {"pattern": "*", "keepNewest": 0}}),
                             ("DELETE", "retention?pattern=*", {}),
                             ("POST", "retention/run", {}),
                             ("POST", "retention/run?dry_run=true", {})):
        r = srv.request(method, "/_meridian/v1/" + path, auth=publisher, **kw)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"]
        r = srv.request(method, "/_meridian/v1/" + path, auth=None, **kw)
        assert r.status_code == 401, (method, path, r.status_code)
    assert adm.call("GET", "retention", expect=200).json() == []
    adm.call("POST", "retention/run?dry_run=true", expect=200)
