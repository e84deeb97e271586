"""Immutable versions of image definitions (docs/image-versions.md, "Immutability, locks and
signatures"), on three regions: a version pushed again with the same manifest succeeds and
changes nothing; with another manifest it is refused (403 DENIED, "exists and is immutable") in
every region and nothing is stored; a deleted version cannot be pushed again unless the
definition allows version reuse; two regions that accept the same new version while
partitioned end, after the heal, with one winner everywhere (the earlier push), the loser still
addressable by digest, a `Conflicted` status naming both, and one audit entry and one
`version.conflict` webhook delivery in each region.

Harness: regions.py (three `meridian serve` processes behind fault proxies).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from conftest import (EMPTY_JSON, EMPTY_JSON_DIGEST, MT_OCI_EMPTY, MT_OCI_MANIFEST,
                      canonical_json, digest_of)
from regions import unique_repo, wait_for
from test_image_versions import db_rows

pytest_plugins = ["geo_plugin"]

AT_SIG = "application/vnd.example.signature.v1"


def definition(region, repo, **body):
    r = region.api("POST", "image-definitions", params={"repository": repo}, json=body)
    assert r.status_code == 201, (r.status_code, r.text)


def known_everywhere(cluster, repo):
    for region in cluster:
        wait_for(lambda: region.api("GET", "image-definitions",
                                    params={"repository": repo}).status_code == 200,
                 30, "definition in %s" % region.name)


def served(region, repo, ref):
    r = region.oci().get_manifest(repo, ref)
    return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None


def tag_digest_everywhere(cluster, repo, ref, digest, what):
    """ref names digest in every region's record (visible or not)."""
    def check():
        for region in cluster:
            r = region.api("GET", "image-versions", params={"repository": repo, "reference": ref})
            if r.status_code != 200 or r.json().get("digest") != digest:
                return False
        return True
    wait_for(check, 60, what)


def rebuilt(img, nonce):
    """The same image with an annotation: another digest per nonce, the same blobs."""
    m = json.loads(img.body)
    m["annotations"] = {"org.example.nonce": nonce}
    return json.dumps(m, separators=(",", ":"), sort_keys=True).encode()


def other_manifest(img):
    """The same image with one more annotation: another digest, the same blobs."""
    m = json.loads(img.body)
    m["annotations"] = {"org.example.rebuilt": "yes"}
    return json.dumps(m, separators=(",", ":"), sort_keys=True).encode()


def assert_denied_immutable(r):
    assert r.status_code == 403, (r.status_code, r.text)
    err = r.json()["errors"][0]
    assert err["code"] == "DENIED", err
    assert "exists and is immutable" in err["message"], err


def test_versions_are_immutable_in_every_region(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = unique_repo("golden")
    definition(r1, repo)
    known_everywhere(cluster, repo)
    img = r1.oci().push_image(repo, "1.0.0", layers=1, layer_size=4096)
    tag_digest_everywhere(cluster, repo, "1.0.0", img.digest, "1.0.0 known everywhere")

    # the same manifest again: 201, and no new event (the log head does not move)
    head = r1.api("GET", "replication/summary")
    before = r1.api("GET", "image-versions", params={"repository": repo, "reference": "1.0.0"})
    r = r1.oci().put_manifest(repo, "1.0.0", img.body, img.media_type)
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.headers["Docker-Content-Digest"] == img.digest
    after = r1.api("GET", "image-versions", params={"repository": repo, "reference": "1.0.0"})
    assert after.json()["publishingProfile"] == before.json()["publishingProfile"]
    if head.status_code == 200:
        assert r1.api("GET", "replication/summary").json() == head.json()

    # another manifest as 1.0.0: refused in every region, nothing stored
    other = other_manifest(img)
    other_digest = "sha256:" + __import__("hashlib").sha256(other).hexdigest()
    for region in cluster:
        assert_denied_immutable(region.oci().put_manifest(repo, "1.0.0", other, img.media_type))
    for region in cluster:
        assert region.oci().get_manifest(repo, other_digest).status_code == 404, region.name
        assert region.oci().get_manifest(repo, "1.0.0").headers.get(
            "Docker-Content-Digest") in (img.digest, None), region.name
    assert served(r1, repo, "1.0.0") == img.digest

    # deleted, the version does not come back ...
    r = r1.oci().delete("/v2/%s/manifests/1.0.0" % repo)
    assert r.status_code == 202, (r.status_code, r.text)
    # The retirement is logged before the tag's delete: events of one origin apply in
    # order, so no region sees 1.0.0 gone without knowing it was retired (a push there in
    # between was accepted: seen flaky before the order was fixed).
    retired = db_rows(r1, "SELECT seq FROM events WHERE kind = 'object_put' AND name = ?"
                      " AND payload LIKE '%image_version_retired%'", "%s:1.0.0" % repo)
    deleted = db_rows(r1, "SELECT seq FROM events WHERE kind = 'tag_delete' AND repo = ?"
                      " AND name = '1.0.0'", repo)
    assert len(retired) == 1 and len(deleted) == 1, (retired, deleted)
    assert retired[0][0] < deleted[0][0], (retired, deleted)
    for region in cluster:
        def refused():
            r = region.oci().put_manifest(repo, "1.0.0", other, img.media_type)
            if r.status_code == 201:
                raise AssertionError("%s accepted a deleted version again" % region.name)
            return r.status_code == 403 and "deleted" in r.json()["errors"][0]["message"]
        wait_for(refused, 30, "the deletion known in %s" % region.name)
    assert r1.oci().get_manifest(repo, other_digest).status_code == 404
    # ... unless the definition allows version reuse
    r = r2.api("PATCH", "image-definitions", params={"repository": repo},
               json={"allowVersionReuse": True})
    assert r.status_code == 200, (r.status_code, r.text)
    wait_for(lambda: r3.api("GET", "image-definitions", params={"repository": repo})
             .json().get("allowVersionReuse") is True, 30, "the update in r3")
    r = r3.oci().put_manifest(repo, "1.0.0", other, img.media_type)
    assert r.status_code == 201, (r.status_code, r.text)
    tag_digest_everywhere(cluster, repo, "1.0.0", other_digest, "the reused version everywhere")


class Receiver:
    def __init__(self):
        self.lock = threading.Lock()
        self.got = []
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with rcv.lock:
                    rcv.got.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()
        self.url = "http://127.0.0.1:%d/hook" % self.httpd.server_address[1]

    def events(self, action):
        with self.lock:
            return [e for e in self.got if e.get("action") == action]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_concurrent_pushes_of_one_version_resolve_to_the_first(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    repo = unique_repo("golden")
    definition(r1, repo)
    known_everywhere(cluster, repo)
    rcvs = {r.name: Receiver() for r in cluster}
    try:
        hooks = {}
        for r in cluster:
            hooks[r.name] = "conf%s%d" % (r.name, id(rcvs[r.name]) % 100000)
            r.cli("webhook", "create", hooks[r.name], "--location", r.name, "--uri",
                  rcvs[r.name].url, "--actions", "version.conflict", "--scope", "*")
        for r in cluster:
            wait_for(lambda: set(hooks.values()) <= {w["name"] for w in
                                                     r.api("GET", "webhooks").json()},
                     30, "every webhook in %s" % r.name)

        cluster.partition([r1], [r2], [r3])
        first = r1.oci().push_image(repo, "1.0.0", layers=1, layer_size=2048)
        second = r2.oci().push_image(repo, "1.0.0", layers=1, layer_size=2048)
        assert first.digest != second.digest
        cluster.heal()

        # one winner everywhere: the earlier push; the loser is never served as 1.0.0
        for region in cluster:
            wait_for(lambda: served(region, repo, "1.0.0") == first.digest, 90,
                     "%s to serve the first push as 1.0.0" % region.name)
        for region in cluster:
            wait_for(lambda: served(region, repo, second.digest) == second.digest, 90,
                     "the loser addressable by digest in %s" % region.name)

        # Conflicted, with both digests and regions, the same in every region
        def conflicted(region):
            doc = region.api("GET", "image-versions",
                             params={"repository": repo, "reference": "1.0.0"}).json()
            return doc if doc.get("versionState") == "Conflicted" else None
        for region in cluster:
            doc = wait_for(lambda: conflicted(region), 60, "Conflicted in %s" % region.name)
            assert doc["digest"] == first.digest, doc
            assert doc["conflict"] == {"winner": {"digest": first.digest, "region": "r1"},
                                       "losers": [{"digest": second.digest,
                                                   "region": "r2"}]}, doc
            listed = region.api("GET", "image-versions", params={"repository": repo}).json()
            assert listed["versions"][0]["versionState"] == "Conflicted", listed

        # one audit entry and one webhook delivery per region
        for region in cluster:
            def audited():
                return [a for a in region.api("GET", "audit",
                                              params={"action": "image-version.conflict"}).json()
                        if a["target"] == "%s:1.0.0" % repo]
            entries = wait_for(audited, 30, "the audit entry in %s" % region.name)
            assert len(entries) == 1, entries
            assert first.digest in entries[0]["detail"] and second.digest in entries[0]["detail"]
            got = wait_for(lambda: rcvs[region.name].events("version.conflict"), 30,
                           "the webhook of %s" % region.name)
            assert got[0]["target"]["tag"] == "1.0.0", got
            assert got[0]["target"]["digest"] == first.digest, got
            assert got[0]["region"] == region.name, got
        # and no more: a later push of the winner or the loser changes nothing
        r = r2.oci().put_manifest(repo, "1.0.0", second.body, second.media_type)
        assert_denied_immutable(r)
        # A ping queued now is sent after every delivery queued before it (one worker, oldest
        # first): once it arrives, a second conflict delivery would have arrived too.
        for region in cluster:
            r = region.api("POST", "webhooks/%s/ping" % hooks[region.name])
            assert r.status_code == 202, (r.status_code, r.text)
        for region in cluster:
            wait_for(lambda: rcvs[region.name].events("ping"), 30,
                     "the ping of %s" % region.name)
            assert len(rcvs[region.name].events("version.conflict")) == 1, region.name
            listed = region.api("GET", "webhooks/%s/events" % hooks[region.name]).json()
            conflicts = [d for d in listed if d.get("action") == "version.conflict"]
            assert len(conflicts) == 1, listed
    finally:
        for rcv in rcvs.values():
            rcv.stop()


def test_a_referrer_of_another_repositorys_manifest_is_refused(geo):
    """Issue 19 item 4: in an image definition, a manifest whose subject is a manifest of
    another repository (and not of this one) is refused with 400 MANIFEST_INVALID naming the
    problem, and nothing is stored. A subject known nowhere stays allowed (OCI lets a
    referrer come before its subject); plain repositories are unchanged."""
    cluster = geo(2)
    r1, r2 = cluster
    plain = unique_repo("plain")
    repo = unique_repo("golden")
    definition(r1, repo)
    known_everywhere(cluster, repo)
    elsewhere = r1.oci().push_image(plain, "v1", layers=1)
    wait_for(lambda: served(r2, plain, elsewhere.digest) == elsewhere.digest, 30,
             "the plain image in r2")

    for region in cluster:
        oci = region.oci()
        oci.push_blob(repo, EMPTY_JSON)
        body = canonical_json({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "artifactType": AT_SIG,
            "config": {"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2},
            "layers": [{"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2}],
            "subject": elsewhere.descriptor(), "annotations": {"region": region.name}})
        r = oci.put_manifest(repo, digest_of(body), body, MT_OCI_MANIFEST)
        assert r.status_code == 400, (region.name, r.status_code, r.text)
        err = r.json()["errors"][0]
        assert err["code"] == "MANIFEST_INVALID", err
        assert plain in err["message"] and "another repository" in err["message"], err
        # nothing stored: not by digest, not as a referrer, in no region
        for other in cluster:
            assert other.oci().get_manifest(repo, digest_of(body)).status_code == 404
            listed = other.oci().referrers(repo, elsewhere.digest)
            assert listed.status_code == 200 and listed.json()["manifests"] == [], listed.text
        # the same referrer in the plain repository itself is fine
        oci.push_blob(plain, EMPTY_JSON)
        r = oci.put_manifest(plain, digest_of(body), body, MT_OCI_MANIFEST)
        assert r.status_code == 201, (r.status_code, r.text)

    # the older signature scheme names its subject in the tag: the same rule
    cosign_tag = "sha256-%s.sig" % elsewhere.digest.split(":", 1)[1]
    sig_body = canonical_json({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "artifactType": AT_SIG,
        "config": {"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2},
        "layers": [{"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2}]})
    r = r2.oci().put_manifest(repo, cosign_tag, sig_body, MT_OCI_MANIFEST)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["errors"][0]["code"] == "MANIFEST_INVALID", r.text
    assert r2.oci().get_manifest(repo, cosign_tag).status_code == 404
    assert r2.oci().get_manifest(repo, digest_of(sig_body)).status_code == 404

    # a subject known nowhere: allowed (it may be pushed later)
    unknown = {"mediaType": MT_OCI_MANIFEST, "size": 123,
               "digest": "sha256:" + "ab" * 32}
    early = r1.oci().push_artifact(repo, AT_SIG, subject=unknown)
    assert served(r1, repo, early.digest) == early.digest
    # a subject of this definition: allowed even when another repository holds it too
    img = r1.oci().push_image(repo, "1.0.0", layers=1)
    for blob in img.blobs.values():
        r1.oci().push_blob(plain, blob)
    r = r1.oci().put_manifest(plain, img.digest, img.body, img.media_type)
    assert r.status_code == 201, (r.status_code, r.text)
    sig = r1.oci().push_artifact(repo, AT_SIG, subject=img)
    assert served(r1, repo, sig.digest) == sig.digest
    cosign = r1.oci().push_artifact(repo, AT_SIG, tag="sha256-%s.sig" % img.digest[7:])
    assert served(r1, repo, "sha256-%s.sig" % img.digest[7:]) == cosign.digest


def test_two_pushes_of_one_new_version_in_one_region_one_is_refused(server_factory):
    """Two clients push the same new version with different manifests into one region at
    once. Both pass the handler's immutability check before either commits; the store
    decides in its write transaction: the first keeps the version (201), the second is
    refused like any later push of another manifest (403 DENIED), never answered 201 for a
    version it does not hold (it was, in most rounds, before the fix). The record of the
    version stays whichever push made it."""
    srv = server_factory()
    repo = "golden/race"
    r = requests.post(srv.url + "/_meridian/v1/image-definitions", params={"repository": repo},
                      json={}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    base = srv.oci().push_image(repo, "0.0.1", layers=1)
    for i in range(12):
        version = "1.0.%d" % i
        bodies = [rebuilt(base, "a%d" % i), rebuilt(base, "b%d" % i)]
        answers = [None, None]
        start = threading.Barrier(2)

        def push(k):
            oci = srv.oci()
            start.wait()
            answers[k] = oci.put_manifest(repo, version, bodies[k], MT_OCI_MANIFEST)
        pushers = [threading.Thread(target=push, args=(k,)) for k in range(2)]
        for t in pushers:
            t.start()
        for t in pushers:
            t.join()
        codes = sorted(a.status_code for a in answers)
        assert codes == [201, 403], (version, [(a.status_code, a.text) for a in answers])
        won = next(a for a in answers if a.status_code == 201)
        assert_denied_immutable(next(a for a in answers if a.status_code == 403))
        assert served(srv, repo, version) == won.headers["Docker-Content-Digest"], version
        doc = requests.get(srv.url + "/_meridian/v1/image-versions",
                           params={"repository": repo, "reference": version}, timeout=30)
        assert doc.status_code == 200, (version, doc.status_code, doc.text)
        assert doc.json()["digest"] == won.headers["Docker-Content-Digest"], doc.json()
        assert doc.json().get("versionState") != "Conflicted", doc.json()
