"""Data written by an earlier release opens with this one.

tests/e2e/fixtures/upgrade-<label>.tar.gz holds the data directories of two joined regions
(west, east) written by an older binary (fixtures/make_upgrade_fixture.py says how each was
made, expected.json what they hold). Each test unpacks one, starts the binary under test on
it (the regions listen on the fixed loopback addresses they stored for each other) and checks
what a user relies on: every image pulls byte for byte from both regions, deleted things stay
deleted, users, roles and webhooks survive, the webhooks' delivery records are kept (the
pending ones are sent) and show no credentials, an open upload session resumes at its
acknowledged offset, and the regions go on replicating. A second start on the migrated data
must be as good as the first.

A fixture made on PostgreSQL (expected.json says "metastore": "pg"; the archive holds a
pg_dump of each region's database) runs with MERIDIAN_TEST_METASTORE=pg: each dump is loaded
into the region's own database (pg_metastore.py) and the binary under test migrates it. The
other fixtures are SQLite files and run without that setting."""

import calendar
import fcntl
import glob
import hashlib
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import tarfile
import tempfile
import threading
import time

import pytest
import requests

import pg_metastore
from regions import hermetic_env, meridian_bin, wait_for

FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fixtures",
                                         "upgrade-*.tar.gz")))
ACCEPT = ",".join(["application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.oci.image.index.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json",
                   "application/vnd.docker.distribution.manifest.list.v2+json"])


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Old:
    """The unpacked fixture and its two regions, run by the binary under test."""

    def __init__(self, archive, root):
        self.root = str(root)
        with tarfile.open(archive) as tar:
            tar.extractall(self.root)
        with open(os.path.join(self.root, "expected.json")) as f:
            self.exp = json.load(f)
        self.procs = {}
        self.admin = ("admin", self.exp["admin_password"])
        self.is_pg = self.exp.get("metastore") == "pg"
        if self.is_pg:
            for r in self.exp["regions"]:
                self.psql(r["name"], "-f", os.path.join(self.root, r["name"] + ".pg.sql"))

    def psql(self, name, *args):
        """psql on region name's own database (PostgreSQL fixtures)."""
        uri = pg_metastore.database_uri(os.path.join(self.root, name))
        out = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", uri] +
                             list(args), check=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=120)
        return out.stdout.decode().strip()

    def url(self, name):
        r = next(r for r in self.exp["regions"] if r["name"] == name)
        return "http://%s:%d" % (r["host"], r["port"])

    def start(self):
        for r in self.exp["regions"]:
            argv = [meridian_bin(), "serve", "--region", r["name"],
                    "--listen", "%s:%d" % (r["host"], r["port"]),
                    "--data", os.path.join(self.root, r["name"]),
                    "--advertise", self.url(r["name"]),
                    "--peer-secret", self.exp["peer_secret"], "--auth",
                    "--sync-interval", "1s", "--shutdown-grace", "5s"]
            argv += pg_metastore.metastore_args(os.path.join(self.root, r["name"]))
            log = open(os.path.join(self.root, r["name"] + ".log"), "ab")
            self.procs[r["name"]] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                     stdin=subprocess.DEVNULL,
                                                     env=hermetic_env())
        for name in self.procs:
            wait_for(lambda: self._ready(name), 30, "%s /readyz" % name)

    def _ready(self, name):
        p = self.procs[name]
        assert p.poll() is None, "%s exited %s:\n%s" % (name, p.returncode, self.log(name))
        return requests.get(self.url(name) + "/readyz", timeout=2).status_code == 200

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in self.procs.items():
            try:
                rc = p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait(10)
            assert rc == 0, "%s exited %s:\n%s" % (name, rc, self.log(name))
        self.procs = {}

    def reopen_upload_session(self):
        """Moves the fixture's open upload session to now, keeping its TTL: the session
        was opened when the fixture was made, and its absolute expiry (creation + 24 h)
        has passed on any later day. Resuming it is what is tested, not its expiry."""
        up = self.exp["upload"]
        session = up["location"].rstrip("/").rsplit("/", 1)[1]
        if self.is_pg:
            n = self.psql(up["region"], "-c", "UPDATE uploads SET expires_s = "
                          "extract(epoch FROM now())::BIGINT + (expires_s - created_s), "
                          "created_s = extract(epoch FROM now())::BIGINT WHERE id = '%s' "
                          "RETURNING id" % session)
            assert n == session, "the fixture holds no upload session %s" % session
            return
        db = sqlite3.connect(os.path.join(self.root, up["region"], "meta.db"))
        try:
            with db:
                n = db.execute("UPDATE uploads SET expires_s = CAST(strftime('%s', 'now') AS "
                               "INTEGER) + (expires_s - created_s), created_s = "
                               "CAST(strftime('%s', 'now') AS INTEGER) WHERE id = ?",
                               (session,)).rowcount
        finally:
            db.close()
        assert n == 1, "the fixture holds no upload session %s" % session

    def log(self, name):
        with open(os.path.join(self.root, name + ".log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def get(self, name, path, auth=None, **kw):
        kw.setdefault("timeout", 10)
        return requests.get(self.url(name) + path, auth=auth or self.admin, **kw)


@pytest.fixture(params=FIXTURES, ids=[os.path.basename(p)[8:-7] for p in FIXTURES])
def old(request, tmp_path):
    with tarfile.open(request.param) as tar:
        is_pg_data = any(n.endswith(".pg.sql") for n in tar.getnames())
    if is_pg_data != pg_metastore.is_pg():
        pytest.skip("data of the %s metastore" % ("PostgreSQL" if is_pg_data else "SQLite"))
    # The regions listen on the fixed addresses the fixture stored: one test at a time on
    # this machine, whichever checkout or tier runs it (a second one's servers could not
    # listen, or its requests reached the first one's).
    with open(os.path.join(tempfile.gettempdir(), "meridian-test-upgrade.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        o = Old(request.param, tmp_path)
        try:
            yield o
        finally:
            o.stop()


def check_images(old, name):
    for img in old.exp["images"]:
        r = old.get(name, "/v2/%s/manifests/%s" % (img["repo"], img["ref"]),
                    headers={"Accept": ACCEPT})
        assert r.status_code == 200, (name, img, r.status_code, r.text[:300])
        assert r.headers["Docker-Content-Digest"] == img["digest"]
        assert sha256(r.content) == img["digest"]
        m = r.json()
        for d in [m.get("config")] + m.get("layers", []) + m.get("manifests", []):
            if d is None:
                continue
            kind = "manifests" if "manifests" in m else "blobs"
            b = old.get(name, "/v2/%s/%s/%s" % (img["repo"], kind, d["digest"]),
                        headers={"Accept": ACCEPT})
            assert b.status_code == 200, (name, img["repo"], d, b.status_code)
            assert sha256(b.content) == d["digest"] and len(b.content) == d["size"]
    for gone in old.exp["absent"]:
        r = old.get(name, "/v2/%s/manifests/%s" % (gone["repo"], gone["ref"]),
                    headers={"Accept": ACCEPT})
        assert r.status_code == 404, (name, gone, r.status_code)
    for repo, tags in old.exp.get("tags", {}).items():
        r = old.get(name, "/v2/%s/tags/list" % repo)
        assert r.status_code == 200, (name, repo, r.status_code, r.text)
        assert sorted(r.json()["tags"]) == tags, (name, repo, r.json())
    ref = old.exp["referrers"]
    r = old.get(name, "/v2/%s/referrers/%s" % (ref["repo"], ref["subject"]))
    assert r.status_code == 200
    assert sorted(d["digest"] for d in r.json()["manifests"]) == sorted(ref["digests"])


def test_upgrade_keeps_content_in_every_region(old):
    old.start()
    for name in old.procs:
        check_images(old, name)
    old.stop()
    old.start()  # the migrated data opens again
    for name in old.procs:
        check_images(old, name)


def test_upgrade_keeps_identities_roles_and_webhooks(old):
    old.start()
    users = old.exp["users"]
    bob = ("bob", users["bob"])
    assert old.get("west", "/v2/team-a/app/tags/list", auth=bob).status_code == 200
    assert old.get("west", "/v2/golden/base/tags/list", auth=bob).status_code == 403
    assert old.get("west", "/v2/golden/base/tags/list",
                   auth=("alice", users["alice"])).status_code == 200
    assert old.get("west", "/v2/golden/base/tags/list",
                   auth=("alice", "wrong-password")).status_code == 401
    r = requests.get(old.url("west") + "/v2/public/hello/manifests/1",
                     headers={"Accept": ACCEPT}, timeout=10)
    assert r.status_code == 200  # anonymous consumer of public/*
    r = old.get("west", "/_meridian/v1/webhooks/ciwebhook")
    assert r.status_code == 200, r.text
    hook = r.json()
    assert hook["uri"] == "http://127.0.3.9:9/hook" and hook["scope"] == "golden/*"
    assert "X-Secret" in hook["customHeaders"]


class Receiver:
    """A webhook receiver on a loopback port: the headers of each POST it gets."""

    def __init__(self):
        got = self.got = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                got.append(dict(self.headers))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_upgrade_webhook_sends_its_stored_header_values(old):
    """The webhook's custom header values (stored in clear by early releases, sealed under
    the region's secrets.key by later ones) are sent as they were given, after the upgrade."""
    old.start()
    rx = Receiver()
    try:
        r = requests.patch(old.url("west") + "/_meridian/v1/webhooks/ciwebhook", auth=old.admin,
                           json={"uri": rx.url}, timeout=10)
        assert r.status_code == 200, r.text
        r = requests.post(old.url("west") + "/_meridian/v1/webhooks/ciwebhook/ping",
                          auth=old.admin, timeout=10)
        assert r.status_code == 202, r.text
        wait_for(lambda: rx.got, 30, "the ping delivery")
        assert rx.got[0].get("X-Secret") == "fixture-webhook-secret", rx.got[0]
    finally:
        rx.close()


def iso_s(ts):
    """Seconds since the epoch of an "2026-11-25T12:00:00.000Z" time."""
    return calendar.timegm(time.strptime(ts.split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S"))


def test_upgrade_keeps_webhook_deliveries_and_sends_the_pending_ones(old):
    """The delivery records an older release wrote (its receivers were unreachable) are
    listed after the upgrade, none lost, and those pending a retry go out, under their ids,
    to the receiver the webhook is then given."""
    old.start()
    events = "/_meridian/v1/webhooks/%s/events?n=1000"
    for hook, recorded in old.exp.get("deliveries", {}).items():
        r = old.get("west", events % hook)
        assert r.status_code == 200, (hook, r.status_code, r.text)
        held = {d["id"]: d for d in r.json()}
        for d in recorded:
            assert d["id"] in held, (hook, d, sorted(held))
            assert held[d["id"]]["action"] == d["action"], (hook, d, held[d["id"]])
            if d["state"] != "pending":  # a pending one may have been given up since
                assert held[d["id"]]["state"] == d["state"], (hook, d, held[d["id"]])
    r = old.get("west", events % "ciwebhook")
    assert r.status_code == 200, r.text
    pending = [d for d in r.json() if d["state"] == "pending" and d["action"] != "ping"]
    recorded = [d for d in old.exp.get("deliveries", {}).get("ciwebhook", [])
                if d["state"] == "pending" and d["action"] != "ping"]
    if not recorded:
        pytest.skip("fixture %s left no delivery pending" % old.exp.get("made_by"))
    # Not a skip when the fixture has some: an upgrade that dropped or closed them all
    # would have passed unseen (each is given up only after --webhook-max-attempts).
    assert {d["id"] for d in recorded} <= {d["id"] for d in pending}, (recorded, r.json())
    rx = Receiver()
    try:
        r = requests.patch(old.url("west") + "/_meridian/v1/webhooks/ciwebhook", auth=old.admin,
                           json={"uri": rx.url}, timeout=10)
        assert r.status_code == 200, r.text
        # each is due at its nextAttemptAt (the backoff it had when the fixture was made)
        due = max(iso_s(d["nextAttemptAt"]) for d in pending if d["nextAttemptAt"])
        wait_for(lambda: {d["id"] for d in pending} <= {h.get("X-Meridian-Delivery")
                                                        for h in rx.got},
                 max(0, due - time.time()) + 30, "the pending deliveries")
    finally:
        rx.close()
    assert all(h.get("X-Secret") == "fixture-webhook-secret" for h in rx.got), rx.got


def test_upgrade_shows_no_webhook_credentials(old):
    """A webhook uri's userinfo and query values are shown nowhere after the upgrade: not in
    the webhook, nor in the stored error of a delivery to its unreachable receiver (records
    of releases before 5 December kept the full URL there; the first start redacts them),
    nor in clear in a SQLite region's files."""
    cred = old.exp.get("credhook")
    if cred is None:
        pytest.skip("fixture %s has no webhook with credentials" % old.exp.get("made_by"))
    old.start()
    for path in ("/_meridian/v1/webhooks", "/_meridian/v1/webhooks/" + cred["name"],
                 "/_meridian/v1/webhooks/%s/events?n=1000" % cred["name"]):
        r = old.get("west", path)
        assert r.status_code == 200, (path, r.status_code, r.text)
        for secret in cred["secrets"]:
            assert secret not in r.text, (path, r.text)
    r = old.get("west", "/_meridian/v1/webhooks/%s/events?n=1000" % cred["name"])
    assert any(d["response"] and "***" in d["response"] for d in r.json()), r.text
    old.stop()
    if not old.is_pg:
        for name in ("west", "east"):
            for f in glob.glob(os.path.join(old.root, name, "meta.db*")):
                with open(f, "rb") as fh:
                    data = fh.read()
                for secret in cred["secrets"]:
                    assert secret.encode() not in data, (f, secret)


def test_upgrade_resumes_open_upload_at_acknowledged_offset(old):
    old.reopen_upload_session()
    old.start()
    up = old.exp["upload"]
    path = up["location"]
    if path.startswith("http"):
        path = "/" + path.split("/", 3)[3]
    r = old.get(up["region"], path)
    assert r.status_code == 204, (r.status_code, r.text)
    assert r.headers["Range"] == "0-%d" % (up["offset"] - 1)
    rest = b"67890"
    r = requests.patch(old.url(up["region"]) + path, data=rest, auth=old.admin, timeout=10,
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Range": "%d-%d" % (up["offset"],
                                                            up["offset"] + len(rest) - 1)})
    assert r.status_code == 202, (r.status_code, r.text)
    loc = r.headers["Location"]
    sep = "&" if "?" in loc else "?"
    r = requests.put((old.url(up["region"]) + loc if loc.startswith("/") else loc)
                     + sep + "digest=" + sha256(b"12345" + rest), auth=old.admin, timeout=10)
    assert r.status_code == 201, (r.status_code, r.text)


def test_upgrade_regions_go_on_replicating(old):
    old.start()
    data = os.urandom(2048)
    d = sha256(data)
    r = requests.post(old.url("east") + "/v2/team-a/app/blobs/uploads/?digest=" + d, data=data,
                      auth=old.admin, timeout=10)
    assert r.status_code == 201, r.text
    cfg = b'{"architecture":"amd64","os":"linux"}'
    r = requests.post(old.url("east") + "/v2/team-a/app/blobs/uploads/?digest=" + sha256(cfg),
                      data=cfg, auth=old.admin, timeout=10)
    assert r.status_code == 201, r.text
    body = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": sha256(cfg), "size": len(cfg)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": d, "size": len(data)}]}).encode()
    r = requests.put(old.url("east") + "/v2/team-a/app/manifests/after-upgrade", data=body,
                     auth=old.admin, timeout=10,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text

    def replicated():
        r = old.get("west", "/v2/team-a/app/blobs/" + d)
        return r.status_code == 200 and r.content == data
    wait_for(replicated, 30, "the new image to reach west")


def summary(old, name):
    """Region name's anti-entropy digests per repository (the peer API), without the
    repositories it holds blobs of only (nothing to compare) and those a residency policy
    keeps from the other region."""
    r = old.get(name, "/_meridian/v1/replication/summary", auth=("peer", old.exp["peer_secret"]))
    assert r.status_code == 200, (name, r.status_code, r.text)
    kept = old.exp.get("governance", {}).get("residency", {}).get("repo")
    return {repo: d for repo, d in r.json().items() if d != sha256(b"") and repo != kept}


def test_upgrade_regions_agree_on_their_replicated_state(old):
    """The migrated regions hold the same replicated state (tag registers, manifests,
    tombstones) per repository: a step that changed it in one region only would have
    anti-entropy repair it for ever."""
    old.start()
    deadline = time.monotonic() + 30
    while True:
        west, east = summary(old, "west"), summary(old, "east")
        if west == east or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert west == east, {k: (west.get(k), east.get(k)) for k in set(west) | set(east)
                          if west.get(k) != east.get(k)}


def cj(o):
    return json.dumps(o, separators=(",", ":"), sort_keys=True).encode()


def test_upgrade_manifest_deleted_before_starts_pending_when_pushed_again(old):
    """team-a/gone:x was deleted in west before the upgrade (every fixture); releases before
    schema 12 kept each region's status row through a delete. Pushed again in east after
    the upgrade while west is stopped, it must not show west Completed (west's report from
    before the delete): image-version wait --replicated would return before west holds it."""
    gone = next((a["ref"] for a in old.exp["absent"]
                 if a["repo"] == "team-a/gone" and a["ref"].startswith("sha256:")), None)
    if gone is None:
        pytest.skip("fixture %s deleted no manifest" % old.exp.get("made_by"))
    old.start()
    old.procs["west"].send_signal(signal.SIGTERM)
    assert old.procs["west"].wait(30) == 0
    # the same bytes as make_upgrade_fixture.py's image("team-a/gone", "x", [b"gone layer"])
    config = cj({"architecture": "amd64", "os": "linux", "repo": "team-a/gone", "ref": "x"})
    descs = []
    for mt, data in (("application/vnd.oci.image.config.v1+json", config),
                     ("application/vnd.oci.image.layer.v1.tar+gzip", b"gone layer")):
        r = requests.post(old.url("east") + "/v2/team-a/gone/blobs/uploads/?digest=" +
                          sha256(data), data=data, auth=old.admin, timeout=10)
        assert r.status_code == 201, r.text
        descs.append({"mediaType": mt, "digest": sha256(data), "size": len(data)})
    body = cj({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
               "config": descs[0], "layers": descs[1:]})
    if sha256(body) != gone:
        pytest.skip("fixture %s made team-a/gone:x otherwise" % old.exp.get("made_by"))
    r = requests.put(old.url("east") + "/v2/team-a/gone/manifests/x", data=body, auth=old.admin,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                     timeout=10)
    assert r.status_code == 201, r.text
    r = old.get("east", "/_meridian/v1/image-versions?repository=team-a/gone&reference=x")
    assert r.status_code == 200, r.text
    rows = {x["region"]: x["state"] for x in r.json()["replicationStatus"]["summary"]}
    assert rows.get("east") == "Completed" and rows.get("west") != "Completed", rows


def test_upgrade_keeps_governance_and_versions(old):
    """What later releases added (fixtures made by them): a robot's secret and role, an
    image definition's version record, a residency policy and what it keeps out, a
    retention rule, a quota and a version's lock, in both regions, and again after a
    second start."""
    gov = old.exp.get("governance")
    if gov is None:
        pytest.skip("fixture %s predates governance" % old.exp.get("made_by"))
    api = "/_meridian/v1/"
    for attempt in range(2):
        old.start()
        for name in old.procs:
            bot = (gov["robot"]["name"], gov["robot"]["secret"])
            r = old.get(name, "/v2/golden/robotpushed/tags/list", auth=bot)
            assert r.status_code == 200 and r.json()["tags"] == ["1"], (name, r.text)
            v = gov["version"]
            r = old.get(name, api + "image-versions?repository=%s&reference=%s"
                        % (v["repo"], v["ref"]))
            assert r.status_code == 200, (name, r.status_code, r.text)
            assert v["digest"] in r.text, (name, r.text)
            if "status" in v:  # each region's status row, as the fixture's regions held them
                # A peer is Completed for a tag once it has acknowledged the tag's write
                # (docs/replication.md, "The status of a tag"). What a fixture stored of its
                # peer's acknowledgements may predate that write (the v8 one holds "east:13"
                # only), so it reads InProgress until the peer's first poll after the start.
                def rows(name=name):
                    r = old.get(name, api + "image-versions?repository=%s&reference=%s"
                                % (v["repo"], v["ref"]))
                    assert r.status_code == 200, (name, r.status_code, r.text)
                    return {x["region"]: x["state"]
                            for x in r.json()["replicationStatus"]["summary"]}
                wait_for(lambda: rows() == v["status"], 30,
                         "%s: the version's status as the fixture held it" % name)
            res = gov["residency"]
            r = old.get(name, api + "policies/residency/" + res["policy"])
            assert r.status_code == 200, (name, r.status_code, r.text)
            r = old.get(name, "/v2/%s/manifests/%s" % (res["repo"], res["ref"]),
                        headers={"Accept": ACCEPT})
            if name == res["allowed"]:
                assert r.status_code == 200 and sha256(r.content) == res["digest"], name
            else:
                # refused by the policy (or simply not held): never served
                assert r.status_code in (403, 404), (name, r.status_code, r.text)
                assert res["digest"] not in r.text
            if gov["retention"] is not None:  # None: the release had no retention rules
                rules = old.get(name, api + "retention").json()
                assert any(x["pattern"] == gov["retention"]["pattern"] for x in rules), rules
            quotas = old.get(name, api + "quotas").json()
            assert any(q["pattern"] == gov["quota"]["pattern"] and
                       q["bytes"] == gov["quota"]["bytes"] for q in quotas), quotas
            lk = gov["locked"]
            r = old.get(name, api + "repositories?repository=%s&reference=%s"
                        % (lk["repo"], lk["ref"]))
            assert r.status_code == 200, (name, r.text)
            attrs = r.json()["changeableAttributes"]
            assert attrs["writeEnabled"] is False and attrs["deleteEnabled"] is False, attrs
            r = requests.delete(old.url(name) + "/v2/%s/manifests/%s" % (lk["repo"], lk["ref"]),
                                auth=old.admin, timeout=10)
            assert r.status_code in (403, 405), (name, r.status_code, r.text)
        old.stop()
