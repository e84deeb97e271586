"""Helpers for the real-client end-to-end tests (test_clients, test_crash, test_large).

- RegistryProcess: starts `meridian serve` (or, with MERIDIAN_E2E_SERVER=distribution,
  Debian's docker-registry, the reference the tests were first developed against) on a
  loopback port with its own data directory; stops it by PID.
- OciLayout: writes OCI image layouts (layer tarballs, configs, manifests, indexes) with no
  network, so that skopeo can push them with `oci:DIR:TAG`.
- ClientEnv: runs skopeo / buildah / podman with a private policy, auth file and storage.

Nothing here depends on conftest.py; the fixtures at the bottom are imported by the test files.
"""

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import requests

import tier

REPO_ROOT = Path(__file__).resolve().parents[2]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def wait_for(cond, timeout_s, what, interval_s=0.05):
    """Poll cond() until it returns a true value; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_kind():
    return os.environ.get("MERIDIAN_E2E_SERVER", "meridian")


def meridian_bin():
    return Path(os.environ.get("MERIDIAN_BIN", REPO_ROOT / "build" / "meridian"))


# ---------------------------------------------------------------------------------------------
# Server processes


class RegistryProcess:
    """One registry process on 127.0.0.1 with its own data directory.

    start() may be called again after kill9()/stop() to restart on the same data directory
    (the port may change). `host` is HOST:PORT as clients write it, `url` the base URL.
    """

    LISTEN_RE = re.compile(r"listening on http://(127\.0\.0\.1:\d+)")

    def __init__(self, workdir, kind=None, extra_args=()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.kind = kind or server_kind()
        self.extra_args = list(extra_args)
        self.proc = None
        self.host = None
        self.starts = 0
        self.log_path = None
        self._log = None

    @property
    def url(self):
        return f"http://{self.host}"

    @property
    def pid(self):
        return self.proc.pid

    def _env(self):
        # Hermetic: no MERIDIAN_* setting of the caller's shell may change the server under
        # test (flags win over env anyway, but e.g. MERIDIAN_NO_DELETE would not be overridden).
        env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
        return env

    def start(self, timeout_s=30):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.log_path = self.workdir / f"server-{self.starts}.log"
        self._log = open(self.log_path, "wb")
        if self.kind == "meridian":
            binary = meridian_bin()
            if not binary.exists():
                raise AssertionError(f"meridian binary not found at {binary}: build it first "
                                     "(scripts/build.sh) or set MERIDIAN_BIN")
            cmd = [str(binary), "serve", "--listen", "127.0.0.1:0", "--data", str(self.data_dir),
                   "--log-level", "info"] + self.extra_args + \
                tier.server_args(self.data_dir, self.extra_args)
        elif self.kind == "distribution":
            port = free_port()
            cfg = self.workdir / "distribution.yml"
            cfg.write_text(
                "version: 0.1\n"
                "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                "storage:\n"
                f"  filesystem:\n    rootdirectory: {self.data_dir}\n"
                "  delete:\n    enabled: true\n"
                "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
            cmd = ["docker-registry", "serve", str(cfg)]
            self.host = f"127.0.0.1:{port}"
        else:
            raise AssertionError(f"unknown MERIDIAN_E2E_SERVER={self.kind!r}")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=self._env(),
                                     cwd=self.workdir)
        deadline = time.monotonic() + timeout_s
        if self.kind == "meridian":
            self.host = None
            while self.host is None:
                m = self.LISTEN_RE.search(self.log_path.read_text(errors="replace"))
                if m:
                    self.host = m.group(1)
                    break
                self._check_alive_before(deadline, "the 'listening on' log line")
                time.sleep(0.02)
        ready_path = "/readyz" if self.kind == "meridian" else "/v2/"
        while True:
            try:
                r = requests.get(self.url + ready_path, timeout=2)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            self._check_alive_before(deadline, ready_path + " = 200")
            time.sleep(0.05)

    def _check_alive_before(self, deadline, what):
        if self.proc.poll() is not None:
            raise AssertionError(f"registry exited with {self.proc.returncode} before "
                                 f"{what}:\n{self.log_tail()}")
        if time.monotonic() > deadline:
            self.kill9()
            raise AssertionError(f"registry not ready (waiting for {what}):\n{self.log_tail()}")

    def log_tail(self, n_bytes=6000):
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        data = self.log_path.read_bytes()
        return data[-n_bytes:].decode(errors="replace")

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_log()

    def stop(self, timeout_s=60):
        """SIGTERM and wait; returns the exit code (None if it was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise AssertionError(f"registry did not exit {timeout_s}s after SIGTERM:\n"
                                     f"{self.log_tail()}")
        self._close_log()
        return self.proc.returncode

    def stop_and_check(self):
        """Graceful stop that fails the test if Meridian exited non-zero (for instance
        when AddressSanitizer or LeakSanitizer reported an error)."""
        rc = self.stop()
        if self.kind == "meridian" and rc not in (0, None):
            raise AssertionError(f"meridian exited with {rc} after SIGTERM:\n{self.log_tail()}")

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def vm_kib(self, field):
        """VmRSS / VmHWM / ... of the server process, in KiB."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        assert m, f"{field} not in /proc/{self.pid}/status"
        return int(m.group(1))


# ---------------------------------------------------------------------------------------------
# OCI image layouts


def make_layer(files, compress=True):
    """files: {path: bytes}. Returns (blob bytes, diff_id): a reproducible tar (fixed mtime,
    owner and mode), gzipped with mtime 0 when compress is true."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            data = files[path]
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 1700000000
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    diff_id = sha256_digest(tar_bytes)
    if not compress:
        return tar_bytes, diff_id
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6) as f:
        f.write(tar_bytes)
    return gz.getvalue(), diff_id


class OciLayout:
    """An OCI image layout directory (image-spec image-layout.md): oci-layout, index.json and
    blobs/sha256/. Blobs and manifests are kept byte-exact so round trips can be compared."""

    def __init__(self, path):
        self.path = Path(path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.refs = []  # descriptors in index.json
        self._write_index()

    def blob_path(self, digest):
        algo, hexpart = digest.split(":", 1)
        return self.path / "blobs" / algo / hexpart

    def add_blob(self, data, media_type):
        digest = sha256_digest(data)
        self.blob_path(digest).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_image(self, layers, arch="amd64", os_name="linux", labels=None):
        """layers: list of {path: bytes} dicts, one per layer. Returns (manifest descriptor,
        manifest bytes)."""
        layer_descs = []
        diff_ids = []
        for files in layers:
            blob, diff_id = make_layer(files)
            layer_descs.append(self.add_blob(blob, OCI_LAYER_GZIP))
            diff_ids.append(diff_id)
        config = {
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": os_name,
            "config": {"Labels": labels or {}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "meridian e2e"}
                        for _ in layers],
        }
        config_desc = self.add_blob(json.dumps(config, indent=2).encode(), OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": layer_descs,
        }
        data = json.dumps(manifest, indent=3).encode()
        desc = self.add_blob(data, OCI_MANIFEST)
        desc["platform"] = {"architecture": arch, "os": os_name}
        return desc, data

    def add_index(self, manifest_descs):
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifest_descs}
        data = json.dumps(index, indent=2).encode()
        return self.add_blob(data, OCI_INDEX), data

    def tag(self, desc, tag):
        ref = {k: v for k, v in desc.items() if k in ("mediaType", "digest", "size")}
        ref["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.refs = [r for r in self.refs
                     if r["annotations"]["org.opencontainers.image.ref.name"] != tag]
        self.refs.append(ref)
        self._write_index()

    def _write_index(self):
        (self.path / "index.json").write_text(
            json.dumps({"schemaVersion": 2, "manifests": self.refs}, indent=2))

    def ref(self, tag):
        return f"oci:{self.path}:{tag}"

    def resolve(self, tag):
        """Descriptor that index.json gives for tag (as written by skopeo when copying in)."""
        index = json.loads((self.path / "index.json").read_text())
        for d in index["manifests"]:
            if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return d
        raise AssertionError(f"tag {tag} not in {self.path}/index.json: {index}")

    def read_blob(self, digest):
        return self.blob_path(digest).read_bytes()

    def closure(self, digest):
        """Every digest reachable from a manifest or index: itself, children, configs, layers."""
        data = self.read_blob(digest)
        doc = json.loads(data)
        out = [digest]
        for child in doc.get("manifests", []):
            out += self.closure(child["digest"])
        if "config" in doc:
            out.append(doc["config"]["digest"])
        out += [layer["digest"] for layer in doc.get("layers", [])]
        return out


def assert_same_closure(src, dst, src_digest, dst_tag):
    """dst (a layout skopeo copied into) holds the same manifest (same digest, same bytes)
    and byte-identical blobs for everything src_digest references."""
    got = dst.resolve(dst_tag)
    assert got["digest"] == src_digest, f"manifest digest changed: {src_digest} -> {got['digest']}"
    for digest in src.closure(src_digest):
        assert dst.blob_path(digest).exists(), f"blob {digest} missing after round trip"
        a = src.read_blob(digest)
        b = dst.read_blob(digest)
        assert a == b, f"blob {digest} differs after round trip ({len(a)} vs {len(b)} bytes)"
        assert sha256_digest(b) == digest


# ---------------------------------------------------------------------------------------------
# Client tools


class ClientEnv:
    """Runs skopeo, buildah and podman against plain-HTTP registries with private state:
    a permissive signature policy, an empty auth file, storage under `root`."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.policy = self.root / "policy.json"
        self.policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
        self.auth = self.root / "auth.json"
        self.auth.write_text('{"auths": {}}')
        self.registries_conf = self.root / "registries.conf"
        self.registries_conf.write_text("unqualified-search-registries = []\n")
        # podman refuses a runroot path longer than 50 characters, so it lives in /tmp.
        self.runroot = tempfile.mkdtemp(prefix="meridian-run-", dir="/tmp")
        self.storage = ["--root", str(self.root / "storage"), "--runroot", self.runroot,
                        "--storage-driver", "vfs"]
        self.env = dict(os.environ)
        self.env.update({
            "REGISTRY_AUTH_FILE": str(self.auth),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "TMPDIR": str(self.root / "tmp"),
        })
        (self.root / "tmp").mkdir(exist_ok=True)

    def run(self, argv, timeout_s=300, check=True):
        p = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout_s)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, argv))} exited {p.returncode}\n"
                                 f"stdout: {p.stdout.decode(errors='replace')[-3000:]}\n"
                                 f"stderr: {p.stderr.decode(errors='replace')[-3000:]}")
        return p

    def skopeo_argv(self, *args):
        return ["skopeo", "--policy", str(self.policy)] + [str(a) for a in args]

    def skopeo(self, *args, **kw):
        return self.run(self.skopeo_argv(*args), **kw)

    def buildah(self, *args, **kw):
        return self.run(["buildah"] + self.storage + [str(a) for a in args], **kw)

    def podman(self, *args, **kw):
        return self.run(["podman"] + self.storage + ["--events-backend", "none",
                                                     "--cgroup-manager", "cgroupfs"]
                        + [str(a) for a in args], **kw)

    def cleanup(self):
        # vfs layers are plain directories; nothing is mounted, so rmtree is enough.
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.runroot, ignore_errors=True)


def tool_missing(name):
    return shutil.which(name) is None


# ---------------------------------------------------------------------------------------------
# Fixtures (imported by the test modules: `from clients_helpers import reg, clients`)


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """One registry for the whole module; tests use distinct repository names."""
    reg = RegistryProcess(tmp_path_factory.mktemp("registry"))
    reg.start()
    yield reg
    reg.stop_and_check()


@pytest.fixture
def clients(tmp_path):
    env = ClientEnv(tmp_path / "clients")
    yield env
    env.cleanup()
