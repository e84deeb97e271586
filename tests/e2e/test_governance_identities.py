"""Registry-wide identities and roles (docs/governance.md): users, robots and role bindings
replicate between regions as last-writer-wins objects, with the Argon2id hash of a secret and
never the secret itself.

Three regions with access control on; each test makes its own cluster (the geo fixture).
"""

import glob
import os
import types

import requests

from auth_helpers import ADMIN_PASSWORD, image_parts, digest_of, MT_OCI_MANIFEST
import tier
from regions import wait_for

pytest_plugins = ["geo_plugin"]

ADMIN = ("admin", ADMIN_PASSWORD)
REPL_S = 30
PEER_USER = "peer"


def _with_admin(region):
    """Management calls and the CLI of region as the admin (the fixtures know no auth)."""
    plain_api, plain_cli = region.api, region.cli

    def api(self, method, path, **kw):
        kw.setdefault("auth", ADMIN)
        return plain_api(method, path, **kw)

    def cli(self, *args, **kw):
        return plain_cli(*args, "--username", "admin", "--password", ADMIN_PASSWORD, **kw)
    region.api = types.MethodType(api, region)
    region.cli = types.MethodType(cli, region)


def auth_cluster(geo, n=3):
    c = geo(n=n, join=False, extra_args=["--auth", "--admin-password", ADMIN_PASSWORD])
    for r in c:
        _with_admin(r)
    for r in c.regions[1:]:
        c.join(r)
    c.wait_members()
    c.wait_contacted()
    return c


def wait_known(region, path):
    """Waits until region's admin view has users/NAME or robots/NAME, so that a client's
    login is not tried (and throttled as a failed login) before the identity arrived."""
    wait_for(lambda: call(region, "GET", "/_meridian/v1/" + path).status_code == 200, REPL_S,
             "%s at %s" % (path, region.name))


def call(region, method, path, auth=ADMIN, **kw):
    kw.setdefault("timeout", 30)
    return requests.request(method, region.url + path, auth=auth, allow_redirects=False, **kw)


def token_status(region, creds, scope):
    r = call(region, "GET", "/_meridian/v1/token", auth=creds,
             params={"service": "meridian", "scope": scope})
    return r.status_code


def pull_status(region, creds, repo, ref):
    r = call(region, "GET", "/v2/%s/manifests/%s" % (repo, ref), auth=creds,
             headers={"Accept": MT_OCI_MANIFEST})
    return r.status_code


def push(region, repo, tag="v1"):
    config, layer, manifest = image_parts()
    for b in (config, layer):
        d = digest_of(b)
        r = call(region, "POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, d), data=b,
                 headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, (r.status_code, r.text)
    r = call(region, "PUT", "/v2/%s/manifests/%s" % (repo, tag), data=manifest,
             headers={"Content-Type": MT_OCI_MANIFEST})
    assert r.status_code == 201, (r.status_code, r.text)
    return digest_of(manifest)


def identity_object(region, name):
    """(value, hlc, origin, deleted) of the replicated object of identity name, or None."""
    rows = tier.meta_rows(region.data_dir, "SELECT value, hlc, origin, is_deleted FROM objects"
                          " WHERE kind = 'identity' AND key = ?", name)
    return rows[0] if rows else None


def test_user_created_in_one_region_logs_in_and_pulls_in_another(geo):
    c = auth_cluster(geo)
    r1, r3 = c["r1"], c["r3"]
    digest = push(r1, "gov/app")
    assert call(r1, "POST", "/_meridian/v1/users",
                json={"name": "alice", "password": "alice-pw-123456"}).status_code == 201
    assert call(r1, "POST", "/_meridian/v1/roles",
                json={"subject": "alice", "role": "consumer",
                      "pattern": "gov/*"}).status_code in (200, 201)
    alice = ("alice", "alice-pw-123456")
    wait_known(r3, "users/alice")
    wait_for(lambda: token_status(r3, alice, "repository:gov/app:pull") == 200, REPL_S,
             "alice to log in at r3", interval_s=0.5)
    wait_for(lambda: pull_status(r3, alice, "gov/app", digest) == 200, REPL_S,
             "alice to pull gov/app at r3")
    # Listed there like a local user; a wrong password is still refused.
    names = [u["name"] for u in call(r3, "GET", "/_meridian/v1/users").json()]
    assert "alice" in names
    assert token_status(r3, ("alice", "wrong-password-1"), "repository:gov/app:pull") == 401


def test_revoked_robot_refused_everywhere(geo):
    c = auth_cluster(geo)
    digest = push(c["r1"], "gov/ci")
    r = call(c["r1"], "POST", "/_meridian/v1/robots", json={"name": "ci"})
    assert r.status_code == 201, r.text
    robot = ("ci", r.json()["secret"])
    assert call(c["r1"], "POST", "/_meridian/v1/roles",
                json={"subject": "ci", "role": "consumer",
                      "pattern": "gov/ci"}).status_code in (200, 201)
    for region in c:
        wait_known(region, "robots/ci")
        wait_for(lambda: pull_status(region, robot, "gov/ci", digest) == 200, REPL_S,
                 "robot ci to pull at %s" % region.name, interval_s=0.5)
    assert call(c["r2"], "DELETE", "/_meridian/v1/robots/ci").status_code == 204
    for region in c:
        wait_for(lambda: pull_status(region, robot, "gov/ci", digest) == 401, REPL_S,
                 "robot ci to be refused at %s" % region.name)
        assert token_status(region, robot, "repository:gov/ci:pull") == 401


def test_role_binding_replicated_and_revoked(geo):
    c = auth_cluster(geo)
    digest = push(c["r1"], "gov/lib")
    assert call(c["r1"], "POST", "/_meridian/v1/users",
                json={"name": "bob", "password": "bob-pw-12345678"}).status_code == 201
    bob = ("bob", "bob-pw-12345678")
    wait_known(c["r3"], "users/bob")
    wait_for(lambda: pull_status(c["r3"], bob, "gov/lib", digest) == 403, REPL_S,
             "bob known but without a role at r3")
    assert call(c["r2"], "POST", "/_meridian/v1/roles",
                json={"subject": "bob", "role": "consumer",
                      "pattern": "gov/*"}).status_code in (200, 201)
    for region in c:
        wait_for(lambda: pull_status(region, bob, "gov/lib", digest) == 200, REPL_S,
                 "bob to pull at %s" % region.name)
        roles = call(region, "GET", "/_meridian/v1/roles").json()
        assert any(b["subject"] == "bob" and b["pattern"] == "gov/*"
                   for b in roles), roles
    # Audited where it was made and where it landed, with the region it came from.
    local = call(c["r2"], "GET", "/_meridian/v1/audit", params={"action": "role.assign"}).json()
    assert any("subject=bob" in (a["detail"] or "") for a in local), local
    for region in (c["r1"], c["r3"]):
        got = wait_for(lambda: [a for a in call(region, "GET", "/_meridian/v1/audit",
                                                params={"action": "role.replicated"}).json()
                                if a["target"] == "bob consumer gov/*"], REPL_S,
                       "the replicated binding in the audit of %s" % region.name)
        assert got[0]["detail"] == "origin=r2 put" and got[0]["actor"] == "peer", got
    r = call(c["r3"], "DELETE", "/_meridian/v1/roles",
             params={"subject": "bob", "role": "consumer", "pattern": "gov/*"})
    assert r.status_code == 204, r.text
    for region in c:
        wait_for(lambda: pull_status(region, bob, "gov/lib", digest) == 403, REPL_S,
                 "bob's role to be gone at %s" % region.name)


def test_concurrent_password_resets_converge(geo):
    c = auth_cluster(geo)
    r1, r2, r3 = c["r1"], c["r2"], c["r3"]
    assert call(r1, "POST", "/_meridian/v1/users",
                json={"name": "carol", "password": "carol-pw-000000"}).status_code == 201
    wait_for(lambda: all(identity_object(r, "carol") for r in c), REPL_S, "carol everywhere")
    c.partition([r1], [r2, r3])
    for region, pw in ((r1, "carol-pw-111111"), (r2, "carol-pw-222222")):
        r = call(region, "POST", "/_meridian/v1/users/carol/reset-secret", json={"password": pw})
        assert r.status_code == 200, r.text
    c.heal()

    def same_everywhere():
        objs = [identity_object(r, "carol") for r in c]
        return len({o[:3] for o in objs}) == 1 and objs[0]
    obj = wait_for(same_everywhere, REPL_S, "carol's object to converge")
    winner = "carol-pw-111111" if obj[2] == "r1" else "carol-pw-222222"
    loser = "carol-pw-222222" if obj[2] == "r1" else "carol-pw-111111"
    for region in c:
        wait_for(lambda: token_status(region, ("carol", winner), "") == 200, REPL_S,
                 "the winning password at %s" % region.name, interval_s=0.5)
        assert token_status(region, ("carol", loser), "") == 401


def test_only_the_hash_crosses_a_link(geo):
    c = auth_cluster(geo)
    password = "dave-clear-" + "7" * 12
    assert call(c["r1"], "POST", "/_meridian/v1/users",
                json={"name": "dave", "password": password}).status_code == 201
    for region in c:
        wait_for(lambda: identity_object(region, "dave"), REPL_S, "dave at %s" % region.name)
    obj = identity_object(c["r3"], "dave")
    assert '"secretHash":"$argon2id$' in obj[0] and password not in obj[0]
    # The event feed as a peer reads it (the payload that crosses the link).
    r = requests.get(c["r1"].url + "/_meridian/v1/replication/events",
                     params={"after": 0, "max": 1000, "from": "r3"},
                     auth=(PEER_USER, c.secret), timeout=30)
    assert r.status_code == 200, r.text
    events = [e for e in r.json()["events"] if e.get("name") == "dave"]
    assert events and all("$argon2id$" in str(e.get("payload")) for e in events), events
    for e in events:
        assert password not in str(e.get("payload"))
    # No byte of the password in any file of any region.
    for region in c:
        for path in glob.glob(os.path.join(region.data_dir, "**"), recursive=True):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    assert password.encode() not in f.read(), path


def bearer_pull(region, tok, repo, digest):
    r = requests.get(region.url + "/v2/%s/manifests/%s" % (repo, digest), timeout=30,
                     headers={"Authorization": "Bearer " + tok, "Accept": MT_OCI_MANIFEST})
    return r.status_code


def get_token(region, scope):
    r = call(region, "GET", "/_meridian/v1/token", params={"service": "meridian", "scope": scope})
    assert r.status_code == 200, r.text
    return r.json()["token"]


def kid_of(tok):
    import base64
    import json
    head = tok.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


def write_keys(path, *lines):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)  # a new inode: the servers see the change whatever the mtime


def test_token_key_rollover_without_downtime(geo, tmp_path):
    key_file = str(tmp_path / "token.keys")
    old, new = "old-key-" + "a" * 24, "new-key-" + "b" * 24
    write_keys(key_file, old)
    c = geo(n=2, join=False, extra_args=["--auth", "--admin-password", ADMIN_PASSWORD,
                                         "--token-key-file", key_file])
    for r in c:
        _with_admin(r)
    c.join(c["r2"])
    c.wait_members()
    r1, r2 = c["r1"], c["r2"]
    digest = push(r1, "gov/rot")
    wait_for(lambda: pull_status(r2, ADMIN, "gov/rot", digest) == 200, REPL_S, "gov/rot at r2")
    scope = "repository:gov/rot:pull"
    t_old = get_token(r1, scope)
    assert bearer_pull(r2, t_old, "gov/rot", digest) == 200  # one key for the registry

    # Step 1 of a rotation: the new key signs, the old one is still accepted.
    write_keys(key_file, new, old)
    t_new = wait_for(lambda: (lambda t: t if kid_of(t) != kid_of(t_old) else None)(
        get_token(r2, scope)), REPL_S, "r2 to sign with the new key")
    wait_for(lambda: kid_of(get_token(r1, scope)) == kid_of(t_new), REPL_S,
             "r1 to sign with the new key")
    for region in c:
        assert bearer_pull(region, t_old, "gov/rot", digest) == 200, region.name
        assert bearer_pull(region, t_new, "gov/rot", digest) == 200, region.name

    # Step 2: the old key withdrawn: its tokens are refused, the new ones still work.
    write_keys(key_file, new)
    for region in c:
        wait_for(lambda: bearer_pull(region, t_old, "gov/rot", digest) == 401, REPL_S,
                 "the old key's token to be refused at %s" % region.name)
        assert bearer_pull(region, t_new, "gov/rot", digest) == 200, region.name
