"""End-to-end fixtures and helpers for Meridian (pytest, real processes).

Every server is a real `meridian serve` process on 127.0.0.1:0 with its own data
directory. We wait for it by polling (the "listening on" log line, then /readyz)
against a deadline, never with fixed sleeps, and stop it by PID: SIGTERM, then
SIGKILL if it does not exit in time.

Fixtures
  meridian_bin           path of the binary (env MERIDIAN_BIN, default build/meridian)
  registry               one fresh server per test module; a module may set
                         MERIDIAN_ARGS = [...] to pass extra `serve` flags
  oci                    an OCI client bound to `registry`
  repo                   a unique, valid repository name for the current test
  server_factory         start extra servers inside one test (stopped after it)
  module_server_factory  the same, kept for the whole module

With env MERIDIAN_TEST_METASTORE=pg every server keeps its metadata in its own PostgreSQL
database (pg_metastore.py starts one cluster per session).

Helpers (import them with `from conftest import ...`)
  OCI, Image, MeridianServer, random_bytes, digest_of, canonical_json, parse_metrics,
  metric_sum, error_codes, assert_error, wait_until, unique_name, MT_* media types.
"""

import hashlib
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests

import tier

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_BIN = os.path.join(REPO_ROOT, "build", "meridian")

START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0
HTTP_TIMEOUT_S = 60.0

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# distribution-spec "Error Codes", plus the two legacy codes the spec says clients
# may meet ("Legacy Docker support error codes").
SPEC_ERROR_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
    "TOOMANYREQUESTS", "TAG_INVALID", "MANIFEST_UNVERIFIED",
}

UPLOAD_PATH_RE = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[0-9a-f]{32})$")
LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


# ----------------------------------------------------------------------------
# small pure helpers

def random_bytes(n):
    return secrets.token_bytes(n)


def digest_of(data, alg="sha256"):
    return "%s:%s" % (alg, hashlib.new(alg, data).hexdigest())


def canonical_json(obj):
    """Deterministic, compact JSON bytes (what most clients push)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def referrers_tag_index(n):
    """An empty OCI index, distinct for each n: what a client keeping the referrers tag
    schema pushes as it updates it (the documents conditional writes race on)."""
    return canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [],
                           "annotations": {"org.example.version": str(n)}})


def buildkit_cache_index(layers):
    """An index as `docker buildx build --cache-to type=registry` pushes it: its children
    are the cached layers and a cache config, all blobs (image-spec: a mediaType the
    implementation does not know MUST NOT be an error). (body, {digest: bytes} of the
    blobs to push first, the config included)."""
    config = canonical_json({"layers": [{"blob": digest_of(b)} for b in layers]})
    children = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                 "digest": digest_of(b), "size": len(b)} for b in layers]
    children.append({"mediaType": "application/vnd.buildkit.cacheconfig.v0",
                     "digest": digest_of(config), "size": len(config)})
    body = canonical_json({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                           "manifests": children})
    return body, {digest_of(b): b for b in list(layers) + [config]}


def all_at_once(args, fn):
    """fn(arg) for every arg, each in its own thread, all released together (the requests
    of a race); the results in the order of args."""
    start = threading.Barrier(len(args))

    def run(arg):
        start.wait()
        return fn(arg)

    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(run, args))


def unique_name(prefix="t"):
    """A repository name component that matches the distribution-spec grammar."""
    clean = re.sub(r"[^a-z0-9]+", "-", prefix.lower()).strip("-") or "t"
    return "%s-%s" % (clean[:60].strip("-"), secrets.token_hex(4))


def wait_until(predicate, timeout_s=20.0, interval_s=0.05, what="condition"):
    """Polls predicate() until it returns a truthy value; fails after the deadline."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail("timed out after %.1fs waiting for %s (last=%r)" % (timeout_s, what, last))
        time.sleep(interval_s)


def error_codes(resp):
    """The list of OCI error codes in an error response body ([] when none)."""
    try:
        body = resp.json()
    except ValueError:
        return []
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return []
    return [e.get("code") for e in body["errors"] if isinstance(e, dict)]


def assert_error(resp, status, code=None, codes=None):
    """Asserts an OCI error response: status, JSON body {"errors":[{code,message,...}]},
    and (if given) that the first code is `code` or one of `codes`."""
    desc = "%s %s -> %s %r" % (resp.request.method, resp.request.url, resp.status_code,
                               resp.content[:300])
    if isinstance(status, (tuple, list, set)):
        assert resp.status_code in status, desc
    else:
        assert resp.status_code == status, desc
    if resp.request.method == "HEAD":
        return
    try:
        body = resp.json()
    except ValueError:
        pytest.fail("error body is not JSON: " + desc)
    assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], desc
    for e in body["errors"]:
        assert isinstance(e, dict), desc
        assert isinstance(e.get("code"), str) and re.fullmatch(r"[A-Z_]+", e["code"]), desc
        if "message" in e:
            assert isinstance(e["message"], str), desc
    got = body["errors"][0]["code"]
    if code is not None:
        assert got == code, desc
    if codes is not None:
        assert got in codes, desc
    return got


def parse_metrics(text):
    """Prometheus text format -> list of (name, {label: value}, float)."""
    out = []
    line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            continue
        labels = dict(label_re.findall(m.group(3) or ""))
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out.append((m.group(1), labels, value))
    return out


def metric_sum(samples, name, **labels):
    """Sum of the samples called `name` whose labels include all of `labels`."""
    total = 0.0
    for n, lab, v in samples:
        if n != name:
            continue
        if all(lab.get(k) == str(val) for k, val in labels.items()):
            total += v
    return total


def recv_until_close(sock):
    """Everything a raw socket receives until the server closes it."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def path_of(location):
    return urllib.parse.urlparse(location).path


# ----------------------------------------------------------------------------
# the server process

class MeridianServer:
    """One `meridian serve` process. start() blocks until /readyz answers 200."""

    def __init__(self, binary, data_dir, log_path, extra_args=(), host="127.0.0.1", env=None):
        self.binary = binary
        self.env = env                # extra environment of the process (None: as ours)
        self.data_dir = str(data_dir)
        self.log_path = str(log_path)
        self.extra_args = list(extra_args)
        self.host = host
        self.proc = None
        self.port = None
        self.url = None
        self._log = None
        self._stopping = False

    # -- lifecycle
    def start(self, timeout_s=START_DEADLINE_S):
        os.makedirs(self.data_dir, exist_ok=True)
        # append so that restarts on the same data dir keep earlier logs
        self._log = open(self.log_path, "ab")
        cmd = [self.binary, "serve", "--listen", "%s:0" % self.host, "--data", self.data_dir,
               "--log-level", "info"] + self.extra_args + \
            tier.server_args(self.data_dir, self.extra_args)
        self._log.write(("# %s\n" % " ".join(cmd)).encode())
        self._log.flush()
        offset = self._log.tell()
        self._stopping = False
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log, close_fds=True,
                                     env=dict(os.environ, **self.env) if self.env else None)
        deadline = time.monotonic() + timeout_s
        listen_re = re.compile(rb"listening on http://([0-9.]+|\[[0-9a-fA-F:]+\]):(\d+)")
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                m = listen_re.search(f.read())
            if m:
                self.port = int(m.group(2))
                self.url = "http://%s:%d" % (self.host, self.port)
                break
            if self.proc.poll() is not None:
                raise RuntimeError("meridian exited with %s before listening:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError("meridian did not log 'listening on' within %.0fs:\n%s"
                                   % (timeout_s, self.log_tail()))
            time.sleep(0.02)
        while True:
            try:
                r = requests.get(self.url + "/readyz", timeout=2)
                if r.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("meridian exited with %s before ready:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError("meridian /readyz not 200 within %.0fs:\n%s"
                                   % (timeout_s, self.log_tail()))
            time.sleep(0.02)

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def crashed(self):
        """True if the process died without us asking it to."""
        return self.proc is not None and not self._stopping and self.proc.poll() is not None

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            self._stopping = True  # an exit after this is asked for, not a crash
        os.kill(self.proc.pid, sig)

    def stop(self, timeout_s=STOP_DEADLINE_S):
        """SIGTERM, then SIGKILL after timeout_s. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._stopping = True
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout_s)
        self._stopping = True
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self._stopping = True
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_DEADLINE_S)
        if self._log:
            self._log.close()
            self._log = None

    def restart(self):
        self.stop()
        return self.start()

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    # -- what is stored (tier.py: DATA/blobs and DATA/uploads, or the S3 prefix's objects)
    def blob_files(self, hexdigest):
        """Where the blob of the given hex digest is stored: paths under DATA/blobs, or
        "s3:KEY" on the S3 blob store (read them with tier.stored_bytes)."""
        return tier.stored_blobs(self.data_dir, hexdigest)

    def upload_files(self):
        """The upload sessions' files under DATA/uploads, or their objects in S3."""
        return tier.upload_entries(self.data_dir)

    def oci(self):
        return OCI(self.url)


_live_servers = []


class ServerPool:
    def __init__(self, binary, tmp_factory, label):
        self.binary = binary
        self.tmp_factory = tmp_factory
        self.label = label
        self.servers = []

    def __call__(self, *extra_args, data_dir=None, host="127.0.0.1", env=None):
        base = self.tmp_factory.mktemp(self.label)
        data = data_dir or os.path.join(str(base), "data")
        srv = MeridianServer(self.binary, data, os.path.join(str(base), "meridian.log"),
                             extra_args, host=host, env=env)
        srv.start()
        self.servers.append(srv)
        _live_servers.append(srv)
        return srv

    def close(self):
        problems = []
        for srv in self.servers:
            if srv.crashed():
                problems.append("meridian crashed during the test (exit %s):\n%s"
                                % (srv.proc.returncode, srv.log_tail()))
                srv.stop()
            else:
                # every server must leave on SIGTERM, promptly and with status 0
                # (a sanitizer build exits non-zero on a leak or error report)
                was_running = srv.is_running()
                rc = srv.stop()
                if was_running and rc != 0:
                    problems.append("meridian exited with %s on SIGTERM:\n%s"
                                    % (rc, srv.log_tail()))
            if srv in _live_servers:
                _live_servers.remove(srv)
        if problems:
            pytest.fail("\n\n".join(problems))


# ----------------------------------------------------------------------------
# OCI client

@dataclass
class Image:
    """A pushed manifest (image, index or artifact) and what it references."""
    repo: str
    digest: str
    body: bytes
    media_type: str
    blobs: dict = field(default_factory=dict)      # digest -> bytes
    children: list = field(default_factory=list)   # child Images (indexes)
    artifact_type: str = None
    annotations: dict = None

    @property
    def size(self):
        return len(self.body)

    def descriptor(self, **extra):
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        d.update(extra)
        return d


class OCI:
    """A thin client for /v2/ that keeps the raw responses visible to the tests."""

    def __init__(self, base_url):
        self.base = base_url.rstrip("/")
        self.s = requests.Session()

    # -- raw HTTP
    def url(self, path_or_url):
        return urllib.parse.urljoin(self.base + "/", path_or_url)

    def request(self, method, path, **kw):
        kw.setdefault("allow_redirects", False)
        kw.setdefault("timeout", HTTP_TIMEOUT_S)
        return self.s.request(method, self.url(path), **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def raw(self, method, path, headers=(), body=b"", timeout=HTTP_TIMEOUT_S):
        """Sends exactly the given header lines (repeats allowed) with http.client.
        Returns (status, list of (name, value) headers, body bytes)."""
        u = urllib.parse.urlparse(self.base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            names = {h[0].lower() for h in headers}
            for k, v in headers:
                conn.putheader(k, v)
            if "content-length" not in names and method in ("PUT", "POST", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            if body:
                conn.send(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheaders(), data
        finally:
            conn.close()

    # -- blobs
    def blob_path(self, repo, digest):
        return "/v2/%s/blobs/%s" % (repo, digest)

    def start_upload(self, repo, **params):
        r = self.post("/v2/%s/blobs/uploads/" % repo, params=params or None, data=b"")
        assert r.status_code == 202, (r.status_code, r.text)
        assert r.headers.get("Location"), "POST upload without Location"
        return r

    def push_blob(self, repo, data, how="post_put", alg="sha256", chunk_size=None):
        """Pushes data with one of the upload flows and asserts success. Returns its digest."""
        dig = digest_of(data, alg)
        hdr = {"Content-Type": "application/octet-stream"}
        if how == "post":
            r = self.post("/v2/%s/blobs/uploads/" % repo, params={"digest": dig}, data=data,
                          headers=hdr)
            assert r.status_code == 201, (r.status_code, r.text)
            return dig
        loc = self.start_upload(repo).headers["Location"]
        if how == "post_put":
            r = self.put(loc, params={"digest": dig}, data=data, headers=hdr)
        elif how == "stream":
            r = self.patch(loc, data=data, headers=hdr)
            assert r.status_code == 202, (r.status_code, r.text)
            r = self.put(r.headers["Location"], params={"digest": dig}, data=b"")
        elif how == "chunked":
            size = chunk_size or max(1, (len(data) + 2) // 3)
            off = 0
            while off < len(data):
                piece = data[off:off + size]
                h = dict(hdr)
                h["Content-Range"] = "%d-%d" % (off, off + len(piece) - 1)
                r = self.patch(loc, data=piece, headers=h)
                assert r.status_code == 202, (r.status_code, r.text)
                assert r.headers.get("Range") == "0-%d" % (off + len(piece) - 1), r.headers
                loc = r.headers["Location"]
                off += len(piece)
            r = self.put(loc, params={"digest": dig}, data=b"")
        else:
            raise ValueError(how)
        assert r.status_code == 201, (r.status_code, r.text)
        return dig

    def blob_exists(self, repo, digest):
        r = self.head(self.blob_path(repo, digest))
        assert r.status_code in (200, 404), (r.status_code, r.headers)
        return r.status_code == 200

    def get_blob(self, repo, digest):
        r = self.get(self.blob_path(repo, digest))
        assert r.status_code == 200, (r.status_code, r.text[:200])
        return r.content

    # -- manifests
    def manifest_path(self, repo, ref):
        return "/v2/%s/manifests/%s" % (repo, ref)

    def put_manifest(self, repo, ref, body, media_type=MT_OCI_MANIFEST, headers=None):
        if isinstance(body, (dict, list)):
            body = canonical_json(body)
        h = {"Content-Type": media_type} if media_type else {}
        if headers:
            h.update(headers)
        return self.put(self.manifest_path(repo, ref), data=body, headers=h)

    def push_manifest(self, repo, ref, body, media_type=MT_OCI_MANIFEST):
        if isinstance(body, (dict, list)):
            body = canonical_json(body)
        r = self.put_manifest(repo, ref, body, media_type)
        assert r.status_code == 201, (r.status_code, r.text)
        return digest_of(body)

    def get_manifest(self, repo, ref, accept=None, method="GET"):
        h = {}
        if accept is not None:
            h["Accept"] = accept if isinstance(accept, str) else ", ".join(accept)
        return self.request(method, self.manifest_path(repo, ref), headers=h)

    def manifest_exists(self, repo, ref):
        r = self.get_manifest(repo, ref)
        assert r.status_code in (200, 404), (r.status_code, r.text[:200])
        return r.status_code == 200

    def push_image(self, repo, tag=None, layers=2, layer_size=1024, media_type=MT_OCI_MANIFEST,
                   config=None, config_media_type=None, layer_media_type=None,
                   artifact_type=None, subject=None, annotations=None, by_digest=False,
                   layer_blobs=None, extra=None, push_blobs=True):
        """Builds and pushes config + layers + an image manifest. Returns an Image."""
        docker = media_type == MT_DOCKER_MANIFEST
        if config is None:
            config = canonical_json({"architecture": "amd64", "os": "linux",
                                     "rootfs": {"type": "layers", "diff_ids": []},
                                     "author": secrets.token_hex(8)})
        cmt = config_media_type or (MT_DOCKER_CONFIG if docker else MT_OCI_CONFIG)
        lmt = layer_media_type or (MT_DOCKER_LAYER if docker else MT_OCI_LAYER)
        if layer_blobs is None:
            layer_blobs = [random_bytes(layer_size) for _ in range(layers)]
        blobs = {}
        for b in [config] + list(layer_blobs):
            d = digest_of(b)
            if push_blobs and d not in blobs:
                self.push_blob(repo, b)
            blobs[d] = b
        m = {"schemaVersion": 2, "mediaType": media_type,
             "config": {"mediaType": cmt, "digest": digest_of(config), "size": len(config)},
             "layers": [{"mediaType": lmt, "digest": digest_of(b), "size": len(b)}
                        for b in layer_blobs]}
        if artifact_type:
            m["artifactType"] = artifact_type
        if subject is not None:
            m["subject"] = subject.descriptor() if isinstance(subject, Image) else subject
        if annotations:
            m["annotations"] = annotations
        if extra:
            m.update(extra)
        body = canonical_json(m)
        dig = digest_of(body)
        self.push_manifest(repo, dig if (by_digest or tag is None) else tag, body, media_type)
        return Image(repo, dig, body, media_type, blobs, artifact_type=artifact_type,
                     annotations=annotations)

    def push_artifact(self, repo, artifact_type, subject=None, tag=None, annotations=None,
                      payload=None):
        """An OCI artifact: empty config, artifactType, one layer (payload or empty JSON)."""
        self.push_blob(repo, EMPTY_JSON)
        layer = payload if payload is not None else EMPTY_JSON
        if payload is not None:
            self.push_blob(repo, payload)
        m = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "artifactType": artifact_type,
             "config": {"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2},
             "layers": [{"mediaType": artifact_type if payload is not None else MT_OCI_EMPTY,
                         "digest": digest_of(layer), "size": len(layer)}]}
        if subject is not None:
            m["subject"] = subject.descriptor() if isinstance(subject, Image) else subject
        if annotations:
            m["annotations"] = annotations
        body = canonical_json(m)
        dig = digest_of(body)
        r = self.put_manifest(repo, tag or dig, body, MT_OCI_MANIFEST)
        assert r.status_code == 201, (r.status_code, r.text)
        return Image(repo, dig, body, MT_OCI_MANIFEST, {EMPTY_JSON_DIGEST: EMPTY_JSON},
                     artifact_type=artifact_type, annotations=annotations)

    def push_index(self, repo, children, tag=None, media_type=MT_OCI_INDEX, artifact_type=None,
                   subject=None, annotations=None, platforms=True):
        manifests = []
        for i, c in enumerate(children):
            d = c.descriptor()
            if platforms:
                d["platform"] = {"architecture": ["amd64", "arm64", "s390x", "ppc64le"][i % 4],
                                 "os": "linux"}
            manifests.append(d)
        m = {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
        if artifact_type:
            m["artifactType"] = artifact_type
        if subject is not None:
            m["subject"] = subject.descriptor() if isinstance(subject, Image) else subject
        if annotations:
            m["annotations"] = annotations
        body = canonical_json(m)
        dig = digest_of(body)
        self.push_manifest(repo, tag or dig, body, media_type)
        return Image(repo, dig, body, media_type, children=list(children),
                     artifact_type=artifact_type, annotations=annotations)

    # -- discovery
    def tags(self, repo, **params):
        return self.get("/v2/%s/tags/list" % repo, params=params or None)

    def tag_list(self, repo):
        r = self.tags(repo)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json().get("tags") or []

    def catalog(self, **params):
        return self.get("/v2/_catalog", params=params or None)

    def referrers(self, repo, digest, **params):
        return self.get("/v2/%s/referrers/%s" % (repo, digest), params=params or None)

    def paginate(self, first_path, params):
        """Follows Link rel=next; returns (pages as parsed JSON, responses)."""
        pages, resps = [], []
        r = self.get(first_path, params=params)
        seen = 0
        while True:
            assert r.status_code == 200, (r.status_code, r.text)
            pages.append(r.json())
            resps.append(r)
            link = r.headers.get("Link")
            if not link:
                break
            m = LINK_NEXT_RE.search(link)
            assert m, "Link header without rel=next: %r" % link
            seen += 1
            assert seen < 10000, "pagination does not terminate"
            r = self.get(m.group(1))
        return pages, resps

    def metrics(self):
        r = requests.get(self.base + "/metrics", timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.status_code
        return parse_metrics(r.text)


# ----------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="session")
def meridian_bin():
    path = os.environ.get("MERIDIAN_BIN", DEFAULT_BIN)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("meridian binary not found at %s (build it or set MERIDIAN_BIN)" % path)
    return path


@pytest.fixture(scope="module")
def module_server_factory(meridian_bin, tmp_path_factory, request):
    pool = ServerPool(meridian_bin, tmp_path_factory, request.module.__name__.split(".")[-1])
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def server_factory(meridian_bin, tmp_path_factory):
    pool = ServerPool(meridian_bin, tmp_path_factory, "srv")
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def registry(module_server_factory, request):
    """A fresh server for the module; MERIDIAN_ARGS in the module adds flags."""
    args = list(getattr(request.module, "MERIDIAN_ARGS", []))
    try:
        srv = module_server_factory(*args)
    except RuntimeError as e:
        pytest.fail(str(e))
    return srv


@pytest.fixture
def oci(registry):
    if not registry.is_running():
        pytest.fail("meridian is not running any more:\n" + registry.log_tail())
    return registry.oci()


@pytest.fixture
def repo(request):
    mod = request.module.__name__.split(".")[-1].replace("test_", "")
    return "e2e/%s/%s" % (unique_name(mod), unique_name(request.node.name)[:70].strip("-"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for srv in list(_live_servers):
            rep.sections.append(("meridian log %s (tail)" % srv.url, srv.log_tail(20)))
