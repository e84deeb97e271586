"""Every counter of /metrics checked against what happened (issue 9, item 14): a push of known
bytes to r1, replicated to r2, and each region's counters moved by exactly what the two did.
On a replica, meridian_blob_bytes_committed_total once read 45 x 2^32 after three small blobs
(an uninitialised size), and meridian_blob_fsyncs_total never moved anywhere.
"""

import os

import requests

import tier
from conftest import parse_metrics
from regions import image_version, replication_summary, unique_repo, wait_for

pytest_plugins = ["geo_plugin"]


def metrics(region):
    r = requests.get(region.url + "/metrics", timeout=10)
    assert r.status_code == 200, r.status_code
    out = {}
    for name, labels, value in parse_metrics(r.text):
        key = (name,) + tuple(sorted(labels.items()))
        out[key] = value
    return out


def value(m, name, **labels):
    return m.get((name,) + tuple(sorted((k, str(v)) for k, v in labels.items())), 0.0)


def delta(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def prefix_dirs(region):
    """The blobs/sha256/XX directories of a region (each created once, with an fsync of its
    parent)."""
    root = os.path.join(region.data_dir, "blobs", "sha256")
    return set(os.listdir(root)) if os.path.isdir(root) else set()


def test_counters_match_a_push_and_its_replication_exactly(geo):
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("metrics")
    before = {r.name: metrics(r) for r in cluster}
    dirs_before = {r.name: prefix_dirs(r) for r in cluster}

    img = a.oci().push_image(repo, "v1", layers=2, layer_size=3500)  # config + 2 layers
    blobs = list(img.blobs.values())
    n_blobs = len(blobs)
    n_bytes = sum(len(x) for x in blobs)

    def b_completed():
        iv = image_version(b, repo, "v1", missing_ok=True)
        e = replication_summary(iv).get("r2") if iv else None
        return e and e["state"] == "Completed"
    wait_for(b_completed, 60, "r2 Completed")
    # the status event and the peer GETs are counted once they are answered: wait for r1 to
    # hear of r2's completion so that every request of the replication has ended
    wait_for(lambda: replication_summary(image_version(a, repo, "v1"))["r2"]["state"]
             == "Completed", 30, "r1 to see r2 Completed")
    after = {r.name: metrics(r) for r in cluster}

    for r in cluster:
        m0, m1 = before[r.name], after[r.name]
        new_dirs = len(prefix_dirs(r) - dirs_before[r.name])
        # each blob commit: the file, its directory, and the parent of a new prefix directory
        # (on S3 none: an object is durable once its PUT is answered)
        fsyncs = 2 * n_blobs + new_dirs if tier.on_fs_blobs() else 0
        assert delta(m0, m1, "meridian_blob_fsyncs_total") == fsyncs, r.name
        assert delta(m0, m1, "meridian_blobs_committed_total") == n_blobs, r.name
        assert delta(m0, m1, "meridian_blob_bytes_committed_total") == n_bytes, r.name
        assert value(m1, "meridian_uploads_in_progress") == 0, r.name
        assert value(m1, "meridian_webhook_deliveries_total", outcome="delivered") == 0

    ma0, ma1, mb0, mb1 = before["r1"], after["r1"], before["r2"], after["r2"]
    # client PUTs are counted where they were made; replication stores manifests without one
    assert delta(ma0, ma1, "meridian_manifests_put_total") == 1
    assert delta(mb0, mb1, "meridian_manifests_put_total") == 0
    # r1 answered: n_blobs uploads (POST 202, PUT 201), one manifest PUT 201, and r2's
    # fetch of each blob (GET 200)
    assert delta(ma0, ma1, "meridian_http_requests_total", route="upload_start", method="POST",
                 status="202") == n_blobs
    assert delta(ma0, ma1, "meridian_http_requests_total", route="upload", method="PUT",
                 status="201") == n_blobs
    assert delta(ma0, ma1, "meridian_http_requests_total", route="manifest", method="PUT",
                 status="201") == 1
    assert delta(ma0, ma1, "meridian_http_requests_total", route="blob", method="GET",
                 status="200") == n_blobs
    assert delta(mb0, mb1, "meridian_http_requests_total", route="blob", method="GET",
                 status="200") == 0
    assert delta(ma0, ma1, "meridian_http_bytes_in_total") >= n_bytes + len(img.body)
    assert delta(ma0, ma1, "meridian_http_bytes_out_total") >= n_bytes
    # the replica's view of its peer
    assert delta(mb0, mb1, "meridian_replication_bytes_copied_total", peer="r1") == n_bytes
    assert delta(ma0, ma1, "meridian_replication_bytes_copied_total", peer="r2") == 0
    for m, peer in ((mb1, "r1"), (ma1, "r2")):
        assert value(m, "meridian_replication_fetch_retries_total", peer=peer) == 0
        assert value(m, "meridian_replication_fetch_failures_total", peer=peer) == 0
        assert value(m, "meridian_replication_peer_up", peer=peer) == 1
        assert value(m, "meridian_replication_lag_events", peer=peer) == 0
