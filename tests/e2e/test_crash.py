"""kill -9 during pushes, then restart on the same data directory.

Invariants checked after every restart (DESIGN.md, "Invariants" 1-3):
- every acknowledged (201) blob and manifest pulls, with the right digest and bytes;
- nothing unacknowledged is half-visible: any blob or manifest GET that succeeds returns
  exactly the bytes that were pushed, and a visible manifest has all its blobs;
- DATA/tmp holds no leftovers, and every file under DATA/blobs is a whole blob whose content
  matches its name.

The run is driven by one random seed, printed at the start (set MERIDIAN_CRASH_SEED to replay
it; the timing of the kill still varies with the machine).
"""

import hashlib
import json
import os
import random
import threading
import time
from pathlib import Path

import requests

import tier
from clients_helpers import (OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, RegistryProcess,
                             sha256_digest, wait_for)

CYCLES = int(os.environ.get("MERIDIAN_CRASH_CYCLES", "4"))
PUSHERS = 4


class Ledger:
    """What the pushers attempted and what the registry acknowledged, across all cycles."""

    def __init__(self):
        self.lock = threading.Lock()
        self.attempted_blobs = {}      # (repo, digest) -> bytes
        self.acked_blobs = set()       # (repo, digest)
        self.attempted_manifests = {}  # (repo, tag) -> (digest, bytes, [blob digests])
        self.acked_manifests = set()   # (repo, tag)

    def attempt_blob(self, repo, data):
        digest = sha256_digest(data)
        with self.lock:
            self.attempted_blobs[(repo, digest)] = data
        return digest

    def ack_blob(self, repo, digest):
        with self.lock:
            self.acked_blobs.add((repo, digest))

    def attempt_manifest(self, repo, tag, data, blobs):
        with self.lock:
            self.attempted_manifests[(repo, tag)] = (sha256_digest(data), data, blobs)

    def ack_manifest(self, repo, tag):
        with self.lock:
            self.acked_manifests.add((repo, tag))


class Pusher(threading.Thread):
    """Pushes small images with raw requests until told to stop or the server goes away,
    mixing the three ways a blob can be uploaded (distribution-spec: Pushing Blobs)."""

    def __init__(self, cycle, n, seed, base_url, ledger, stop):
        super().__init__(daemon=True)
        self.rng = random.Random(seed)
        self.cycle, self.n = cycle, n
        self.base = base_url
        self.ledger = ledger
        self.stop_event = stop
        self.session = requests.Session()
        self.error = None
        self.images = 0

    def run(self):
        try:
            while not self.stop_event.is_set():
                self.push_image()
                self.images += 1
        except (requests.ConnectionError, requests.Timeout):
            pass  # the server was killed
        except Exception as e:  # noqa: BLE001 - reported by the test
            if not self.stop_event.is_set():
                self.error = e

    def location(self, r):
        loc = r.headers["Location"]
        return loc if loc.startswith("http") else self.base + loc

    def push_blob(self, repo, data):
        digest = self.ledger.attempt_blob(repo, data)
        s, rng = self.session, self.rng
        way = rng.choice(("monolithic-post", "post-put", "chunked"))
        if way == "monolithic-post":
            r = s.post(f"{self.base}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                       data=data, headers={"Content-Type": "application/octet-stream"},
                       timeout=30)
            if r.status_code == 202:  # the registry may decline the single POST
                r = s.put(self.location(r), params={"digest": digest}, data=data,
                          headers={"Content-Type": "application/octet-stream"}, timeout=30)
        else:
            r = s.post(f"{self.base}/v2/{repo}/blobs/uploads/", timeout=30)
            assert r.status_code == 202, (r.status_code, r.text)
            loc = self.location(r)
            body = data
            if way == "chunked":
                offset = 0
                while offset < len(data):
                    chunk = data[offset:offset + rng.randrange(1, 1 << 20)]
                    r = s.patch(loc, data=chunk, timeout=30, headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
                    assert r.status_code == 202, (r.status_code, r.text)
                    loc = self.location(r)
                    offset += len(chunk)
                body = b""
            r = s.put(loc, params={"digest": digest}, data=body,
                      headers={"Content-Type": "application/octet-stream"}, timeout=30)
        if r.status_code == 201:
            self.ledger.ack_blob(repo, digest)
        else:
            raise AssertionError(f"blob push {way} answered {r.status_code}: {r.text}")
        return {"digest": digest, "size": len(data)}

    def push_image(self):
        rng = self.rng
        # The same repositories in every cycle, so later cycles push into repositories that
        # went through a crash; tags are unique, so each names one manifest only.
        repo = f"crash/p{self.n}"
        layers = []
        for _ in range(rng.randrange(1, 4)):
            size = rng.choice((rng.randrange(1, 4096), rng.randrange(4096, 3 << 20)))
            layers.append(dict(self.push_blob(repo, rng.randbytes(size)),
                               mediaType=OCI_LAYER_GZIP))
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers",
                                        "diff_ids": [l["digest"] for l in layers]},
                             "nonce": rng.randrange(1 << 62)}).encode()
        config_desc = dict(self.push_blob(repo, config), mediaType=OCI_CONFIG)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": config_desc, "layers": layers}).encode()
        tag = f"c{self.cycle}-t{self.images}"
        self.ledger.attempt_manifest(repo, tag, manifest,
                                     [config_desc["digest"]] + [l["digest"] for l in layers])
        r = self.session.put(f"{self.base}/v2/{repo}/manifests/{tag}", data=manifest,
                             headers={"Content-Type": OCI_MANIFEST}, timeout=30)
        if r.status_code == 201:
            self.ledger.ack_manifest(repo, tag)
        else:
            raise AssertionError(f"manifest PUT answered {r.status_code}: {r.text}")


def get(url, **kw):
    return requests.get(url, timeout=60, **kw)


def verify(reg, ledger, seed):
    base = reg.url
    ctx = f"(seed {seed})"
    with ledger.lock:
        attempted_blobs = dict(ledger.attempted_blobs)
        acked_blobs = set(ledger.acked_blobs)
        attempted_manifests = dict(ledger.attempted_manifests)
        acked_manifests = set(ledger.acked_manifests)

    for (repo, digest), data in attempted_blobs.items():
        r = get(f"{base}/v2/{repo}/blobs/{digest}")
        if (repo, digest) in acked_blobs:
            assert r.status_code == 200, f"acknowledged blob {repo}@{digest} lost: " \
                                         f"{r.status_code} {ctx}"
        else:
            assert r.status_code in (200, 404), f"{repo}@{digest}: {r.status_code} {ctx}"
        if r.status_code == 200:
            assert r.content == data, f"blob {repo}@{digest} has wrong content " \
                                      f"({len(r.content)} of {len(data)} bytes) {ctx}"
            assert r.headers.get("Docker-Content-Digest", digest) == digest

    for (repo, tag), (digest, data, blobs) in attempted_manifests.items():
        acked = (repo, tag) in acked_manifests
        for ref in (tag, digest):
            r = get(f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
            if acked:
                assert r.status_code == 200, f"acknowledged manifest {repo}:{ref} lost: " \
                                             f"{r.status_code} {ctx}"
            else:
                assert r.status_code in (200, 404), f"{repo}:{ref}: {r.status_code} {ctx}"
            if r.status_code != 200:
                continue
            assert r.content == data, f"manifest {repo}:{ref} has wrong bytes {ctx}"
            assert r.headers.get("Docker-Content-Digest") == digest
            # Visible means pullable: every blob it references is served.
            for b in blobs:
                br = get(f"{base}/v2/{repo}/blobs/{b}")
                assert br.status_code == 200, f"manifest {repo}:{ref} visible but its blob " \
                                              f"{b} answers {br.status_code} {ctx}"
                assert sha256_digest(br.content) == b
    return len(acked_blobs), len(acked_manifests)


def check_data_dir(reg, seed):
    """Meridian's on-disk layout (DESIGN.md, "Storage on the embedded default")."""
    if reg.kind != "meridian":
        return
    data = Path(reg.data_dir)
    tmp = data / "tmp"
    if tmp.exists():
        leftovers = [str(p.relative_to(data)) for p in tmp.rglob("*")]
        assert not leftovers, f"leftovers in DATA/tmp after restart (seed {seed}): " \
                              f"{leftovers[:20]}"
    hex_len = {"sha256": 64, "sha512": 128}
    # "<alg>/<hex[:2]>/<hex>" under DATA/blobs, "<alg>/<hex>" under an S3 prefix's blobs/
    fan_out = 3 if tier.on_fs_blobs() else 2
    for rel, loc in tier.blob_store_entries(reg.data_dir):
        parts = rel.split("/")
        ok = (len(parts) == fan_out and parts[0] in hex_len
              and len(parts[-1]) == hex_len[parts[0]]
              and parts[-1].startswith(parts[1]))
        assert ok, f"unexpected blob store entry after restart: {rel} (seed {seed})"
        h = hashlib.new(parts[0], tier.stored_bytes(loc)).hexdigest()
        assert h == parts[-1], \
            f"stored blob {rel} does not match its digest after kill -9 (seed {seed})"


def test_kill9_during_pushes_keeps_acknowledged_writes(tmp_path):
    seed = int(os.environ.get("MERIDIAN_CRASH_SEED", random.randrange(1 << 32)))
    print(f"crash test seed: {seed} (replay with MERIDIAN_CRASH_SEED={seed})")
    rng = random.Random(seed)
    ledger = Ledger()
    reg = RegistryProcess(tmp_path / "registry")
    reg.start()
    try:
        for cycle in range(CYCLES):
            stop = threading.Event()
            pushers = [Pusher(cycle, n, rng.randrange(1 << 32), reg.url, ledger, stop)
                       for n in range(PUSHERS)]
            for p in pushers:
                p.start()
            # Let some pushes complete, then kill at a random moment of the traffic.
            acked_before = len(ledger.acked_manifests)
            try:
                wait_for(lambda: len(ledger.acked_manifests) > acked_before, 60,
                         "a first acknowledged manifest")
            finally:
                time.sleep(rng.uniform(0.05, 1.5))
                reg.kill9()
                stop.set()
                for p in pushers:
                    p.join(timeout=60)
            errors = [p.error for p in pushers if p.error]
            assert not errors, f"push failed before the kill (seed {seed}): {errors}"
            reg.start()
            n_blobs, n_manifests = verify(reg, ledger, seed)
            check_data_dir(reg, seed)
            with ledger.lock:
                in_flight = (len(ledger.attempted_blobs) - len(ledger.acked_blobs)
                             + len(ledger.attempted_manifests) - len(ledger.acked_manifests))
            print(f"cycle {cycle}: {sum(p.images for p in pushers)} images pushed, "
                  f"{n_blobs} blobs and {n_manifests} manifests acknowledged so far, all intact; "
                  f"{in_flight} pushes cut by kill -9 so far")
        reg.stop_and_check()
    finally:
        reg.kill9()
