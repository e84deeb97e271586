"""Per-artifact replication status under faults (docs/replication.md, "Image-version JSON"): while
a region cannot get an image, any region reports it Pending or InProgress there, the aggregated
state is not Completed and `meridian image-version wait --replicated --timeout 5s` exits 2;
after the heal the same wait exits 0 and every region reports Completed with every byte copied.
A transfer frozen mid-way (a blackholed link: the connection stays open and silent) is detected
as stalled and resumed over a new connection.
"""

import json
import secrets
import time

from regions import (MIB, ARTIFACT_STATES, Pattern, blob_stream_digest, canonical_json,
                     image_version, manifest_digest, push_blob_stream, push_image_with_layer,
                     replication_states, replication_summary, sha256_digest, unique_repo,
                     wait_for, wait_replicated_cli)

pytest_plugins = ["geo_plugin"]


def aggregate(states):
    """The documented aggregation of per-region states."""
    if "Failed" in states:
        return "Failed"
    if all(s == "Completed" for s in states):
        return "Completed"
    if any(s in ("InProgress", "Completed") for s in states):
        return "InProgress"
    return "Pending"


def check_document(iv, repo, tag, digest, regions):
    assert iv["repository"] == repo and iv["reference"] == tag and iv["digest"] == digest, iv
    rs = iv["replicationStatus"]
    summary = replication_summary(iv)
    assert set(summary) == set(regions), (sorted(summary), iv)
    for region, e in summary.items():
        assert e["state"] in ARTIFACT_STATES, (region, e)
        assert 0 <= e["bytesCopied"] <= e["bytesTotal"], (region, e)
        assert isinstance(e.get("updatedAt"), str), (region, e)
    assert rs["aggregatedState"] == aggregate([e["state"] for e in summary.values()]), iv
    return summary


def test_status_while_a_region_is_cut_off_then_healed(geo):
    cluster = geo(3)
    a, b, c = cluster
    cluster.partition([b], [a, c])
    repo = unique_repo("status")
    img = a.oci().push_image(repo, "v1", layers=2, layer_size=256 * 1024)

    def a_sees_c_done_b_not():
        agg, states = replication_states(a, repo, "v1")
        return states.get("r1") == "Completed" and states.get("r3") == "Completed" and (agg, states)
    agg, states = wait_for(a_sees_c_done_b_not, 60, "r1 and r3 Completed as seen from r1")
    assert states["r2"] in ("Pending", "InProgress"), states
    assert agg == "InProgress", (agg, states)
    # the same from r3, and in the CLI's JSON
    iv = json.loads(c.cli("image-version", "show", "%s:v1" % repo, "--expand",
                          "replication-status", "--output", "json").stdout)
    summary = check_document(iv, repo, "v1", img.digest, cluster.names)
    assert summary["r2"]["state"] in ("Pending", "InProgress"), iv
    # checked at the end: r2 still needs every byte of the image, so "bytes copied of bytes
    # needed" must not read 0 of 0
    r2_while_cut = summary["r2"]
    size = summary["r1"]["bytesTotal"]
    table = a.cli("image-version", "show", "%s:v1" % repo, "--expand",
                  "replication-status").stdout
    for name in cluster.names:
        assert name in table, table

    t0 = time.monotonic()
    p = wait_replicated_cli(a, repo, "v1", timeout="5s", timeout_s=60)
    took = time.monotonic() - t0
    assert p.returncode == 2, ("wait must time out (exit 2) while r2 is cut off",
                               p.returncode, p.stdout[-1000:], p.stderr[-1000:])
    assert 4 <= took < 30, took
    assert "r2" in p.stdout + p.stderr, (p.stdout, p.stderr)

    cluster.heal()
    p = wait_replicated_cli(a, repo, "v1", timeout="2m", timeout_s=150)
    assert p.returncode == 0, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])
    for r in cluster:
        iv = image_version(r, repo, "v1")
        summary = check_document(iv, repo, "v1", img.digest, cluster.names)
        assert iv["replicationStatus"]["aggregatedState"] == "Completed", (r.name, iv)
        for region, e in summary.items():
            assert e["state"] == "Completed" and e["bytesCopied"] == e["bytesTotal"] > 0, (
                r.name, region, e)
    assert manifest_digest(b, repo, "v1") == img.digest
    assert r2_while_cut["bytesCopied"] < r2_while_cut["bytesTotal"] == size, (
        "while cut off, r2 was reported with %d of %d bytes (the image has %d)"
        % (r2_while_cut["bytesCopied"], r2_while_cut["bytesTotal"], size))


def test_status_through_a_stalled_transfer(geo):
    cluster = geo(2, remove_data=True)
    a, b = cluster
    repo = unique_repo("stall")
    size = 48 * MIB
    content = Pattern(seed=17, size=size)
    a.proxy.bandwidth(8 * MIB, src=b.host)
    push_blob_stream(a, repo, content)
    digest, _m, _cfg = push_image_with_layer(a, repo, "v1", content.digest, size)

    progress = []

    def b_in_progress():
        for observer in (b, a):
            iv = image_version(observer, repo, "v1", missing_ok=True)
            e = replication_summary(iv).get("r2") if iv else None
            if e and e["state"] == "InProgress" and 0 < e["bytesCopied"] < e["bytesTotal"]:
                progress.append((observer.name, e))
                return e
        return None
    wait_for(b_in_progress, 60, "r2 InProgress with some bytes copied", interval_s=0.2)
    wait_for(lambda: a.proxy.stats(b.host)["down"] > size // 4, 60, "a quarter of the layer")

    # the link goes silent: open connections freeze for good, new ones are never answered
    a.proxy.blackhole(src=b.host)
    agg, states = replication_states(a, repo, "v1")
    assert states["r2"] in ("Pending", "InProgress") and agg != "Completed", (agg, states)
    p = wait_replicated_cli(a, repo, "v1", timeout="5s", timeout_s=60)
    assert p.returncode == 2, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])
    e = replication_summary(image_version(b, repo, "v1"))["r2"]
    assert e["state"] in ("Pending", "InProgress") and e["bytesCopied"] < size, e
    # what b holds itself (as a peer asks: a client's GET would fetch it from a peer)
    assert b.get("/v2/%s/blobs/%s" % (repo, content.digest),
                 headers={"Meridian-Peer-Fetch": "1"}).status_code == 404

    a.proxy.heal(src=b.host)
    a.proxy.bandwidth(None, src=b.host)
    p = wait_replicated_cli(a, repo, "v1", timeout="2m", timeout_s=150)
    assert p.returncode == 0, ("the frozen transfer was never detected as stalled",
                               p.returncode, p.stdout[-1000:], p.stderr[-1000:])
    assert blob_stream_digest(b, repo, content.digest) == (200, size, content.digest)
    assert manifest_digest(b, repo, "v1") == digest
    assert a.proxy.stats(b.host)["down"] < 2 * size


def test_progress_of_a_copy_is_visible_from_every_region(geo):
    """Issue 9 item 13: r2's copy of a slow layer shows its bytes moving as seen from r1 (the
    origin) and r3, not only from r2 itself (it used to read bytesCopied 0 elsewhere until it
    jumped to Completed)."""
    cluster = geo(3, remove_data=True)
    a, b, c = cluster
    for r in (a, c):
        r.proxy.bandwidth(3 * MIB, src=b.host)
    repo = unique_repo("progress-everywhere")
    content = Pattern(seed=29, size=24 * MIB)
    push_blob_stream(a, repo, content)
    push_image_with_layer(a, repo, "v1", content.digest, content.size)

    seen = {}

    def moving_everywhere():
        for observer in (a, c):
            iv = image_version(observer, repo, "v1", missing_ok=True)
            e = replication_summary(iv).get("r2") if iv else None
            if e and e["state"] == "InProgress" and 0 < e["bytesCopied"] < e["bytesTotal"]:
                seen.setdefault(observer.name, []).append(e["bytesCopied"])
        return all(len(set(seen.get(n, []))) >= 2 for n in ("r1", "r3"))
    wait_for(moving_everywhere, 60, lambda: "r2's bytes to be seen moving from r1 and r3 "
             "(seen: %s)" % seen, interval_s=0.2)
    p = wait_replicated_cli(a, repo, "v1", timeout="2m", timeout_s=150)
    assert p.returncode == 0, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])
    for observer in cluster:
        e = replication_summary(image_version(observer, repo, "v1"))["r2"]
        assert e["state"] == "Completed" and e["bytesCopied"] == e["bytesTotal"], (
            observer.name, e)


def test_wait_reports_progress_and_exits_zero_at_once_when_done(geo):
    """`wait` on an image that is already everywhere returns 0 at once; on one still moving it
    prints progress lines while it waits."""
    cluster = geo(2, remove_data=True)
    a, b = cluster
    repo = unique_repo("progress")
    a.proxy.bandwidth(2 * MIB, src=b.host)
    content = Pattern(seed=23, size=12 * MIB)
    push_blob_stream(a, repo, content)
    push_image_with_layer(a, repo, "slow", content.digest, content.size)
    p = wait_replicated_cli(a, repo, "slow", timeout="2m", timeout_s=150)
    assert p.returncode == 0, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    assert len(lines) >= 2, ("wait printed no progress while it waited", p.stdout, p.stderr)
    t0 = time.monotonic()
    p = wait_replicated_cli(b, repo, "slow", timeout="30s", timeout_s=60)
    assert p.returncode == 0 and time.monotonic() - t0 < 10, (p.returncode, p.stdout)


DOCKER_MT = "application/vnd.docker.distribution.manifest.v2+json"


def foreign(digest, size):
    """A Docker foreign layer's descriptor, fetched by clients from its urls."""
    return {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": digest, "size": size, "urls": ["https://example.invalid/base.tar.gz"]}


def push_windows_image(oci, repo, tag, layers):
    """Pushes a Windows config and a Docker manifest of it with the given layer
    descriptors; returns the manifest bytes."""
    config = canonical_json({"architecture": "amd64", "os": "windows",
                             "rootfs": {"type": "layers", "diff_ids": []}})
    oci.push_blob(repo, config)
    body = canonical_json({
        "schemaVersion": 2, "mediaType": DOCKER_MT,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": sha256_digest(config), "size": len(config)},
        "layers": layers})
    oci.push_manifest(repo, tag, body, DOCKER_MT)
    return body


def test_image_with_an_external_layer_replicates_and_completes(geo):
    """An image whose foreign layer was not pushed (clients fetch it from its urls) is a
    complete image: the other region serves it and reports it Completed, and nothing waits
    for the layer's bytes."""
    cluster = geo(2, remove_data=True)
    a, b = cluster
    repo = unique_repo("foreign")
    oci = a.oci()
    layer = secrets.token_bytes(4096)
    oci.push_blob(repo, layer)
    body = push_windows_image(oci, repo, "ltsc", [
        foreign("sha256:" + "ab" * 32, 123456789),
        {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "digest": sha256_digest(layer), "size": len(layer)}])
    mt = DOCKER_MT
    p = wait_replicated_cli(a, repo, "ltsc", timeout="60s", timeout_s=90)
    assert p.returncode == 0, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])
    got = b.oci().get("/v2/%s/manifests/ltsc" % repo, headers={"Accept": mt})
    assert got.status_code == 200 and got.content == body, got.status_code
    assert b.oci().get_blob(repo, sha256_digest(layer)) == layer


def test_external_layer_pushed_into_another_region_is_fetched_with_the_push(geo):
    """The bytes of a foreign layer pushed into the repository in another region are
    fetched before the manifest is accepted, as any layer's are (a push never splits): the
    layer is then held here like any other."""
    cluster = geo(2, remove_data=True)
    a, b = cluster
    repo = unique_repo("foreign-split")
    ext = secrets.token_bytes(5000)
    b.oci().push_blob(repo, ext)
    oci = a.oci()
    push_windows_image(oci, repo, "split", [foreign(sha256_digest(ext), len(ext))])
    # HEAD does not fetch on demand: the bytes are here because the push fetched them
    assert oci.blob_exists(repo, sha256_digest(ext))
    assert oci.get_blob(repo, sha256_digest(ext)) == ext
