"""Clients for the fault tests (test_s3_faults.py, test_pg_restart.py, test_pg_blackhole.py):
pushes and pulls that record every answer (status, OCI error code, time taken) instead of
asserting, so a test can check afterwards that every failure was retryable, that none took
too long, and that every acknowledged blob and manifest is still there."""

import itertools
import json
import threading
import time
import urllib.parse

import requests

from conftest import digest_of, random_bytes

CLIENT_TIMEOUT_S = 60


def oci_error_code(r):
    """The first OCI error code of a response, or None when the body is not one."""
    try:
        return r.json()["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class Recorder:
    """Every answer a client got: (time, what, status or exception, OCI code, seconds)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = []
        self.acked_blobs = {}      # digest -> bytes answered 201
        self.acked_manifests = {}  # (repo, tag) -> body answered 201
        self.error_bodies = set()  # the distinct error bodies clients saw

    def add(self, what, outcome, code, took):
        with self.lock:
            self.rows.append((time.monotonic(), what, outcome, code, took))


def timed(rec, what, fn):
    t0 = time.monotonic()
    try:
        r = fn()
    except requests.RequestException as exc:
        rec.add(what, type(exc).__name__, None, time.monotonic() - t0)
        return None
    rec.add(what, r.status_code, oci_error_code(r) if r.status_code >= 400 else None,
            time.monotonic() - t0)
    if r.status_code >= 400:
        with rec.lock:
            rec.error_bodies.add(r.text)
    return r


def push_one(base, repo, tag, rec, layer_size):
    """One image: a config by monolithic POST, a layer by POST + PATCH + PATCH + PUT, the
    manifest. Stops at the first failure (a client would retry the whole push)."""
    s = requests.Session()
    kw = {"timeout": CLIENT_TIMEOUT_S, "allow_redirects": False}
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    layer = random_bytes(layer_size)
    cd, ld = digest_of(config), digest_of(layer)
    r = timed(rec, "push-config", lambda: s.post(
        "%s/v2/%s/blobs/uploads/" % (base, repo), params={"digest": cd}, data=config, **kw))
    if r is None or r.status_code != 201:
        return False
    with rec.lock:
        rec.acked_blobs[cd] = config
    r = timed(rec, "push-start", lambda: s.post("%s/v2/%s/blobs/uploads/" % (base, repo),
                                                 data=b"", **kw))
    if r is None or r.status_code != 202:
        return False
    loc = urllib.parse.urljoin(base + "/", r.headers["Location"])
    half = len(layer) // 2
    for i, piece in enumerate((layer[:half], layer[half:])):
        start = 0 if i == 0 else half
        r = timed(rec, "push-patch", lambda: s.patch(loc, data=piece, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": "%d-%d" % (start, start + len(piece) - 1)}, **kw))
        if r is None or r.status_code != 202:
            return False
        loc = urllib.parse.urljoin(base + "/", r.headers["Location"])
    r = timed(rec, "push-commit", lambda: s.put(loc, params={"digest": ld}, data=b"", **kw))
    if r is None or r.status_code != 201:
        return False
    with rec.lock:
        rec.acked_blobs[ld] = layer
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": cd, "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": ld, "size": len(layer)}]}).encode()
    r = timed(rec, "push-manifest", lambda: s.put(
        "%s/v2/%s/manifests/%s" % (base, repo, tag), data=m,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, **kw))
    if r is None or r.status_code != 201:
        return False
    with rec.lock:
        rec.acked_manifests[(repo, tag)] = m
    return True


def pull_one(base, repo, blobs, rec):
    """GETs each blob of a pushed image; a 200 must carry exactly its bytes."""
    s = requests.Session()
    ok = True
    for d, data in blobs.items():
        t0 = time.monotonic()
        try:
            r = s.get("%s/v2/%s/blobs/%s" % (base, repo, d), timeout=CLIENT_TIMEOUT_S)
        except requests.RequestException as exc:
            # A stream cut mid-body (S3 dropped under it): the client sees it short.
            rec.add("pull-blob", type(exc).__name__, None, time.monotonic() - t0)
            ok = False
            continue
        took = time.monotonic() - t0
        if r.status_code == 200 and len(r.content) < int(r.headers["Content-Length"]):
            # S3 dropped under a stream already started: the client sees it short (and a
            # real one retries). Not before the first byte: that is answered 503.
            assert r.content, "a 200 with no byte of the blob (%s)" % d
            rec.add("pull-blob", "short", None, took)
            ok = False
            continue
        rec.add("pull-blob", r.status_code,
                oci_error_code(r) if r.status_code >= 400 else None, took)
        if r.status_code >= 400:
            with rec.lock:
                rec.error_bodies.add(r.text)
        if r.status_code == 200:
            assert r.content == data, "a 200 with other bytes than the blob's (%s)" % d
        else:
            ok = False
    return ok


class ClientLoad:
    """Clients running while a fault is made: two pushers (a 20 kB and a 2 MiB chunked
    layer) into push_repo, and `pullers` pullers of the blobs `pulled` (digest -> bytes) in
    pull_repo, each pausing pause_s between rounds; every answer goes into self.rec."""

    def __init__(self, base, push_repo, pull_repo, pulled, pullers=2, pause_s=0.05):
        self.base, self.push_repo, self.pull_repo = base, push_repo, pull_repo
        self.pulled, self.pause_s = pulled, pause_s
        self.rec = Recorder()
        self.errors = []  # what a puller asserted (wrong bytes)
        self._stop = threading.Event()
        self._tags = itertools.count()
        self._threads = [threading.Thread(target=self._push, args=(n,), daemon=True)
                         for n in (20_000, 2 * 1024 * 1024)]
        self._threads += [threading.Thread(target=self._pull, daemon=True)
                          for _ in range(pullers)]

    def _push(self, layer_size):
        while not self._stop.is_set():
            push_one(self.base, self.push_repo, "t%d" % next(self._tags), self.rec, layer_size)
            time.sleep(self.pause_s)

    def _pull(self):
        try:
            while not self._stop.is_set():
                pull_one(self.base, self.pull_repo, self.pulled, self.rec)
                time.sleep(self.pause_s)
        except AssertionError as exc:
            self.errors.append(exc)

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        """Stops the clients; none may hang, no pull may have seen wrong bytes."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=CLIENT_TIMEOUT_S + 30)
            assert not t.is_alive(), "a client hung"
        assert not self.errors, self.errors

    def failed(self):
        """The rows that were not a success (a status >= 400 or an exception)."""
        return [r for r in self.rec.rows if not (isinstance(r[2], int) and r[2] < 400)]

    def assert_acked_all_there(self, oci, retries_on_503=0):
        """Every blob and manifest answered 201 pulls now with its exact bytes (a 503 is
        asked again up to retries_on_503 times, on the same client connection)."""
        def get(path, **kw):
            r = oci.get(path, **kw)
            for _ in range(retries_on_503):
                if r.status_code != 503:
                    break
                r = oci.get(path, **kw)
            return r
        for d, b in self.rec.acked_blobs.items():
            r = get(oci.blob_path(self.push_repo, d))
            assert r.status_code == 200 and r.content == b, (d, r.status_code)
        for (repo, tag), m in self.rec.acked_manifests.items():
            r = get("/v2/%s/manifests/%s" % (repo, tag),
                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 200 and r.content == m, (tag, r.status_code)
