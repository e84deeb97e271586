"""Referrers API (distribution-spec "Listing Referrers", "Pushing Manifests with
Subject"): OCI-Subject on push, the index returned, artifactType rules,
annotations, filtering, unknown subjects, subjects pushed later, deletes."""

import pytest

from conftest import (LINK_NEXT_RE, MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_MANIFEST, assert_error,
                      canonical_json, digest_of, random_bytes)

AT_SBOM = "application/vnd.example.sbom.v1"
AT_SIG = "application/vnd.example.signature.v1"
AT_CFG = "application/vnd.example.config-as-type.v1+json"
AT_INDEX = "application/vnd.example.bundle.v1"
KEY = "org.opencontainers.conformance.test"


def referrers_index(oci, repo, digest, **params):
    r = oci.referrers(repo, digest, **params)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["Content-Type"] == MT_OCI_INDEX
    body = r.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == MT_OCI_INDEX
    assert isinstance(body["manifests"], list)
    return r, body["manifests"]


def by_digest(descs):
    out = {}
    for d in descs:
        assert d["digest"] not in out, "duplicate referrer %s" % d["digest"]
        out[d["digest"]] = d
    return out


@pytest.fixture
def family(oci, repo):
    """A subject image with five referrers of different shapes."""
    subject = oci.push_image(repo, tag="app", layers=1)
    refs = {}

    def put(body, media_type, expect_subject=subject.digest):
        r = oci.put_manifest(repo, digest_of(body), body, media_type)
        assert r.status_code == 201, (r.status_code, r.text)
        assert r.headers.get("OCI-Subject") == expect_subject
        return digest_of(body)

    # 1. artifact with artifactType and empty config
    a1 = oci.push_artifact(repo, AT_SBOM, subject=subject, annotations={KEY: "sbom"},
                           payload=b"sbom one")
    refs[a1.digest] = dict(mediaType=MT_OCI_MANIFEST, size=a1.size, artifactType=AT_SBOM,
                           annotations={KEY: "sbom"})
    # 2. another of the same type
    a2 = oci.push_artifact(repo, AT_SBOM, subject=subject,
                           annotations={KEY: "sbom 2", "org.example.x": "y"},
                           payload=b"sbom two")
    refs[a2.digest] = dict(mediaType=MT_OCI_MANIFEST, size=a2.size, artifactType=AT_SBOM,
                           annotations={KEY: "sbom 2", "org.example.x": "y"})
    # 3. signature type
    a3 = oci.push_artifact(repo, AT_SIG, subject=subject, annotations={KEY: "sig"})
    refs[a3.digest] = dict(mediaType=MT_OCI_MANIFEST, size=a3.size, artifactType=AT_SIG,
                           annotations={KEY: "sig"})
    # 4. no artifactType: the config media type stands in for it
    cfg = b"config of an old-style artifact"
    oci.push_blob(repo, cfg)
    layer = random_bytes(50)
    oci.push_blob(repo, layer)
    body = canonical_json({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": AT_CFG, "digest": digest_of(cfg), "size": len(cfg)},
        "layers": [{"mediaType": "application/octet-stream", "digest": digest_of(layer),
                    "size": len(layer)}],
        "subject": subject.descriptor(), "annotations": {KEY: "config type"}})
    d4 = put(body, MT_OCI_MANIFEST)
    refs[d4] = dict(mediaType=MT_OCI_MANIFEST, size=len(body), artifactType=AT_CFG,
                    annotations={KEY: "config type"})
    # 5. an index with a subject and an artifactType
    idx = oci.push_index(repo, [a1, a3], artifact_type=AT_INDEX, subject=subject,
                         annotations={KEY: "index"}, platforms=False)
    refs[idx.digest] = dict(mediaType=MT_OCI_INDEX, size=idx.size, artifactType=AT_INDEX,
                            annotations={KEY: "index"})
    return repo, subject, refs


def test_push_with_subject_answers_oci_subject(oci, repo):
    subject = oci.push_image(repo, layers=1)
    oci.push_blob(repo, b"{}")
    body = canonical_json({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "artifactType": AT_SIG,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": digest_of(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": digest_of(b"{}"), "size": 2}],
        "subject": subject.descriptor()})
    for ref in (digest_of(body), "sig-tag"):
        r = oci.put_manifest(repo, ref, body, MT_OCI_MANIFEST)
        assert r.status_code == 201
        assert r.headers.get("OCI-Subject") == subject.digest


def test_push_without_subject_has_no_oci_subject(oci, repo):
    img = oci.push_image(repo, layers=1)
    r = oci.put_manifest(repo, "plain", img.body, MT_OCI_MANIFEST)
    assert r.status_code == 201
    assert "OCI-Subject" not in r.headers


def test_list_referrers(oci, family):
    repo, subject, refs = family
    _r, descs = referrers_index(oci, repo, subject.digest)
    got = by_digest(descs)
    assert set(got) == set(refs)
    for d, want in refs.items():
        g = got[d]
        assert g["mediaType"] == want["mediaType"], g
        assert g["size"] == want["size"], g
        assert g.get("artifactType") == want["artifactType"], g
        assert g.get("annotations") == want["annotations"], g


def test_referrers_index_without_artifact_type_omits_it(oci, repo):
    subject = oci.push_image(repo, layers=1)
    child = oci.push_image(repo, layers=1)
    idx = oci.push_index(repo, [child], subject=subject, annotations={KEY: "no type"})
    _r, descs = referrers_index(oci, repo, subject.digest)
    got = by_digest(descs)
    assert idx.digest in got
    assert "artifactType" not in got[idx.digest] or got[idx.digest]["artifactType"] in ("", None)
    assert got[idx.digest]["annotations"] == {KEY: "no type"}
    assert got[idx.digest]["mediaType"] == MT_OCI_INDEX


def test_image_manifest_with_subject_and_ordinary_config(oci, repo):
    subject = oci.push_image(repo, layers=1)
    ref = oci.push_image(repo, layers=1, subject=subject)
    _r, descs = referrers_index(oci, repo, subject.digest)
    got = by_digest(descs)
    assert got[ref.digest]["artifactType"] == MT_OCI_CONFIG
    assert "annotations" not in got[ref.digest] or got[ref.digest]["annotations"] in ({}, None)


def test_filter_by_artifact_type(oci, family):
    repo, subject, refs = family
    r, descs = referrers_index(oci, repo, subject.digest, artifactType=AT_SBOM)
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"
    want = {d for d, v in refs.items() if v["artifactType"] == AT_SBOM}
    assert set(by_digest(descs)) == want and len(want) == 2
    r, descs = referrers_index(oci, repo, subject.digest, artifactType=AT_CFG)
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"
    assert [d["digest"] for d in descs] == [d for d, v in refs.items()
                                            if v["artifactType"] == AT_CFG]


def test_filter_with_a_literal_plus(oci, family):
    """A media type suffix's '+' sent as is (curl, a hand-written URL; Go and requests send
    %2B) reads as a space in a form-decoded query; no media type holds a space, so the
    filter still matches."""
    repo, subject, refs = family
    want = [d for d, v in refs.items() if v["artifactType"] == AT_CFG]
    assert "+" in AT_CFG
    r = oci.get("/v2/%s/referrers/%s?artifactType=%s" % (repo, subject.digest, AT_CFG))
    assert r.status_code == 200, r.text
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == want


def test_filter_that_matches_nothing(oci, family):
    repo, subject, _refs = family
    r, descs = referrers_index(oci, repo, subject.digest,
                               artifactType="application/vnd.example.none")
    assert descs == []
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"


def test_unfiltered_request_has_no_filters_header(oci, family):
    repo, subject, _refs = family
    r, _ = referrers_index(oci, repo, subject.digest)
    assert "OCI-Filters-Applied" not in r.headers


def test_head_answers_like_get(oci, family):
    """RFC 9110 9.1 and 9.3.2: what answers GET answers HEAD, with the same headers
    (OCI-Filters-Applied included)."""
    repo, subject, _refs = family
    path = "/v2/%s/referrers/%s" % (repo, subject.digest)
    for params in (None, {"artifactType": AT_SBOM}):
        get = oci.get(path, params=params)
        r = oci.head(path, params=params)
        assert r.status_code == 200, (params, r.status_code, r.headers)
        assert r.content == b""
        for h in ("Content-Type", "Content-Length", "OCI-Filters-Applied"):
            assert r.headers.get(h) == get.headers.get(h), (params, h)


def test_unknown_subject_gives_empty_index(oci, repo):
    oci.push_image(repo, layers=1)
    _r, descs = referrers_index(oci, repo, digest_of(b"hello world"))
    assert descs == []


def test_unknown_repository_gives_empty_index(oci):
    _r, descs = referrers_index(oci, "e2e/referrers/never/pushed", digest_of(b"x"))
    assert descs == []


def test_referrer_pushed_before_its_subject(oci, repo):
    """Clients may push referrers first: the registry MUST accept a subject that does
    not exist yet, and list the referrer once asked."""
    cfg = canonical_json({"architecture": "amd64", "os": "linux", "n": random_bytes(4).hex()})
    layer = random_bytes(300)
    body = canonical_json({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": digest_of(cfg), "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest_of(layer), "size": len(layer)}]})
    subject_desc = {"mediaType": MT_OCI_MANIFEST, "digest": digest_of(body), "size": len(body)}
    art = oci.push_artifact(repo, AT_SIG, subject=subject_desc, annotations={KEY: "early"})
    _r, descs = referrers_index(oci, repo, subject_desc["digest"])
    assert [d["digest"] for d in descs] == [art.digest]
    # then the subject arrives; the referrer is still listed
    oci.push_blob(repo, cfg)
    oci.push_blob(repo, layer)
    r = oci.put_manifest(repo, "late", body, MT_OCI_MANIFEST)
    assert r.status_code == 201
    _r, descs = referrers_index(oci, repo, subject_desc["digest"])
    assert [d["digest"] for d in descs] == [art.digest]
    assert by_digest(descs)[art.digest]["annotations"] == {KEY: "early"}


def test_referrer_to_a_subject_that_never_exists(oci, repo):
    missing = {"mediaType": MT_OCI_MANIFEST, "size": 123,
               "digest": digest_of(b"missing content")}
    art = oci.push_artifact(repo, AT_SBOM, subject=missing, tag="orphan-art")
    _r, descs = referrers_index(oci, repo, missing["digest"])
    assert [d["digest"] for d in descs] == [art.digest]


def test_referrers_are_scoped_to_the_repository(oci, repo):
    subject = oci.push_image(repo + "/one", layers=1)
    art = oci.push_artifact(repo + "/one", AT_SBOM, subject=subject)
    oci.put_manifest(repo + "/two", "s", subject.body, MT_OCI_MANIFEST)
    _r, descs = referrers_index(oci, repo + "/two", subject.digest)
    assert descs == []
    _r, descs = referrers_index(oci, repo + "/one", subject.digest)
    assert [d["digest"] for d in descs] == [art.digest]


def test_deleted_referrer_disappears(oci, repo):
    subject = oci.push_image(repo, layers=1)
    keep = oci.push_artifact(repo, AT_SBOM, subject=subject)
    gone = oci.push_artifact(repo, AT_SIG, subject=subject)
    r = oci.delete(oci.manifest_path(repo, gone.digest))
    assert r.status_code == 202
    _r, descs = referrers_index(oci, repo, subject.digest)
    assert [d["digest"] for d in descs] == [keep.digest]


def test_repushing_a_referrer_does_not_duplicate_it(oci, repo):
    subject = oci.push_image(repo, layers=1)
    art = oci.push_artifact(repo, AT_SBOM, subject=subject)
    for ref in (art.digest, "again", "and-again"):
        assert oci.put_manifest(repo, ref, art.body, MT_OCI_MANIFEST).status_code == 201
    _r, descs = referrers_index(oci, repo, subject.digest)
    assert [d["digest"] for d in descs] == [art.digest]


def test_subject_is_not_its_own_referrer(oci, family):
    repo, subject, refs = family
    _r, descs = referrers_index(oci, repo, subject.digest)
    assert subject.digest not in {d["digest"] for d in descs}


@pytest.mark.parametrize("bad", ["sha256:xyz", "notadigest", "sha256:" + "A" * 64])
def test_invalid_subject_digest_is_400(oci, repo, bad):
    r = oci.referrers(repo, bad)
    assert_error(r, 400, "DIGEST_INVALID")


def test_referrers_of_an_index_subject(oci, repo):
    a = oci.push_image(repo, layers=1)
    idx = oci.push_index(repo, [a], tag="multi")
    art = oci.push_artifact(repo, AT_SIG, subject=idx, annotations={KEY: "on index"})
    _r, descs = referrers_index(oci, repo, idx.digest)
    assert [d["digest"] for d in descs] == [art.digest]
    # the child has none
    _r, descs = referrers_index(oci, repo, a.digest)
    assert descs == []


def test_chain_of_referrers(oci, repo):
    subject = oci.push_image(repo, layers=1)
    sbom = oci.push_artifact(repo, AT_SBOM, subject=subject)
    sig = oci.push_artifact(repo, AT_SIG, subject=sbom)
    _r, d1 = referrers_index(oci, repo, subject.digest)
    _r, d2 = referrers_index(oci, repo, sbom.digest)
    assert [d["digest"] for d in d1] == [sbom.digest]
    assert [d["digest"] for d in d2] == [sig.digest]


def test_list_larger_than_a_manifest_comes_in_pages(oci, repo):
    """distribution-spec: "A Link header MUST be included in the response when the
    descriptor list cannot be returned in a single manifest". Three referrers with 1.5 MB
    of annotations each make a list larger than a manifest may be (4 MiB, the most
    oras-go reads): it comes in pages within that size, following Link gives each
    referrer once, and the filter is carried along."""
    subject = oci.push_image(repo, tag="big", layers=1)
    want = set()
    for i in range(3):
        a = oci.push_artifact(repo, AT_CFG, subject=subject,
                              annotations={KEY: "%d" % i, "org.example.pad": "x" * 1500000})
        want.add(a.digest)
    for params in ({}, {"artifactType": AT_CFG}):
        got, pages = [], 0
        r, descs = referrers_index(oci, repo, subject.digest, **params)
        while True:
            pages += 1
            assert len(r.content) <= 4 * 1024 * 1024, (pages, len(r.content))
            got += [d["digest"] for d in descs]
            link = r.headers.get("Link")
            if not link:
                break
            m = LINK_NEXT_RE.search(link)
            assert m, link
            r = oci.get(m.group(1))
            assert r.status_code == 200, (r.status_code, r.text[:200])
            assert r.headers["Content-Type"] == MT_OCI_INDEX
            if params:
                assert r.headers.get("OCI-Filters-Applied") == "artifactType"
            descs = r.json()["manifests"]
        assert pages == 2, (params, pages)
        assert sorted(got) == sorted(want) and len(got) == 3, params


@pytest.mark.parametrize("last", ["not-a-digest", "\x01\x7f", "z" * 5000,
                                  "sha256:" + "f" * 64])
def test_a_hostile_last_cursor_is_only_a_position(oci, repo, last):
    """?last= is a position in digest order, whatever the client sends: garbage, control
    bytes or a huge value answer 200 with the referrers after it (none past the end, all
    before the start), never an error naming it and never a Link that echoes it."""
    subject = oci.push_image(repo, tag="cursor", layers=1)
    want = sorted(oci.push_artifact(repo, AT_CFG, subject=subject,
                                    annotations={KEY: "%d" % i}).digest for i in range(2))
    r = oci.get("/v2/%s/referrers/%s" % (repo, subject.digest), params={"last": last})
    assert r.status_code == 200, (r.status_code, r.text[:200])
    got = [d["digest"] for d in r.json()["manifests"]]
    assert got == [d for d in want if d > last]
    assert "Link" not in r.headers
