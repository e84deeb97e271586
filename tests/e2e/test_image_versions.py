"""Image definitions and versions with publishing profiles (docs/image-versions.md), on three
regions: definitions and version profiles are registry-wide records that replicate to every
region; a definition's tags are versions MAJOR.MINOR.PATCH (other tags and `latest` are refused
with an OCI error and store nothing); a version's profile takes its defaults from the
definition, always targets its source region, is changed by `image-version update`, and its
replication status counts its target regions only; bad input answers {"error":{...}} and
changes nothing.

Harness: regions.py (three `meridian serve` processes, r1..r3).
"""

import json

from regions import MT_OCI_MANIFEST, unique_repo, wait_for

pytest_plugins = ["geo_plugin"]


def definition(region, repo, **body):
    r = region.api("POST", "image-definitions", params={"repository": repo}, json=body)
    assert r.status_code == 201, (r.status_code, r.text)
    return r.json()


def version(region, repo, ver, missing_ok=False):
    r = region.api("GET", "image-versions", params={"repository": repo, "reference": ver})
    if missing_ok and r.status_code == 404:
        return None
    assert r.status_code == 200, (region.name, r.status_code, r.text)
    return r.json()


def targets(doc):
    return [t["name"] for t in doc["publishingProfile"]["targetRegions"]]


def summary_regions(doc):
    return sorted(e["region"] for e in doc["replicationStatus"]["summary"])


def assert_mgmt_error(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"], body


def test_versions_follow_their_profile_across_regions(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = unique_repo("golden")
    d = definition(r1, repo, os="linux", arch="amd64", description="golden base",
                   defaultTargetRegions=["r2=1"])
    assert [t["name"] for t in d["defaultTargetRegions"]] == ["r2"], d
    # the definition is known everywhere (a replicated record)
    for region in (r2, r3):
        wait_for(lambda: region.api("GET", "image-definitions",
                                    params={"repository": repo}).status_code == 200,
                 30, "definition in %s" % region.name)
    listed = r3.cli_json("image-definition", "list")
    assert repo in [x["repository"] for x in listed], listed

    # a push in r1: the definition's targets plus the source region
    img = r1.oci().push_image(repo, "1.0.0", layers=2, layer_size=64 * 1024)
    doc = version(r1, repo, "1.0.0")
    assert doc["sourceRegion"] == "r1" and sorted(targets(doc)) == ["r1", "r2"], doc
    assert doc["digest"] == img.digest
    assert summary_regions(doc) == ["r1", "r2"], doc
    assert doc["publishingProfile"]["replicationMode"] == "Full"
    assert doc["safetyProfile"] == {"allowDeletionOfReplicatedLocations": False,
                                    "blockDeletionBeforeEndOfLife": False}, doc
    # every region knows the version and its profile (show anywhere)
    for region in (r2, r3):
        got = wait_for(lambda: version(region, repo, "1.0.0", missing_ok=True), 60,
                       "1.0.0 known in %s" % region.name)
        assert got["publishingProfile"] == doc["publishingProfile"], (region.name, got)
    # wait --replicated waits on the targets only, and --regions narrows them
    p = r3.cli("image-version", "wait", "%s:1.0.0" % repo, "--replicated", "--regions", "r2",
               "--timeout", "2m", timeout_s=150)
    assert "r2" in p.stdout
    p = r1.cli("image-version", "wait", "%s:1.0.0" % repo, "--replicated", "--timeout", "2m",
               timeout_s=150)
    assert json.loads(r1.cli("image-version", "show", "%s:1.0.0" % repo, "--output",
                             "json").stdout)["replicationStatus"]["aggregatedState"] == "Completed"
    p = r1.cli("image-version", "wait", "%s:1.0.0" % repo, "--replicated", "--regions", "r3",
               check=False)
    assert p.returncode == 2 and "r3 is not a target" in p.stderr, (p.returncode, p.stderr)

    # update from another region: add r3 with the CLI, then exclude it from latest there
    out = r2.cli_json("image-version", "update", "%s:1.0.0" % repo, "--add-region", "r3")
    assert sorted(targets(out)) == ["r1", "r2", "r3"], out
    wait_for(lambda: sorted(targets(version(r1, repo, "1.0.0"))) == ["r1", "r2", "r3"], 30,
             "the update reaches r1")
    doc = version(r1, repo, "1.0.0")
    assert summary_regions(doc) == ["r1", "r2", "r3"], doc
    # removing a region needs the safety profile's consent, then works
    p = r1.cli("image-version", "update", "%s:1.0.0" % repo, "--remove-region", "r3",
               check=False)
    assert p.returncode == 1 and "allowDeletionOfReplicatedLocations" in p.stderr, p.stderr
    out = r1.cli_json("image-version", "update", "%s:1.0.0" % repo, "--remove-region", "r3",
                      "--allow-deletion-of-replicated-locations")
    assert sorted(targets(out)) == ["r1", "r2"], out
    assert out["safetyProfile"]["allowDeletionOfReplicatedLocations"] is True
    wait_for(lambda: sorted(targets(version(r3, repo, "1.0.0"))) == ["r1", "r2"], 30,
             "the removal reaches r3")

    # a profile made before the push (image-version create) is the one the push keeps
    out = r2.cli_json("image-version", "create", "%s:2.0.0" % repo, "--target-regions",
                      "r2=1,r3=1", "--end-of-life-date", "2099-01-01")
    assert out["sourceRegion"] == "r2" and sorted(targets(out)) == ["r2", "r3"], out
    r2.oci().push_image(repo, "2.0.0", layers=1, layer_size=1024)
    doc = version(r2, repo, "2.0.0")
    assert sorted(targets(doc)) == ["r2", "r3"], doc
    assert doc["publishingProfile"]["endOfLifeDate"] == "2099-01-01T00:00:00.000Z", doc
    listed = r2.cli_json("image-version", "list", repo, "--region", "r3")
    assert [v["version"] for v in listed["versions"]] == ["1.0.0", "2.0.0"], listed
    assert listed["region"] == "r3"
    assert [v["state"] for v in listed["versions"]][0] == "NotTargeted", listed


def test_a_definition_takes_versions_only(geo):
    cluster = geo(1)
    r1 = cluster[0]
    oci = r1.oci()
    plain = unique_repo("plain")
    oci.push_image(plain, "latest", layers=1)        # plain repositories are unchanged
    oci.push_image(plain, "v1", layers=1)
    p = r1.cli("image-definition", "create", plain, check=False)
    assert p.returncode == 1 and "not a version" in p.stderr, p.stderr

    repo = unique_repo("golden")
    r1.cli("image-definition", "create", repo, "--os", "linux")
    body = oci.push_image(repo, "1.0.0", layers=1, layer_size=512).body
    for tag in ("latest", "v1", "1.0", "1.0.0-rc1", "01.0.0"):
        r = oci.put_manifest(repo, tag, body, media_type=MT_OCI_MANIFEST)
        assert r.status_code == 400, (tag, r.status_code, r.text)
        err = r.json()["errors"][0]
        assert err["code"] == "TAG_INVALID", (tag, r.text)
        assert ("latest" in err["message"]) if tag == "latest" else ("MAJOR.MINOR.PATCH" in
                                                                     err["message"]), err
    # a version whose blobs are missing is refused and records nothing
    missing = dict(json.loads(body), layers=[{"mediaType": "application/octet-stream",
                                              "digest": "sha256:" + "ab" * 32, "size": 3}])
    r = oci.put_manifest(repo, "2.0.0", missing, media_type=MT_OCI_MANIFEST)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", r.text
    tags = oci.get("/v2/%s/tags/list" % repo).json()["tags"]
    assert tags == ["1.0.0"], tags  # a refused tag stored nothing
    r = r1.api("GET", "image-versions", params={"repository": repo})
    assert [v["version"] for v in r.json()["versions"]] == ["1.0.0"], r.text
    # by digest (index children, referrers) is fine
    img = oci.push_image(repo, None, layers=1, by_digest=True)
    assert oci.get_manifest(repo, img.digest).status_code == 200
    # a definition with versions is not deleted; without, it is
    assert_mgmt_error(r1.api("DELETE", "image-definitions", params={"repository": repo}),
                      409, "CONFLICT")
    other = unique_repo("golden")
    r1.cli("image-definition", "create", other)
    r1.cli("image-definition", "delete", other)
    assert r1.api("GET", "image-definitions", params={"repository": other}).status_code == 404


BAD_UPDATES = [
    ({"addRegions": ["mars"]}, 400, "unknown region"),
    ({"targetRegions": ["r1", "nowhere=1"]}, 400, "unknown region"),
    ({"addRegions": ["r2=0"]}, 400, "at least 1"),
    ({"addRegions": ["r2=2"]}, 400, "volume"),
    ({"replicaCount": 0}, 400, "at least 1"),
    ({"endOfLifeDate": "2027-02-30"}, 400, "endOfLifeDate"),
    ({"endOfLifeDate": "next week"}, 400, "endOfLifeDate"),
    ({"replicationMode": "Lazy"}, 400, "Full or Shallow"),
    ({"excludeFromLatest": "yes"}, 400, "true or false"),
    ({"unknownField": 1}, 400, "unknown field"),
    ({"removeRegions": ["r1"], "allowDeletionOfReplicatedLocations": True}, 400,
     "source region"),
    ({"targetRegions": ["r2"], "allowDeletionOfReplicatedLocations": True}, 400,
     "source region"),
    ({"removeRegions": ["r2"]}, 409, "allowDeletionOfReplicatedLocations"),
]


def test_bad_input_changes_nothing(geo):
    cluster = geo(2)
    r1, r2 = cluster
    repo = unique_repo("golden")
    definition(r1, repo)
    r1.oci().push_image(repo, "1.0.0", layers=1)
    before = version(r1, repo, "1.0.0")
    assert sorted(targets(before)) == ["r1", "r2"], before
    q = {"repository": repo, "reference": "1.0.0"}
    codes = {400: "BAD_REQUEST", 409: "CONFLICT"}
    for body, status, words in BAD_UPDATES:
        r = r1.api("PATCH", "image-versions", params=q, json=body)
        assert_mgmt_error(r, status, codes[status])
        assert words in r.json()["error"]["message"], (body, r.text)
    # bad versions, unknown definitions, bad definitions
    assert_mgmt_error(r1.api("PATCH", "image-versions",
                             params={"repository": repo, "reference": "1.0"}, json={}),
                      400, "BAD_REQUEST")
    assert_mgmt_error(r1.api("PATCH", "image-versions",
                             params={"repository": repo, "reference": "9.9.9"}, json={}),
                      404, "NOT_FOUND")
    assert_mgmt_error(r1.api("POST", "image-versions",
                             params={"repository": repo, "reference": "1.0.0"}, json={}),
                      409, "CONFLICT")
    assert_mgmt_error(r1.api("POST", "image-versions",
                             params={"repository": repo, "reference": "3.0.0"},
                             json={"targetRegions": ["mars"]}), 400, "BAD_REQUEST")
    assert_mgmt_error(r1.api("POST", "image-definitions", params={"repository": repo},
                             json={}), 409, "CONFLICT")
    other = unique_repo("golden")
    for body in ({"defaultTargetRegions": ["mars"]}, {"defaultReplicaCount": 2},
                 {"os": 7}, {"colour": "blue"}):
        assert_mgmt_error(r1.api("POST", "image-definitions", params={"repository": other},
                                 json=body), 400, "BAD_REQUEST")
    assert r1.api("GET", "image-definitions", params={"repository": other}).status_code == 404
    assert_mgmt_error(r1.api("GET", "image-versions",
                             params={"repository": repo, "region": "mars"}), 400,
                      "BAD_REQUEST")
    # nothing changed, here or in the other region
    after = version(r1, repo, "1.0.0")
    for key in ("publishingProfile", "safetyProfile", "sourceRegion", "digest"):
        assert after[key] == before[key], (key, after[key], before[key])
    r = r1.api("GET", "image-versions", params={"repository": repo})
    assert [v["version"] for v in r.json()["versions"]] == ["1.0.0"], r.text
    got = wait_for(lambda: version(r2, repo, "1.0.0", missing_ok=True), 30, "1.0.0 in r2")
    assert got["publishingProfile"] == before["publishingProfile"]
    # the CLI says the same in words and exits 1
    p = r1.cli("image-version", "update", "%s:1.0.0" % repo, "--add-region", "mars",
               check=False)
    assert p.returncode == 1 and "unknown region" in p.stderr, p.stderr
