"""Issue 15 item 1 and 4: online garbage collection per region, and storage accounting.

The collector reviews the blobs whose references or links changed (a review queue in the
metastore), after --gc-grace, and deletes those no manifest held here references and no
repository links: their rows and their files. Checked here, on real servers:

- an orphaned blob goes after the grace (file gone, rows gone), not before;
- a blob another manifest still references stays, and stays pullable;
- an upload that started before its blob became garbage completes, and the manifest
  pushed after it finds the blob (finishing an upload restarts the grace);
- a dry run lists exactly what the real run then deletes, and deletes nothing;
- the collector runs by itself every --gc-interval, counted in /metrics;
- a race: pushes, deletes and tag moves while the collector runs flat out; every
  manifest acknowledged and not deleted is whole afterwards (seed printed; GC_RACE_OPS
  sets the number of operations);
- storage accounting: unique and shared bytes per repository, in the API, CLI, /metrics.
"""

import os
import random
import subprocess
import threading
import time

import pytest
import requests

import tier
from auth_helpers import server_pool  # noqa: F401 - fixture
from conftest import MT_OCI_INDEX, MT_OCI_MANIFEST, assert_error, buildkit_cache_index, \
    canonical_json, digest_of, random_bytes, wait_until

pytest_plugins = ["geo_plugin"]

GRACE_S = 1


def gc(srv, method="GET", path="gc", **params):
    r = requests.request(method, srv.url + "/_meridian/v1/" + path, params=params or None,
                         timeout=60)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def gc_run(srv, dry_run=False):
    return gc(srv, "POST", "gc/run", dry_run="true" if dry_run else "false")


def rows(srv, sql, *args):
    return tier.meta_rows(srv.data_dir, sql, *args)


def has_rows(srv, digest):
    return {"blobs": rows(srv, "SELECT 1 FROM blobs WHERE digest = ?", digest) != [],
            "links": rows(srv, "SELECT 1 FROM repo_blobs WHERE digest = ?", digest) != [],
            "queue": rows(srv, "SELECT 1 FROM gc_queue WHERE digest = ?", digest) != []}


def past_grace():
    time.sleep(GRACE_S + 0.1)


@pytest.fixture
def srv(server_factory):
    # Ticks off (1 h): each test runs passes itself, so what it sees is what it asked.
    return server_factory("--gc-grace", "%ds" % GRACE_S, "--gc-interval", "1h")


def test_orphaned_blobs_reclaimed_after_grace_not_before(srv):
    oci = srv.oci()
    repo = "gc/orphans"
    doomed = oci.push_image(repo, tag="doomed", layers=2)
    kept = oci.push_image(repo, tag="kept", layers=1)
    past_grace()
    assert gc_run(srv)["blobs"] == []  # everything referenced
    assert oci.delete(oci.manifest_path(repo, doomed.digest)).status_code == 202
    assert gc_run(srv)["blobs"] == []  # within the grace
    for d in doomed.blobs:
        assert oci.blob_exists(repo, d)
    past_grace()
    out = gc_run(srv)
    assert sorted(b["digest"] for b in out["blobs"]) == sorted(doomed.blobs)
    assert out["bytes_reclaimed"] == sum(len(b) for b in doomed.blobs.values())
    for d in doomed.blobs:
        assert srv.blob_files(d.split(":")[1]) == []
        assert has_rows(srv, d) == {"blobs": False, "links": False, "queue": False}
        assert_error(oci.head(oci.blob_path(repo, d)), 404)
    for d, data in kept.blobs.items():
        assert oci.get_blob(repo, d) == data
    assert oci.get_manifest(repo, "kept").content == kept.body
    st = gc(srv)
    assert st["blobs_reclaimed_total"] == len(doomed.blobs)
    assert st["last_run_ms"] > 0


def test_blobs_an_index_names_as_children_are_held_by_it(srv):
    """An index whose children are blobs (BuildKit's registry cache) holds them as an
    image holds its layers: kept while it exists, collected once it is deleted."""
    oci = srv.oci()
    repo = "gc/cache"
    index, blobs = buildkit_cache_index([random_bytes(700), random_bytes(701)])
    for data in blobs.values():
        oci.push_blob(repo, data)
    assert oci.put_manifest(repo, "cache", index, MT_OCI_INDEX).status_code == 201
    past_grace()
    assert gc_run(srv)["blobs"] == []
    for d, data in blobs.items():
        assert oci.get_blob(repo, d) == data
    assert oci.delete(oci.manifest_path(repo, digest_of(index))).status_code == 202
    past_grace()
    assert sorted(b["digest"] for b in gc_run(srv)["blobs"]) == sorted(blobs)


def test_blob_files_with_no_row_are_swept_after_the_grace(srv):
    """A crash between a purge's commit (rows gone) and the removal of its files (residency
    enforcement, placement's release) leaves blob files no row names: the sweep of gc run
    removes them once older than the grace, and nothing a row names."""
    oci = srv.oci()
    kept = oci.push_image("gc/sweep", tag="kept", layers=1)
    data = random_bytes(5000)
    d = digest_of(data)
    hexd = d.split(":")[1]
    tier.put_stray_blob(srv.data_dir, d, data)
    assert has_rows(srv, d)["blobs"] is False
    out = gc_run(srv)
    assert out["files"] == [] and out["files_removed"] == 0  # within the grace
    assert srv.blob_files(hexd) != []
    past_grace()
    dry = gc_run(srv, dry_run=True)
    assert dry["files"] == [{"digest": d, "size": len(data)}], dry
    assert srv.blob_files(hexd) != []
    out = gc_run(srv)
    assert out["files"] == [{"digest": d, "size": len(data)}] and out["files_removed"] == 1, out
    assert srv.blob_files(hexd) == []
    assert gc(srv)["files_removed_total"] == 1
    for digest, body in kept.blobs.items():
        assert oci.get_blob("gc/sweep", digest) == body
    assert oci.get_manifest("gc/sweep", "kept").content == kept.body
    assert gc_run(srv)["files"] == []


def test_blob_still_referenced_elsewhere_is_kept(srv):
    oci = srv.oci()
    shared = random_bytes(2048)
    a = oci.push_image("gc/ref-a", tag="a", layer_blobs=[shared, random_bytes(100)])
    b = oci.push_image("gc/ref-a", tag="b", layer_blobs=[shared])
    c = oci.push_image("gc/ref-c", tag="c", layer_blobs=[shared])
    assert oci.delete(oci.manifest_path("gc/ref-a", a.digest)).status_code == 202
    assert oci.delete(oci.manifest_path("gc/ref-c", c.digest)).status_code == 202
    past_grace()
    gone = {x["digest"] for x in gc_run(srv)["blobs"]}
    sd = digest_of(shared)
    assert sd not in gone
    assert gone  # a's own layer and config, c's config
    assert oci.get_blob("gc/ref-a", sd) == shared
    assert oci.get_manifest("gc/ref-a", "b").content == b.body
    # linked no more where nothing references it: gc/ref-c lost its link, gc/ref-a kept it
    assert_error(oci.head(oci.blob_path("gc/ref-c", sd)), 404)


def test_upload_started_before_blob_became_garbage_completes(srv):
    oci = srv.oci()
    repo = "gc/upload"
    layer = random_bytes(4096)
    img = oci.push_image(repo, tag="v1", layer_blobs=[layer])
    # a client starts pushing the same layer again (say, for a rebuilt image)
    loc = oci.start_upload(repo).headers["Location"]
    r = oci.patch(loc, data=layer[:1000], headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    assert oci.delete(oci.manifest_path(repo, img.digest)).status_code == 202
    past_grace()
    assert digest_of(layer) in {x["digest"] for x in gc_run(srv)["blobs"]}
    assert srv.blob_files(digest_of(layer).split(":")[1]) == []
    # the upload goes on and completes
    r = oci.put(loc, params={"digest": digest_of(layer)}, data=layer[1000:],
                headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    # a second client finished an upload of the same bytes past the first one's grace:
    # finishing restarts the grace, so a pass now keeps it for the manifest that follows
    past_grace()
    oci.push_blob(repo, layer)
    for d, data in img.blobs.items():
        if data != layer:
            oci.push_blob(repo, data)  # the config went too
    gc_run(srv)
    assert oci.put_manifest(repo, "v1", img.body, MT_OCI_MANIFEST).status_code == 201
    assert oci.get_blob(repo, digest_of(layer)) == layer


def test_dry_run_equals_the_real_run(srv):
    oci = srv.oci()
    repo = "gc/dry"
    imgs = [oci.push_image(repo, tag="t%d" % i, layers=2) for i in range(4)]
    for img in imgs[:3]:
        assert oci.delete(oci.manifest_path(repo, img.digest)).status_code == 202
    oci.push_blob(repo, random_bytes(300))  # pushed, never referenced
    past_grace()
    dry = gc_run(srv, dry_run=True)
    assert dry["dry_run"] is True and dry["blobs_reclaimed"] == 3 * 3 + 1
    for x in dry["blobs"]:
        assert srv.blob_files(x["digest"].split(":")[1]) != []
        assert has_rows(srv, x["digest"])["blobs"]
    assert gc_run(srv, dry_run=True)["blobs"] == dry["blobs"]
    real = gc_run(srv)
    assert real["blobs"] == dry["blobs"]
    assert real["bytes_reclaimed"] == dry["bytes_reclaimed"]
    assert gc_run(srv, dry_run=True)["blobs"] == []


def test_collector_runs_by_itself_and_reports_metrics(server_factory):
    srv = server_factory("--gc-grace", "1s", "--gc-interval", "1s")
    oci = srv.oci()
    img = oci.push_image("gc/auto", tag="x", layers=1)
    assert oci.delete(oci.manifest_path("gc/auto", img.digest)).status_code == 202
    for d in img.blobs:
        wait_until(lambda: srv.blob_files(d.split(":")[1]) == [], timeout_s=20,
                   what="the collector to delete %s" % d)
    text = requests.get(srv.url + "/metrics", timeout=10).text
    for family in ("meridian_gc_queue_length", "meridian_gc_blobs_reclaimed_total",
                   "meridian_gc_bytes_reclaimed_total", "meridian_gc_errors_total",
                   "meridian_gc_last_run_timestamp_seconds"):
        assert "\n%s " % family in text, family
    assert "\nmeridian_gc_blobs_reclaimed_total %d\n" % len(img.blobs) in text


def test_grace_zero_keeps_everything(server_factory):
    srv = server_factory("--gc-grace", "0", "--gc-interval", "1s")
    oci = srv.oci()
    img = oci.push_image("gc/keep", tag="x", layers=1)
    assert oci.delete(oci.manifest_path("gc/keep", img.digest)).status_code == 202
    r = requests.post(srv.url + "/_meridian/v1/gc/run", timeout=10)
    assert r.status_code == 409 and r.json()["error"]["code"] == "CONFLICT"
    time.sleep(1.5)  # one tick would have run: it must not collect
    for d in img.blobs:
        assert srv.blob_files(d.split(":")[1]) != []


def test_race_pushes_deletes_tag_moves_while_gc_runs(server_factory):
    n_ops = int(os.environ.get("GC_RACE_OPS", "240"))
    seed = int(os.environ.get("GC_RACE_SEED", str(random.randrange(1 << 30))))
    print("gc race seed %d ops %d" % (seed, n_ops))
    # The grace must outlast the gap between a push's blobs and its manifest, which a
    # loaded test machine stretches: 2 s here (24 h by default).
    srv = server_factory("--gc-grace", "2s", "--gc-interval", "1s")
    rng = random.Random(seed)
    pool = [random_bytes(512 + i) for i in range(12)]  # layers shared between images
    stop = threading.Event()
    errors = []

    def collector():
        while not stop.is_set():
            try:
                gc_run(srv)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            time.sleep(0.05)

    t = threading.Thread(target=collector)
    t.start()
    live = {}  # (repo, digest) -> Image, acknowledged and not deleted
    refused = []
    try:
        oci = srv.oci()
        repos = ["gc/race-%d" % i for i in range(3)]
        for _ in range(n_ops):
            op = rng.random()
            repo = rng.choice(repos)
            if op < 0.5 or not live:
                layers = rng.sample(pool, rng.randint(1, 3))
                try:
                    img = oci.push_image(repo, tag="t%d" % rng.randint(0, 5),
                                         layer_blobs=layers)
                except AssertionError as exc:
                    # refused, not acknowledged: a blob outlived its grace before the
                    # manifest came (the client pushes again); anything else is a failure
                    assert "MANIFEST_BLOB_UNKNOWN" in str(exc), exc
                    refused.append(repo)
                    continue
                live[(repo, img.digest)] = img
            elif op < 0.75:
                key = rng.choice(sorted(live))
                img = live.pop(key)
                assert oci.delete(oci.manifest_path(key[0], img.digest)).status_code == 202
            else:
                key = rng.choice(sorted(live))
                img = live[key]
                r = oci.put_manifest(key[0], "t%d" % rng.randint(0, 5), img.body, img.media_type)
                assert r.status_code == 201, r.text
            if rng.random() < 0.1:
                time.sleep(0.3)  # let some garbage age past the grace
    finally:
        stop.set()
        t.join()
    assert errors == []
    print("gc race: %d manifests live, %d pushes refused" % (len(live), len(refused)))
    time.sleep(2.1)
    reclaimed = gc(srv)["blobs_reclaimed_total"]
    gc_run(srv)
    assert reclaimed > 0  # the collector did work during the run
    oci = srv.oci()
    for (repo, dig), img in sorted(live.items()):
        assert oci.get_manifest(repo, dig).content == img.body, (seed, repo, dig)
        for d, data in img.blobs.items():
            assert oci.get_blob(repo, d) == data, (seed, repo, dig, d)


def test_geo_race_every_acknowledged_manifest_whole_in_every_region(geo):
    """Two regions, each collecting on its own state every second while pushes, deletes
    and tag moves land on both and replicate: GC in one region never takes what a
    manifest replicated to it (pending or visible) needs, nor another region's bytes."""
    n_ops = int(os.environ.get("GC_RACE_OPS", "240")) // 2
    seed = int(os.environ.get("GC_RACE_SEED", str(random.randrange(1 << 30))))
    print("gc geo race seed %d ops %d" % (seed, n_ops))
    cluster = geo(n=2, extra_args=("--gc-grace", "2s", "--gc-interval", "1s"))
    regions = list(cluster)
    rng = random.Random(seed)
    pool = [random_bytes(700 + i) for i in range(8)]
    live = {}  # (repo, digest) -> (Image, region index that pushed it)
    refused = 0
    for _ in range(n_ops):
        op = rng.random()
        repo = "gc/geo-%d" % rng.randint(0, 1)
        if op < 0.55 or not live:
            i = rng.randrange(len(regions))
            try:
                img = regions[i].oci().push_image(repo, tag="t%d" % rng.randint(0, 3),
                                                  layer_blobs=rng.sample(pool, 2))
            except AssertionError as exc:
                assert "MANIFEST_BLOB_UNKNOWN" in str(exc), exc
                refused += 1
                continue
            live[(repo, img.digest)] = (img, i)
        elif op < 0.75:
            key = rng.choice(sorted(live))
            img, i = live.pop(key)
            oci = regions[i].oci()
            assert oci.delete(oci.manifest_path(key[0], img.digest)).status_code == 202
        else:
            key = rng.choice(sorted(live))
            img, i = live[key]
            r = regions[i].oci().put_manifest(key[0], "t%d" % rng.randint(0, 3), img.body,
                                              img.media_type)
            assert r.status_code == 201, r.text
        if rng.random() < 0.05:
            time.sleep(0.5)
    print("gc geo race: %d manifests live, %d pushes refused" % (len(live), refused))

    def whole_everywhere():
        for region in regions:
            oci = region.oci()
            for (repo, dig), (img, _) in live.items():
                if oci.get_manifest(repo, dig).status_code != 200:
                    return False
                for d, data in img.blobs.items():
                    r = oci.get(oci.blob_path(repo, d), allow_redirects=True)
                    if r.status_code != 200 or r.content != data:
                        return False
        return True
    wait_until(whole_everywhere, timeout_s=120, what="every live manifest whole in every region")
    time.sleep(2.5)  # past the grace: whatever became garbage is due now
    for region in regions:
        region.api("POST", "gc/run").raise_for_status()
    assert whole_everywhere(), seed
    assert sum(r.api("GET", "gc").json()["blobs_reclaimed_total"] for r in regions) > 0


def test_geo_split_push_refused_once_the_blob_region_collected_it(geo):
    """A client pushes blobs to a only and their manifest to b (a split push). Once a has
    collected the blobs (past its grace, no manifest there), b refuses the manifest
    (MANIFEST_BLOB_UNKNOWN), never acknowledges it without them; pushed before, b fetches
    them from a and accepts, and collections in both regions afterwards keep it whole."""
    cluster = geo(n=2, extra_args=("--gc-grace", "1s", "--gc-interval", "1h"))
    a, b = cluster.regions
    for repo, collect_first in (("gc/split-late", True), ("gc/split-early", False)):
        layer, config = random_bytes(3000), canonical_json({"repo": repo})
        body = canonical_json({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": a.oci().push_blob(repo, config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": a.oci().push_blob(repo, layer), "size": len(layer)}]})
        blobs = {digest_of(layer): layer, digest_of(config): config}
        if collect_first:
            past_grace()
            gone = {x["digest"] for x in a.api("POST", "gc/run").json()["blobs"]}
            assert gone == set(blobs), gone
            assert_error(b.oci().put_manifest(repo, "x", body, MT_OCI_MANIFEST), 400,
                         "MANIFEST_BLOB_UNKNOWN")
            continue
        r = b.oci().put_manifest(repo, "x", body, MT_OCI_MANIFEST)
        assert r.status_code == 201, r.text

        def whole(region):
            oci = region.oci()
            return oci.get_manifest(repo, "x").content == body and all(
                oci.get(oci.blob_path(repo, d), allow_redirects=True).content == data
                for d, data in blobs.items())
        wait_until(lambda: whole(a) and whole(b), timeout_s=60, what="the image whole in both")
        past_grace()
        for region in (a, b):
            region.api("POST", "gc/run").raise_for_status()
        assert whole(a) and whole(b)


def test_storage_accounting_api_cli_metrics(srv, meridian_bin):
    oci = srv.oci()
    shared = random_bytes(1000)
    a = oci.push_image("gc/acct-a", tag="x", layer_blobs=[shared, random_bytes(300)])
    b = oci.push_image("gc/acct-b", tag="x", layer_blobs=[shared])
    st = gc(srv, path="storage")
    per = {x["repository"]: x for x in st["repositories"]}
    size = lambda img, d: len(img.blobs[d])  # noqa: E731
    cfg_a = [d for d in a.blobs if a.blobs[d] != shared and len(a.blobs[d]) != 300][0]
    cfg_b = [d for d in b.blobs if b.blobs[d] != shared][0]
    assert per["gc/acct-a"]["shared_bytes"] == 1000
    assert per["gc/acct-a"]["unique_bytes"] == 300 + size(a, cfg_a)
    assert per["gc/acct-b"]["shared_bytes"] == 1000
    assert per["gc/acct-b"]["unique_bytes"] == size(b, cfg_b)
    assert st["total_bytes"] == 1000 + 300 + size(a, cfg_a) + size(b, cfg_b)
    text = requests.get(srv.url + "/metrics", timeout=10).text
    assert 'meridian_storage_bytes{repository="gc/acct-a",kind="shared"} 1000\n' in text
    assert 'meridian_storage_bytes{repository="gc/acct-b",kind="unique"} %d\n' % size(b, cfg_b) \
        in text
    assert "\nmeridian_storage_total_bytes %d\n" % st["total_bytes"] in text
    out = subprocess.run([meridian_bin, "storage", "show", "--registry", srv.url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "gc/acct-a" in out.stdout and "gc/acct-b" in out.stdout
    out = subprocess.run([meridian_bin, "gc", "run", "--dry-run", "--registry", srv.url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "would delete 0 blobs" in out.stdout, (out.stdout, out.stderr)
    out = subprocess.run([meridian_bin, "gc", "status", "--output", "json", "--registry", srv.url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and '"queue_length"' in out.stdout, (out.stdout, out.stderr)


def test_quota_per_repository_pattern_denies_push_and_stores_nothing(srv, meridian_bin):
    oci = srv.oci()
    out = subprocess.run([meridian_bin, "quota", "set", "gc/quota-*", "--bytes", "3000",
                          "--registry", srv.url], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    bad = requests.post(srv.url + "/_meridian/v1/quotas", json={"pattern": "gc/q", "bytes": -1},
                        timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"]
    first, second = random_bytes(2000), random_bytes(2000)
    oci.push_blob("gc/quota-a", first)
    oci.push_blob("gc/quota-a", first)  # already held: costs nothing
    loc = oci.start_upload("gc/quota-a").headers["Location"]
    r = oci.put(loc, params={"digest": digest_of(second)}, data=second,
                headers={"Content-Type": "application/octet-stream"})
    assert_error(r, 403, "DENIED")
    assert "quota" in r.text
    assert_error(oci.head(oci.blob_path("gc/quota-a", digest_of(second))), 404)
    assert srv.blob_files(digest_of(second).split(":")[1]) == []
    assert srv.upload_files() == []
    # monolithic POST and mount are refused alike; other repositories are not limited
    r = oci.post("/v2/gc/quota-a/blobs/uploads/", params={"digest": digest_of(second)},
                 data=second, headers={"Content-Type": "application/octet-stream"})
    assert_error(r, 403, "DENIED")
    oci.push_blob("gc/other", second)
    r = oci.post("/v2/gc/quota-b/blobs/uploads/", params={"mount": digest_of(second),
                                                         "from": "gc/other"})
    assert r.status_code == 201, r.text  # 2000 <= 3000: each repository has its own quota
    oci.push_blob("gc/quota-b", random_bytes(500))
    r = oci.post("/v2/gc/quota-b/blobs/uploads/", params={"mount": digest_of(first),
                                                         "from": "gc/quota-a"})
    assert_error(r, 403, "DENIED")
    listed = requests.get(srv.url + "/_meridian/v1/quotas", timeout=10).json()
    assert listed == [{"pattern": "gc/quota-*", "bytes": 3000}]
    out = subprocess.run([meridian_bin, "quota", "delete", "gc/quota-*", "--registry", srv.url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    oci.push_blob("gc/quota-a", second)


def test_gc_storage_quotas_are_admin_only(server_pool):
    srv = server_pool("--gc-grace", "1s", "--gc-interval", "1h")
    adm = srv.admin()
    publisher = adm.user("pub-gc", password="pub-gc-password-1", role="publisher", pattern="*")
    for method, path, kw in (("GET", "gc", {}), ("POST", "gc/run", {}),
                             ("POST", "gc/run?dry_run=true", {}), ("GET", "storage", {}),
                             ("GET", "quotas", {}),
                             ("POST", "quotas", {"json": {"pattern": "*", "bytes": 1}})):
        r = srv.request(method, "/_meridian/v1/" + path, auth=publisher, **kw)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"]
        r = srv.request(method, "/_meridian/v1/" + path, auth=None, **kw)
        assert r.status_code == 401, (method, path, r.status_code)
    assert adm.call("GET", "quotas", expect=200).json() == []
    adm.call("POST", "gc/run", expect=200)
    adm.call("GET", "storage", expect=200)


def test_a_locked_manifest_keeps_its_blobs(srv):
    """Locks and GC (docs/image-versions.md): a delete-locked manifest cannot be deleted, so
    its blobs stay referenced and no pass collects them; a blob of an unlocked manifest of the
    same locked-by-tag repository goes once its manifest is deleted. Verification of the rule
    (the collector counts references; a lock adds none)."""
    oci = srv.oci()
    repo = "gc/locked"
    kept = oci.push_image(repo, tag="v1", layers=2)
    doomed = oci.push_image(repo, tag="v2", layers=1)
    r = requests.patch(srv.url + "/_meridian/v1/repositories",
                       params={"repository": repo, "reference": "v1"},
                       json={"deleteEnabled": False, "writeEnabled": False}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    assert oci.delete(oci.manifest_path(repo, kept.digest)).status_code == 403
    assert oci.delete(oci.manifest_path(repo, doomed.digest)).status_code == 202
    past_grace()
    gone = {b["digest"] for b in gc_run(srv)["blobs"]}
    assert gone == set(doomed.blobs) - set(kept.blobs), gone
    for d, data in kept.blobs.items():
        assert oci.get_blob(repo, d) == data
    assert oci.get_manifest(repo, "v1").content == kept.body
