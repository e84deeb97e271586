"""A blackholed region (issue 9, item 12): regions r1, r2, r3, r2 the nearest peer of both
others; then r2's links accept connections and pass no bytes, in both directions. Replication
between the two healthy regions must not wait on r2: content is fetched only from regions
known to hold it, a peer that has gone silent is marked Unreachable within seconds and passed
over, and a source that does not answer is dropped within seconds.

Before: every fetch in r3 went to r2 first and waited 30 s (three times per call), so an
image pushed to r1 did not reach r3 for minutes; r2 was listed Unreachable after 16-26 s.
"""

import time

import requests

from regions import (MIB, manifest_digest, push_blob_stream, push_image_with_layer, Pattern,
                     unique_repo, wait_converged, wait_for, wait_replicated_cli)

pytest_plugins = ["geo_plugin"]

FAR_MS = 40          # added on the links into r1 and r3; r2's stays fast


def nearest_is(observer, name):
    reps = observer.replications()
    others = {loc: e.get("rttMs") or 1e9 for loc, e in reps.items() if loc != observer.name}
    return min(others, key=others.get) == name and reps[name]["state"] == "Ready"


def blackhole(cluster, region):
    """Every link of region passes no bytes: calls into it and calls it makes."""
    region.proxy.blackhole()
    for other in cluster:
        if other is not region:
            other.proxy.blackhole(src=region.host)


def test_blackholed_nearest_peer_does_not_stall_the_others(geo):
    cluster = geo(3)
    a, b, c = cluster
    for r in (a, c):
        r.proxy.latency(FAR_MS)
    wait_for(lambda: nearest_is(a, "r2") and nearest_is(c, "r2"), 30,
             "r2 to be the nearest peer of r1 and r3")
    repo = unique_repo("blackhole")
    before = a.oci().push_image(repo, "before", layers=2, layer_size=64 * 1024)
    wait_converged(cluster, repos=[repo], expect={repo: {"before": before.digest}})

    early = Pattern(seed=40, size=1 * MIB)
    push_blob_stream(a, repo, early)

    t0 = time.monotonic()
    blackhole(cluster, b)
    # at once, before anyone can know that r2 went silent: a push that splits (blob in r1,
    # manifest in r3) makes r3 fetch the blob from any peer, nearest first; r2 does not
    # answer, so r1 is raced beside it and wins
    digest, _m, _cfg = push_image_with_layer(c, repo, "hedged", early.digest, early.size)
    hedged = time.monotonic() - t0
    assert hedged < 3, "the split push waited %.1f s on the silent nearest region" % hedged
    assert manifest_digest(c, repo, "hedged") == digest

    # a peer that sends nothing is known as such within seconds, from both sides
    cluster.wait_state([a, c], "r2", "Unreachable", timeout_s=30)
    detected = time.monotonic() - t0
    assert detected < 8, "r2 was marked Unreachable only after %.1f s" % detected

    # r1 -> r3 and r3 -> r1 go on while r2 is silent
    t1 = time.monotonic()
    img_a = a.oci().push_image(repo, "from-r1", layers=3, layer_size=256 * 1024)
    img_c = c.oci().push_image(repo, "from-r3", layers=3, layer_size=256 * 1024)
    wait_for(lambda: manifest_digest(c, repo, "from-r1") == img_a.digest
             and manifest_digest(a, repo, "from-r3") == img_c.digest, 20,
             "the pushes to r1 and r3 to reach each other while r2 is blackholed")
    took = time.monotonic() - t1
    assert took < 10, "replication between the healthy regions took %.1f s" % took
    assert manifest_digest(b, repo, "from-r1") is None

    # a push that splits (blob in r1, manifest in r3) asks r3 to fetch the blob from any
    # peer: the silent nearest one is passed over
    layer = Pattern(seed=41, size=2 * MIB)
    push_blob_stream(a, repo, layer)
    t2 = time.monotonic()
    digest, _m, _cfg = push_image_with_layer(c, repo, "split", layer.digest, layer.size)
    split = time.monotonic() - t2
    assert split < 5, "the split push waited %.1f s on the silent region" % split
    assert manifest_digest(c, repo, "split") == digest

    # after the heal (frozen connections stay frozen), r2 catches up by itself
    for r in cluster:
        r.proxy.heal()
    final = wait_converged(cluster, repos=[repo], timeout_s=90,
                           what="r2 to catch up after the heal")
    assert final[repo]["from-r1"] == img_a.digest and final[repo]["from-r3"] == img_c.digest
    p = wait_replicated_cli(a, repo, "split", timeout="1m", timeout_s=90)
    assert p.returncode == 0, (p.stdout[-1000:], p.stderr[-1000:])
