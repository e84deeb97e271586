"""`kill -9` of a region in the middle of replicating a large image into it (a 200 MiB layer
over a bandwidth-capped link), then a restart on the same data directory: replication resumes
and completes; no acknowledged write is lost (in either region); and at no moment does the
region show a partial blob or a manifest it cannot serve in full: a blob is 404 until it is
complete, never truncated (checked continuously through /v2/ and on disk).

MERIDIAN_GEO_CRASH_MIB changes the layer size (default 200).
"""

import os
import threading
import time

import requests

import tier
from regions import (MIB, Pattern, blob_stream_digest, manifest_digest, push_blob_stream,
                     push_image_with_layer, unique_repo, wait_converged, wait_for,
                     wait_replicated_cli)

pytest_plugins = ["geo_plugin"]

SIZE = int(os.environ.get("MERIDIAN_GEO_CRASH_MIB", "200")) * MIB
LINK_BPS = 20 * MIB


class VisibilityWatcher(threading.Thread):
    """Polls a region while a blob and the manifest that needs it are being replicated into
    it, and records every observation that breaks "visible means pullable": a blob that is
    visible (HEAD 200) with the wrong length or wrong bytes at its end, a manifest that is
    visible before its layer, a file at the blob's final path on disk that is short."""

    def __init__(self, region, repo, tag, content):
        super().__init__(daemon=True)
        self.region = region
        self.repo = repo
        self.tag = tag
        self.content = content
        self.tail = content.chunk((content.size - 1) // (1 << 20))[-64:]
        self.violations = []
        self.checks = 0
        self.seen_complete = False
        self._halt = threading.Event()

    def stop(self):
        self._halt.set()
        self.join(30)

    def run(self):
        while not self._halt.is_set():
            try:
                self.check_once()
            except requests.RequestException:
                pass                      # the region is down (killed) or restarting
            self._halt.wait(0.2)

    def blob_url(self):
        return "%s/v2/%s/blobs/%s" % (self.region.url, self.repo, self.content.digest)

    def check_once(self):
        region, size = self.region, self.content.size
        m = requests.get("%s/v2/%s/manifests/%s" % (region.url, self.repo, self.tag),
                         timeout=5)
        h = requests.head(self.blob_url(), timeout=5)
        self.checks += 1
        if h.status_code not in (200, 404):
            self.violations.append("blob HEAD answered %d" % h.status_code)
        if h.status_code == 200:
            self.seen_complete = True
            length = int(h.headers.get("Content-Length", "-1"))
            if length != size:
                self.violations.append("blob visible with Content-Length %d of %d"
                                       % (length, size))
            r = requests.get(self.blob_url(), headers={"Range": "bytes=%d-%d"
                                                       % (size - 64, size - 1)}, timeout=5)
            if r.status_code != 206 or r.content != self.tail:
                self.violations.append("blob visible but its last 64 bytes are %d %r"
                                       % (r.status_code, r.content[:16]))
        if m.status_code == 200 and h.status_code != 200:
            self.violations.append("manifest visible while its layer answers %d"
                                   % h.status_code)
        hexd = self.content.digest.split(":", 1)[1]
        for loc in tier.stored_blobs(region.data_dir, hexd):
            n = tier.stored_size(loc)
            if n != size:
                self.violations.append("blob %s has %d of %d bytes" % (loc, n, size))


def test_kill9_while_replicating_a_large_image_then_restart_resumes(geo):
    cluster = geo(2, remove_data=True)
    a, b = cluster
    repo = unique_repo("crash")
    content = Pattern(seed=1234, size=SIZE)
    a.proxy.bandwidth(LINK_BPS, src=b.host)        # everything b fetches from a

    push_blob_stream(a, repo, content)
    watcher = VisibilityWatcher(b, repo, "big", content)
    watcher.start()
    big_digest, _m, _cfg = push_image_with_layer(a, repo, "big", content.digest, content.size)

    wait_for(lambda: a.proxy.stats(b.host)["down"] >= 0.4 * SIZE, 120,
             lambda: "r2 to fetch 40%% of the %d MiB layer (fetched: %s)"
             % (SIZE // MIB, a.proxy.stats(b.host)))
    # a write acknowledged by b just before it dies must survive
    mine = b.oci().push_image(repo, "mine")
    moved = a.proxy.stats(b.host)["down"]
    b.kill9()
    assert moved < SIZE, "the transfer finished before the kill: lower LINK_BPS"
    assert not watcher.seen_complete

    b.start()
    p = wait_replicated_cli(a, repo, "big", timeout="3m", timeout_s=240)
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    watcher.stop()
    assert watcher.checks > 10, "the watcher barely ran (%d checks)" % watcher.checks
    assert not watcher.violations, watcher.violations[:10]

    # the image is complete and exact in b
    assert manifest_digest(b, repo, "big") == big_digest
    assert blob_stream_digest(b, repo, content.digest) == (200, SIZE, content.digest)
    # nothing acknowledged is lost: b's last write, in both regions; a's image in a
    assert manifest_digest(b, repo, "mine") == mine.digest
    wait_converged(cluster, repos=[repo], expect={repo: {"big": big_digest,
                                                         "mine": mine.digest}})
    assert manifest_digest(a, repo, "big") == big_digest

    total = a.proxy.stats(b.host)["down"]
    print("bytes sent to r2 for a %d MiB layer with a kill -9 at %d MiB: %.2fx"
          % (SIZE // MIB, moved // MIB, total / SIZE))
    assert total < 2 * SIZE, "the layer was fetched more than twice over (%.2fx)" % (total / SIZE)


def test_sigstop_of_the_source_region_mid_transfer_then_continue(geo):
    """The region a transfer comes from freezes (SIGSTOP) mid-transfer for longer than any
    request timeout, then continues: the transfer completes and the target never shows a
    partial blob."""
    cluster = geo(2, remove_data=True)
    a, b = cluster
    repo = unique_repo("sigstop")
    size = 48 * MIB
    content = Pattern(seed=99, size=size)
    a.proxy.bandwidth(8 * MIB, src=b.host)
    push_blob_stream(a, repo, content)
    watcher = VisibilityWatcher(b, repo, "img", content)
    watcher.start()
    digest, _m, _cfg = push_image_with_layer(a, repo, "img", content.digest, size)
    wait_for(lambda: a.proxy.stats(b.host)["down"] >= size // 4, 60, "the transfer to start")
    a.sigstop()
    t0 = time.monotonic()
    # while a is frozen, b serves what it has and nothing partial
    wait_for(lambda: requests.get(b.url + "/readyz", timeout=5).status_code == 200, 10,
             "r2 to stay ready while r1 is frozen")
    wait_for(lambda: time.monotonic() - t0 > 8 and watcher.checks > 20, 30,
             "r2 to be watched while r1 is frozen")
    a.sigcont()
    p = wait_replicated_cli(a, repo, "img", timeout="2m", timeout_s=180)
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    watcher.stop()
    assert not watcher.violations, watcher.violations[:10]
    assert manifest_digest(b, repo, "img") == digest
    assert blob_stream_digest(b, repo, content.digest) == (200, size, content.digest)
