"""Catalog (/v2/_catalog): repositories in lexical order, n/last pagination with a
Link rel="next" header."""

import urllib.parse

import pytest

from conftest import LINK_NEXT_RE, MT_OCI_MANIFEST


def catalog_all(oci):
    r = oci.catalog()
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers.get("Content-Type", "").startswith("application/json")
    return r.json().get("repositories") or []


@pytest.fixture(scope="module")
def populated(module_server_factory):
    """A fresh server holding exactly these repositories (each with a tagged image)."""
    srv = module_server_factory()
    oci = srv.oci()
    names = ["zeta", "alpha", "alpha/nested", "alpha/nested/deeper", "beta-1", "beta.2",
             "beta_3", "m0", "library/ubuntu", "x/y/z"]
    img = None
    for n in names:
        if img is None:
            img = oci.push_image(n, tag="latest", layers=1, layer_size=10)
        else:
            for d, b in img.blobs.items():
                oci.push_blob(n, b)
            assert oci.put_manifest(n, "latest", img.body, MT_OCI_MANIFEST).status_code == 201
    return srv, sorted(names)


def test_empty_registry_lists_no_repositories(server_factory):
    srv = server_factory()
    assert catalog_all(srv.oci()) == []


def test_catalog_lists_every_repository_in_order(populated):
    srv, names = populated
    assert catalog_all(srv.oci()) == names


def test_catalog_pagination(populated):
    srv, names = populated
    oci = srv.oci()
    r = oci.catalog(n=3)
    assert r.status_code == 200
    assert r.json()["repositories"] == names[:3]
    link = r.headers.get("Link")
    assert link and LINK_NEXT_RE.search(link), link
    assert urllib.parse.urlparse(LINK_NEXT_RE.search(link).group(1)).path == "/v2/_catalog"
    pages, resps = oci.paginate("/v2/_catalog", {"n": 3})
    assert [n for p in pages for n in p["repositories"]] == names
    assert len(pages) == 4
    assert "Link" not in resps[-1].headers


def test_catalog_last(populated):
    srv, names = populated
    oci = srv.oci()
    r = oci.catalog(last=names[4])
    assert r.status_code == 200
    assert r.json()["repositories"] == names[5:]
    r = oci.catalog(n=2, last=names[4])
    assert r.json()["repositories"] == names[5:7]
    r = oci.catalog(last="beta")  # not a repository: starts after it
    assert r.json()["repositories"] == [n for n in names if n > "beta"]


def test_catalog_n_edges(populated):
    srv, names = populated
    oci = srv.oci()
    r = oci.catalog(n=0)
    assert r.status_code == 200
    assert r.json().get("repositories") in ([], None)
    assert "Link" not in r.headers
    r = oci.catalog(n=len(names))
    assert r.json()["repositories"] == names
    assert "Link" not in r.headers
    r = oci.catalog(n=1000)
    assert r.json()["repositories"] == names
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", ["abc", "-3", "2.5"])
def test_catalog_invalid_n(populated, n):
    srv, _ = populated
    r = srv.oci().catalog(n=n)
    assert r.status_code == 400, (n, r.status_code, r.text)


def test_catalog_head_answers_like_get(populated):
    """RFC 9110 9.1 and 9.3.2: what answers GET answers HEAD, with the same headers."""
    srv, _ = populated
    oci = srv.oci()
    get = oci.get("/v2/_catalog", params={"n": 3})
    r = oci.head("/v2/_catalog", params={"n": 3})
    assert r.status_code == 200, (r.status_code, r.headers)
    assert r.content == b""
    for h in ("Content-Type", "Content-Length", "Link"):
        assert r.headers.get(h) == get.headers.get(h), h


def test_new_repository_appears_and_failed_push_adds_none(server_factory):
    srv = server_factory()
    oci = srv.oci()
    oci.push_image("cat/new", tag="v1", layers=1)
    assert catalog_all(oci) == ["cat/new"]
    r = oci.put_manifest("cat/rejected", "v1", b"not json", MT_OCI_MANIFEST)
    assert r.status_code == 400
    assert catalog_all(oci) == ["cat/new"]
