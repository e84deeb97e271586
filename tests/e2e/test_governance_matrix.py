"""The compliance matrix (docs/governance.md, "Compliance matrix"; issue 13 item 2).

Three regions. An image definition whose versions go to r1 and r3, a plain repository held
everywhere and one that is fine, checked against a matrix with a rule for each: every kind
of violation is found (a required region missing, copies below the minimum, presence in a
forbidden region, end of life passed, `latest` too old), the answer is compared field by
field with a document built here, the CLI exits 3 and prints the table, the gauges on
/metrics give the counts by kind, and a bad matrix is refused with a message naming the
field.

Harness: regions.py (three `meridian serve` processes, r1..r3).
"""

import json
import re
import secrets

from regions import wait_for
from test_image_versions import definition

pytest_plugins = ["geo_plugin"]

REPL_S = 30


def check(region, matrix):
    r = region.api("POST", "compliance/check", json=matrix)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def gauges(region):
    text = region.get("/metrics").text
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r'^meridian_compliance_violations\{kind="([a-z-]+)"\} (\d+)$', text,
                        re.M)}


def test_matrix_finds_each_kind_of_violation(geo, tmp_path):
    cluster = geo(3)
    r1, r2, r3 = cluster
    prefix = "mx%s" % secrets.token_hex(3)
    app, bad, ok = prefix + "/app", prefix + "/plain-bad", prefix + "/plain-ok"
    definition(r1, app, defaultTargetRegions=["r1", "r3"])
    d1 = r1.oci().push_image(app, "1.0.0", layers=1).digest
    d2 = r1.oci().push_image(app, "2.0.0", layers=1).digest
    for v in ("1.0.0", "2.0.0"):
        r1.cli("image-version", "wait", "%s:%s" % (app, v), "--replicated", "--timeout", "1m",
               timeout_s=90)
    r = r1.api("PATCH", "image-versions", params={"repository": app, "reference": "1.0.0"},
               json={"endOfLifeDate": "2020-01-01"})
    assert r.status_code == 200, r.text
    r1.oci().push_image(bad, "latest", layers=1)
    r1.oci().push_image(ok, "v1", layers=1)
    for r in (r2, r3):
        for repo, tag in ((bad, "latest"), (ok, "v1")):
            wait_for(lambda r=r, repo=repo, tag=tag:
                     r.oci().get_manifest(repo, tag).status_code == 200, REPL_S,
                     "%s at %s" % (repo, r.name))
    assert gauges(r1) == {"missing-required-region": 0, "below-min-replicas": 0,
                          "in-forbidden-region": 0, "end-of-life-passed": 0,
                          "latest-too-old": 0}

    rules = [
        {"repositories": app, "requiredRegions": ["r1", "r2"], "minReplicaCount": 2,
         "forbiddenRegions": ["r3"], "maxLatestAgeS": 1},
        {"repositories": bad, "requiredRegions": ["r1"], "forbiddenRegions": ["r2"],
         "maxLatestAgeS": 1},
        {"repositories": prefix + "/*", "requiredRegions": ["r1", "r2", "r3"]},
    ]
    matrix = {"rules": rules}
    # `latest` older than a second: wait until the check says so (ages only grow)
    report = wait_for(lambda: (lambda rep: rep if all(
        i["latestTooOld"] for i in rep["items"] if i["latestAgeS"] is not None) else None)(
            check(r1, matrix)), REPL_S, "latest to age")

    ages = {(i["repository"], i["version"]): i["latestAgeS"] for i in report["items"]}
    assert ages[(app, "2.0.0")] >= 1 and ages[(bad, None)] >= 1, ages
    assert isinstance(report["generatedMs"], int)

    def version_item(ver, digest, violations, latest_age, eol):
        return {"repository": app, "version": ver, "digest": digest, "rule": 0,
                "sourceRegion": "r1", "targetRegions": ["r1", "r3"],
                "replicaRegions": ["r1", "r3"], "copies": {"r1": 1}, "state": "Completed",
                "endOfLifeDate": eol, "endOfLifePassed": eol is not None,
                "isLatest": latest_age is not None, "latestAgeS": latest_age,
                "latestTooOld": latest_age is not None,
                "missingRequiredRegions": ["r2"], "forbiddenRegionsPresent": ["r3"],
                "belowMinReplicas": [{"region": "r1", "copies": 1}],
                "compliant": False, "violations": violations}

    expected = {
        "region": "r1",
        "generatedMs": report["generatedMs"],
        "regions": [{"name": n, "answered": True} for n in ("r1", "r2", "r3")],
        "rules": rules,
        "items": [
            version_item("1.0.0", d1, ["missing-required-region", "below-min-replicas",
                                       "in-forbidden-region", "end-of-life-passed"],
                         None, "2020-01-01T00:00:00.000Z"),
            version_item("2.0.0", d2, ["missing-required-region", "below-min-replicas",
                                       "in-forbidden-region", "latest-too-old"],
                         ages[(app, "2.0.0")], None),
            {"repository": bad, "version": None, "rule": 1,
             "replicaRegions": ["r1", "r2", "r3"], "unknownRegions": [], "copies": None,
             "endOfLifePassed": False, "latestAgeS": ages[(bad, None)], "latestTooOld": True,
             "missingRequiredRegions": [], "forbiddenRegionsPresent": ["r2"],
             "belowMinReplicas": [], "compliant": False,
             "violations": ["in-forbidden-region", "latest-too-old"]},
            {"repository": ok, "version": None, "rule": 2,
             "replicaRegions": ["r1", "r2", "r3"], "unknownRegions": [], "copies": None,
             "endOfLifePassed": False, "latestAgeS": None, "latestTooOld": False,
             "missingRequiredRegions": [], "forbiddenRegionsPresent": [],
             "belowMinReplicas": [], "compliant": True, "violations": []},
        ],
        "violations": 10,
        "violationsByKind": {"missing-required-region": 2, "below-min-replicas": 2,
                             "in-forbidden-region": 3, "end-of-life-passed": 1,
                             "latest-too-old": 2},
    }
    assert set(report) == set(expected), sorted(report)
    for key in expected:
        if key != "items":
            assert report[key] == expected[key], (key, report[key], expected[key])
    assert len(report["items"]) == len(expected["items"]), report["items"]
    for got, want in zip(report["items"], expected["items"]):
        assert set(got) == set(want), (sorted(got), sorted(want))
        for key in want:
            assert got[key] == want[key], (got["repository"], got["version"], key, got[key],
                                           want[key])

    # the gauges: the counts by kind of the last check
    assert gauges(r1) == expected["violationsByKind"]

    # the CLI: the table, exit 3; JSON the same document
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps(matrix))
    p = r1.cli("compliance", "check", "--matrix", path, check=False)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith(app) and "1.0.0" in ln][0]
    assert "r1=1" in line and "end-of-life-passed" in line and " r2 " in " %s " % line, line
    assert "10 violation(s)" in p.stdout
    p = r1.cli("compliance", "check", "--matrix", path, "--output", "json", check=False)
    assert p.returncode == 3 and json.loads(p.stdout)["violations"] == 10

    # a compliant matrix: exit 0, gauges back to 0
    path.write_text(json.dumps({"rules": [{"repositories": ok, "requiredRegions": ["r1"]}]}))
    p = r1.cli("compliance", "check", "--matrix", path, check=False)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert sum(gauges(r1).values()) == 0


def test_bad_matrix_is_refused_with_a_clear_message(geo, tmp_path):
    r1 = geo(3)[0]
    cases = [
        ({"rules": []}, "rules: expected a non-empty array"),
        ({"rulez": []}, "unknown field \"rulez\""),
        ({"rules": [{"requiredRegions": ["r1"]}]}, "rules[0].repositories"),
        ({"rules": [{"repositories": "a b"}]}, "rules[0].repositories"),
        ({"rules": [{"repositories": "x/*", "requiredRegions": ["r9"]}]},
         "rules[0].requiredRegions[0]: unknown region \"r9\""),
        ({"rules": [{"repositories": "x/*"}, {"repositories": "y/*", "forbiddenRegions": "r1"}]},
         "rules[1].forbiddenRegions: expected an array"),
        ({"rules": [{"repositories": "x/*", "minReplicaCount": 0}]},
         "rules[0].minReplicaCount: expected an integer of at least 1"),
        ({"rules": [{"repositories": "x/*", "maxLatestAgeS": "1h"}]}, "rules[0].maxLatestAgeS"),
        ({"rules": [{"repositories": "x/*", "requiredRegions": ["r1"],
                     "forbiddenRegions": ["r1"]}]}, "both required and forbidden"),
        ({"rules": [{"repositories": "x/*", "requiredRegion": ["r1"]}]},
         "rules[0]: unknown field \"requiredRegion\""),
    ]
    for body, message in cases:
        r = r1.api("POST", "compliance/check", json=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        err = r.json()["error"]
        assert err["code"] == "BAD_REQUEST" and message in err["message"], (body, err)
    r = r1.api("POST", "compliance/check", data="{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "BAD_REQUEST", r.text
    # a refused check leaves the gauges as they were (never run: 0) and the CLI says why
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{"repositories": "x/*", "requiredRegions": ["r9"]}]}))
    p = r1.cli("compliance", "check", "--matrix", bad, check=False)
    assert p.returncode == 1 and "unknown region" in p.stderr, (p.returncode, p.stderr)
    bad.write_text("{")
    p = r1.cli("compliance", "check", "--matrix", bad, check=False)
    assert p.returncode == 2 and "bad.json" in p.stderr, (p.returncode, p.stderr)
    p = r1.cli("compliance", "check", check=False)
    assert p.returncode == 2 and "--matrix FILE" in p.stderr


def test_audit_by_repository(geo):
    """Issue 13 item 5: the audit by repository, through the API and the CLI: the refused
    pushes of a repository (residency.denied), not those of a repository whose name it
    starts."""
    r1, r2 = geo(2)
    prefix = "ar%s" % secrets.token_hex(3)
    repo, longer = prefix + "/app", prefix + "/app2"
    r = r1.api("PUT", "policies/residency/" + prefix, json={"repositories": prefix + "/*",
                                                           "allowedRegions": ["r1"]})
    assert r.status_code == 200, r.text
    wait_for(lambda: r2.api("GET", "policies/residency/" + prefix).status_code == 200, REPL_S,
             "the policy at r2")
    for name in (repo, longer, repo):
        r = r2.oci().put_manifest(name, "v1", b'{"schemaVersion":2}',
                                  "application/vnd.oci.image.manifest.v1+json")
        assert r.status_code == 403, (r.status_code, r.text)
    entries = r2.api("GET", "audit", params={"repository": repo}).json()
    assert [(a["action"], a["target"]) for a in entries] == \
        [("residency.denied", repo + "@v1")] * 2, entries
    entries = r2.api("GET", "audit", params={"repository": longer}).json()
    assert [a["target"] for a in entries] == [longer + "@v1"], entries
    assert r2.api("GET", "audit", params={"repository": prefix}).json() == []
    listed = r2.cli_json("audit", "list", "--repository", repo)
    assert [a["id"] for a in listed] == [a["id"] for a in entries_of(r2, repo)], listed
    r = r2.api("GET", "audit", params={"repository": "Not A Repo"})
    assert r.status_code == 400 and "repository" in r.json()["error"]["message"], r.text


def entries_of(region, repo):
    return region.api("GET", "audit", params={"repository": repo}).json()
