"""Helpers for the access-control end-to-end tests (test_auth*.py).

- AuthServer: one `meridian serve` process (HTTP or HTTPS) with access control flags, on a
  loopback port, stopped by PID. Parses "listening on http(s)://HOST:PORT" itself, since
  the shared fixtures only know plain HTTP.
- Admin: the management API as the bootstrap admin (users, robots, roles, audit).
- token(), bearer(), basic(): credentials as clients send them.
- push_image(): a small image pushed with raw requests under given credentials.
- make_cert(): a self-signed certificate for 127.0.0.1 made with `openssl req`.

Nothing here changes the shared fixtures of conftest.py.
"""

import base64
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.parse

import pytest
import requests
import urllib3

import tier

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN_PASSWORD = "admin-" + secrets.token_hex(8)
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
LISTEN_RE = re.compile(rb"listening on (https?)://([0-9.]+|\[[0-9a-fA-F:]+\]):(\d+)")


def meridian_bin():
    return os.environ.get("MERIDIAN_BIN", os.path.join(REPO_ROOT, "build", "meridian"))


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def wait_until(pred, timeout_s=20.0, interval_s=0.05, what="condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval_s)


class AuthServer:
    """A meridian serve process with its own data directory."""

    def __init__(self, workdir, args=(), host="127.0.0.1", auth=True,
                 admin_password=ADMIN_PASSWORD, env=None):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.data_dir = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "meridian.log")
        self.args = list(args)
        if auth:
            self.args += ["--auth"]
            if admin_password:
                self.args += ["--admin-password", admin_password]
        self.host = host
        self.env = env
        self.proc = None
        self.url = None
        self.hostport = None
        self.verify = True  # requests' verify= for HTTPS (a CA file path or False)

    def start(self, timeout_s=30):
        log = open(self.log_path, "ab")
        offset = log.tell()
        cmd = [meridian_bin(), "serve", "--listen", "%s:0" % self.host, "--data", self.data_dir,
               "--log-level", "info"] + self.args + tier.server_args(self.data_dir, self.args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
        env["MERIDIAN_BIN"] = meridian_bin()
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     env=env, close_fds=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                m = LISTEN_RE.search(f.read())
            if m:
                scheme, host, port = m.group(1).decode(), m.group(2).decode(), m.group(3).decode()
                self.hostport = "%s:%s" % (host, port)
                self.url = "%s://%s" % (scheme, self.hostport)
                break
            if self.proc.poll() is not None:
                raise AssertionError("meridian exited %s:\n%s" % (self.proc.returncode,
                                                                  self.log_tail()))
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("meridian did not listen:\n" + self.log_tail())
            time.sleep(0.02)
        wait_until(self._ready, timeout_s, what="/readyz")
        return self

    def _ready(self):
        try:
            return requests.get(self.url + "/readyz", timeout=2, verify=self.verify).ok
        except requests.RequestException:
            return False

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        return self.proc.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- HTTP
    def request(self, method, path, auth=None, headers=None, **kw):
        """auth: None, (user, password) for Basic, or a token string for Bearer."""
        h = dict(headers or {})
        if isinstance(auth, str):
            h["Authorization"] = "Bearer " + auth
        elif auth is not None:
            h["Authorization"] = basic(*auth)
        kw.setdefault("timeout", 60)
        kw.setdefault("allow_redirects", False)
        kw.setdefault("verify", self.verify)
        url = path if path.startswith("http") else self.url + path
        return requests.request(method, url, headers=h, **kw)

    def admin(self):
        return Admin(self, ("admin", ADMIN_PASSWORD))


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def parse_challenge(value):
    """'Bearer realm="x",service="y",scope="z"' -> ('bearer', {realm: x, ...})."""
    scheme, _, rest = value.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def token(srv, creds=None, scopes=(), expect=200):
    """A token from the server's token endpoint for scopes, as clients get one."""
    params = [("service", "meridian")] + [("scope", s) for s in scopes]
    r = srv.request("GET", "/_meridian/v1/token", auth=creds, params=params)
    assert r.status_code == expect, (r.status_code, r.text)
    if expect != 200:
        return r
    body = r.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] >= 1
    return body["token"]


def jwt_claims(tok):
    payload = tok.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


class Admin:
    """The management API under the given Basic credentials."""

    def __init__(self, srv, creds):
        self.srv = srv
        self.creds = creds

    def call(self, method, path, expect=None, **kw):
        r = self.srv.request(method, "/_meridian/v1/" + path, auth=self.creds, **kw)
        if expect is not None:
            assert r.status_code == expect, (method, path, r.status_code, r.text)
        return r

    def user(self, name, password=None, role=None, pattern=None):
        body = {"name": name}
        if password:
            body["password"] = password
        r = self.call("POST", "users", expect=201, json=body)
        pw = password or r.json()["password"]
        if role:
            self.assign(name, role, pattern)
        return (name, pw)

    def robot(self, name, role=None, pattern=None, expires_in=None):
        body = {"name": name}
        if expires_in:
            body["expiresIn"] = expires_in
        r = self.call("POST", "robots", expect=201, json=body)
        if role:
            self.assign(name, role, pattern)
        return (name, r.json()["secret"])

    def assign(self, subject, role, pattern):
        r = self.call("POST", "roles", json={"subject": subject, "role": role,
                                             "pattern": pattern})
        assert r.status_code in (200, 201), r.text
        return r

    def revoke(self, subject, role, pattern):
        return self.call("DELETE", "roles", expect=204,
                         params={"subject": subject, "role": role, "pattern": pattern})

    def audit(self, **params):
        return self.call("GET", "audit", expect=200, params=params).json()


def push_blob(srv, auth, repo, data):
    """POST + PUT a blob; returns the final response."""
    r = srv.request("POST", "/v2/%s/blobs/uploads/" % repo, auth=auth, data=b"")
    if r.status_code != 202:
        return r
    loc = r.headers["Location"]
    return srv.request("PUT", loc, auth=auth, params={"digest": digest_of(data)}, data=data,
                       headers={"Content-Type": "application/octet-stream"})


def image_parts(seed=None):
    seed = seed or secrets.token_hex(8)
    config = json.dumps({"architecture": "amd64", "os": "linux", "author": seed,
                         "rootfs": {"type": "layers", "diff_ids": []}},
                        separators=(",", ":"), sort_keys=True).encode()
    layer = secrets.token_bytes(512)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": MT_OCI_LAYER, "digest": digest_of(layer), "size": len(layer)}],
    }, separators=(",", ":"), sort_keys=True).encode()
    return config, layer, manifest


def push_image(srv, auth, repo, tag="v1"):
    """Pushes config, layer and manifest; asserts success; returns (manifest digest,
    layer digest)."""
    config, layer, manifest = image_parts()
    for b in (config, layer):
        r = push_blob(srv, auth, repo, b)
        assert r.status_code == 201, (r.status_code, r.text)
    r = srv.request("PUT", "/v2/%s/manifests/%s" % (repo, tag), auth=auth, data=manifest,
                    headers={"Content-Type": MT_OCI_MANIFEST})
    assert r.status_code == 201, (r.status_code, r.text)
    return digest_of(manifest), digest_of(layer)


def assert_oci_error(r, status, code):
    desc = "%s %s -> %s %r" % (r.request.method, r.request.url, r.status_code, r.content[:300])
    if isinstance(status, (tuple, list, set)):
        assert r.status_code in status, desc
    else:
        assert r.status_code == status, desc
    if r.request.method == "HEAD":
        return
    body = r.json()
    if "errors" in body:
        got = body["errors"][0]["code"]
    else:
        got = body["error"]["code"]
    codes = code if isinstance(code, (tuple, list, set)) else (code,)
    assert got in codes, desc


def make_cert(directory, name="server", cn="127.0.0.1"):
    """A self-signed certificate (also its own CA) for 127.0.0.1 and localhost."""
    os.makedirs(directory, exist_ok=True)
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                    "-days", "2", "-subj", "/CN=%s" % cn,
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def server_pool(tmp_path):
    """Starts AuthServers for one test and stops them after it (by PID)."""
    servers = []

    def start(*args, name=None, **kw):
        srv = AuthServer(tmp_path / (name or "srv%d" % len(servers)), args=args, **kw)
        servers.append(srv)
        return srv.start()

    yield start
    crashed = [s for s in servers if s.proc is not None and s.proc.poll() not in (None, 0)]
    for s in servers:
        s.stop()
    assert not crashed, "meridian crashed:\n" + crashed[0].log_tail()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, request):
    """One server with access control on for the whole module; AUTH_ARGS in the module
    adds flags."""
    args = list(getattr(request.module, "AUTH_ARGS", []))
    srv = AuthServer(tmp_path_factory.mktemp("auth"), args=args).start()
    yield srv
    rc = srv.stop()
    assert rc == 0, "meridian exited %s:\n%s" % (rc, srv.log_tail())
