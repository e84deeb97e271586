"""Residency policies (docs/governance.md, "Residency"; issue 13 items 1, 2 and 5).

Three regions, r3 outside the allowed set {r1, r2} of the policies under test: a push to r3 is
refused (403 DENIED naming the policy) and stores nothing; content pushed to r1 reaches r2 and
never r3 (its blob directory, its tables and its event log hold none of it: checked on disk),
also after anti-entropy has run; a pull at r3 does not fetch it either; image-version targets
naming r3 are refused; a policy set over content r3 already holds makes r3 remove it (audited);
the compliance report lists holdings against policies and flags every violation; bad policies
are refused with nothing changed; the audit listing filters by region and time.

Harness: regions.py (three `meridian serve` processes, r1..r3).
"""

import base64
import json
import os
import time

import pytest
import requests

from auth_helpers import MT_OCI_MANIFEST
from conftest import digest_of
import secrets
import tier

from regions import unique_repo, wait_for
from test_image_versions import blob_files, db_rows, definition

pytest_plugins = ["geo_plugin"]

REPL_S = 30


def named(prefix):
    """prefix-<random>: a repository name a policy's pattern (prefix's first segment) matches."""
    return "%s-%s" % (prefix, secrets.token_hex(3))


def set_policy(region, name, repositories, allowed=None, denied=None, enforce=None):
    body = {"repositories": repositories}
    if enforce is not None:
        body["enforce"] = enforce
    if allowed is not None:
        body["allowedRegions"] = allowed
    if denied is not None:
        body["deniedRegions"] = denied
    return region.api("PUT", "policies/residency/" + name, json=body)


def has_policy(region, name):
    return region.api("GET", "policies/residency/" + name).status_code == 200


def wait_policy_everywhere(cluster, name):
    for r in cluster:
        wait_for(lambda r=r: has_policy(r, name), REPL_S, "policy %s at %s" % (name, r.name))


def barrier(cluster, src, dst):
    """Pushes a plain image to src and waits until dst serves it: dst has applied src's log
    up to here (events of one origin apply in order)."""
    repo = unique_repo("barrier")
    img = src.oci().push_image(repo, "v1", layers=1, layer_size=64)
    wait_for(lambda: dst.oci().get_manifest(repo, img.digest).status_code == 200, REPL_S,
             "barrier %s -> %s" % (src.name, dst.name))


def db_files_hold(region, needle):
    """Whether meta.db, its WAL or its shared-memory index holds the bytes."""
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        path = os.path.join(region.data_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                if needle in f.read():
                    return True
    return False


def assert_holds_nothing_of(region, repo, img, marker=None):
    """region keeps nothing of repo: no blob file of img, no row, no event about it, no
    document bytes (nor their base64) in its event log or database files, nor marker (bytes
    of an annotation of img: the store keeps the document packed, its annotations as they
    are)."""
    for d in img.blobs:
        assert blob_files(region, d) == [], (region.name, d)
    assert db_rows(region, "SELECT id FROM repos WHERE name = ?", repo) == []
    assert db_rows(region, "SELECT seq FROM events WHERE repo = ?", repo) == []
    assert db_rows(region, "SELECT key FROM objects WHERE key = ? OR key LIKE ?", repo,
                   repo + ":%") == []
    assert db_rows(region, "SELECT repo FROM repl_status WHERE repo = ?", repo) == []
    b64 = base64.b64encode(img.body).decode()
    for (payload,) in db_rows(region, "SELECT payload FROM events WHERE payload IS NOT NULL"):
        assert b64 not in payload and repo not in payload, payload[:200]
    for name in ("meta.db", "meta.db-wal"):
        path = os.path.join(region.data_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                raw = f.read()
            assert img.body not in raw and b64.encode() not in raw, path
    assert marker is None or not db_files_hold(region, marker), marker


def denied(r, policy):
    assert r.status_code == 403, (r.status_code, r.text)
    err = r.json()["errors"][0]
    assert err["code"] == "DENIED" and policy in err["message"], err
    return err["message"]


def test_content_never_reaches_a_region_outside_the_policy(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    assert set_policy(r2, "eu-only", "eu/*", allowed=["r1", "r2"]).status_code == 200
    wait_policy_everywhere(cluster, "eu-only")
    repo = named("eu/app")

    # a push straight to r3 is refused, naming the policy, and stores nothing
    oci3 = r3.oci()
    layer = os.urandom(4096)
    r = oci3.post("/v2/%s/blobs/uploads/?digest=%s" % (repo, digest_of(layer)), data=layer,
                  headers={"Content-Type": "application/octet-stream"})
    msg = denied(r, "eu-only")
    assert "r3" in msg and "r1, r2" in msg, msg
    denied(oci3.post("/v2/%s/blobs/uploads/" % repo), "eu-only")
    denied(oci3.put_manifest(repo, "v1", {"schemaVersion": 2}), "eu-only")
    assert blob_files(r3, digest_of(layer)) == []
    assert db_rows(r3, "SELECT id FROM uploads WHERE repo = ?", repo) == []

    # pushed to r1: r2 gets it, r3 none of it (events withheld at the senders)
    img = r1.oci().push_image(repo, "v1", layers=2, layer_size=32 * 1024)
    wait_for(lambda: r2.oci().get_manifest(repo, "v1").status_code == 200, REPL_S, "v1 at r2")
    for src in (r1, r2):
        barrier(cluster, src, r3)
    assert_holds_nothing_of(r3, repo, img)
    # r3's log kept its numbering: stand-ins of r1's events about the repository
    assert db_rows(r3, "SELECT count(*) FROM events WHERE kind = 'redacted' AND origin = 'r1'"
                   " AND repo IS NULL AND payload IS NULL")[0][0] >= 3

    # a pull at r3 neither answers nor fetches it (pull-through, the front door's path)
    denied(oci3.get_manifest(repo, "v1"), "eu-only")
    for d in img.blobs:
        r = oci3.get("/v2/%s/blobs/%s" % (repo, d))
        assert r.status_code == 404, (r.status_code, r.text)
    # the peer API r3 uses for anti-entropy and pull-through withholds it at the sender
    peer = ("peer", r1.cluster.secret)
    summary = r1.api("GET", "replication/summary", params={"from": "r3"}, auth=peer).json()
    assert repo not in summary
    summary = r1.api("GET", "replication/summary", params={"from": "r2"}, auth=peer).json()
    assert repo in summary
    r = r1.api("GET", "replication/state", params={"repository": repo, "from": "r3"}, auth=peer)
    assert r.status_code == 403, (r.status_code, r.text)
    # and the event stream: r3 is sent stand-ins, r2 the events themselves
    def stream(to):
        r = r1.api("GET", "replication/events", auth=peer,
                   params={"after": 0, "max": 2000, "wait": 0, "from": to, "vv": ""})
        assert r.status_code == 200, r.text
        return r.json()["events"]
    to_r3, to_r2 = stream("r3"), stream("r2")
    # one stand-in for each event held back: the same numbering (r1's log may grow between
    # the two reads, replication goes on: compared up to the shorter one)
    upto = min(to_r3[-1]["seq"], to_r2[-1]["seq"])
    assert [e["seq"] for e in to_r3 if e["seq"] <= upto] == \
        [e["seq"] for e in to_r2 if e["seq"] <= upto]
    assert not [e for e in to_r3 if repo in json.dumps(e)], "an event about it went to r3"
    redacted = [e for e in to_r3 if e["kind"] == "redacted"]
    assert len(redacted) >= 3 and all(set(e) <= {"seq", "origin", "originSeq", "hlc", "kind"}
                                      for e in redacted), redacted[:2]
    assert [e for e in to_r2 if e.get("repo") == repo]

    # pushed while r3 is cut off, then the partition heals: still nothing arrives
    cluster.partition([r3], [r1, r2])
    img2 = r1.oci().push_image(repo, "v2", layers=1, layer_size=8 * 1024)
    wait_for(lambda: r2.oci().get_manifest(repo, "v2").status_code == 200, REPL_S, "v2 at r2")
    cluster.heal()
    for src in (r1, r2):
        barrier(cluster, src, r3)
    assert_holds_nothing_of(r3, repo, img)
    assert_holds_nothing_of(r3, repo, img2)
    assert_holds_nothing_of(r3, repo, img)


def test_image_version_targets_outside_the_policy_are_refused(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    assert set_policy(r1, "golden-eu", "golden/eu/*", allowed=["r1", "r2"]).status_code == 200
    repo = named("golden/eu/base")
    # a definition whose default targets name r3: refused, nothing created
    r = r1.api("POST", "image-definitions", params={"repository": repo},
               json={"defaultTargetRegions": ["r1", "r3"]})
    assert r.status_code == 403, (r.status_code, r.text)
    assert r.json()["error"]["code"] == "DENIED" and "golden-eu" in r.json()["error"]["message"]
    assert r1.api("GET", "image-definitions", params={"repository": repo}).status_code == 404
    # nor is the definition (or a lock) written in r3, whatever its targets
    wait_policy_everywhere(cluster, "golden-eu")
    r = r3.api("POST", "image-definitions", params={"repository": repo},
               json={"defaultTargetRegions": ["r1", "r2"]})
    assert r.status_code == 403 and "golden-eu" in r.text, (r.status_code, r.text)
    r = r3.api("PATCH", "repositories", params={"repository": repo},
               json={"writeEnabled": False})
    assert r.status_code == 403 and "golden-eu" in r.text, (r.status_code, r.text)
    assert db_rows(r3, "SELECT key FROM objects WHERE key LIKE ?", repo + "%") == []
    definition(r1, repo, defaultTargetRegions=["r1", "r2"])
    r1.oci().push_image(repo, "1.0.0", layers=1)
    # a version naming r3, at create or by update: refused, the record unchanged
    r = r1.api("POST", "image-versions", params={"repository": repo, "reference": "2.0.0"},
               json={"targetRegions": ["r1", "r3"]})
    assert r.status_code == 403 and "golden-eu" in r.text, (r.status_code, r.text)
    before = r1.api("GET", "image-versions", params={"repository": repo, "reference": "1.0.0"})
    r = r1.api("PATCH", "image-versions", params={"repository": repo, "reference": "1.0.0"},
               json={"addRegions": ["r3"]})
    assert r.status_code == 403 and "golden-eu" in r.text, (r.status_code, r.text)
    after = r1.api("GET", "image-versions", params={"repository": repo, "reference": "1.0.0"})
    assert before.json()["publishingProfile"] == after.json()["publishingProfile"]
    # the definition cannot be changed to name r3 either
    r = r1.api("PATCH", "image-definitions", params={"repository": repo},
               json={"defaultTargetRegions": ["r3"]})
    assert r.status_code == 403, (r.status_code, r.text)


def test_a_policy_over_existing_content_removes_it_and_reports(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = named("eu/legacy")
    plain = unique_repo("plain/app")
    img = r1.oci().push_image(repo, "v1", layers=2, layer_size=16 * 1024)
    other = r1.oci().push_image(plain, "v1", layers=1)
    for r in (r2, r3):
        wait_for(lambda r=r: r.oci().get_manifest(repo, "v1").status_code == 200, REPL_S,
                 "v1 at %s" % r.name)
        wait_for(lambda r=r: r.oci().get_manifest(plain, "v1").status_code == 200, REPL_S,
                 "plain at %s" % r.name)
    # before any policy: compliant, held everywhere
    report = r1.api("GET", "compliance").json()
    row = [x for x in report["repositories"] if x["repository"] == repo][0]
    assert row["heldIn"] == ["r1", "r2", "r3"] and row["state"] == "Compliant", row
    since = int(time.time() * 1000)

    # r3 cannot reach the others (its pulls are cut; they still reach it): the policy set in
    # r2 does not arrive, and the report shows r3's copy as a violation
    cluster.cut_link(r3, r1)
    cluster.cut_link(r3, r2)
    assert set_policy(r2, "eu-legacy", "eu/*", allowed=["r1", "r2"],
                      enforce=True).status_code == 200
    wait_for(lambda: has_policy(r1, "eu-legacy"), REPL_S, "the policy at r1")
    report = r1.api("GET", "compliance", params={"repository": "eu/*"}).json()
    row = [x for x in report["repositories"] if x["repository"] == repo][0]
    assert row["state"] == "Violation" and row["heldIn"] == ["r1", "r2", "r3"], row
    assert row["violations"] == [{"kind": "held-in-forbidden-region", "region": "r3",
                                  "policy": "eu-legacy", "manifests": 1, "blobs": 3}], row
    assert report["violations"] == 1 and all(x["answered"] for x in report["regions"])
    p = r1.cli("compliance", "report", "--repository", "eu/*", check=False)
    assert p.returncode == 3 and "held-in-forbidden-region@r3" in p.stdout, (p.returncode,
                                                                           p.stdout)
    # healed: the policy reaches r3, which removes its copies and audits it
    cluster.heal()
    wait_for(lambda: r3.api("GET", "audit", params={"action": "residency.enforce"}).json(),
             REPL_S, "r3 removes %s" % repo)
    assert_holds_nothing_of(r3, repo, img)
    assert r3.oci().get_manifest(plain, "v1").status_code == 200  # others untouched
    for r in (r1, r2):
        assert r.oci().get_manifest(repo, "v1").status_code == 200
    audit = r3.api("GET", "audit", params={"action": "residency.enforce"}).json()
    assert [a["target"] for a in audit] == [repo], audit
    assert "policy=eu-legacy" in audit[0]["detail"] and audit[0]["region"] == "r3", audit
    # no other region removed anything
    assert r1.api("GET", "audit", params={"action": "residency.enforce"}).json() == []
    # the audit of the policy change, by region and time
    set_audit = r2.api("GET", "audit", params={"action": "residency.set", "region": "r2",
                                               "since": str(since)}).json()
    assert len(set_audit) == 1 and "eu-legacy" in set_audit[0]["detail"], set_audit
    assert r2.api("GET", "audit", params={"action": "residency.set", "region": "r1"}).json() == []
    assert r2.api("GET", "audit", params={"action": "residency.set",
                                          "until": str(since - 1)}).json() == []

    # the report after: held in r1 and r2 only, allowed r1 and r2, compliant
    def answered_by_all():
        rep = r3.api("GET", "compliance").json()
        return rep if all(x["answered"] for x in rep["regions"]) else None
    report = wait_for(answered_by_all, REPL_S, "every region to answer r3")
    row = [x for x in report["repositories"] if x["repository"] == repo][0]
    assert row["heldIn"] == ["r1", "r2"] and row["allowedRegions"] == ["r1", "r2"], row
    assert row["policies"] == ["eu-legacy"] and row["violations"] == [], row
    plain_row = [x for x in report["repositories"] if x["repository"] == plain][0]
    assert plain_row["allowedRegions"] == ["r1", "r2", "r3"] and plain_row["policies"] == []
    assert other.digest  # pushed


def test_a_tightened_policy_reports_and_removes_only_with_enforce(geo):
    """Issue 13 item 1: tightening a policy over existing content reports the violation;
    with --enforce the forbidden region removes its copies (audited)."""
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = named("tight/app")
    marker = "residency-marker-" + secrets.token_hex(8)
    img = r1.oci().push_image(repo, "v1", layers=1,
                              annotations={"org.example.marker": marker})
    wait_for(lambda: r3.oci().get_manifest(repo, "v1").status_code == 200, REPL_S, "v1 at r3")
    if tier.on_sqlite():  # PostgreSQL keeps removed rows as dead tuples (docs/governance.md)
        assert db_files_hold(r3, marker.encode())  # what the removal must leave none of
    r1.cli("policy", "residency", "set", "tight", "--repositories", "tight/*",
           "--allowed-regions", "r1,r2")
    shown = json.loads(r1.cli("policy", "residency", "show", "tight", "--output",
                              "json").stdout)
    assert shown["enforce"] is False, shown
    # r3 has applied the policy (its enforcement runs as it applies it): it keeps its copy,
    # refuses new pushes, and the report shows the violation
    wait_for(lambda: has_policy(r3, "tight"), REPL_S, "the policy at r3")
    barrier(cluster, r1, r3)
    assert r3.oci().get_manifest(repo, "v1").status_code == 200
    assert r3.api("GET", "audit", params={"action": "residency.enforce"}).json() == []
    denied(r3.oci().put_manifest(repo, "v2", img.body), "tight")
    p = r1.cli("compliance", "report", "--repository", "tight/*", "--output", "json",
               check=False)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    row = json.loads(p.stdout)["repositories"][0]
    assert [(v["kind"], v["region"]) for v in row["violations"]] == \
        [("held-in-forbidden-region", "r3")], row
    # the same policy with --enforce: r3 removes its copies and audits it
    r1.cli("policy", "residency", "set", "tight", "--repositories", "tight/*",
           "--allowed-regions", "r1,r2", "--enforce")
    wait_for(lambda: r3.api("GET", "audit", params={"action": "residency.enforce"}).json(),
             REPL_S, "r3 removes %s" % repo)
    assert_holds_nothing_of(r3, repo, img, marker.encode())
    # the file was rebuilt (VACUUM): rows earlier writes moved leave no copy in free space
    if tier.on_sqlite():
        assert "rebuilt the database after removing repository %s" % repo in r3.log_text()
    assert r2.oci().get_manifest(repo, "v1").status_code == 200
    p = r1.cli("compliance", "report", "--repository", "tight/*", check=False)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


def test_a_version_removed_by_an_enforced_policy_is_not_reported_completed_there(geo):
    """A version pushed to r1, r2 and r3, then an enforced policy keeps it from r3: r3
    removes its copy, and every region's status of the version says so (r3 Failed, naming
    the policy), so r3 has no latest, `wait --replicated` fails, and the compliance matrix
    does not count r3 as a replica. r3 can send no report of its own (it keeps nothing of
    the repository): the last one it sent, Completed, used to stand in every region. Taken
    out of the version's targets then, r3 is not listed Removing (it was, for ever)."""
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = named("eu/gold")
    definition(r1, repo, defaultTargetRegions=["r1", "r2", "r3"])
    for r in cluster:
        wait_for(lambda r=r: r.api("GET", "image-definitions",
                                   params={"repository": repo}).status_code == 200,
                 REPL_S, "the definition at %s" % r.name)
    img = r1.oci().push_image(repo, "1.0.0", layers=1)
    ref = {"repository": repo, "reference": "1.0.0"}

    def status(region):
        return region.api("GET", "image-versions", params=ref).json()["replicationStatus"]
    wait_for(lambda: status(r1)["aggregatedState"] == "Completed" and
             status(r2)["aggregatedState"] == "Completed", REPL_S, "1.0.0 everywhere")
    assert r1.api("GET", "image-versions",
                  params={"repository": repo, "region": "r3"}).json()["latest"] == "1.0.0"

    assert set_policy(r2, "eu-gold", "eu/*", allowed=["r1", "r2"],
                      enforce=True).status_code == 200
    wait_for(lambda: r3.api("GET", "audit", params={"action": "residency.enforce"}).json(),
             REPL_S, "r3 removes %s" % repo)
    assert_holds_nothing_of(r3, repo, img)
    for r in (r1, r2):
        st = status(r)
        rows = {x["region"]: x for x in st["summary"]}
        assert rows["r1"]["state"] == rows["r2"]["state"] == "Completed", (r.name, st)
        assert rows["r3"]["state"] == "Failed", (r.name, st)
        assert "eu-gold" in rows["r3"]["details"] and rows["r3"]["progress"] == 0, rows["r3"]
        assert st["aggregatedState"] == "Failed", (r.name, st)
        listed = r.api("GET", "image-versions", params={"repository": repo, "region": "r3"})
        assert listed.json()["latest"] is None, listed.text
        assert listed.json()["versions"][0]["state"] == "Failed", listed.text
    check = r1.api("POST", "compliance/check", json={"rules": [
        {"repositories": "eu/*", "forbiddenRegions": ["r3"]}]}).json()
    item = [i for i in check["items"] if i["repository"] == repo][0]
    assert item["replicaRegions"] == ["r1", "r2"] and item["forbiddenRegionsPresent"] == [], item
    p = r1.cli("image-version", "wait", "%s:1.0.0" % repo, "--replicated", "--timeout", "20s",
               check=False)
    assert p.returncode == 1 and "eu-gold" in p.stdout + p.stderr, (p.returncode, p.stdout,
                                                                   p.stderr)
    p = r1.cli("image-version", "wait", "%s:1.0.0" % repo, "--replicated", "--regions",
               "r1,r2", "--timeout", "20s", check=False)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)

    # the publisher takes r3 out of the profile: r3 can report nothing of the repository (so
    # never "Removed"), and has nothing left to remove: it is not listed Removing
    r = r1.api("PATCH", "image-versions", params=ref, json={
        "removeRegions": ["r3"], "allowDeletionOfReplicatedLocations": True})
    assert r.status_code == 200, r.text
    for r in (r1, r2):
        wait_for(lambda r=r: "r3" not in [t["name"] for t in r.api(
            "GET", "image-versions", params=ref).json()["publishingProfile"]["targetRegions"]],
            REPL_S, "the update at %s" % r.name)
        st = status(r)
        assert [x["region"] for x in st["summary"]] == ["r1", "r2"], (r.name, st)
        assert st["aggregatedState"] == "Completed", (r.name, st)
        listed = r.api("GET", "image-versions", params={"repository": repo, "region": "r3"})
        assert listed.json()["versions"][0]["state"] == "NotTargeted", listed.text
    check = r1.api("POST", "compliance/check", json={"rules": [
        {"repositories": "eu/*", "forbiddenRegions": ["r3"]}]}).json()
    item = [i for i in check["items"] if i["repository"] == repo][0]
    assert item["replicaRegions"] == ["r1", "r2"] and item["compliant"], item


def test_a_region_let_back_in_learns_the_others_status_again(geo):
    """An enforced policy made r3 remove two versions (and every status event about them);
    the policy is deleted and they come back to r3, one by anti-entropy, one by a pull
    there. r3's status of each shows every region Completed again: the other regions'
    rows come with the repository's state (they stayed Pending in r3 for ever, the events
    that carried them being redacted there)."""
    cluster = geo(3)
    r1, r2, r3 = cluster
    repos = [named("eu/back"), named("eu/pulled")]
    for repo in repos:
        definition(r1, repo, defaultTargetRegions=["r1", "r2", "r3"])
    for r in cluster:
        for repo in repos:
            wait_for(lambda r=r, repo=repo: r.api("GET", "image-definitions", params={
                "repository": repo}).status_code == 200, REPL_S, "%s at %s" % (repo, r.name))

    def states(region, repo):
        doc = region.api("GET", "image-versions",
                         params={"repository": repo, "reference": "1.0.0"})
        if doc.status_code != 200:
            return None
        return {x["region"]: x["state"] for x in doc.json()["replicationStatus"]["summary"]}
    everywhere = {"r1": "Completed", "r2": "Completed", "r3": "Completed"}
    for repo in repos:
        r1.oci().push_image(repo, "1.0.0", layers=1)
        for r in cluster:
            wait_for(lambda r=r, repo=repo: states(r, repo) == everywhere, REPL_S,
                     "%s Completed everywhere as %s sees it" % (repo, r.name))

    assert set_policy(r1, "eu-back", "eu/*", allowed=["r1", "r2"],
                      enforce=True).status_code == 200
    wait_for(lambda: len(r3.api("GET", "audit", params={"action": "residency.enforce"}).json())
             >= 2, REPL_S, "r3 removes both")
    for src in (r1, r2):
        barrier(cluster, src, r3)
    assert db_rows(r3, "SELECT repo FROM repl_status WHERE repo LIKE 'eu/%'") == []

    assert r1.api("DELETE", "policies/residency/eu-back").status_code in (200, 204)
    wait_for(lambda: not has_policy(r3, "eu-back"), REPL_S, "the deletion at r3")
    wait_for(lambda: r3.oci().get_manifest(repos[1], "1.0.0").status_code == 200, REPL_S,
             "a pull of %s at r3" % repos[1])
    for repo in repos:
        wait_for(lambda repo=repo: states(r3, repo) == everywhere, REPL_S,
                 "%s Completed everywhere as r3 sees it" % repo)
        assert r3.api("GET", "image-versions", params={"repository": repo, "region": "r3"}
                      ).json()["latest"] == "1.0.0"


def test_compliance_flags_targets_and_the_cli_gates_on_it(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = named("golden/reg")
    # a version targeting r3 from before the policy
    definition(r1, repo, defaultTargetRegions=["r1", "r3"])
    r1.oci().push_image(repo, "1.0.0", layers=1)
    r1.cli("image-version", "wait", "%s:1.0.0" % repo, "--replicated", "--timeout", "1m",
           timeout_s=90)
    p = r1.cli("compliance", "report", "--repository", "golden/*")
    assert p.returncode == 0 and "Compliant" in p.stdout, p.stdout
    # the CLI sets the policy (r3 then removes its copy), the report flags the records
    r1.cli("policy", "residency", "set", "golden-reg", "--repositories", "golden/*",
           "--allowed-regions", "r1,r2", "--enforce")
    shown = json.loads(r1.cli("policy", "residency", "show", "golden-reg", "--output",
                              "json").stdout)
    assert shown["allowedRegions"] == ["r1", "r2"] and shown["deniedRegions"] == [], shown
    listed = r1.cli("policy", "residency", "list").stdout
    assert "golden-reg" in listed and "r1,r2" in listed, listed
    wait_for(lambda: db_rows(r3, "SELECT id FROM repos WHERE name = ?", repo) == [], REPL_S,
             "r3 removes %s" % repo)
    p = r1.cli("compliance", "report", "--repository", "golden/*", "--output", "json",
               check=False)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    report = json.loads(p.stdout)
    row = report["repositories"][0]
    assert row["repository"] == repo and row["state"] == "Violation", row
    kinds = sorted((v["kind"], v["region"], v.get("version")) for v in row["violations"])
    assert kinds == [("default-target-forbidden", "r3", None),
                     ("target-forbidden", "r3", "1.0.0")], kinds
    assert row["heldIn"] == ["r1"] and report["violations"] == 2, row
    # the fix: take r3 out of the version and the definition; compliant again
    r = r1.api("PATCH", "image-versions", params={"repository": repo, "reference": "1.0.0"},
               json={"removeRegions": ["r3"], "allowDeletionOfReplicatedLocations": True})
    assert r.status_code == 200, r.text
    r = r1.api("PATCH", "image-definitions", params={"repository": repo},
               json={"defaultTargetRegions": ["r1", "r2"]})
    assert r.status_code == 200, r.text
    p = r1.cli("compliance", "report", "--repository", "golden/*", check=False)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    r1.cli("policy", "residency", "delete", "golden-reg")
    assert not has_policy(r1, "golden-reg")


def test_bad_policies_are_refused_and_change_nothing(geo):
    r1 = geo(1)[0]
    assert set_policy(r1, "keep", "keep/*", allowed=["r1"]).status_code == 200
    before = r1.api("GET", "policies/residency").json()
    bad = [
        ("eu", {"allowedRegions": ["r1"]}),                                   # no pattern
        ("eu", {"repositories": "eu/*"}),                                     # no regions
        ("eu", {"repositories": "eu/*", "allowedRegions": "r1"}),             # not a list
        ("eu", {"repositories": "eu/*", "allowedRegions": ["R 1"]}),          # bad region
        ("eu", {"repositories": "eu/*", "allowedRegions": ["r1"], "deniedRegions": ["r1"]}),
        ("eu", {"repositories": "eu/*", "allowedRegions": ["r1"], "enforce": "yes"}),
        ("EU!", {"repositories": "eu/*", "allowedRegions": ["r1"]}),          # bad name
        ("keep", {"repositories": "", "allowedRegions": ["r1"]}),             # empty pattern
    ]
    for name, body in bad:
        r = r1.api("PUT", "policies/residency/" + name, json=body)
        assert r.status_code == 400, (name, body, r.status_code, r.text)
        assert r.json()["error"]["code"] and r.json()["error"]["message"], r.text
    r = r1.api("PUT", "policies/residency/eu", data=b"{not json",
               headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r1.api("GET", "policies/residency").json() == before
    assert r1.api("DELETE", "policies/residency/nope").status_code == 404
    assert r1.api("GET", "audit", params={"action": "residency"}).json()[0]["action"] == \
        "residency.set"  # the one good change only
    for q in ({"since": "yesterday"}, {"until": "2026-13-45T99:00:00Z"}, {"region": "R 1"},
              {"since": "2026-12-03T15:00:00Z", "until": "2026-12-03T14:00:00Z"}):
        r = r1.api("GET", "audit", params=q)
        assert r.status_code == 400, (q, r.status_code, r.text)
    p = r1.cli("policy", "residency", "set", "x", check=False)
    assert p.returncode == 2, p.stderr
    r = r1.api("GET", "compliance", params={"repository": "a b"})
    assert r.status_code == 400 and r.json()["error"]["code"], r.text
    p = r1.cli("audit", "list", "--since", "yesterday", check=False)
    assert p.returncode == 1 and "since" in p.stderr, (p.returncode, p.stderr)
    assert r1.api("GET", "policies/residency").json() == before


def test_only_admins_change_policies_auditors_read_the_report_audit_by_region(geo):
    from test_governance_identities import auth_cluster, call, wait_known
    c = auth_cluster(geo)
    r1, r3 = c["r1"], c["r3"]
    since = int(time.time() * 1000)
    for name, role, pattern in (("auditor", "consumer", "*"), ("pub", "publisher", "team/*")):
        assert call(r1, "POST", "/_meridian/v1/users",
                    json={"name": name, "password": name + "-pw-123456"}).status_code == 201
        assert call(r1, "POST", "/_meridian/v1/roles",
                    json={"subject": name, "role": role, "pattern": pattern}).status_code in \
            (200, 201)
    wait_known(r3, "users/pub")
    auditor, pub = ("auditor", "auditor-pw-123456"), ("pub", "pub-pw-123456")
    body = {"repositories": "team/*", "allowedRegions": ["r1"]}
    # a publisher (or a consumer) may not change residency; nothing changes
    for who in (pub, auditor):
        wait_for(lambda who=who: call(r3, "GET", "/_meridian/v1/policies/residency",
                                      auth=who).status_code == 200, REPL_S, "login at r3")
        r = call(r3, "PUT", "/_meridian/v1/policies/residency/team", auth=who, json=body)
        assert r.status_code == 403, (who, r.status_code, r.text)
        r = call(r3, "DELETE", "/_meridian/v1/policies/residency/team", auth=who)
        assert r.status_code == 403, (who, r.status_code, r.text)
    assert call(r3, "GET", "/_meridian/v1/policies/residency").json() == []
    assert call(r3, "PUT", "/_meridian/v1/policies/residency/team", json=body).status_code == 200
    # the auditor reads the report (every repository: consumer on *); anonymous may not
    r = call(r3, "GET", "/_meridian/v1/compliance", auth=auditor)
    assert r.status_code == 200 and r.json()["policies"][0]["name"] == "team", r.text
    assert call(r1, "GET", "/_meridian/v1/compliance", auth=None).status_code == 401
    # a push by the publisher into r3 (outside the policy) is refused and audited there
    tok = call(r3, "GET", "/_meridian/v1/token", auth=pub,
               params={"service": "meridian", "scope": "repository:team/app:push,pull"})
    assert tok.status_code == 200, tok.text
    bearer = tok.json().get("token") or tok.json()["access_token"]
    r = requests.post(r3.url + "/v2/team/app/blobs/uploads/",
                      headers={"Authorization": "Bearer " + bearer}, timeout=30)
    denied(r, "team")
    refused = call(r3, "GET", "/_meridian/v1/audit", params={"action": "residency.denied"}).json()
    assert refused and refused[0]["actor"] == "pub" and refused[0]["status"] == 403, refused
    # the audit of r3, by region: the users were decided in r1, the policy in r3
    by_r1 = call(r3, "GET", "/_meridian/v1/audit", params={"region": "r1", "since": since}).json()
    assert {a["action"] for a in by_r1} == {"identity.replicated", "role.replicated"}, by_r1
    assert {a["target"] for a in by_r1 if a["action"] == "identity.replicated"} == \
        {"auditor", "pub"}
    by_r3 = call(r3, "GET", "/_meridian/v1/audit", params={"region": "r3", "since": since}).json()
    assert "residency.set" in {a["action"] for a in by_r3}, by_r3
    assert all(a["region"] == "r3" for a in by_r3)
    p = r3.cli("audit", "list", "--region", "r1", "--since", "10m", "--output", "json")
    assert {a["region"] for a in json.loads(p.stdout)} == {"r1"}, p.stdout


def test_a_peer_secret_naming_its_region_reads_only_what_the_region_may_hold(geo):
    """Peers say which region fetches (Meridian-Peer-Fetch: REGION): with the shared peer
    secret, /v2/ reads for a region a policy keeps out of a repository are refused."""
    from test_governance_identities import ADMIN, auth_cluster, call
    c = auth_cluster(geo, n=2)
    r1 = c["r1"]
    kept, plain = named("kept") + "/app", named("open") + "/app"
    body = {"repositories": kept.split("/")[0] + "/*", "allowedRegions": ["r1"]}
    assert call(r1, "PUT", "/_meridian/v1/policies/residency/kept", json=body).status_code == 200
    layer = os.urandom(2000)
    for repo in (kept, plain):
        oci = r1.oci()
        oci.s.auth = ADMIN
        oci.push_blob(repo, layer)
    peer = ("peer", c.secret)

    def fetch(repo, region):
        return call(r1, "GET", "/v2/%s/blobs/%s" % (repo, digest_of(layer)), auth=peer,
                    headers={"Meridian-Peer-Fetch": region})
    r = fetch(kept, "r2")
    assert r.status_code == 403 and "DENIED" in r.text, (r.status_code, r.text)
    assert fetch(kept, "r1").status_code == 200
    assert fetch(plain, "r2").status_code == 200


def test_a_policy_written_counts_from_the_very_next_peer_read(geo):
    """Peer reads check the policies this node keeps parsed (authz.c): each write of a
    policy (set, changed, deleted) is obeyed by the very next peer read, not a poll later."""
    from test_governance_identities import ADMIN, auth_cluster, call
    c = auth_cluster(geo, n=1)
    r1 = c["r1"]
    repo = named("late") + "/app"
    layer = os.urandom(2000)
    oci = r1.oci()
    oci.s.auth = ADMIN
    oci.push_blob(repo, layer)
    peer = ("peer", c.secret)

    def fetch():
        return call(r1, "GET", "/v2/%s/blobs/%s" % (repo, digest_of(layer)), auth=peer,
                    headers={"Meridian-Peer-Fetch": "r2"}).status_code

    def put(**body):
        body["repositories"] = repo.split("/")[0] + "/*"
        r = call(r1, "PUT", "/_meridian/v1/policies/residency/late", json=body)
        assert r.status_code == 200, r.text

    for _ in range(3):  # reads before any policy: the kept snapshot has none
        assert fetch() == 200
        put(allowedRegions=["r1"])
        assert fetch() == 403
        put(allowedRegions=["r1", "r2"])
        assert fetch() == 200
        put(deniedRegions=["r2"])
        assert fetch() == 403
        assert call(r1, "DELETE", "/_meridian/v1/policies/residency/late").status_code == 200


def set_policies_readable(region, is_readable):
    """Makes region's residency policies unreadable (the table of replicated objects that
    holds them renamed behind the server's back) or readable again, and moves the auth
    generation, so that the access-control snapshot reloads them (authz.c): a real failed
    reload, through no hook in the server."""
    old, new = ("objects_unreadable", "objects") if is_readable else ("objects",
                                                                      "objects_unreadable")
    tier.meta_exec(region.data_dir,
                   "ALTER TABLE %s RENAME TO %s; UPDATE auth_meta SET v = v + 1"
                   " WHERE k = 'generation'" % (old, new))


def set_generation_readable(region, is_readable):
    """Makes the auth generation unreadable (its table renamed behind the server's back) or
    readable again: the access-control snapshot cannot tell whether the policies moved."""
    old, new = ("auth_meta_unreadable", "auth_meta") if is_readable else ("auth_meta",
                                                                          "auth_meta_unreadable")
    tier.meta_exec(region.data_dir, "ALTER TABLE %s RENAME TO %s" % (old, new))


@pytest.mark.parametrize("unreadable", ["policies", "generation"])
def test_peer_reads_fail_closed_while_the_policies_cannot_be_read(geo, unreadable):
    """While a region cannot read its residency policies (the reload of its access-control
    snapshot failed), or cannot tell whether they changed (the generation that says so
    cannot be read: it used to keep serving from the snapshot), everything they filter for a
    peer region answers 503 UNAVAILABLE with Retry-After and names nothing: the catalog (it
    used to answer 200 with an empty list), tag lists, referrers, manifests and blobs, and
    the replication API (events, summary, state, snapshot). Once the policies read again,
    the same reads answer as before."""
    set_unreadable = set_policies_readable if unreadable == "policies" else \
        set_generation_readable
    from test_governance_identities import auth_cluster, call, push
    c = auth_cluster(geo, n=2)
    r1 = c["r1"]
    kept, plain = named("kept") + "/app", named("open") + "/app"
    body = {"repositories": kept.split("/")[0] + "/*", "allowedRegions": ["r1"]}
    assert call(r1, "PUT", "/_meridian/v1/policies/residency/kept", json=body).status_code == 200
    digests = {repo: push(r1, repo) for repo in (kept, plain)}
    layers = {repo: call(r1, "GET", "/v2/%s/manifests/v1" % repo,
                         headers={"Accept": MT_OCI_MANIFEST}).json()["layers"][0]["digest"]
              for repo in (kept, plain)}
    peer = ("peer", c.secret)
    as_r2 = {"Meridian-Peer-Fetch": "r2", "Accept": MT_OCI_MANIFEST}

    def v2(path):
        return call(r1, "GET", "/v2/" + path, auth=peer, headers=as_r2)

    def repl(path, **params):
        params.setdefault("from", "r2")
        return call(r1, "GET", "/_meridian/v1/replication/" + path, auth=peer, params=params)

    def reads():
        out = {"catalog": v2("_catalog")}
        for repo in (kept, plain):
            out["tags " + repo] = v2("%s/tags/list" % repo)
            out["manifest " + repo] = v2("%s/manifests/v1" % repo)
            out["by digest " + repo] = v2("%s/manifests/%s" % (repo, digests[repo]))
            out["referrers " + repo] = v2("%s/referrers/%s" % (repo, digests[repo]))
            out["blob " + repo] = v2("%s/blobs/%s" % (repo, layers[repo]))
            out["state " + repo] = repl("state", repository=repo)
        out["summary"] = repl("summary")
        out["events"] = repl("events", after=0, max=2000, wait=0, vv="")
        out["snapshot"] = repl("snapshot")
        return out

    def assert_as_usual():
        got = reads()
        assert got["catalog"].status_code == 200, got["catalog"].text
        listed = got["catalog"].json()["repositories"]
        assert plain in listed and kept not in listed, listed
        for what in ("tags ", "manifest ", "by digest ", "referrers ", "blob "):
            assert got[what + plain].status_code == 200, (what, got[what + plain].text)
            r = got[what + kept]
            assert r.status_code == 403 and "DENIED" in r.text, (what, r.status_code, r.text)
        assert got["state " + plain].status_code == 200
        assert got["state " + kept].status_code == 403
        for what in ("summary", "events", "snapshot"):
            assert got[what].status_code == 200, (what, got[what].text)
            assert kept not in got[what].text, what
        assert plain in got["summary"].text and plain in got["snapshot"].text

    assert_as_usual()
    set_unreadable(r1, False)
    try:
        wait_for(lambda: v2("%s/manifests/v1" % plain).status_code == 503, 10,
                 "the failed reload at r1")
        wrong = []
        got = reads()
        if unreadable == "generation":
            # the replication API reads the policies themselves (they still read): it
            # answers as usual; /v2/ goes through the snapshot, which may be out of date
            got = {what: r for what, r in got.items()
                   if not what.startswith(("state ", "summary", "events", "snapshot"))}
            assert len(got) == 11, sorted(got)
        for what, r in got.items():
            assert kept not in r.text and plain not in r.text, (what, r.status_code, r.text)
            if r.status_code != 503 or int(r.headers.get("Retry-After", 0)) < 1:
                wrong.append((what, r.status_code, r.headers.get("Retry-After"), r.text[:120]))
                continue
            err = r.json()["errors"][0] if "/v2/" in r.url else r.json()["error"]
            assert err["code"] == "UNAVAILABLE", (what, err)
        assert not wrong, "\n".join(str(w) for w in wrong)
    finally:
        set_unreadable(r1, True)
    wait_for(lambda: v2("%s/manifests/v1" % plain).status_code == 200, 10,
             "the reload at r1 after the policies read again")
    assert_as_usual()


def test_tag_and_referrer_lists_answer_like_a_manifest_pull_where_a_policy_forbids(geo):
    """Where a policy keeps a repository out, a manifest pull answers 403 DENIED naming the
    policy; the tag list (GET and HEAD) and the referrers list answer the same, never a bare
    404 or an empty list, and name no tag: for content removed by an enforced policy and for
    content pushed after it (never held). A copy an advisory policy lets the region keep is
    listed, as its manifests are served."""
    cluster = geo(2)
    r1, r2 = cluster
    repo = named("kept/app")
    img = r1.oci().push_image(repo, "secret-tag-v1", layers=1)
    sig = r1.oci().push_artifact(repo, "application/vnd.example.sig", subject=img)
    wait_for(lambda: r2.oci().get_manifest(repo, sig.digest).status_code == 200, REPL_S,
             "the referrer at r2")
    oci2 = r2.oci()

    assert set_policy(r1, "kept", "kept/*", allowed=["r1"]).status_code == 200
    wait_for(lambda: has_policy(r2, "kept"), REPL_S, "the policy at r2")
    barrier(cluster, r1, r2)
    assert oci2.get_manifest(repo, "secret-tag-v1").status_code == 200  # kept: not enforced
    assert oci2.tag_list(repo) == ["secret-tag-v1"]
    assert [m["digest"] for m in oci2.referrers(repo, img.digest).json()["manifests"]] == \
        [sig.digest]

    assert set_policy(r1, "kept", "kept/*", allowed=["r1"], enforce=True).status_code == 200
    wait_for(lambda: r2.api("GET", "audit", params={"action": "residency.enforce"}).json(),
             REPL_S, "r2 removes %s" % repo)
    later = named("kept/new")
    r1.oci().push_image(later, "secret-tag-v2", layers=1)
    barrier(cluster, r1, r2)
    for name, tag in ((repo, "secret-tag-v1"), (later, "secret-tag-v2")):
        pulled = denied(oci2.get_manifest(name, tag), "kept")
        r = oci2.tags(name)
        assert denied(r, "kept") == pulled and "secret-tag" not in r.text, r.text
        r = oci2.tags(name, n=1, last="a")
        assert denied(r, "kept") == pulled and "Link" not in r.headers, r.headers
        r = oci2.head("/v2/%s/tags/list" % name)
        assert r.status_code == 403 and r.content == b"", (r.status_code, r.content)
        r = oci2.referrers(name, img.digest)
        assert denied(r, "kept") == pulled and sig.digest not in r.text, r.text
        r = oci2.head("/v2/%s/referrers/%s" % (name, img.digest))
        assert r.status_code == 403, r.status_code
    # the allowed region lists them as before
    assert r1.oci().tag_list(repo) == ["secret-tag-v1"]
    assert [m["digest"] for m in r1.oci().referrers(repo, img.digest).json()["manifests"]] == \
        [sig.digest]


def test_a_region_an_advisory_policy_forbids_taken_out_of_targets_ends_retained(geo):
    """A version held in r1, r2 and r3, then a policy that is not enforced forbids r3: r3
    keeps its copy (and receives nothing more of the repository, so not the update either).
    Taken out of the version's targets, r3's row ends Retained, naming the policy and saying
    why the copy stays, instead of Removing for ever; the CLI shows it, the compliance matrix
    counts the copy. Enforcing the policy then removes the copy and the row."""
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = named("adv/gold")
    definition(r1, repo, defaultTargetRegions=["r1", "r2", "r3"])
    for r in cluster:
        wait_for(lambda r=r: r.api("GET", "image-definitions",
                                   params={"repository": repo}).status_code == 200,
                 REPL_S, "the definition at %s" % r.name)
    img = r1.oci().push_image(repo, "1.0.0", layers=1)
    ref = {"repository": repo, "reference": "1.0.0"}

    def rows(region):
        st = region.api("GET", "image-versions", params=ref).json()["replicationStatus"]
        return st, {x["region"]: x for x in st["summary"]}
    everywhere = {"r1": "Completed", "r2": "Completed", "r3": "Completed"}
    for r in (r1, r2):
        wait_for(lambda r=r: {k: v["state"] for k, v in rows(r)[1].items()} == everywhere,
                 REPL_S, "1.0.0 Completed everywhere as %s sees it" % r.name)

    assert set_policy(r2, "adv-gold", "adv/*", allowed=["r1", "r2"]).status_code == 200
    wait_for(lambda: has_policy(r3, "adv-gold"), REPL_S, "the policy at r3")
    r = r1.api("PATCH", "image-versions", params=ref, json={
        "removeRegions": ["r3"], "allowDeletionOfReplicatedLocations": True})
    assert r.status_code == 200, r.text
    for r in (r1, r2):
        wait_for(lambda r=r: "r3" not in [t["name"] for t in r.api(
            "GET", "image-versions", params=ref).json()["publishingProfile"]["targetRegions"]],
            REPL_S, "the update at %s" % r.name)
    for src in (r1, r2):
        barrier(cluster, src, r3)
    assert r3.oci().get_manifest(repo, "1.0.0").status_code == 200  # its copy stays
    for r in (r1, r2):
        st, by_region = rows(r)
        assert [x["region"] for x in st["summary"]] == ["r1", "r2", "r3"], (r.name, st)
        row = by_region["r3"]
        assert row["state"] == "Retained", (r.name, row)
        assert "adv-gold" in row["details"] and "not enforced" in row["details"], row
        assert st["aggregatedState"] == "Completed", (r.name, st)
        listed = r.api("GET", "image-versions", params={"repository": repo, "region": "r3"})
        assert listed.json()["versions"][0]["state"] == "Retained", listed.text
        assert listed.json()["latest"] is None, listed.text
    shown = json.loads(r1.cli("image-version", "show", "%s:1.0.0" % repo, "--expand",
                              "replication-status", "--output", "json").stdout)
    assert [x["state"] for x in shown["replicationStatus"]["summary"]] == \
        ["Completed", "Completed", "Retained"], shown
    table = r1.cli("image-version", "show", "%s:1.0.0" % repo, "--expand",
                   "replication-status").stdout
    assert "Retained" in table and "Removing" not in table, table
    p = r1.cli("image-version", "wait", "%s:1.0.0" % repo, "--replicated", "--timeout", "20s",
               check=False)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    check = r1.api("POST", "compliance/check", json={"rules": [
        {"repositories": "adv/*", "forbiddenRegions": ["r3"]}]}).json()
    item = [i for i in check["items"] if i["repository"] == repo][0]
    assert item["replicaRegions"] == ["r1", "r2", "r3"], item
    assert item["forbiddenRegionsPresent"] == ["r3"] and not item["compliant"], item

    # enforced: r3 removes the copy, and the row goes (nothing left there)
    assert set_policy(r2, "adv-gold", "adv/*", allowed=["r1", "r2"],
                      enforce=True).status_code == 200
    wait_for(lambda: r3.api("GET", "audit", params={"action": "residency.enforce"}).json(),
             REPL_S, "r3 removes %s" % repo)
    assert_holds_nothing_of(r3, repo, img)
    for r in (r1, r2):
        wait_for(lambda r=r: [x["region"] for x in rows(r)[0]["summary"]] == ["r1", "r2"],
                 REPL_S, "r3's row gone at %s" % r.name)
