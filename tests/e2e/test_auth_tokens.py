"""Access control over time and across identities: token expiry, a robot revoked in the
middle of a session, robot expiry, role changes taking effect, catalog filtering,
anonymous pull on and off (for signed-in identities too), the granted scope in the
OAuth2 reply, the per-identity cap on upload sessions, the audit log,
peers (refused without the peer secret), and what the server keeps and logs of secrets.
"""

import os
import secrets
import time

import pytest

from auth_helpers import (ADMIN_PASSWORD, assert_oci_error, jwt_claims, parse_challenge,  # noqa
                          push_blob, push_image, server_pool, token, wait_until)

ADMIN = ("admin", ADMIN_PASSWORD)


def get_manifest(srv, auth, repo, ref="v1"):
    return srv.request("GET", "/v2/%s/manifests/%s" % (repo, ref), auth=auth,
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})


def test_challenge_then_token_flow(server_pool):
    """What a client does: request, 401 with a Bearer challenge naming the scope, token
    for that scope from the realm, retry with the token."""
    srv = server_pool("--token-ttl", "60s")
    repo = "golden/flow"
    push_image(srv, ADMIN, repo)
    r = get_manifest(srv, None, repo)
    assert r.status_code == 401
    scheme, p = parse_challenge(r.headers["WWW-Authenticate"])
    assert scheme == "bearer"
    assert p["realm"] == srv.url + "/_meridian/v1/token"
    assert p["service"] == "meridian"
    assert p["scope"] == "repository:%s:pull" % repo
    tok = token(srv, ADMIN, [p["scope"]])
    claims = jwt_claims(tok)
    assert claims["sub"] == "admin" and claims["aud"] == "meridian"
    assert claims["exp"] - claims["iat"] == 60
    assert claims["access"] == [{"type": "repository", "name": repo, "actions": ["pull"]}]
    assert get_manifest(srv, tok, repo).status_code == 200
    # the token is for that repository only: another one gets a challenge to re-scope
    r = get_manifest(srv, tok, "golden/other")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    # and pull only: a push with it is re-challenged for push
    r = srv.request("POST", "/v2/%s/blobs/uploads/" % repo, auth=tok, data=b"")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert 'scope="repository:%s:pull,push"' % repo in r.headers["WWW-Authenticate"]
    # OAuth2 form POST works too
    r = srv.request("POST", "/_meridian/v1/token",
                    data={"grant_type": "password", "username": "admin",
                          "password": ADMIN_PASSWORD, "service": "meridian",
                          "scope": "repository:%s:pull" % repo, "client_id": "test"})
    assert r.status_code == 200, r.text
    assert get_manifest(srv, r.json()["access_token"], repo).status_code == 200
    r = srv.request("POST", "/_meridian/v1/token",
                    data={"grant_type": "password", "username": "admin", "password": "nope"})
    assert r.status_code == 401
    # wrong credentials at the token endpoint: 401, and no token
    token(srv, ("admin", "wrong"), [], expect=401)


def test_token_scope_is_intersected(server_pool):
    srv = server_pool()
    adm = srv.admin()
    con = adm.user("reader", role="consumer", pattern="golden/*")
    tok = token(srv, con, ["repository:golden/a:pull,push,delete", "repository:secret/b:pull",
                           "registry:catalog:*"])
    access = {(a["type"], a["name"]): a["actions"] for a in jwt_claims(tok)["access"]}
    assert access == {("repository", "golden/a"): ["pull"], ("registry", "catalog"): ["*"]}


def test_many_scopes_are_intersected_not_refused(server_pool):
    """A client writing several images may ask at once for every repository it could
    mount from: more resources than a token carries got 400 "malformed scope"."""
    srv = server_pool()
    adm = srv.admin()
    con = adm.user("many", role="consumer", pattern="golden/*")
    asked = ["repository:secret/x:pull"] + ["repository:golden/r%02d:pull" % i for i in range(20)]
    access = jwt_claims(token(srv, con, asked))["access"]
    # the first 16 granted, in the order asked for; the rest are challenged for later
    assert [a["name"] for a in access] == ["golden/r%02d" % i for i in range(16)]
    push_image(srv, ADMIN, "golden/r19")
    r = get_manifest(srv, token(srv, con, asked), "golden/r19")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert 'scope="repository:golden/r19:pull"' in r.headers["WWW-Authenticate"]
    r = token(srv, con, ["repository:golden/r%03d:pull" % i for i in range(257)], expect=400)
    assert r.json()["errors"][0]["message"] == "too many scopes"
    r = token(srv, con, ["repository:golden/a:pull", "repository:golden/b"], expect=400)
    assert r.json()["errors"][0]["message"] == "malformed scope"


def test_token_expiry(server_pool):
    srv = server_pool("--token-ttl", "2s")
    repo = "golden/expiry"
    push_image(srv, ADMIN, repo)
    tok = token(srv, ADMIN, ["repository:%s:pull" % repo])
    assert get_manifest(srv, tok, repo).status_code == 200
    time.sleep(2.2)
    r = get_manifest(srv, tok, repo)
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    # a new token works again
    assert get_manifest(srv, token(srv, ADMIN, ["repository:%s:pull" % repo]), repo).ok


def test_robot_revoked_mid_session(server_pool):
    srv = server_pool("--token-ttl", "10m")
    adm = srv.admin()
    robot = adm.robot("pipeline", role="publisher", pattern="ci/*")
    repo = "ci/app"
    tok = token(srv, robot, ["repository:%s:pull,push" % repo])
    # the robot starts pushing with its token ...
    r = push_blob(srv, tok, repo, b"first layer")
    assert r.status_code == 201, r.text
    r = srv.request("POST", "/v2/%s/blobs/uploads/" % repo, auth=tok, data=b"")
    assert r.status_code == 202
    session = r.headers["Location"]
    # ... and is deleted by an admin in the middle of the session
    adm.call("DELETE", "robots/pipeline", expect=204)
    r = srv.request("PATCH", session, auth=tok, data=b"more bytes")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    r = push_blob(srv, tok, repo, b"second layer")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert_oci_error(get_manifest(srv, tok, repo), 401, "UNAUTHORIZED")
    # its secret no longer logs in either
    token(srv, robot, [], expect=401)
    assert_oci_error(srv.request("GET", "/v2/", auth=robot), 401, "UNAUTHORIZED")
    # a new robot of the same name does not inherit the old secret
    adm.robot("pipeline")
    token(srv, robot, [], expect=401)


def test_robot_expiry_and_role_changes(server_pool):
    srv = server_pool()
    adm = srv.admin()
    robot = adm.robot("short", role="consumer", pattern="*", expires_in="2s")
    assert srv.request("GET", "/v2/", auth=robot).status_code == 200
    time.sleep(2.2)
    assert_oci_error(srv.request("GET", "/v2/", auth=robot), 401, "UNAUTHORIZED")
    # a revoked role takes effect at once, even for a token issued before
    user = adm.user("carol", role="publisher", pattern="team/*")
    tok = token(srv, user, ["repository:team/x:pull,push"])
    assert push_blob(srv, tok, "team/x", b"one").status_code == 201
    adm.revoke("carol", "publisher", "team/*")
    assert_oci_error(push_blob(srv, tok, "team/x", b"two"), 403, "DENIED")
    assert_oci_error(push_blob(srv, user, "team/x", b"two"), 403, "DENIED")
    # a reset secret ends the old one
    adm.call("POST", "users/carol/reset-secret", expect=200, json={"password": "brand-new-pw"})
    assert_oci_error(srv.request("GET", "/v2/", auth=user), 401, "UNAUTHORIZED")
    assert srv.request("GET", "/v2/", auth=("carol", "brand-new-pw")).status_code == 200


def test_a_new_secret_ends_the_tokens_issued_before(server_pool):
    """A reset secret, or a name deleted and made again, ends the tokens issued before it
    at once, not when they expire (they used to live out their --token-ttl)."""
    srv = server_pool("--token-ttl", "10m")
    adm = srv.admin()
    user = adm.user("dan", "dan-password-1", role="consumer", pattern="team/*")
    robot = adm.robot("builder", role="consumer", pattern="team/*")
    scope = ["repository:team/x:pull"]
    old_user, old_robot = token(srv, user, scope), token(srv, robot, scope)
    for tok in (old_user, old_robot):
        assert srv.request("GET", "/v2/team/x/tags/list", auth=tok).status_code in (200, 404)
        assert len(jwt_claims(tok)["sh"]) == 16  # names the secret, not its hash
    adm.call("POST", "users/dan/reset-secret", expect=200, json={"password": "dan-password-2"})
    adm.call("DELETE", "robots/builder", expect=204)
    robot2 = adm.robot("builder", role="consumer", pattern="team/*")
    for tok in (old_user, old_robot):
        r = srv.request("GET", "/v2/team/x/tags/list", auth=tok)
        assert_oci_error(r, 401, "UNAUTHORIZED")
    # tokens issued after work
    for creds in (("dan", "dan-password-2"), robot2):
        tok = token(srv, creds, scope)
        assert srv.request("GET", "/v2/team/x/tags/list", auth=tok).status_code in (200, 404)


def test_catalog_is_filtered(server_pool):
    srv = server_pool()
    adm = srv.admin()
    repos = ["golden/a", "golden/b", "golden/c", "secret/x", "secret/y", "team/z"]
    for repo in repos:
        push_image(srv, ADMIN, repo)
    con = adm.user("viewer", role="consumer", pattern="golden/*")
    adm.assign("viewer", "consumer", "team/z")
    nobody = adm.user("nobody")
    def catalog(auth, **params):
        r = srv.request("GET", "/v2/_catalog", auth=auth, params=params)
        assert r.status_code == 200, r.text
        return r
    assert catalog(ADMIN).json()["repositories"] == repos
    assert catalog(con).json()["repositories"] == ["golden/a", "golden/b", "golden/c", "team/z"]
    assert catalog(nobody).json()["repositories"] == []
    # pages hold n visible repositories and the Link follows the visible ones
    r = catalog(con, n=2)
    assert r.json()["repositories"] == ["golden/a", "golden/b"]
    assert "last=golden/b" in r.headers["Link"]
    r = catalog(con, n=2, last="golden/b")
    assert r.json()["repositories"] == ["golden/c", "team/z"]
    assert "Link" not in r.headers
    # with a token: registry:catalog:* is what clients ask for
    tok = token(srv, con, ["registry:catalog:*"])
    assert catalog(tok).json()["repositories"] == ["golden/a", "golden/b", "golden/c", "team/z"]
    r = srv.request("GET", "/v2/_catalog", auth=token(srv, con, ["repository:golden/a:pull"]))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert 'scope="registry:catalog:*"' in r.headers["WWW-Authenticate"]
    # tag lists of invisible repositories are refused the same way as missing ones
    assert_oci_error(srv.request("GET", "/v2/secret/x/tags/list", auth=con), 403, "DENIED")
    assert_oci_error(srv.request("GET", "/v2/secret/nope/tags/list", auth=con), 403, "DENIED")
    assert_oci_error(srv.request("GET", "/v2/_catalog"), 401, "UNAUTHORIZED")


def test_anonymous_pull_on_and_off(server_pool):
    srv = server_pool()
    adm = srv.admin()
    push_image(srv, ADMIN, "public/app")
    push_image(srv, ADMIN, "private/app")
    # off by default
    assert_oci_error(get_manifest(srv, None, "public/app"), 401, "UNAUTHORIZED")
    anon_tok = token(srv, None, ["repository:public/app:pull"])
    assert jwt_claims(anon_tok)["access"] == []
    # on for public/*
    adm.assign("anonymous", "consumer", "public/*")
    assert get_manifest(srv, None, "public/app").status_code == 200
    anon_tok = token(srv, None, ["repository:public/app:pull,push",
                                 "repository:private/app:pull"])
    assert jwt_claims(anon_tok)["sub"] == ""
    assert jwt_claims(anon_tok)["access"] == [
        {"type": "repository", "name": "public/app", "actions": ["pull"]}]
    assert get_manifest(srv, anon_tok, "public/app").status_code == 200
    assert_oci_error(get_manifest(srv, None, "private/app"), 401, "UNAUTHORIZED")
    assert_oci_error(get_manifest(srv, anon_tok, "private/app"), 401, "UNAUTHORIZED")
    # anonymous clients never push, whatever they hold
    assert_oci_error(push_blob(srv, None, "public/app", b"x"), 401, "UNAUTHORIZED")
    r = srv.request("GET", "/v2/_catalog", auth=token(srv, None, ["registry:catalog:*"]))
    assert r.json()["repositories"] == ["public/app"]
    # only the consumer role can be given to anonymous clients
    r = adm.call("POST", "roles", json={"subject": "anonymous", "role": "publisher",
                                        "pattern": "public/*"})
    assert r.status_code == 400
    # off again
    adm.revoke("anonymous", "consumer", "public/*")
    assert_oci_error(get_manifest(srv, None, "public/app"), 401, "UNAUTHORIZED")


def test_signed_in_identities_pull_what_anonymous_clients_may(server_pool):
    """Clients send their credentials to every repository of a registry they logged in
    to: a user or robot must not lose the pull an anonymous client has (it got 403)."""
    srv = server_pool()
    adm = srv.admin()
    push_image(srv, ADMIN, "public/app")
    push_image(srv, ADMIN, "private/app")
    adm.assign("anonymous", "consumer", "public/*")
    user = adm.user("teamer", role="publisher", pattern="team/*")
    robot = adm.robot("teambot", role="consumer", pattern="team/*")
    for who in (user, robot):
        assert get_manifest(srv, who, "public/app").status_code == 200
        tok = token(srv, who, ["repository:public/app:pull,push", "repository:private/app:pull"])
        assert jwt_claims(tok)["access"] == [
            {"type": "repository", "name": "public/app", "actions": ["pull"]}]
        assert get_manifest(srv, tok, "public/app").status_code == 200
        # pull only: anonymous bindings never give more
        assert_oci_error(push_blob(srv, who, "public/app", b"x"), 403, "DENIED")
        assert_oci_error(get_manifest(srv, who, "private/app"), 403, "DENIED")
        r = srv.request("GET", "/v2/_catalog", auth=who)
        assert r.json()["repositories"] == ["public/app"]
    # and revoking the anonymous binding takes it from them too
    adm.revoke("anonymous", "consumer", "public/*")
    assert_oci_error(get_manifest(srv, user, "public/app"), 403, "DENIED")


def test_oauth2_reply_names_the_granted_scope(server_pool):
    """RFC 6749 5.1: the scope in the reply is what the token grants, not what was asked."""
    srv = server_pool()
    adm = srv.admin()
    push_image(srv, ADMIN, "golden/a")
    reader = adm.user("reader2", role="consumer", pattern="golden/*")
    r = srv.request("POST", "/_meridian/v1/token",
                    data={"grant_type": "password", "username": reader[0],
                          "password": reader[1], "service": "meridian",
                          "client_id": "containerd-client",
                          "scope": "repository:golden/a:pull,push repository:secret/b:pull "
                                   "registry:catalog:*"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "repository:golden/a:pull registry:catalog:*"
    assert jwt_claims(body["access_token"])["access"] == [
        {"type": "repository", "name": "golden/a", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]}]
    r = srv.request("POST", "/_meridian/v1/token",
                    data={"grant_type": "password", "username": reader[0],
                          "password": reader[1], "scope": "repository:secret/b:push"})
    assert r.status_code == 200 and r.json()["scope"] == ""


def test_upload_sessions_capped_per_identity(server_pool):
    srv = server_pool("--upload-limit-per-identity", "2")
    adm = srv.admin()
    a = adm.user("alpha", role="publisher", pattern="*")
    b = adm.user("beta", role="publisher", pattern="*")
    locs = []
    for _ in range(2):
        r = srv.request("POST", "/v2/cap/a/blobs/uploads/", auth=a, data=b"")
        assert r.status_code == 202
        locs.append(r.headers["Location"])
    r = srv.request("POST", "/v2/cap/a/blobs/uploads/", auth=a, data=b"")
    assert_oci_error(r, 429, "TOOMANYREQUESTS")
    # others are not affected
    assert srv.request("POST", "/v2/cap/b/blobs/uploads/", auth=b, data=b"").status_code == 202
    # finishing or cancelling one frees a slot
    assert srv.request("DELETE", locs[0], auth=a).status_code == 204
    assert srv.request("POST", "/v2/cap/a/blobs/uploads/", auth=a, data=b"").status_code == 202


def test_audit_log(server_pool):
    srv = server_pool()
    adm = srv.admin()
    pub = adm.user("writer", role="publisher", pattern="golden/*")
    digest, _ = push_image(srv, pub, "golden/audited")
    assert srv.request("DELETE", "/v2/golden/audited/manifests/%s" % digest,
                       auth=pub).status_code == 202
    assert srv.request("PUT", "/v2/secret/x/manifests/v1", auth=pub, data=b"{}",
                       headers={"Content-Type": "application/json"}).status_code == 403
    assert srv.request("GET", "/v2/", auth=("writer", "not-the-password")).status_code == 401
    adm.revoke("writer", "publisher", "golden/*")
    entries = adm.audit(limit=100)
    seen = [(e["actor"], e["action"], e["target"], e["status"]) for e in entries]
    assert ("writer", "manifest.put", "golden/audited@v1", 201) in seen
    assert ("writer", "manifest.delete", "golden/audited@" + digest, 202) in seen
    assert ("writer", "access.denied", "secret/x@v1", 403) in seen
    assert ("writer", "auth.failed", "/v2/", 401) in seen
    assert sum(1 for s in seen if s[:2] == ("writer", "blob.push")) == 2
    for action in ("user.create", "role.assign", "role.revoke"):
        assert any(s[0] == "admin" and s[1] == action for s in seen), action
    e = next(e for e in entries if e["action"] == "role.revoke")
    assert e["detail"] == "DELETE subject=writer role=publisher pattern=golden/*"
    assert e["remote"] == "127.0.0.1" and e["time"].endswith("Z")
    assert [x["id"] for x in entries] == sorted((x["id"] for x in entries), reverse=True)
    # filters and paging
    only = adm.audit(actor="writer", action="manifest.")
    assert {e["action"] for e in only} == {"manifest.put", "manifest.delete"}
    page = adm.audit(limit=2)
    older = adm.audit(limit=2, before=page[-1]["id"])
    assert older[0]["id"] < page[-1]["id"]
    # the CLI shows the same
    import subprocess
    env = dict(os.environ, MERIDIAN_USERNAME="admin", MERIDIAN_PASSWORD=ADMIN_PASSWORD)
    out = subprocess.run([os.environ.get("MERIDIAN_BIN", "build/meridian"), "audit", "list",
                          "--registry", srv.url, "--actor", "writer"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "manifest.delete" in out.stdout and "golden/audited" in out.stdout
    # no secret reached the log or the audit entries
    text = srv.log_text()
    for s in (ADMIN_PASSWORD, pub[1], "not-the-password"):
        assert s not in text
        assert all(s not in str(e) for e in entries)


def test_peers(server_pool):
    secret = "peer-" + secrets.token_hex(12)
    srv = server_pool(env={"MERIDIAN_PEER_SECRET": secret})
    push_image(srv, ADMIN, "golden/replicated")
    # an unauthenticated node gets nothing from the replication API
    r = srv.request("GET", "/_meridian/v1/replication/events")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    r = srv.request("GET", "/_meridian/v1/replication/events", auth=("peer", "wrong-secret"))
    assert_oci_error(r, 401, "UNAUTHORIZED")
    # nor does a user, even an admin
    r = srv.request("GET", "/_meridian/v1/replication/events", auth=ADMIN)
    assert_oci_error(r, 401, "UNAUTHORIZED")
    # the peer reads /v2/ ...
    peer = ("peer", secret)
    assert get_manifest(srv, peer, "golden/replicated").status_code == 200
    assert srv.request("GET", "/v2/_catalog", auth=peer).json()["repositories"] == [
        "golden/replicated"]
    # ... and writes nothing there, nor manages anything
    assert_oci_error(push_blob(srv, peer, "golden/replicated", b"x"), 403, "DENIED")
    assert_oci_error(srv.request("GET", "/_meridian/v1/users", auth=peer), 403, "DENIED")
    # the replication API accepts it (whatever the handler answers, it is not refused)
    r = srv.request("GET", "/_meridian/v1/replication/summary", auth=peer, timeout=10)
    assert r.status_code not in (401, 403), r.text


def test_peer_secret_guards_replication_even_without_auth(server_pool):
    secret = "peer-" + secrets.token_hex(12)
    srv = server_pool(auth=False, env={"MERIDIAN_PEER_SECRET": secret})
    assert srv.request("GET", "/v2/").status_code == 200  # open registry
    r = srv.request("GET", "/_meridian/v1/replication/summary")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    r = srv.request("GET", "/_meridian/v1/replication/summary", auth=("peer", secret),
                    timeout=10)
    assert r.status_code not in (401, 403)


def test_bootstrap_admin_password_file(server_pool, tmp_path):
    """Without --admin-password, the first start writes a random one to DATA (0600) and the
    log names the file but never the password."""
    srv = server_pool(admin_password=None)
    path = os.path.join(srv.data_dir, "admin-password")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    pw = open(path).read().strip()
    assert len(pw) >= 20
    assert srv.request("GET", "/v2/", auth=("admin", pw)).status_code == 200
    assert pw not in srv.log_text()
    assert "admin-password" in srv.log_text()
    key = os.path.join(srv.data_dir, "token.key")
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"


def test_tokens_survive_restart_and_shared_key(server_pool, tmp_path):
    """Tokens are signed with the key file: a restart keeps them valid, and a node with
    another key refuses them."""
    srv = server_pool()
    push_image(srv, ADMIN, "golden/keep")
    tok = token(srv, ADMIN, ["repository:golden/keep:pull"])
    srv.stop()
    srv.start()
    assert get_manifest(srv, tok, "golden/keep").status_code == 200
    other = server_pool(name="other")
    assert_oci_error(get_manifest(other, tok, "golden/keep"), 401, "UNAUTHORIZED")


def test_the_token_endpoint_issues_tokens_for_this_registry_only(server_pool):
    """distribution-spec token.md: `service` names the service the token is for. This
    endpoint signs tokens for this registry (`aud` = --registry-name) only: a request naming
    another service is refused (400, naming both, no token), by GET and by the OAuth2 form,
    before any password is checked; absent, or naming this registry, it is served. (Any
    service used to get a token for this registry.)"""
    srv = server_pool("--registry-name", "acme")
    push_image(srv, ADMIN, "golden/svc")
    r = get_manifest(srv, None, "golden/svc")
    scheme, p = parse_challenge(r.headers["WWW-Authenticate"])
    assert p["service"] == "acme", p
    scope = "repository:golden/svc:pull"

    def get(service):
        params = [("scope", scope)] + ([("service", service)] if service is not None else [])
        return srv.request("GET", "/_meridian/v1/token", auth=ADMIN, params=params)

    for other in ("meridian", "registry.docker.io", "acme ", "ACME"):
        r = get(other)
        assert_oci_error(r, 400, "BAD_REQUEST")
        msg = r.json()["errors"][0]["message"]
        assert "acme" in msg and "token" not in r.json(), msg
    for other in ("meridian", "acme" + "x" * 300):  # too long to read is not "none" either
        r = srv.request("POST", "/_meridian/v1/token",
                        data={"grant_type": "password", "username": "admin",
                              "password": ADMIN_PASSWORD, "service": other, "scope": scope})
        assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text
        assert "acme" in r.json()["error_description"] and "access_token" not in r.json()
    # refused before the password: a wrong one is not counted, nor answered 401
    r = srv.request("POST", "/_meridian/v1/token",
                    data={"grant_type": "password", "username": "admin", "password": "nope",
                          "service": "other"})
    assert r.status_code == 400, r.text
    for service in ("acme", None):
        r = get(service)
        assert r.status_code == 200, r.text
        claims = jwt_claims(r.json()["token"])
        assert claims["aud"] == "acme" and claims["iss"] == "acme", claims
        assert get_manifest(srv, r.json()["token"], "golden/svc").status_code == 200
    r = srv.request("POST", "/_meridian/v1/token",
                    data={"grant_type": "password", "username": "admin",
                          "password": ADMIN_PASSWORD, "service": "acme", "scope": scope})
    assert r.status_code == 200, r.text


def test_a_token_for_another_service_is_refused_with_a_challenge(server_pool, tmp_path):
    """Two registries sharing a token key file (say a staging and a production registry
    set up from one secret store): a token the one signs for itself (`aud` its name) is
    refused by the other, 401 with a Bearer challenge naming its own service and
    error="invalid_token", and does not open what the other's own tokens would."""
    key_file = str(tmp_path / "shared.key")
    with open(key_file, "w") as f:
        f.write("shared-key-" + secrets.token_hex(16) + "\n")
    os.chmod(key_file, 0o600)
    staging = server_pool("--registry-name", "staging", "--token-key-file", key_file,
                          name="staging")
    prod = server_pool("--registry-name", "prod", "--token-key-file", key_file, name="prod")
    for srv in (staging, prod):
        push_image(srv, ADMIN, "golden/app")
    scope = "repository:golden/app:pull"
    r = staging.request("GET", "/_meridian/v1/token", auth=ADMIN,
                        params={"service": "staging", "scope": scope})
    foreign = r.json()["token"]
    assert jwt_claims(foreign)["aud"] == "staging"
    assert get_manifest(staging, foreign, "golden/app").status_code == 200
    r = get_manifest(prod, foreign, "golden/app")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    scheme, p = parse_challenge(r.headers["WWW-Authenticate"])
    assert scheme == "bearer" and p["service"] == "prod" and p["error"] == "invalid_token", p
    assert p["scope"] == scope, p
    r = prod.request("GET", "/_meridian/v1/token", auth=ADMIN,
                     params={"service": "prod", "scope": scope})
    own = r.json()["token"]
    assert get_manifest(prod, own, "golden/app").status_code == 200


def test_quick_start_default_is_open_on_loopback(server_pool):
    srv = server_pool(auth=False)
    assert srv.request("GET", "/v2/").status_code == 200
    assert "access control on" not in srv.log_text()
