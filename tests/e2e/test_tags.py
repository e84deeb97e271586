"""Tags: listing, lexical order, n/last pagination with Link rel="next", tag moves,
tag grammar."""

import urllib.parse

import pytest

from conftest import (LINK_NEXT_RE, MT_OCI_MANIFEST, SPEC_ERROR_CODES, assert_error,
                      error_codes, path_of)


@pytest.fixture
def tagged_repo(oci, repo):
    """One image under 7 tags, pushed out of order."""
    img = oci.push_image(repo, layers=1, layer_size=100)
    tags = ["v1.0", "latest", "1", "a_b", "v1.0-rc1", "zeta", "beta"]
    for t in tags:
        assert oci.put_manifest(repo, t, img.body, MT_OCI_MANIFEST).status_code == 201
    return repo, sorted(tags), img


def test_list_tags(oci, tagged_repo):
    repo, tags, _ = tagged_repo
    r = oci.tags(repo)
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("application/json")
    body = r.json()
    assert body["name"] == repo
    assert body["tags"] == tags
    assert "Link" not in r.headers


def test_list_tags_of_unknown_repository(oci):
    assert_error(oci.tags("e2e/tags/never/pushed"), 404, "NAME_UNKNOWN")


def test_list_tags_of_repository_without_tags(oci, repo):
    oci.push_image(repo, layers=1)  # by digest only
    r = oci.tags(repo)
    assert r.status_code == 200
    assert r.json()["name"] == repo
    assert r.json().get("tags") in ([], None)


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_n_limits_and_link_points_to_the_rest(oci, tagged_repo, n):
    repo, tags, _ = tagged_repo
    r = oci.tags(repo, n=n)
    assert r.status_code == 200
    assert r.json()["tags"] == tags[:n]
    link = r.headers.get("Link")
    assert link, "a truncated page must carry Link rel=next"
    m = LINK_NEXT_RE.search(link)
    assert m, link
    nxt = urllib.parse.urlparse(m.group(1))
    assert nxt.path == "/v2/%s/tags/list" % repo
    # following it gives the next page
    r2 = oci.get(m.group(1))
    assert r2.status_code == 200
    assert r2.json()["tags"] == tags[n:2 * n]


def test_following_links_yields_every_tag_once(oci, tagged_repo):
    repo, tags, _ = tagged_repo
    pages, resps = oci.paginate("/v2/%s/tags/list" % repo, {"n": 2})
    got = [t for p in pages for t in p["tags"]]
    assert got == tags
    assert len(pages) == 4
    assert "Link" not in resps[-1].headers


def test_n_at_or_above_the_count_has_no_link(oci, tagged_repo):
    repo, tags, _ = tagged_repo
    for n in (len(tags), len(tags) + 1, 1000):
        r = oci.tags(repo, n=n)
        assert r.status_code == 200
        assert r.json()["tags"] == tags
        assert "Link" not in r.headers, (n, r.headers.get("Link"))


def test_n_zero_is_empty_without_link(oci, tagged_repo):
    repo, _tags, _ = tagged_repo
    r = oci.tags(repo, n=0)
    assert r.status_code == 200
    assert r.json().get("tags") in ([], None)
    assert "Link" not in r.headers


def test_last_without_n(oci, tagged_repo):
    repo, tags, _ = tagged_repo
    r = oci.tags(repo, last=tags[2])
    assert r.status_code == 200
    assert r.json()["tags"] == tags[3:]


def test_n_and_last(oci, tagged_repo):
    repo, tags, _ = tagged_repo
    r = oci.tags(repo, n=2, last=tags[1])
    assert r.status_code == 200
    assert r.json()["tags"] == tags[2:4]


def test_last_that_is_not_a_tag(oci, tagged_repo):
    repo, tags, _ = tagged_repo
    r = oci.tags(repo, last="m")  # between "latest" and "v1.0"
    assert r.status_code == 200
    assert r.json()["tags"] == [t for t in tags if t > "m"]
    r = oci.tags(repo, last="zzzz")
    assert r.status_code == 200
    assert r.json().get("tags") in ([], None)


@pytest.mark.parametrize("n", ["abc", "-1", "1.5", ""])
def test_invalid_n(oci, tagged_repo, n):
    repo, _tags, _ = tagged_repo
    r = oci.tags(repo, n=n)
    assert r.status_code == 400, (n, r.status_code, r.text)


def test_invalid_n_error_code_is_from_the_spec(oci, tagged_repo):
    """A 4xx JSON body's code MUST be one of the spec's table (distribution-spec "Error
    Codes"): not distribution's PAGINATION_NUMBER_INVALID."""
    repo, _tags, _ = tagged_repo
    r = oci.tags(repo, n="abc")
    assert r.status_code == 400
    assert error_codes(r) and set(error_codes(r)) <= SPEC_ERROR_CODES, r.text


@pytest.mark.parametrize("n", ["100001", "99999999999999999999999"])
def test_n_past_the_page_size_is_not_an_error(oci, tagged_repo, n):
    """An n larger than the registry's page is a valid request: the spec lets a response
    hold fewer than n tags when a Link names the rest, so it is served, not refused."""
    repo, tags, _ = tagged_repo
    r = oci.tags(repo, n=n)
    assert r.status_code == 200, (n, r.status_code, r.text)
    assert r.json()["tags"] == tags
    assert "Link" not in r.headers


def test_head_answers_like_get(oci, tagged_repo):
    """RFC 9110 9.1 and 9.3.2: what answers GET answers HEAD, with the same headers."""
    repo, _tags, _ = tagged_repo
    path = "/v2/%s/tags/list" % repo
    get = oci.get(path, params={"n": 2})
    r = oci.head(path, params={"n": 2})
    assert r.status_code == 200, (r.status_code, r.headers)
    assert r.content == b""
    for h in ("Content-Type", "Content-Length", "Link"):
        assert r.headers.get(h) == get.headers.get(h), h
    assert_error(oci.head("/v2/e2e/tags/never/pushed/tags/list"), 404)


def test_many_tags_paginate_completely(oci, repo):
    img = oci.push_image(repo, layers=1, layer_size=10)
    tags = ["t%03d" % i for i in range(130)]
    for t in reversed(tags):
        assert oci.put_manifest(repo, t, img.body, MT_OCI_MANIFEST).status_code == 201
    assert oci.tag_list(repo) == tags
    pages, _ = oci.paginate("/v2/%s/tags/list" % repo, {"n": 17})
    got = [t for p in pages for t in p["tags"]]
    assert got == tags
    assert all(len(p["tags"]) == 17 for p in pages[:-1])


@pytest.mark.parametrize("last", ["%00", "a%00b", "%01%1f%7f", "%ff%fe", "A" * 8192,
                                  "%E2%84%AA"])
def test_hostile_last_is_answered_sanely(oci, tagged_repo, last):
    """`last` is not checked against the tag grammar (it need not be a tag): NUL and control
    bytes, bytes that are not UTF-8 and a long value page like any other string, on every
    tier, or are refused as a bad request (an encoded NUL by the HTTP layer, for every
    request; bytes that are not UTF-8 as a bad `last`); never a server error."""
    repo, tags, _ = tagged_repo
    r = oci.get("/v2/%s/tags/list?n=3&last=%s" % (repo, last))
    assert r.status_code in (200, 400), (r.status_code, r.text[:200])
    if r.status_code == 200:
        got = r.json().get("tags") or []
        assert len(got) <= 3 and all(t in tags for t in got), got
    else:
        err = r.json()["errors"][0]
        assert err["code"] == "UNSUPPORTED" or (err["code"] == "BAD_REQUEST" and
                                                "malformed request" in err["message"]), err


def test_mixed_case_tags_page_consistently(oci, repo):
    img = oci.push_image(repo, layers=1, layer_size=10)
    tags = ["B", "a", "C", "b", "A", "c", "_x", "9"]
    for t in tags:
        assert oci.put_manifest(repo, t, img.body, MT_OCI_MANIFEST).status_code == 201
    full = oci.tag_list(repo)
    # distribution-spec: "lexical order (i.e. case-insensitive alphanumeric order)";
    # tags equal but for case come in byte order
    assert full == ["9", "_x", "A", "a", "B", "b", "C", "c"], full
    assert full == sorted(tags, key=lambda t: (t.lower(), t))
    for n in (1, 2, 3):
        pages, _ = oci.paginate("/v2/%s/tags/list" % repo, {"n": n})
        assert [t for p in pages for t in p["tags"]] == full, n
    # `last` need not be a tag, nor in a tag's case
    r = oci.get("/v2/%s/tags/list" % repo, params={"n": 2, "last": "a"})
    assert r.json()["tags"] == ["B", "b"]
    r = oci.get("/v2/%s/tags/list" % repo, params={"n": 1, "last": "B"})
    assert r.json()["tags"] == ["b"]
    # only ASCII letters fold, on every tier (PostgreSQL's lower() of a database in a
    # UTF-8 locale would fold the Kelvin sign to "k"): nothing sorts after it
    r = oci.get("/v2/%s/tags/list" % repo, params={"n": 5, "last": "\u212a"})
    assert r.status_code == 200 and r.json()["tags"] == [], r.text


def test_tag_moves_to_the_new_manifest(oci, repo):
    a = oci.push_image(repo, tag="moving", layers=1)
    b = oci.push_image(repo, tag="moving", layers=1)
    r = oci.get_manifest(repo, "moving")
    assert r.content == b.body
    assert r.headers.get("Docker-Content-Digest") == b.digest
    # the old manifest stays pullable by digest
    assert oci.get_manifest(repo, a.digest).content == a.body
    assert oci.tag_list(repo) == ["moving"]
    # and back again
    assert oci.put_manifest(repo, "moving", a.body, MT_OCI_MANIFEST).status_code == 201
    assert oci.get_manifest(repo, "moving").content == a.body


def test_tag_can_move_across_manifest_types(oci, repo):
    img = oci.push_image(repo, tag="t", layers=1)
    idx = oci.push_index(repo, [img], tag="t")
    r = oci.get_manifest(repo, "t")
    assert r.content == idx.body
    assert r.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"


@pytest.mark.parametrize("tag", ["a", "_", "A1", "x" * 128, "v1.2.3-rc.1_build", "0", "__"])
def test_valid_tag_grammar(oci, repo, tag):
    img = oci.push_image(repo, layers=1, layer_size=10)
    r = oci.put_manifest(repo, tag, img.body, MT_OCI_MANIFEST)
    assert r.status_code == 201, (tag, r.status_code, r.text)
    assert oci.get_manifest(repo, tag).content == img.body
    assert tag in oci.tag_list(repo)


def test_tag_location_points_to_the_manifest(oci, repo):
    img = oci.push_image(repo, layers=1)
    r = oci.put_manifest(repo, "here", img.body, MT_OCI_MANIFEST)
    assert r.status_code == 201
    assert path_of(r.headers["Location"]) in ("/v2/%s/manifests/here" % repo,
                                              "/v2/%s/manifests/%s" % (repo, img.digest))


def test_a_list_without_n_longer_than_a_page_comes_with_a_link(server_factory, repo):
    """Without n the whole list is asked for; one longer than the server's page
    (--list-page-max, 100 000 by default: a reply is built in memory) comes a page at a time
    with a Link to the rest, instead of being cut short. The catalog pages the same way."""
    srv = server_factory("--list-page-max", "3")
    oci = srv.oci()
    img = oci.push_image(repo, layers=1, layer_size=10)
    tags = ["t%d" % i for i in range(8)]
    for t in tags:
        assert oci.put_manifest(repo, t, img.body, MT_OCI_MANIFEST).status_code == 201
    r = oci.tags(repo)
    assert r.status_code == 200
    assert r.json()["tags"] == tags[:3]
    assert LINK_NEXT_RE.match(r.headers.get("Link", "")), r.headers
    pages, _ = oci.paginate("/v2/%s/tags/list" % repo, {})
    assert [t for p in pages for t in p["tags"]] == tags
    r = oci.tags(repo, n=50)  # a larger n is served a page at a time too
    assert r.json()["tags"] == tags[:3] and "Link" in r.headers
    others = ["%s-%d" % (repo, i) for i in range(4)]
    for name in others:
        oci.push_image(name, layers=1, layer_size=10)
    pages, _ = oci.paginate("/v2/_catalog", {})
    assert [n for p in pages for n in p["repositories"]] == sorted([repo] + others)
    assert all(len(p["repositories"]) == 3 for p in pages[:-1])


@pytest.mark.parametrize("value", ["0", "100001", "x"])
def test_list_page_max_out_of_range_is_refused_at_start(server_factory, value):
    with pytest.raises(RuntimeError):
        server_factory("--list-page-max", value)
