"""A 1 GiB layer round trip: pushed streamed (never held in memory, here or in the server),
pulled back with a streamed GET, with Range, and with skopeo; the server's peak RSS (VmHWM)
must not grow with the blob size (DESIGN.md: "memory does not grow with blob size").

MERIDIAN_LARGE_MIB changes the size (default 1024). Needs about 2.5x the size in free disk
(the registry's copy, skopeo's copy); skipped with a reason when the disk is short.
"""

import hashlib
import json
import os
import random
import shutil

import pytest
import requests

import tier
from clients_helpers import (OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST, ClientEnv, OciLayout,
                             RegistryProcess, sha256_digest, tool_missing)

MIB = 1 << 20
SIZE_MIB = int(os.environ.get("MERIDIAN_LARGE_MIB", "1024"))
SIZE = SIZE_MIB * MIB
# Peak RSS may grow by this much while the blob moves through the server, whatever its size.
# In S3 an upload holds two part buffers of up to 64 MiB (the part received, the part in
# flight: src/s3/blobstore_s3.c, PART_MAX; docs/performance.md) on top of that.
RSS_GROWTH_LIMIT_KIB = 96 * 1024 + (0 if tier.on_fs_blobs() else 2 * 64 * 1024)


class Content:
    """Deterministic SIZE-byte content, generated 1 MiB at a time: chunk i is a random base
    block stamped with i, so a shifted, repeated or dropped chunk changes the digest."""

    def __init__(self, seed, size):
        self.size = size
        self.base = random.Random(seed).randbytes(MIB)

    def chunk(self, i):
        stamp = i.to_bytes(8, "big") * 2
        return stamp + self.base[len(stamp):]

    def slice(self, start, end):
        """Bytes [start, end) without generating anything outside the chunks they touch."""
        out = bytearray()
        for i in range(start // MIB, (end - 1) // MIB + 1):
            c = self.chunk(i)
            lo = max(start - i * MIB, 0)
            hi = min(end - i * MIB, MIB)
            out += c[lo:hi]
        return bytes(out)

    def chunks(self, start, end):
        assert start % MIB == 0 and end % MIB == 0
        for i in range(start // MIB, end // MIB):
            yield self.chunk(i)

    def digest(self):
        h = hashlib.sha256()
        for c in self.chunks(0, self.size):
            h.update(c)
        return "sha256:" + h.hexdigest()


class SizedStream:
    """A file-like body of known length, so requests sends Content-Length (not chunked)
    and reads it piece by piece."""

    def __init__(self, it, length):
        self.it = it
        self.length = length
        self.pending = b""

    def __len__(self):
        return self.length

    def read(self, n=-1):
        while (n < 0 or len(self.pending) < n):
            nxt = next(self.it, None)
            if nxt is None:
                break
            self.pending += nxt
        if n < 0:
            n = len(self.pending)
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def workdir(tmp_path):
    yield tmp_path
    # Do not leave gigabytes in pytest's retained temp directories.
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_large_blob_push_pull_streamed(workdir):
    need = int(SIZE * 2.5) + 512 * MIB
    if free_bytes(workdir) < need:
        pytest.skip(f"needs {need >> 20} MiB free disk in {workdir}, "
                    f"has {free_bytes(workdir) >> 20} MiB")
    content = Content(seed=42, size=SIZE)
    digest = content.digest()
    reg = RegistryProcess(workdir / "registry")
    reg.start()
    try:
        _round_trip(reg, content, digest, workdir)
        reg.stop_and_check()
    finally:
        reg.kill9()


def _round_trip(reg, content, digest, workdir):
    base = reg.url
    repo = "e2e/large"
    s = requests.Session()

    # Warm up (one small push and pull), then take the baseline peak RSS.
    small = b"warm-up" * 1000
    r = s.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else base + loc
    r = s.put(loc, params={"digest": sha256_digest(small)}, data=small, timeout=30)
    assert r.status_code == 201, r.text
    assert s.get(f"{base}/v2/{repo}/blobs/{sha256_digest(small)}", timeout=30).content == small
    hwm_before = reg.vm_kib("VmHWM")

    # Push: first half as a streamed PATCH with chunked transfer encoding (as docker does),
    # second half as a chunked-upload PATCH with Content-Length and Content-Range (as
    # containers/image does), then PUT ?digest= with no body.
    half = (SIZE // 2) // MIB * MIB
    r = s.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else base + loc
    r = s.patch(loc, data=content.chunks(0, half), timeout=600,
                headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, (r.status_code, r.text)
    assert r.headers.get("Range") == f"0-{half - 1}"
    loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else base + loc
    r = s.patch(loc, data=SizedStream(content.chunks(half, SIZE), SIZE - half), timeout=600,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"{half}-{SIZE - 1}"})
    assert r.status_code == 202, (r.status_code, r.text)
    assert r.headers.get("Range") == f"0-{SIZE - 1}"
    loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else base + loc
    r = s.put(loc, params={"digest": digest}, timeout=600)
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.headers.get("Docker-Content-Digest") == digest

    r = s.head(f"{base}/v2/{repo}/blobs/{digest}", timeout=30)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == SIZE

    # Pull, streamed, and hash as it arrives.
    with s.get(f"{base}/v2/{repo}/blobs/{digest}", stream=True, timeout=600) as r:
        assert r.status_code == 200
        assert int(r.headers["Content-Length"]) == SIZE
        h = hashlib.sha256()
        n = 0
        for piece in r.iter_content(MIB):
            h.update(piece)
            n += len(piece)
    assert n == SIZE
    assert "sha256:" + h.hexdigest() == digest

    # Ranges: the very end, and one across a chunk boundary deep inside.
    for start, end in ((SIZE - 1000, SIZE - 1), (SIZE // 3 * 2 - 10, SIZE // 3 * 2 + MIB)):
        r = s.get(f"{base}/v2/{repo}/blobs/{digest}", headers={"Range": f"bytes={start}-{end}"},
                  timeout=60)
        assert r.status_code == 206, (r.status_code, r.text[:200])
        assert r.headers.get("Content-Range") == f"bytes {start}-{end}/{SIZE}"
        assert r.content == content.slice(start, end + 1)

    # An image around the layer, pulled by a real client into an OCI layout.
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [digest]}}).encode()
    r = s.post(f"{base}/v2/{repo}/blobs/uploads/", params={"digest": sha256_digest(config)},
               data=config, timeout=30)
    if r.status_code == 202:
        loc = r.headers["Location"]
        loc = loc if loc.startswith("http") else base + loc
        r = s.put(loc, params={"digest": sha256_digest(config)}, data=config, timeout=30)
    assert r.status_code == 201, r.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_TAR, "digest": digest, "size": SIZE}],
    }).encode()
    r = s.put(f"{base}/v2/{repo}/manifests/v1", data=manifest,
              headers={"Content-Type": OCI_MANIFEST}, timeout=30)
    assert r.status_code == 201, r.text

    if not tool_missing("skopeo"):
        clients = ClientEnv(workdir / "clients")
        dst = OciLayout(workdir / "pulled")
        try:
            clients.skopeo("copy", "--preserve-digests", "--src-tls-verify=false",
                           f"docker://{reg.host}/{repo}:v1", dst.ref("v1"), timeout_s=900)
            h = hashlib.sha256()
            with open(dst.blob_path(digest), "rb") as f:
                while True:
                    piece = f.read(4 * MIB)
                    if not piece:
                        break
                    h.update(piece)
            assert "sha256:" + h.hexdigest() == digest
        finally:
            shutil.rmtree(dst.path, ignore_errors=True)
            clients.cleanup()

    hwm_after = reg.vm_kib("VmHWM")
    print(f"server VmHWM: {hwm_before} KiB before, {hwm_after} KiB after a "
          f"{SIZE_MIB} MiB push and pulls")
    assert hwm_after - hwm_before < RSS_GROWTH_LIMIT_KIB, \
        f"server peak RSS grew by {(hwm_after - hwm_before) >> 10} MiB moving a " \
        f"{SIZE_MIB} MiB blob (before {hwm_before} KiB, after {hwm_after} KiB)"
