"""Regions joining and leaving, and what `meridian replication list/show` say about them
(docs/replication.md): a region added later backfills everything, tombstones included; a
removed region is forgotten by every other and gets no more data; Ready / Syncing / Unreachable
follow what the links do.
"""

import json
import os
import time

import pytest

from regions import (MANIFEST_ACCEPT, MIB, Pattern, REPLICATION_STATES, manifest_digest, push_blob_stream,
                     push_image_with_layer, registry_state, unique_repo, wait_converged,
                     wait_for, wait_replicated_cli)

pytest_plugins = ["geo_plugin"]


def test_region_added_later_backfills_everything(geo):
    cluster = geo(2)
    a, b = cluster
    repos = [unique_repo("backfill-%d" % i) for i in range(3)]
    deleted = []
    for i, repo in enumerate(repos):
        src = cluster[i % 2]
        img = src.oci().push_image(repo, "v1", layers=2, layer_size=64 * 1024)
        src.oci().push_image(repo, "v2")
        src.oci().push_manifest(repo, "latest", img.body, img.media_type)
        gone = src.oci().push_image(repo, "gone")
        deleted.append((repo, gone.digest))
    # deletes made before the new region exists must reach it as deletes (made in r2, once
    # r2 has the manifest)
    for repo, digest in deleted:
        wait_for(lambda: manifest_digest(b, repo, digest) == digest, 60,
                 "%s@%s to reach r2" % (repo, digest))
        r = b.oci().delete("/v2/%s/manifests/%s" % (repo, digest))
        assert r.status_code == 202, (r.status_code, r.text)
    before = wait_converged(cluster, repos=repos, what="r1 and r2 before r3 joins")
    assert all(set(before[repo]) == {"v1", "v2", "latest"} for repo in repos), before

    c = cluster.add(via=b)                  # joined through a region that is not the home
    cluster.wait_members()
    wait_converged(cluster, repos=repos, expect=before, timeout_s=90,
                   what="the new region r3 to backfill")
    for repo, digest in deleted:
        assert manifest_digest(c, repo, digest) is None, (repo, digest)
    # backfilled content is really there: every blob of every image pulls from r3
    for repo in repos:
        for tag in ("v1", "v2"):
            m = json.loads(c.get("/v2/%s/manifests/%s" % (repo, tag), headers={
                "Accept": "application/vnd.oci.image.manifest.v1+json"}).content)
            for d in [m["config"]["digest"]] + [layer["digest"] for layer in m["layers"]]:
                r = c.get("/v2/%s/blobs/%s" % (repo, d))
                assert r.status_code == 200, (repo, tag, d, r.status_code)
        p = wait_replicated_cli(c, repo, "v1", timeout="1m", timeout_s=90)
        assert p.returncode == 0, (p.stdout[-1000:], p.stderr[-1000:])
    # and the new region takes writes that reach the others
    repo = repos[0]
    img = c.oci().push_image(repo, "from-r3")
    wait_for(lambda: all(manifest_digest(r, repo, "from-r3") == img.digest for r in cluster),
             60, "a write in r3 to reach r1 and r2")


def test_removed_region_is_forgotten_and_gets_nothing_more(geo):
    cluster = geo(3)
    a, b, c = cluster
    repo = unique_repo("leave")
    first = a.oci().push_image(repo, "before")
    wait_converged(cluster, repos=[repo], expect={repo: {"before": first.digest}})

    b.cli("replication", "delete", c.name)        # asked of a region other than the home
    cluster.forget(c)
    cluster.wait_members(names=[a.name, b.name], regions=[a, b])
    for r in (a, b):
        shown = r.cli("replication", "show", c.name, check=False)
        assert shown.returncode != 0, (r.name, shown.stdout)
        assert r.api("GET", "replications/" + c.name).status_code == 404
        table = r.cli("replication", "list").stdout
        assert c.name not in table.split(), table

    # the others stop sending to it: once their traffic with it has settled (long polls
    # that were open when it left may end), a new image crosses r1 -> r2 while nothing
    # more than a few refused calls flows to or from the removed region
    def to_c():
        return (a.proxy.stats(c.host)["down"] + b.proxy.stats(c.host)["down"]
                + c.proxy.stats([a.host, b.host])["down"]
                + c.proxy.stats([a.host, b.host])["up"])
    settled = _settle(to_c, quiet_s=3, timeout_s=40)
    layer = Pattern(seed=5, size=2 * MIB)
    push_blob_stream(a, repo, layer)
    after, _m, _cfg = push_image_with_layer(a, repo, "after", layer.digest, layer.size)
    p = wait_replicated_cli(a, repo, "after", timeout="1m", timeout_s=90)
    assert p.returncode == 0, ("wait should need r1 and r2 only", p.stdout[-1000:],
                               p.stderr[-1000:])
    wait_converged([a, b], repos=[repo],
                   expect={repo: {"before": first.digest, "after": after}})
    grew = to_c() - settled
    assert grew < 64 * 1024, ("%d bytes moved between the removed region and the others "
                              "after it left" % grew)
    assert not serves(c, repo, "after")

    # issue 9 item 15: the region that left says so on its health endpoints and in its own
    # replication list, and never reads Ready there
    r = c.get("/readyz")
    assert r.status_code == 503 and "removed" in r.text, (r.status_code, r.text)
    r = c.get("/healthz")
    assert r.status_code == 200 and "removed" in r.text, (r.status_code, r.text)
    assert c.get("/v2/").status_code == 503
    own = c.replication_states()
    assert own.get(c.name) == "Removed", own
    assert all(s == "Unknown" for loc, s in own.items() if loc != c.name), own

    # "its data is removed": the region that left serves none of the registry's content
    wait_for(lambda: not serves(c, repo, first.digest) and not serves(c, repo, "before"), 60,
             "the removed region to drop the registry's content")


def serves(region, repo, ref):
    """True if region answers 200 for the manifest (a region that left may answer 404, 503, or
    be gone)."""
    if not region.is_running():
        return False
    try:
        r = region.get("/v2/%s/manifests/%s" % (repo, ref), headers={"Accept": MANIFEST_ACCEPT},
                       timeout=10)
    except Exception:  # noqa: BLE001 - a region that shut down serves nothing
        return False
    return r.status_code == 200


def _settle(counter, quiet_s, timeout_s, slack=16 * 1024):
    """Waits until counter() grows by less than `slack` over quiet_s; returns its value.
    (A region that left may still knock and be refused: a few hundred bytes a call.)"""
    samples = [(time.monotonic(), counter())]
    deadline = samples[0][0] + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = (time.monotonic(), counter())
        samples.append(now)
        window = [v for t, v in samples if now[0] - t <= quiet_s]
        if samples[0][0] <= now[0] - quiet_s and now[1] - min(window) < slack:
            return now[1]
    raise AssertionError("traffic with the removed region never settled: %s"
                         % samples[-5:])


def test_replication_list_and_show_report_ready_syncing_unreachable(geo):
    cluster = geo(3, remove_data=True)
    a, b, c = cluster

    # every region answers the same membership; one entry is itself
    for r in cluster:
        entries = r.cli_json("replication", "list")
        if isinstance(entries, dict):
            entries = entries.get("replications", entries.get("items", entries.get("value")))
        by_loc = {e["location"]: e for e in entries}
        assert set(by_loc) == set(cluster.names), (r.name, entries)
        for loc, e in by_loc.items():
            for k in ("location", "endpoint", "state", "lagEvents", "lagSeconds",
                      "bytesToCopy", "isLocal"):
                assert k in e, (r.name, k, e)
            assert e["state"] == "Ready", (r.name, e)
            assert e["endpoint"].rstrip("/") == cluster[loc].endpoint, (r.name, e)
            assert e["isLocal"] is (loc == r.name), (r.name, e)
            assert e["lagEvents"] == 0 and e["bytesToCopy"] == 0, (r.name, e)
        one = r.cli_json("replication", "show", b.name)
        assert one["location"] == b.name and one["state"] in REPLICATION_STATES, one
        table = r.cli("replication", "list").stdout
        for name in cluster.names:
            assert name in table, table
        assert "Ready" in table, table

    # Syncing: r2 and r3 have a layer still to copy over slow links
    for r in (b, c):
        a.proxy.bandwidth(2 * MIB, src=r.host)
    repo = unique_repo("syncing")
    layer = Pattern(seed=3, size=16 * MIB)
    push_blob_stream(a, repo, layer)
    push_image_with_layer(a, repo, "v1", layer.digest, layer.size)

    def syncing_seen():
        for o in cluster:
            for loc, e in o.replications().items():
                if loc in (b.name, c.name) and e["state"] == "Syncing" and \
                        e.get("bytesToCopy", 0) > 0:
                    return (o.name, loc, e)
        return None
    wait_for(syncing_seen, 30, "r2 or r3 to be shown Syncing with bytes to copy",
             interval_s=0.2)
    a.proxy.bandwidth(None, src=[b.host, c.host])
    p = wait_replicated_cli(a, repo, "v1", timeout="1m", timeout_s=90)
    assert p.returncode == 0, (p.stdout[-1000:], p.stderr[-1000:])
    cluster.wait_members(ready=True)
    for o in cluster:
        for loc, e in o.replications().items():
            assert e["bytesToCopy"] == 0, (o.name, loc, e)

    # Unreachable: nothing gets into r3 any more
    c.proxy.cut()
    cluster.wait_state([a, b], c.name, "Unreachable", timeout_s=60)
    assert json.loads(a.cli("replication", "show", c.name, "--output", "json").stdout)[
        "state"] == "Unreachable"
    assert a.replication_states()[b.name] == "Ready"
    c.proxy.heal()
    cluster.wait_state([a, b], c.name, "Ready", timeout_s=60)

    # a frozen region (SIGSTOP) is unreachable too, and Ready again once it continues
    c.sigstop()
    cluster.wait_state([a, b], c.name, "Unreachable", timeout_s=90)
    c.sigcont()
    cluster.wait_members(ready=True, timeout_s=60)
    assert registry_state(c, [repo]) == registry_state(a, [repo])


def test_a_leave_no_region_confirms_changes_nothing(geo):
    """Being told to leave removes every blob of a region, so it is not taken on the word
    of whoever holds the peer secret: the region asks its peers, and while they still count
    it as theirs it stays, serving everything. A leave naming another region or registry
    is refused without naming this one."""
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("no-leave")
    img = a.oci().push_image(repo, "kept")
    wait_converged(cluster, repos=[repo], expect={repo: {"kept": img.digest}})
    peer = ("peer", cluster.secret)
    r = b.api("POST", "replication/leave", auth=peer,
              json={"registry": "meridian", "location": "r9"})
    assert r.status_code == 409, (r.status_code, r.text)
    assert "r2" not in r.text and "r9" not in r.text, r.text
    r = b.api("POST", "replication/leave", auth=peer,
              json={"registry": "meridian", "location": b.name})
    assert r.status_code == 202, (r.status_code, r.text)
    wait_for(lambda: "asked r1 whether this region was removed: it was not" in b.log_text(),
             30, "r2 to check its removal with r1")
    assert b.get("/readyz").status_code == 200
    assert not os.path.exists(os.path.join(b.data_dir, "REMOVED"))
    for d, data in img.blobs.items():
        r = b.get("/v2/%s/blobs/%s" % (repo, d))
        assert r.status_code == 200 and r.content == data, (d, r.status_code)
    assert serves(b, repo, "kept")
    # and it still replicates both ways
    img2 = b.oci().push_image(repo, "after")
    wait_converged(cluster, repos=[repo], expect={repo: {"kept": img.digest,
                                                         "after": img2.digest}})
    # the membership question: r1 counts r2, not a region it never had
    r = a.api("GET", "replication/membership?from=r2", auth=peer)
    assert r.status_code == 200 and r.json() == {"member": True}, (r.status_code, r.text)
    r = a.api("GET", "replication/membership?from=r9", auth=peer)
    assert r.status_code == 404, (r.status_code, r.text)  # never known: says nothing
    assert a.api("GET", "replication/membership?from=r2").status_code == 401
    r = a.api("GET", "replication/membership?from=r%FF", auth=peer)
    assert r.status_code == 400, (r.status_code, r.content)
    # a name that is not one is not echoed (it may not even be UTF-8)
    r = a.api("GET", "replication/events?from=r%FF&vv=", auth=peer)
    assert r.status_code == 403, (r.status_code, r.content)
    assert "not a region name" in r.json()["error"]["message"], r.content
    # the same for the other reads a region filters by its name (residency): a name that
    # is not a region's gets 403, not a view filtered for a region that does not exist
    for path in ("replication/summary?", "replication/state?repository=%s&" % repo):
        for name, shown in (("r9", "r9"), ("r%FF", "not a region name")):
            r = a.api("GET", path + "from=" + name, auth=peer)
            assert r.status_code == 403, (path, name, r.status_code, r.content)
            assert shown in r.json()["error"]["message"], (path, name, r.content)
        r = a.api("GET", path + "from=r2", auth=peer)
        assert r.status_code == 200, (path, r.status_code, r.text)


def test_peer_api_refuses_malformed_parameters_and_introductions(geo):
    """Bad input on the peer API gets 400 and changes nothing: positions and waits that
    are not non-negative integers (they fell back to defaults, and a position past 2^63
    wrapped negative), and introductions whose endpoint has a query or fragment (every
    peer URL is built by appending a path to it) or whose coordinates are not numbers in
    range (they were accepted and dropped)."""
    cluster = geo(2)
    a, b = cluster
    peer = ("peer", cluster.secret)
    for q in ("after=abc", "after=18446744073709551615", "after=-1", "max=-1", "max=1e3",
              "wait=x", "wait=-5", "held_seq=abc", "held_seq=-1",
              "held_seq=18446744073709551615", "held_seq=1%00", "held_hlc=x", "held_hlc=-7",
              "held_seq=1&held_hlc=" + "9" * 4000):
        r = a.api("GET", "replication/events?from=r2&vv=&" + q, auth=peer)
        assert r.status_code == 400, (q, r.status_code, r.text)
        want = "encoded NUL" if "%00" in q else "must be a non-negative integer"
        assert want in r.json()["error"]["message"], (q, r.text)
    assert a.api("GET", "replication/events?from=r2&vv=&after=0&wait=0",
                 auth=peer).status_code == 200
    base = {"registry": "meridian", "location": "r7", "endpoint": "http://127.0.1.7:1"}
    for extra in ({"endpoint": "http://127.0.1.7:1?x=1"}, {"endpoint": "http://127.0.1.7:1#f"},
                  {"latitude": "abc", "longitude": 1}, {"latitude": 9999, "longitude": 1},
                  {"latitude": 10}):
        r = a.api("POST", "replication/introduce", auth=peer, json=dict(base, **extra))
        assert r.status_code == 400, (extra, r.status_code, r.text)
    assert "r7" not in a.replication_states()
    assert "r7" not in b.replication_states()
    # a refused restored-region probe (held_seq/held_hlc) took nothing for a restore
    assert "restored from an older copy" not in a.log_text()


def test_a_region_added_back_under_its_old_name_replicates_its_writes(geo):
    """A region removed (its disk lost, say) and added back under the same name with empty
    data: the others have seen events of that name up to some number, so the new region's
    own numbering must go on above it, or its events would be taken for ones they have and
    never applied (objects, which anti-entropy does not repair, were lost that way). What was
    written under the name before comes back to it."""
    cluster = geo(3)
    a, b, c = cluster
    repo = unique_repo("readd")
    for k in range(3):
        c.oci().push_image(repo, "c%d" % k)
    assert c.api("POST", "quotas", json={"pattern": "old-r3/*", "bytes": 111}).status_code == 200
    wait_converged(cluster, repos=[repo])
    wait_for(lambda: "old-r3/*" in a.api("GET", "quotas").text, 30, "r1 to hold r3's quota")
    b.cli("replication", "delete", c.name)
    cluster.forget(c)
    cluster.wait_members(names=[a.name, b.name], regions=[a, b])
    wait_for(lambda: not c.is_running() or c.get("/readyz").status_code == 503, 60,
             "r3 to leave")
    r = a.api("GET", "replication/membership?from=r3", auth=("peer", cluster.secret))
    assert r.status_code == 410 and r.json()["removed"] is True, (r.status_code, r.text)
    if c.is_running():
        c.terminate()
        c.wait()
    c.remove_data()
    # the same name, fresh data: a data directory of its own (on the scale-out tier its
    # metadata database and blob prefix are named after it, so they are fresh too)
    c.data_dir = os.path.join(c.dir, "data-again")
    cluster.removed.remove(c)
    cluster.regions.append(c)
    c.may_exit = False
    c.start()
    cluster.join(c)
    cluster.wait_members()
    wait_for(lambda: "old-r3/*" in c.api("GET", "quotas").text, 60,
             "r3 to hold what was written under its name before")
    img = c.oci().push_image(repo, "fresh")
    r = c.api("POST", "quotas", json={"pattern": "new-r3/*", "bytes": 222})
    assert r.status_code == 200, r.text
    for other in (a, b):
        wait_for(lambda: "new-r3/*" in other.api("GET", "quotas").text, 60,
                 "%s to hold the new r3's quota" % other.name)
        wait_for(lambda: manifest_digest(other, repo, "fresh") == img.digest, 60,
                 "%s to hold the new r3's image" % other.name)
    assert "events of this region's name beyond its own log" in c.log_text(), c.log_tail()


OLD_BIN = os.environ.get("MERIDIAN_OLD_BIN", "/tmp/compact_old/build/meridian")


@pytest.mark.skipif(not os.path.exists(OLD_BIN), reason="no build of an older release "
                    "(MERIDIAN_OLD_BIN)")
def test_a_region_removed_by_an_older_release_still_leaves(geo):
    """A region of a release without `membership` removes a region of this one: asked, it
    answers 404 for the route, so the removed region asks it through `events`, which it
    refuses to a region it no longer counts, and the removed region leaves."""
    cluster = geo(1)
    old = cluster[0]
    new_argv = old.argv
    old.stop()
    old.argv = lambda port: [OLD_BIN if a == cluster.binary else a for a in new_argv(port)]
    old.start()
    b = cluster.add()                         # this release, joined through the old region
    cluster.wait_members()
    repo = unique_repo("old-removes")
    img = b.oci().push_image(repo, "v1")
    wait_for(lambda: manifest_digest(old, repo, "v1") == img.digest, 60, "r1 to hold r2's image")
    old.cli("replication", "delete", b.name)
    cluster.forget(b)
    wait_for(lambda: not b.is_running() or b.get("/readyz").status_code == 503, 60,
             "r2 to leave")
    assert "asked r1 whether this region was removed: it was" in b.log_text(), b.log_tail()


def test_a_read_of_rows_the_caller_has_answers_at_once(geo):
    """A long poll whose rows the caller's version vector all filters out moves the caller
    past them at once instead of holding the poll to its deadline: a region catching up
    through a log it mostly has (a relay's copy of events it got from their origin) used to
    advance one scan of rows per wait."""
    cluster = geo(2)
    a, _ = cluster
    peer = ("peer", cluster.secret)
    repo = "geo/have-%d" % os.getpid()
    a.oci().push_image(repo, "v1")
    r = a.api("GET", "replication/events?from=r2&vv=&after=0&wait=0&max=1000", auth=peer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["events"], body
    # a caller that has every row, also of events that arrive meanwhile (r2's status):
    # the answer comes before the 30 s wait, past all of them
    vv = "r1:1000000,r2:1000000"
    r = a.api("GET", "replication/events?from=r2&vv=%s&after=0&wait=30" % vv, auth=peer,
              timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["events"] == [] and r.json()["last"] >= body["events"][-1]["seq"], r.json()
