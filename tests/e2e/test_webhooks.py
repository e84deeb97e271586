"""Regional webhooks against one region (docs/webhooks.md): the management API and
the CLI with exact error codes, push and delete payloads, scope and action
filtering, retries while the receiver is down (both non-2xx answers and a closed
port), give-up after the maximum attempts, deliveries that survive kill -9, and the
delivery records listed with status codes and latency.

Receivers are python http.server instances in threads on 127.0.0.1. Deliveries are
queued before the push or delete is answered, so the API's event list can be read
right after an operation; what a receiver gets is awaited by polling, never a sleep.
The multi-region webhook test lives with the geo-replication tests."""

import base64
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import time

import pytest
import requests

import pg_metastore
from webhook_receiver import Receiver
from conftest import (MT_OCI_MANIFEST, metric_sum, parse_metrics, recv_until_close,
                      unique_name, wait_until)

REGION = "eastus"
# Retries between 0.5 s and 1 s apart keep the retry tests short.
MERIDIAN_ARGS = ["--region", REGION, "--webhook-backoff-max", "1s"]

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")  # version 4
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# ----------------------------------------------------------------------------
# a webhook receiver

@pytest.fixture
def receiver():
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


# ----------------------------------------------------------------------------
# helpers

def hook_name(prefix="hook"):
    return (prefix + unique_name("x").replace("-", ""))[:50]


def api(registry, method, path, **kw):
    kw.setdefault("timeout", 30)
    return requests.request(method, registry.url + "/_meridian/v1/" + path, **kw)


def assert_mgmt_error(resp, status, code):
    desc = "%s %s -> %s %r" % (resp.request.method, resp.request.url, resp.status_code,
                               resp.content[:300])
    assert resp.status_code == status, desc
    body = resp.json()
    assert set(body) == {"error"}, desc
    assert body["error"]["code"] == code, desc
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], desc
    return body["error"]["message"]


def create(registry, name, uri, actions=("push", "delete"), location=REGION, **extra):
    body = {"name": name, "location": location, "uri": uri, "actions": list(actions)}
    body.update(extra)
    r = api(registry, "POST", "webhooks", json=body)
    assert r.status_code == 201, (r.status_code, r.text)
    return r.json()


def events(registry, name, **params):
    r = api(registry, "GET", "webhooks/%s/events" % name, params=params or None)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def cli(meridian_bin, registry, *args, check=None):
    p = subprocess.run([meridian_bin, "webhook"] + list(args) + ["--registry", registry.url],
                       capture_output=True, text=True, timeout=60)
    if check is not None:
        assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
    return p


def webhook_metrics(registry):
    r = requests.get(registry.url + "/metrics", timeout=30)
    s = parse_metrics(r.text)
    return {o: metric_sum(s, "meridian_webhook_deliveries_total", outcome=o)
            for o in ("delivered", "retried", "failed")}


# ----------------------------------------------------------------------------
# management API

def test_api_create_show_list_update_delete(registry, receiver):
    name = hook_name()
    w = create(registry, name, receiver.url, actions=["push"], scope="golden/*",
               customHeaders={"Authorization": "Bearer s3cret", "X-Team": "infra"})
    assert w == {"name": name, "location": REGION, "uri": receiver.url, "actions": ["push"],
                 "scope": "golden/*", "enabled": True,
                 "customHeaders": {"Authorization": "***", "X-Team": "***"}}
    r = api(registry, "GET", "webhooks/" + name)
    assert r.status_code == 200 and r.json() == w
    r = api(registry, "GET", "webhooks")
    assert r.status_code == 200
    assert [x for x in r.json() if x["name"] == name] == [w]
    assert "s3cret" not in r.text

    r = api(registry, "PATCH", "webhooks/" + name,
            json={"actions": ["delete", "push"], "enabled": False, "scope": "*"})
    assert r.status_code == 200, r.text
    w2 = r.json()
    assert w2["actions"] == ["push", "delete"] and w2["enabled"] is False and w2["scope"] == "*"
    assert w2["uri"] == receiver.url and w2["customHeaders"] == w["customHeaders"]
    assert api(registry, "GET", "webhooks/" + name).json() == w2
    # a delivery header of the registry's own is refused in an update too, changing nothing
    r = api(registry, "PATCH", "webhooks/" + name,
            json={"customHeaders": {"X-Meridian-Event": "delete"}, "scope": "other/*"})
    assert "X-Meridian-Event is set by the registry" in assert_mgmt_error(r, 400, "BAD_REQUEST")
    assert api(registry, "GET", "webhooks/" + name).json() == w2
    # customHeaders: null clears them
    r = api(registry, "PATCH", "webhooks/" + name, json={"customHeaders": None})
    assert r.status_code == 200 and r.json()["customHeaders"] == {}

    r = api(registry, "DELETE", "webhooks/" + name)
    assert r.status_code == 204 and r.content == b""
    assert_mgmt_error(api(registry, "GET", "webhooks/" + name), 404, "NOT_FOUND")
    assert_mgmt_error(api(registry, "DELETE", "webhooks/" + name), 404, "NOT_FOUND")
    assert name not in [x["name"] for x in api(registry, "GET", "webhooks").json()]


BAD_CREATES = [
    ({"name": "abc"}, "name must be"),
    ({"name": "has-dash"}, "name must be"),
    ({"name": "x" * 51}, "name must be"),
    ({"name": None}, "name must be a string"),
    ({"location": ""}, "location must be"),
    ({"location": "East US"}, "location must be"),
    ({"uri": "ftp://example.com/x"}, "uri must be"),
    ({"uri": "example.com/hook"}, "uri must be"),
    ({"uri": "http://"}, "uri must be"),
    # a registry's own API: a webhook pinging itself looped for ever, 700 deliveries a second
    ({"uri": "http://127.0.0.1:5000/_meridian/v1/webhooks/x/ping"}, "management endpoint"),
    ({"uri": "https://registry.example/_meridian/v1/compaction/run?x=1"},
     "management endpoint"),
    ({"actions": []}, "actions must be"),
    ({"actions": ["push", "pull"]}, 'unknown action "pull"'),
    ({"actions": "push"}, "actions must be"),
    ({"scope": ""}, "scope must be"),
    ({"scope": "Golden/*"}, "scope must be"),
    ({"enabled": "yes"}, "enabled must be"),
    ({"customHeaders": {"Content-Type": "x"}}, "set by the registry"),
    # the headers of every delivery: a second X-Meridian-Event could name another action
    ({"customHeaders": {"X-Meridian-Event": "delete"}}, "X-Meridian-Event is set by the"),
    ({"customHeaders": {"x-meridian-delivery": "1"}}, "x-meridian-delivery is set by the"),
    ({"customHeaders": {"X-Meridian-Webhook": "other"}}, "X-Meridian-Webhook is set by the"),
    ({"customHeaders": {"User-Agent": "x"}}, "User-Agent is set by the registry"),
    ({"customHeaders": {"X-A": "a\r\nX-B: b"}}, "the value of X-A"),
    ({"customHeaders": ["x"]}, "customHeaders must be"),
    ({"colour": "red"}, 'unknown member "colour"'),
]


@pytest.mark.parametrize("change,message", BAD_CREATES)
def test_api_create_rejects_bad_input(registry, change, message):
    body = {"name": hook_name(), "location": REGION, "uri": "http://127.0.0.1:9/x",
            "actions": ["push"]}
    body.update(change)
    r = api(registry, "POST", "webhooks", json=body)
    assert message in assert_mgmt_error(r, 400, "BAD_REQUEST")
    if isinstance(body["name"], str):
        assert_mgmt_error(api(registry, "GET", "webhooks/" + body["name"]), 404, "NOT_FOUND")


def test_api_missing_members_and_bad_bodies(registry):
    full = {"name": hook_name(), "location": REGION, "uri": "http://127.0.0.1:9/x",
            "actions": ["push"]}
    for key in ("name", "location", "uri", "actions"):
        body = {k: v for k, v in full.items() if k != key}
        msg = assert_mgmt_error(api(registry, "POST", "webhooks", json=body), 400, "BAD_REQUEST")
        assert key + " is required" in msg
    for raw in (b"{not json", b"[1,2]", b'"x"'):
        r = api(registry, "POST", "webhooks", data=raw,
                headers={"Content-Type": "application/json"})
        assert_mgmt_error(r, 400, "BAD_REQUEST")


def test_api_conflicts_and_unknowns(registry):
    name = hook_name()
    create(registry, name, "http://127.0.0.1:9/x")
    r = api(registry, "POST", "webhooks",
            json={"name": name, "location": REGION, "uri": "http://127.0.0.1:9/y",
                  "actions": ["push"]})
    assert name in assert_mgmt_error(r, 409, "CONFLICT")
    assert api(registry, "GET", "webhooks/" + name).json()["uri"] == "http://127.0.0.1:9/x"

    # Updates: name is immutable, bad values change nothing, unknown webhooks are 404.
    assert "cannot be changed" in assert_mgmt_error(
        api(registry, "PATCH", "webhooks/" + name, json={"name": "other12"}), 400, "BAD_REQUEST")
    assert_mgmt_error(api(registry, "PATCH", "webhooks/" + name, json={"uri": "nope"}),
                      400, "BAD_REQUEST")
    assert_mgmt_error(api(registry, "PATCH", "webhooks/" + name, json={"actions": ["pull"]}),
                      400, "BAD_REQUEST")
    assert api(registry, "GET", "webhooks/" + name).json()["uri"] == "http://127.0.0.1:9/x"
    ghost = hook_name("ghost")
    assert_mgmt_error(api(registry, "PATCH", "webhooks/" + ghost, json={"enabled": False}),
                      404, "NOT_FOUND")
    for method, path in (("GET", ghost), ("DELETE", ghost), ("POST", ghost + "/ping"),
                         ("GET", ghost + "/events"), ("GET", "bad-name"),
                         ("GET", "abc"), ("POST", "abc/ping")):
        assert_mgmt_error(api(registry, method, "webhooks/" + path), 404, "NOT_FOUND")
    r = api(registry, "PUT", "webhooks/" + name, json={})
    assert_mgmt_error(r, 405, "UNSUPPORTED")
    assert r.headers.get("Allow") == "GET, HEAD, PATCH, DELETE", r.headers
    r = api(registry, "DELETE", "webhooks")
    assert_mgmt_error(r, 405, "UNSUPPORTED")
    assert r.headers.get("Allow") == "POST, GET, HEAD", r.headers
    for n in ("0", "1001", "abc", "-1"):
        assert_mgmt_error(api(registry, "GET", "webhooks/%s/events" % name, params={"n": n}),
                          400, "BAD_REQUEST")


def test_concurrent_creates_of_one_name_one_wins(registry):
    """Sixteen clients create the same webhook at once: exactly one gets 201 and the
    webhook is theirs; the others get 409 (the store checks as it writes, not before).
    Each request is sent but for its last byte, then the last bytes go out together."""
    name = hook_name("race")
    host, port = registry.url.split("//")[1].split(":")
    socks = []
    for i in range(16):
        body = json.dumps({"name": name, "location": REGION,
                           "uri": "http://127.0.0.1:9/n%d" % i, "actions": ["push"]}).encode()
        head = ("POST /_meridian/v1/webhooks HTTP/1.1\r\nHost: %s:%s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % (host, port, len(body))).encode()
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(head + body[:-1])
        socks.append((s, body[-1:]))
    for s, last in socks:
        s.sendall(last)
    statuses = []
    for s, _ in socks:
        data = recv_until_close(s)
        s.close()
        statuses.append(int(data.split(b" ", 2)[1]))
    assert sorted(statuses) == [201] + [409] * 15, statuses
    won = statuses.index(201)
    got = api(registry, "GET", "webhooks/" + name).json()
    assert got["uri"] == "http://127.0.0.1:9/n%d" % won


def test_ping_from_another_region_is_409_naming_it(registry):
    name = hook_name()
    create(registry, name, "http://127.0.0.1:9/x", location="westeurope")
    msg = assert_mgmt_error(api(registry, "POST", "webhooks/%s/ping" % name), 409, "CONFLICT")
    assert "westeurope" in msg
    assert events(registry, name) == []


# ----------------------------------------------------------------------------
# CLI

def test_cli_lifecycle(meridian_bin, registry, receiver):
    name = hook_name("cli")
    p = cli(meridian_bin, registry, "create", name, "--location", REGION, "--uri", receiver.url,
            "--actions", "push,delete", "--scope", "golden/*",
            "--headers", "X-Token=abc,X-List=a,b", check=0)
    lines = p.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "LOCATION", "ENABLED", "ACTIONS", "SCOPE"]
    assert lines[1].split()[:5] == [name, REGION, "true", "push,delete", "golden/*"]

    p = cli(meridian_bin, registry, "show", name, "--output", "json", check=0)
    w = json.loads(p.stdout)
    assert w["customHeaders"] == {"X-Token": "***", "X-List": "***"}
    assert w["actions"] == ["push", "delete"] and w["uri"] == receiver.url

    p = cli(meridian_bin, registry, "list", "--output", "json", check=0)
    assert name in [x["name"] for x in json.loads(p.stdout)]
    p = cli(meridian_bin, registry, "list", check=0)
    assert re.search(r"^%s\s+%s\s+true\s+push,delete\s+golden/\*\s+" % (name, REGION),
                     p.stdout, re.M), p.stdout

    p = cli(meridian_bin, registry, "update", name, "--enabled", "false", "--actions", "push",
            "--output", "json", check=0)
    w = json.loads(p.stdout)
    assert w["enabled"] is False and w["actions"] == ["push"]
    p = cli(meridian_bin, registry, "update", name, "--enabled=true", "--scope", "*",
            "--output", "json", check=0)
    w = json.loads(p.stdout)
    assert w["enabled"] is True and w["scope"] == "*"

    # The custom header values arrive at the receiver (a comma inside a value is kept).
    p = cli(meridian_bin, registry, "ping", name, check=0)
    assert "delivered" in p.stdout and "200" in p.stdout, p.stdout
    got = receiver.events(name, "ping")
    assert got and got[0]["headers"]["x-token"] == "abc"
    assert got[0]["headers"]["x-list"] == "a,b"

    p = cli(meridian_bin, registry, "delete", name, check=0)
    assert name in p.stdout
    p = cli(meridian_bin, registry, "show", name, check=1)
    assert "no webhook named %s" % name in p.stderr and "NOT_FOUND" in p.stderr


def test_cli_errors(meridian_bin, registry):
    name = hook_name("clierr")
    p = cli(meridian_bin, registry, "create", name, "--location", REGION, "--uri", "nope",
            "--actions", "push", check=1)
    assert "uri must be" in p.stderr and "BAD_REQUEST" in p.stderr and "HTTP 400" in p.stderr
    p = cli(meridian_bin, registry, "create", name, "--location", REGION,
            "--uri", "http://127.0.0.1:9/", "--actions", "push,pull", check=1)
    assert 'unknown action "pull"' in p.stderr
    p = cli(meridian_bin, registry, "create", name, "--uri", "http://127.0.0.1:9/",
            "--actions", "push", check=1)
    assert "location is required" in p.stderr
    cli(meridian_bin, registry, "create", check=2)
    cli(meridian_bin, registry, "frobnicate", name, check=2)
    cli(meridian_bin, registry, "update", name, "--enabled", "maybe", check=2)
    cli(meridian_bin, registry, "create", name, "--location", REGION, "--uri",
        "http://127.0.0.1:9/", "--actions", "push", "--headers", "novalue", check=2)
    p = cli(meridian_bin, registry, "delete", name, check=1)
    assert "NOT_FOUND" in p.stderr
    p = subprocess.run([meridian_bin, "webhook", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "list-events" in p.stdout


def test_a_secret_in_the_uri_is_sent_but_never_shown(meridian_bin, registry, receiver):
    """A receiver URL may carry secrets (user:password, a query token): the sender uses it
    whole (curl turns the userinfo into Basic credentials), while the API, the CLI, the
    delivery records (an unreachable receiver's error names the URL) and the log show it
    with its userinfo and query values as ***, and the database holds it sealed. (The URL
    was stored, listed and logged as given.)"""
    name = hook_name("urisecret")
    user_pw = "hookuser:" + secrets.token_hex(8)
    q_token = secrets.token_hex(12)
    uri = "http://%s@127.0.0.1:%d/hook?token=%s&team=infra" % (user_pw, receiver.port, q_token)
    shown = "http://***@127.0.0.1:%d/hook?token=***&team=***" % receiver.port
    leaks = (user_pw.split(":")[1], q_token)

    def no_secret(text):
        return not any(x in text for x in leaks)
    w = create(registry, name, uri, actions=["push"])
    assert w["uri"] == shown, w
    assert api(registry, "GET", "webhooks/" + name).json()["uri"] == shown
    assert [x["uri"] for x in api(registry, "GET", "webhooks").json()
            if x["name"] == name] == [shown]
    p = cli(meridian_bin, registry, "show", name, "--output", "json", check=0)
    assert json.loads(p.stdout)["uri"] == shown and no_secret(p.stdout), p.stdout
    p = cli(meridian_bin, registry, "list", check=0)
    assert no_secret(p.stdout), p.stdout
    r = api(registry, "PATCH", "webhooks/" + name, json={"scope": "e2e/*"})
    assert r.status_code == 200 and r.json()["uri"] == shown, r.text

    # the receiver gets the real URL: the query as given, the userinfo as Basic credentials
    r = api(registry, "POST", "webhooks/%s/ping" % name)
    assert r.status_code == 202, r.text
    got = wait_until(lambda: receiver.events(name, "ping"), what="ping at the receiver")
    assert got[0]["path"] == "/hook?token=%s&team=infra" % q_token, got[0]["path"]
    assert got[0]["headers"]["authorization"] == \
        "Basic " + base64.b64encode(user_pw.encode()).decode()

    # an unreachable receiver: the error recorded (and listed) names the URL redacted
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    bad = "http://%s@127.0.0.1:%d/hook?token=%s" % (user_pw, port, q_token)
    r = api(registry, "PATCH", "webhooks/" + name, json={"uri": bad})
    assert r.status_code == 200, r.text
    assert r.json()["uri"] == "http://***@127.0.0.1:%d/hook?token=***" % port
    r = api(registry, "POST", "webhooks/%s/ping" % name)
    pid = r.json()["id"]

    def failed_once():
        ev = [e for e in events(registry, name) if e["id"] == pid]
        return ev and ev[0]["attempts"] >= 1 and ev[0]
    ev = wait_until(failed_once, what="the unreachable attempt recorded")
    assert ev["statusCode"] is None and "127.0.0.1:%d" % port in ev["response"], ev
    assert no_secret(json.dumps(events(registry, name))), ev["response"]
    p = cli(meridian_bin, registry, "list-events", name, check=0)
    assert no_secret(p.stdout), p.stdout
    assert api(registry, "DELETE", "webhooks/" + name).status_code == 204
    with open(registry.log_path, "rb") as f:
        log = f.read().decode("utf-8", "replace")
    assert no_secret(log), [ln for ln in log.splitlines() if not no_secret(ln)][:3]
    if not pg_metastore.is_pg():
        for suffix in ("", "-wal"):
            path = os.path.join(registry.data_dir, "meta.db" + suffix)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    raw = f.read()
                assert all(x.encode() not in raw for x in leaks), path


# ----------------------------------------------------------------------------
# deliveries

def test_ping_is_delivered_and_listed(meridian_bin, registry, receiver):
    name = hook_name("ping")
    create(registry, name, receiver.url, actions=["push"])
    r = api(registry, "POST", "webhooks/%s/ping" % name)
    assert r.status_code == 202, r.text
    pid = r.json()["id"]
    assert UUID_RE.match(pid)
    got = wait_until(lambda: receiver.events(name, "ping"), what="ping at the receiver")
    req = got[0]
    assert req["path"] == "/hook"
    assert req["headers"]["content-type"] == "application/json"
    assert req["headers"]["x-meridian-event"] == "ping"
    assert req["headers"]["x-meridian-delivery"] == pid
    assert req["json"]["id"] == pid and req["json"]["region"] == REGION
    assert TS_RE.match(req["json"]["timestamp"])
    assert "target" not in req["json"]

    def done():
        ev = [e for e in events(registry, name) if e["id"] == pid]
        return ev and ev[0]["state"] == "delivered" and ev[0]
    ev = wait_until(done, what="ping recorded delivered")
    assert ev["action"] == "ping" and ev["statusCode"] == 200 and ev["attempts"] == 1
    assert isinstance(ev["latencyMs"], int) and 0 <= ev["latencyMs"] < 10000
    assert ev["response"] == '{"ok":true}'
    assert TS_RE.match(ev["createdAt"]) and TS_RE.match(ev["updatedAt"])
    assert ev["nextAttemptAt"] is None and ev["payload"]["id"] == pid

    p = cli(meridian_bin, registry, "list-events", name, check=0)
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["ID", "ACTION", "STATE", "ATTEMPTS", "STATUS", "LATENCY_MS",
                                "CREATED", "RESPONSE"]
    row = [ln for ln in lines[1:] if ln.startswith(pid)][0].split()
    assert row[1:5] == ["ping", "delivered", "1", "200"] and row[5].isdigit()
    p = cli(meridian_bin, registry, "list-events", name, "--output", "json", "--top", "1",
            check=0)
    assert [e["id"] for e in json.loads(p.stdout)] == [pid]


def test_push_and_delete_payloads(registry, receiver, oci, repo):
    name = hook_name("payload")
    create(registry, name, receiver.url, actions=["push", "delete"], scope="e2e/*",
           customHeaders={"Authorization": "Bearer t0ken"})
    img = oci.push_image(repo, tag="v1", layers=1)
    got = wait_until(lambda: receiver.events(name, "push"), what="push event")
    assert len(got) == 1
    ev = got[0]["json"]
    assert got[0]["headers"]["authorization"] == "Bearer t0ken"
    assert got[0]["headers"]["x-meridian-delivery"] == ev["id"]
    assert UUID_RE.match(ev["id"]) and TS_RE.match(ev["timestamp"])
    assert ev["action"] == "push" and ev["region"] == REGION
    assert ev["target"] == {"mediaType": MT_OCI_MANIFEST, "size": img.size,
                            "digest": img.digest, "length": img.size, "repository": repo,
                            "tag": "v1"}
    assert ev["request"]["method"] == "PUT"
    assert ev["request"]["host"] == registry.url.split("//")[1]
    assert re.fullmatch(r"[0-9a-zA-Z]+", ev["request"]["id"])

    # A push by digest has no tag; a tag delete names the tag and what it pointed at; a
    # manifest delete names the digest.
    img2 = oci.push_image(repo, layers=1)
    assert oci.put_manifest(repo, "v2", img.body).status_code == 201
    assert oci.delete(oci.manifest_path(repo, "v2")).status_code == 202
    assert oci.delete(oci.manifest_path(repo, img2.digest)).status_code == 202
    wait_until(lambda: len(receiver.events(name)) >= 5, what="five events")
    pushes = [e["json"] for e in receiver.events(name, "push")]
    deletes = [e["json"] for e in receiver.events(name, "delete")]
    by_digest = [p for p in pushes if p["target"]["digest"] == img2.digest]
    assert len(by_digest) == 1 and "tag" not in by_digest[0]["target"]
    assert [p["target"].get("tag") for p in pushes] == ["v1", None, "v2"]
    assert len(deletes) == 2
    tag_del = [d for d in deletes if d["target"].get("tag") == "v2"][0]
    assert tag_del["target"]["digest"] == img.digest
    assert tag_del["request"]["method"] == "DELETE"
    man_del = [d for d in deletes if "tag" not in d["target"]][0]
    assert man_del["target"]["digest"] == img2.digest
    assert man_del["target"]["repository"] == repo
    assert len({e["json"]["id"] for e in receiver.events(name)}) == 5

    # Failed operations fire nothing.
    assert oci.delete(oci.manifest_path(repo, img2.digest)).status_code == 404
    assert oci.put_manifest(repo, "bad", b"{}").status_code == 400
    assert len(events(registry, name)) == 5


def test_scope_actions_location_and_enabled_filter(registry, receiver, oci):
    base = unique_name("scope")
    golden, other = "golden%s/app" % base, "other%s/app" % base
    # golden pushes only; every delete; another region's; a disabled one
    a, b, c, d = (hook_name(p) for p in ("gold", "dels", "west", "off"))
    create(registry, a, receiver.url, actions=["push"], scope="golden%s/*" % base)
    create(registry, b, receiver.url, actions=["delete"], scope="*")
    create(registry, c, receiver.url, actions=["push", "delete"], location="westeurope")
    create(registry, d, receiver.url, actions=["push", "delete"], enabled=False)
    g = oci.push_image(golden, tag="t", layers=1)
    o = oci.push_image(other, tag="t", layers=1)
    assert oci.delete(oci.manifest_path(golden, g.digest)).status_code == 202
    assert oci.delete(oci.manifest_path(other, o.digest)).status_code == 202

    # Queued before each answer: the lists are complete now.
    ea = events(registry, a)
    assert [(e["action"], e["payload"]["target"]["repository"]) for e in ea] == [
        ("push", golden)]
    eb = events(registry, b)
    assert sorted((e["action"], e["payload"]["target"]["repository"]) for e in eb) == [
        ("delete", golden), ("delete", other)]
    assert events(registry, c) == [] and events(registry, d) == []
    wait_until(lambda: len(receiver.events(a)) == 1 and len(receiver.events(b)) == 2,
               what="filtered deliveries")
    assert receiver.events(c) == [] and receiver.events(d) == []

    # Re-enabling turns it on for what happens next, not for what already happened.
    assert api(registry, "PATCH", "webhooks/" + d, json={"enabled": True}).status_code == 200
    oci.push_image(other, tag="t2", layers=1)
    assert [e["action"] for e in events(registry, d)] == ["push"]


def test_retries_until_the_receiver_answers_2xx(registry, receiver, oci, repo):
    name = hook_name("retry")
    create(registry, name, receiver.url, actions=["push"])
    before = webhook_metrics(registry)
    receiver.status = 503
    oci.push_image(repo, tag="r", layers=1)

    def failing_twice():
        ev = events(registry, name)
        return ev and ev[0]["attempts"] >= 2 and ev[0]
    ev = wait_until(failing_twice, timeout_s=30, what="two failed attempts")
    assert ev["state"] == "pending" and ev["statusCode"] == 503
    assert ev["response"] == "receiver says no\n" and TS_RE.match(ev["nextAttemptAt"])
    receiver.status = 200

    def delivered():
        ev = events(registry, name)
        return ev and ev[0]["state"] == "delivered" and ev[0]
    ev = wait_until(delivered, timeout_s=30, what="delivery after the receiver recovered")
    assert ev["statusCode"] == 200 and ev["attempts"] >= 3
    got = receiver.events(name, "push")
    assert len(got) == ev["attempts"]
    assert len({g["json"]["id"] for g in got}) == 1  # the same event each time
    after = webhook_metrics(registry)
    assert after["retried"] - before["retried"] >= 2
    assert after["delivered"] - before["delivered"] >= 1


def test_retries_while_the_port_is_closed(registry, receiver, oci, repo):
    name = hook_name("closed")
    create(registry, name, receiver.url, actions=["push"])
    receiver.stop()
    oci.push_image(repo, tag="c", layers=1)

    def refused():
        ev = events(registry, name)
        return ev and ev[0]["attempts"] >= 2 and ev[0]
    ev = wait_until(refused, timeout_s=30, what="attempts against a closed port")
    assert ev["state"] == "pending" and ev["statusCode"] is None
    assert ev["response"] and "127.0.0.1" in ev["response"]
    receiver.start()
    wait_until(lambda: events(registry, name)[0]["state"] == "delivered", timeout_s=30,
               what="delivery once the port reopened")
    assert len(receiver.events(name, "push")) == 1


class SilentReceiver:
    """Accepts connections and reads them, never answers: a receiver that hangs. Records
    when each connection was accepted and when the sender gave up on it (closed it)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = []  # monotonic times
        self.closed = []    # monotonic times
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted.append(time.monotonic())
                self.conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn):
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        with self.lock:
            self.closed.append(time.monotonic())

    def stop(self):
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.close()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.sock.getsockname()[1]


def test_a_receiver_that_never_answers_does_not_hold_back_the_others(registry, receiver, oci,
                                                                      repo):
    """A webhook whose receiver accepts and never answers holds its own deliveries (each
    send waits up to 10 s), not every other webhook's: they are sent meanwhile."""
    silent = SilentReceiver()
    slow, fast = hook_name("silent"), hook_name("fast")
    try:
        create(registry, slow, silent.url, actions=["push"])
        create(registry, fast, receiver.url, actions=["push"])
        for i in range(3):
            oci.push_image(repo, tag="s%d" % i, layers=1)
        wait_until(lambda: silent.accepted, timeout_s=30, what="a send to the silent receiver")
        got = wait_until(lambda: len(receiver.events(fast, "push")) >= 3 and time.monotonic(),
                         timeout_s=60, what="the other webhook's three deliveries")
        with silent.lock:
            first_given_up = min(silent.closed) if silent.closed else None
        # Delivered while the first send to the silent receiver was still waiting for its
        # answer, not after it timed out.
        assert first_given_up is None or got < first_given_up, \
            "the other webhook waited for the silent receiver's sends to time out"
        # The silent webhook's later deliveries wait for the first, one send at a time.
        with silent.lock:
            assert len(silent.accepted) - len(silent.closed) <= 1
    finally:
        api(registry, "DELETE", "webhooks/" + slow)
        api(registry, "DELETE", "webhooks/" + fast)
        silent.stop()


def test_updating_the_uri_redirects_pending_retries(registry, receiver, oci, repo):
    name = hook_name("move")
    create(registry, name, "http://127.0.0.1:9/nothing-listens", actions=["push"])
    oci.push_image(repo, tag="m", layers=1)
    wait_until(lambda: events(registry, name)[0]["attempts"] >= 1, timeout_s=30,
               what="a failed attempt")
    r = api(registry, "PATCH", "webhooks/" + name, json={"uri": receiver.url})
    assert r.status_code == 200
    wait_until(lambda: events(registry, name)[0]["state"] == "delivered", timeout_s=30,
               what="delivery to the new uri")
    assert len(receiver.events(name, "push")) == 1


def test_gives_up_after_max_attempts(server_factory, receiver):
    srv = server_factory("--region", REGION, "--webhook-backoff-max", "1s",
                         "--webhook-max-attempts", "2")
    name = hook_name("giveup")
    create(srv, name, receiver.url, actions=["push"])
    receiver.status = 500
    srv.oci().push_image("e2e/giveup/app", tag="g", layers=1)

    def failed():
        ev = events(srv, name)
        return ev and ev[0]["state"] == "failed" and ev[0]
    ev = wait_until(failed, timeout_s=30, what="delivery given up")
    assert ev["attempts"] == 2 and ev["statusCode"] == 500 and ev["nextAttemptAt"] is None
    m = webhook_metrics(srv)
    assert m["failed"] == 1 and m["retried"] == 1 and m["delivered"] == 0
    # No further attempt is made.
    receiver.status = 200
    r = api(srv, "POST", "webhooks/%s/ping" % name)
    wait_until(lambda: receiver.events(name, "ping"), what="a later ping")
    assert len(receiver.events(name, "push")) == 2


def test_pending_delivery_survives_kill_9(server_factory, receiver):
    srv = server_factory("--region", REGION, "--webhook-backoff-max", "1s")
    name = hook_name("crash")
    create(srv, name, receiver.url, actions=["push", "delete"])
    receiver.stop()
    img = srv.oci().push_image("e2e/crash/app", tag="k", layers=1)
    ev = wait_until(lambda: events(srv, name)[0]["attempts"] >= 1 and events(srv, name)[0],
                    timeout_s=30, what="a failed attempt before the crash")
    assert ev["state"] == "pending"
    srv.kill()  # SIGKILL
    receiver.start()
    srv.start()
    ev2 = wait_until(lambda: events(srv, name)[0]["state"] == "delivered" and events(srv, name)[0],
                     timeout_s=30, what="delivery after restart")
    assert ev2["id"] == ev["id"] and ev2["attempts"] >= 2
    got = receiver.events(name, "push")
    assert [g["json"]["id"] for g in got] == [ev["id"]]
    assert got[0]["json"]["target"]["digest"] == img.digest
    # The definition survived too.
    assert api(srv, "GET", "webhooks/" + name).json()["uri"] == receiver.url


# A batch of deliveries is claimed for 16 sends of at most 10 s plus 30 s (WEBHOOK_CLAIM_MS in
# src/repl/webhook.c): a process killed between its claim and the outcome leaves the delivery
# to whoever runs after the claim ends.
WEBHOOK_CLAIM_S = 16 * 10 + 30


def test_queued_delivery_survives_kill_9_before_any_attempt(server_factory, receiver):
    """Killed right after the push was answered: the delivery was already on disk. On
    PostgreSQL the kill may also land in the few milliseconds the worker holds its claim on
    the delivery before its first attempt is recorded (one CI run met it): the restarted
    process then sends it once the claim has run out, so the wait allows for the claim
    (SQLite stores take no claim: one process, one worker)."""
    srv = server_factory("--region", REGION, "--webhook-backoff-max", "1s")
    name = hook_name("early")
    create(srv, name, receiver.url, actions=["push"])
    receiver.stop()
    srv.oci().push_image("e2e/early/app", tag="k", layers=1)
    srv.kill()
    receiver.start()
    srv.start()
    wait_until(lambda: receiver.events(name, "push"), timeout_s=WEBHOOK_CLAIM_S + 30,
               what="delivery after the restart")
    ev = wait_until(lambda: events(srv, name)[0]["state"] == "delivered" and events(srv, name)[0],
                    timeout_s=30, what="recorded delivered")
    assert ev["statusCode"] == 200


def test_metrics_are_exposed(registry):
    text = requests.get(registry.url + "/metrics", timeout=30).text
    assert "# TYPE meridian_webhook_deliveries_total counter" in text
    for outcome in ("delivered", "retried", "failed"):
        assert re.search(r'^meridian_webhook_deliveries_total\{outcome="%s"\} \d+$' % outcome,
                         text, re.M), outcome


def test_deleting_a_webhook_drops_its_pending_deliveries(registry, oci, repo):
    name = hook_name("drop")
    create(registry, name, "http://127.0.0.1:9/nothing", actions=["push"])
    oci.push_image(repo, tag="d", layers=1)
    assert len(events(registry, name)) == 1
    assert api(registry, "DELETE", "webhooks/" + name).status_code == 204
    # Re-created under the same name, it starts with no history.
    create(registry, name, "http://127.0.0.1:9/nothing", actions=["push"])
    assert events(registry, name) == []
    assert api(registry, "DELETE", "webhooks/" + name).status_code == 204


def test_retention_and_untagged_collector_deletes_fire_webhooks(registry, receiver, oci, repo):
    """Deletes made by retention rules and by the collector of untagged manifests fire this
    region's delete webhooks, as a DELETE on /v2/ does (method RETENTION / GC)."""
    name = hook_name("retain")
    create(registry, name, receiver.url, actions=["delete"], scope=repo)
    old = oci.push_image(repo, tag="v1", layers=1, layer_size=64)
    oci.push_image(repo, tag="v2", layers=1, layer_size=64)
    r = api(registry, "POST", "retention",
            json={"pattern": repo, "keepNewest": 1, "untaggedAfterS": 1})
    assert r.status_code == 200, r.text
    try:
        r = api(registry, "POST", "retention/run")
        assert r.status_code == 200 and r.json()["deleted"] == 1, r.text
        got = wait_until(lambda: receiver.events(name, "delete"), what="retention delete event")
        ev = got[0]["json"]
        assert ev["target"]["repository"] == repo and ev["target"]["tag"] == "v1"
        assert ev["target"]["digest"] == old.digest
        assert ev["request"]["method"] == "RETENTION" and ev["region"] == REGION

        # v1's manifest is now untagged: past its 1 s grace the collector deletes it
        def collected():
            r = api(registry, "POST", "gc/run")
            assert r.status_code == 200, r.text
            return len(receiver.events(name, "delete")) >= 2
        wait_until(collected, timeout_s=30, what="untagged delete event")
        ev = receiver.events(name, "delete")[1]["json"]
        assert ev["target"]["digest"] == old.digest and "tag" not in ev["target"]
        assert ev["request"]["method"] == "GC"
        assert len(receiver.events(name, "delete")) == 2
    finally:
        api(registry, "DELETE", "retention", params={"pattern": repo})
