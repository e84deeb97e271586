"""Locks with the cloud CLI's shape (docs/image-versions.md, "Immutability, locks and
signatures"): `meridian repository update REPO[:TAG|@DIGEST] --write-enabled BOOL
--delete-enabled BOOL [--list-enabled BOOL --read-enabled BOOL]`, stored as replicated
registry objects and enforced the same in every region on /v2/ (pushes, deletes, pulls,
listings), shown by `repository show`, audited, surviving a restart; bad input (a missing
repository or tag, a non-boolean, an unknown attribute) is refused and changes nothing.

Harness: regions.py (three `meridian serve` processes).
"""

from regions import unique_repo, wait_for

pytest_plugins = ["geo_plugin"]


def lock_of(region, repo, ref=None):
    params = {"repository": repo}
    if ref:
        params["reference"] = ref
    r = region.api("GET", "repositories", params=params)
    return r.json()["changeableAttributes"] if r.status_code == 200 else None


def wait_lock(cluster, repo, ref, **want):
    for region in cluster:
        wait_for(lambda: (lock_of(region, repo, ref) or {}).items() >= want.items(), 30,
                 "the lock of %s:%s in %s" % (repo, ref, region.name))


def assert_denied(r, what):
    assert r.status_code == 403, (what, r.status_code, r.text)
    err = r.json()["errors"][0]
    assert err["code"] == "DENIED" and "locked" in err["message"], (what, err)


def assert_mgmt_error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["error"]["code"] == code, r.text
    assert r.json()["error"]["message"], r.text


def test_locks_are_enforced_in_every_region_and_survive_a_restart(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = unique_repo("locked")
    img = r1.oci().push_image(repo, "v1", layers=1, layer_size=2048)
    for region in cluster:
        wait_for(lambda: region.oci().manifest_exists(repo, "v1"), 60,
                 "v1 in %s" % region.name)

    out = r1.cli_json("repository", "update", "%s:v1" % repo, "--write-enabled", "false",
                      "--delete-enabled", "false")
    assert out["changeableAttributes"] == {"writeEnabled": False, "deleteEnabled": False,
                                           "readEnabled": True, "listEnabled": True}, out
    wait_lock(cluster, repo, "v1", writeEnabled=False, deleteEnabled=False)
    other = r1.oci().push_image(repo, None, layers=1, layer_size=1024)  # by digest only

    def enforced(region):
        oci = region.oci()
        assert_denied(oci.put_manifest(repo, "v1", other.body, other.media_type),
                      "push over v1 in %s" % region.name)
        assert_denied(oci.delete("/v2/%s/manifests/v1" % repo), "delete v1 in %s" % region.name)
        assert_denied(oci.delete("/v2/%s/manifests/%s" % (repo, img.digest)),
                      "delete v1's manifest in %s" % region.name)
        assert oci.get_manifest(repo, "v1").headers["Docker-Content-Digest"] == img.digest
    for region in cluster:
        enforced(region)
    # the rest of the repository is not locked
    r3.oci().push_manifest(repo, "v2", other.body, other.media_type)

    # the repository: no new tags anywhere
    r2.cli("repository", "update", repo, "--write-enabled", "false")
    wait_lock(cluster, repo, None, writeEnabled=False)
    for region in cluster:
        assert_denied(region.oci().put_manifest(repo, "v3", other.body, other.media_type),
                      "push of a new tag in %s" % region.name)
    show = r3.cli_json("repository", "show", repo)
    assert show["changeableAttributes"]["writeEnabled"] is False, show

    # reads and listings
    r1.cli("repository", "update", "%s:v2" % repo, "--read-enabled", "false",
           "--list-enabled", "false")
    wait_lock(cluster, repo, "v2", readEnabled=False, listEnabled=False)
    for region in cluster:
        assert_denied(region.oci().get_manifest(repo, "v2"), "pull of v2 in %s" % region.name)
        tags = region.oci().get("/v2/%s/tags/list" % repo).json()["tags"]
        assert tags == ["v1"], (region.name, tags)
    r1.cli("repository", "update", repo, "--list-enabled", "false")
    wait_lock(cluster, repo, None, listEnabled=False)
    for region in cluster:
        assert repo not in region.oci().get("/v2/_catalog").json()["repositories"], region.name

    # audited where it was changed
    entries = [a for a in r1.api("GET", "audit", params={"action": "repository.update"}).json()
               if repo in (a.get("target") or "") + (a.get("detail") or "")]
    assert len(entries) == 3, entries
    assert any("%s:v2" % repo in e["detail"] and "read=0" in e["detail"] for e in entries), \
        entries

    # a restart keeps every lock
    r2.restart()
    enforced(r2)
    assert_denied(r2.oci().get_manifest(repo, "v2"), "pull of v2 after the restart")
    assert_denied(r2.oci().put_manifest(repo, "v3", other.body, other.media_type), "v3")

    # unlocked again, the same everywhere
    r3.cli("repository", "update", "%s:v1" % repo, "--write-enabled", "true",
           "--delete-enabled", "true")
    r3.cli("repository", "update", repo, "--write-enabled", "true")
    wait_lock(cluster, repo, "v1", writeEnabled=True, deleteEnabled=True)
    wait_lock(cluster, repo, None, writeEnabled=True)
    r = r1.oci().delete("/v2/%s/manifests/v1" % repo)
    assert r.status_code == 202, (r.status_code, r.text)


def test_bad_lock_requests_change_nothing(geo):
    cluster = geo(1)
    r1 = cluster[0]
    repo = unique_repo("locked")
    r1.oci().push_image(repo, "v1", layers=1, layer_size=512)
    params = {"repository": repo, "reference": "v1"}
    assert_mgmt_error(r1.api("PATCH", "repositories", params={"repository": repo + "-none"},
                             json={"writeEnabled": False}), 404, "NOT_FOUND")
    assert_mgmt_error(r1.api("PATCH", "repositories",
                             params={"repository": repo, "reference": "nope"},
                             json={"writeEnabled": False}), 404, "NOT_FOUND")
    assert_mgmt_error(r1.api("PATCH", "repositories", params={
        "repository": repo, "reference": "sha256:" + "0" * 64}, json={"writeEnabled": False}),
        404, "NOT_FOUND")
    assert_mgmt_error(r1.api("PATCH", "repositories", params=params,
                             json={"writeEnabled": "no"}), 400, "BAD_REQUEST")
    assert_mgmt_error(r1.api("PATCH", "repositories", params=params,
                             json={"writeEnabled": False, "deleteEnabled": 0}), 400, "BAD_REQUEST")
    assert_mgmt_error(r1.api("PATCH", "repositories", params=params,
                             json={"writable": False}), 400, "BAD_REQUEST")
    assert_mgmt_error(r1.api("PATCH", "repositories", params=params, json={}), 400,
                      "BAD_REQUEST")
    assert lock_of(r1, repo, "v1") == {"writeEnabled": True, "deleteEnabled": True,
                                       "readEnabled": True, "listEnabled": True}
    assert r1.api("GET", "audit", params={"action": "repository.update"}).json() == []
    p = r1.cli("repository", "update", "%s:v1" % repo, "--write-enabled", "maybe", check=False)
    assert p.returncode == 2 and "true or false" in p.stderr, (p.returncode, p.stderr)
    p = r1.cli("repository", "update", "%s:nope" % repo, "--write-enabled", "false",
               check=False)
    assert p.returncode == 1 and "no tag nope" in p.stderr, (p.returncode, p.stderr)
    # nothing refused on /v2/
    r1.oci().push_image(repo, "v1", layers=1, layer_size=512)


def test_retention_leaves_locked_versions_alone(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = unique_repo("golden")
    r1.cli("image-definition", "create", repo, "--keep-everywhere", "1", "--rollback-regions",
           "r3", "--rollback-days", "0")
    r1.oci().push_image(repo, "1.0.0", layers=1, layer_size=1024)
    # locked before 1.1.0 comes: the round that 1.1.0's push starts would reduce an unlocked
    # 1.0.0 at once (keep-everywhere 1), before a lock sent after the push
    r1.cli("repository", "update", "%s:1.0.0" % repo, "--delete-enabled", "false")
    r1.oci().push_image(repo, "1.1.0", layers=1, layer_size=1024)

    def targets(ver):
        doc = r1.api("GET", "image-versions", params={"repository": repo, "reference": ver})
        return sorted(t["name"] for t in doc.json()["publishingProfile"]["targetRegions"])
    assert targets("1.0.0") == targets("1.1.0") == ["r1", "r2", "r3"]
    r1.oci().push_image(repo, "2.0.0", layers=1, layer_size=1024)
    # the unlocked old version is reduced (the round that reduces it also saw 1.0.0) ...
    wait_for(lambda: targets("1.1.0") == ["r1", "r3"], 30, "retention reduces 1.1.0")
    # ... the locked one keeps every region
    assert targets("1.0.0") == ["r1", "r2", "r3"]
    entries = [a for a in r1.api("GET", "audit", params={"actor": "retention"}).json()
               if a["target"] == "%s:1.0.0" % repo]
    assert entries == [], entries
