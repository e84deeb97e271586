"""Regions whose wall clocks disagree. Without NTP a region's clock can be off by minutes or
hours; replication orders writes by hybrid logical clocks (src/core/hlc.c), which move past
every clock they see, so a write made *after hearing* another wins whatever the clocks say.

r2 runs under libfaketime (Debian's `faketime` package), its wall clock an hour ahead of r1's
or an hour behind; its monotonic clock is left alone (timeouts stay real). Each test checks
what a user relies on: a push in either region is served by both and `image-version wait
--replicated` tells the truth; a tag moved, a manifest deleted and pushed again after hearing
the other region's write converge to the later write in both regions; a delete made in the
region behind still removes a manifest pushed in the region ahead; and the membership and
replication status read the same in both regions.

Every wait polls observable state against a deadline (regions.wait_for)."""

import pytest
import requests

from regions import (HTTP_TIMEOUT_S, MANIFEST_ACCEPT, faketime_env, faketime_missing,
                     manifest_digest, replication_states, unique_repo, wait_converged, wait_for,
                     wait_replicated_cli)

pytest_plugins = ["geo_plugin"]

pytestmark = pytest.mark.skipif(faketime_missing() is not None, reason=str(faketime_missing()))

SKEWS = ["+1h", "-1h"]


def skewed(skew):
    """region_env for geo(): r2's wall clock off by skew, its monotonic clock real."""
    env = dict(faketime_env(skew), FAKETIME_NO_CACHE="1")
    return lambda n: env if n == 2 else {}


def served_digest(region, repo, ref):
    """The digest region serves for repo:ref (GET with the body), or None."""
    r = requests.get("%s/v2/%s/manifests/%s" % (region.url, repo, ref),
                     headers={"Accept": MANIFEST_ACCEPT}, timeout=HTTP_TIMEOUT_S)
    return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None


def assert_wait_ok(region, repo, tag):
    p = wait_replicated_cli(region, repo, tag, timeout="1m", timeout_s=90)
    assert p.returncode == 0, (region.name, p.returncode, p.stdout[-1000:], p.stderr[-1000:])


def heard(dst, repo, tag, digest, what):
    wait_for(lambda: manifest_digest(dst, repo, tag) == digest, 60, what)


@pytest.fixture(params=SKEWS, ids=["r2-ahead", "r2-behind"])
def skewed_pair(request, geo):
    cluster = geo(2, region_env=skewed(request.param))
    return cluster


def test_the_skew_is_real(skewed_pair):
    """The harness check: r2's clock really is off (its Date header), so the other tests
    exercise what they say."""
    a, b = skewed_pair
    da = requests.get(a.url + "/v2/", timeout=HTTP_TIMEOUT_S).headers["Date"]
    db = requests.get(b.url + "/v2/", timeout=HTTP_TIMEOUT_S).headers["Date"]
    from email.utils import parsedate_to_datetime
    gap = abs((parsedate_to_datetime(db) - parsedate_to_datetime(da)).total_seconds())
    assert 3000 < gap < 4200, (da, db)


def test_a_push_in_either_region_is_served_by_both_and_wait_is_true(skewed_pair):
    a, b = skewed_pair
    repo = unique_repo("skew-push")
    for src, tag in ((a, "from-r1"), (b, "from-r2")):
        img = src.oci().push_image(repo, tag)
        for region in (a, b):
            assert_wait_ok(region, repo, tag)
            assert served_digest(region, repo, tag) == img.digest, (region.name, tag)
            for d, data in img.blobs.items():
                r = requests.get("%s/v2/%s/blobs/%s" % (region.url, repo, d),
                                 timeout=HTTP_TIMEOUT_S)
                assert r.status_code == 200 and r.content == data, (region.name, d)
            agg, states = replication_states(region, repo, tag)
            assert states == {"r1": "Completed", "r2": "Completed"}, (region.name, agg, states)


def test_a_tag_moved_after_hearing_wins_whatever_the_clocks(skewed_pair):
    """v1 pushed in one region, heard by the other, moved there: the move wins in both,
    in both directions (the region behind moves a tag set by the region ahead, and back)."""
    a, b = skewed_pair
    repo = unique_repo("skew-move")
    img1 = b.oci().push_image(repo, "v1")
    heard(a, repo, "v1", img1.digest, "r1 to hear v1 from r2")
    img2 = a.oci().push_image(repo, "v1")
    wait_converged(skewed_pair, repos=[repo], expect={repo: {"v1": img2.digest}},
                   what="v1 moved in r1 after hearing r2's")
    img3 = b.oci().push_image(repo, "v1")
    wait_converged(skewed_pair, repos=[repo], expect={repo: {"v1": img3.digest}},
                   what="v1 moved back in r2 after hearing r1's")
    for region in (a, b):
        assert_wait_ok(region, repo, "v1")
        assert served_digest(region, repo, "v1") == img3.digest, region.name


def test_a_delete_after_hearing_wins_and_a_push_after_it_comes_back(skewed_pair):
    """A manifest pushed in one region is deleted in the other after it heard of it: gone
    in both; pushed again (after the delete was heard): back in both, with a true status."""
    a, b = skewed_pair
    for pusher, deleter in ((b, a), (a, b)):
        repo = unique_repo("skew-delete")
        img = pusher.oci().push_image(repo, "v1")
        heard(deleter, repo, "v1", img.digest, "%s to hear v1" % deleter.name)
        r = deleter.oci().delete("/v2/%s/manifests/%s" % (repo, img.digest))
        assert r.status_code == 202, (r.status_code, r.text)
        wait_for(lambda: all(manifest_digest(x, repo, img.digest) is None for x in (a, b)), 60,
                 "the delete in %s to reach %s" % (deleter.name, pusher.name))
        assert pusher.oci().push_manifest(repo, "v1", img.body, img.media_type) == img.digest
        for region in (a, b):
            assert_wait_ok(region, repo, "v1")
            assert served_digest(region, repo, "v1") == img.digest, region.name
            agg, states = replication_states(region, repo, "v1")
            assert states == {"r1": "Completed", "r2": "Completed"}, (region.name, agg, states)


def test_membership_reads_ready_in_both_regions(skewed_pair):
    """Neither region takes the other for gone because their clocks differ."""
    a, b = skewed_pair
    repo = unique_repo("skew-members")
    img = a.oci().push_image(repo, "v1")
    heard(b, repo, "v1", img.digest, "r2 to hear v1")
    for region in (a, b):
        assert region.replication_states() == {"r1": "Ready", "r2": "Ready"}, region.name
