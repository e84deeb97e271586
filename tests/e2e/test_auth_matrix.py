"""Access control: every role against every kind of operation.

Identities on one server with access control on: the bootstrap admin (admin on "*"),
a publisher and a consumer of "golden/*", a robot publishing "golden/*", an outsider
whose only role is on another pattern, and anonymous clients. Each operation runs
against its own fresh image, with Basic credentials and with a Bearer token from the
token endpoint. Allowed operations succeed; the others get 401 (no identity) or 403
DENIED (an identity without the role) with an OCI error body, and change nothing.
One operation fails for everyone: a manifest naming blobs of another repository (issue 9)
gets 400 MANIFEST_BLOB_UNKNOWN from those allowed to push, even the admin, who could read
them: a blob enters a repository by a push or a mount, never through a manifest.
The management API is also tried as the replication peer (the peer secret), which may
use the replication API and nothing else of it.
"""

import json
import secrets

import pytest

from auth_helpers import (ADMIN_PASSWORD, MT_OCI_MANIFEST, assert_oci_error,  # noqa: F401
                          digest_of, image_parts, module_server, push_blob, push_image,
                          token, wait_until)

IDENTITIES = ["admin", "publisher", "consumer", "robot", "outsider", "anonymous"]
PEER_SECRET = "matrix-peer-" + secrets.token_hex(8)
AUTH_ARGS = ["--peer-secret", PEER_SECRET]
PUBLISHERS = {"admin", "publisher", "robot"}
READERS = PUBLISHERS | {"consumer"}
DEFINED = "golden/defined"
LOCKED = "golden/locks"


@pytest.fixture(scope="module")
def world(module_server):
    srv = module_server
    adm = srv.admin()
    creds = {"admin": ("admin", ADMIN_PASSWORD), "anonymous": None,
             "peer": ("peer", PEER_SECRET)}
    creds["publisher"] = adm.user("pub", role="publisher", pattern="golden/*")
    creds["consumer"] = adm.user("con", "consumer-pass", role="consumer", pattern="golden/*")
    creds["robot"] = adm.robot("ci", role="publisher", pattern="golden/*")
    creds["outsider"] = adm.user("out", role="publisher", pattern="other/*")
    # an image definition with one version (its profile, before any push)
    adm.call("POST", "image-definitions?repository=" + DEFINED, expect=201, json={})
    adm.call("POST", "image-versions?repository=%s&reference=1.0.0" % DEFINED, expect=201,
             json={})
    # a repository whose locks are read and changed (repository update/show)
    push_image(srv, ("admin", ADMIN_PASSWORD), LOCKED)
    return srv, creds


def fresh(srv):
    """A repository under golden/ holding one image, pushed as admin."""
    repo = "golden/m-" + secrets.token_hex(4)
    mdigest, ldigest = push_image(srv, ("admin", ADMIN_PASSWORD), repo)
    return {"repo": repo, "manifest": mdigest, "layer": ldigest}


def admin_status(srv, method, path, **kw):
    return srv.request(method, path, auth=("admin", ADMIN_PASSWORD), **kw).status_code


# Each operation: (scope actions it needs, function(srv, auth, ctx) -> response,
# check(srv, ctx, allowed) asserting the state afterwards, who may do it).
def op_pull_manifest(srv, auth, c):
    return srv.request("GET", "/v2/%s/manifests/v1" % c["repo"], auth=auth,
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})


def op_head_blob(srv, auth, c):
    return srv.request("HEAD", "/v2/%s/blobs/%s" % (c["repo"], c["layer"]), auth=auth)


def op_get_blob(srv, auth, c):
    return srv.request("GET", "/v2/%s/blobs/%s" % (c["repo"], c["layer"]), auth=auth)


def op_tags(srv, auth, c):
    return srv.request("GET", "/v2/%s/tags/list" % c["repo"], auth=auth)


def op_referrers(srv, auth, c):
    return srv.request("GET", "/v2/%s/referrers/%s" % (c["repo"], c["manifest"]), auth=auth)


def op_push_blob(srv, auth, c):
    c["new_blob"] = secrets.token_bytes(100)
    return push_blob(srv, auth, c["repo"], c["new_blob"])


def check_push_blob(srv, c, allowed):
    status = admin_status(srv, "HEAD", "/v2/%s/blobs/%s" % (c["repo"], digest_of(c["new_blob"])))
    assert status == (200 if allowed else 404)


def op_push_manifest(srv, auth, c):
    _config, _layer, _ = image_parts()
    # Re-tag the existing manifest under a new tag: a manifest PUT with known blobs.
    body = srv.request("GET", "/v2/%s/manifests/v1" % c["repo"], auth=("admin", ADMIN_PASSWORD),
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content
    return srv.request("PUT", "/v2/%s/manifests/v2" % c["repo"], auth=auth, data=body,
                       headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})


def check_push_manifest(srv, c, allowed):
    status = admin_status(srv, "GET", "/v2/%s/manifests/v2" % c["repo"])
    assert status == (200 if allowed else 404)


def op_delete_manifest(srv, auth, c):
    return srv.request("DELETE", "/v2/%s/manifests/%s" % (c["repo"], c["manifest"]), auth=auth)


def check_delete_manifest(srv, c, allowed):
    status = admin_status(srv, "GET", "/v2/%s/manifests/%s" % (c["repo"], c["manifest"]))
    assert status == (404 if allowed else 200)


def op_delete_blob(srv, auth, c):
    # A blob no manifest references (a referenced one may not be deleted).
    loose = secrets.token_bytes(64)
    assert push_blob(srv, ("admin", ADMIN_PASSWORD), c["repo"], loose).status_code == 201
    c["loose"] = digest_of(loose)
    return srv.request("DELETE", "/v2/%s/blobs/%s" % (c["repo"], c["loose"]), auth=auth)


def check_delete_blob(srv, c, allowed):
    status = admin_status(srv, "HEAD", "/v2/%s/blobs/%s" % (c["repo"], c["loose"]))
    assert status == (404 if allowed else 200)


def op_cross_mount(srv, auth, c):
    # Mount the layer into another golden/ repository: a push that reads the source.
    return srv.request("POST", "/v2/%s/blobs/uploads/" % c["target"], auth=auth,
                       params={"mount": c["layer"], "from": c["repo"]}, data=b"")


def check_cross_mount(srv, c, allowed):
    status = admin_status(srv, "HEAD", "/v2/%s/blobs/%s" % (c["target"], c["layer"]))
    assert status == (200 if allowed else 404)


def op_push_foreign_manifest(srv, auth, c):
    # An image of vault/ (which only the admin can read), its manifest PUT into golden/.
    vault = "vault/s-" + secrets.token_hex(4)
    _mdigest, c["foreign_layer"] = push_image(srv, ("admin", ADMIN_PASSWORD), vault)
    body = srv.request("GET", "/v2/%s/manifests/v1" % vault, auth=("admin", ADMIN_PASSWORD),
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content
    c["response"] = srv.request("PUT", "/v2/%s/manifests/foreign" % c["repo"], auth=auth,
                                data=body, headers={"Content-Type":
                                                    "application/vnd.oci.image.manifest.v1+json"})
    return c["response"]


def check_push_foreign_manifest(srv, c, allowed):
    if allowed:
        assert_oci_error(c["response"], 400, "MANIFEST_BLOB_UNKNOWN")
    assert admin_status(srv, "GET", "/v2/%s/manifests/foreign" % c["repo"]) == 404
    assert admin_status(srv, "HEAD", "/v2/%s/blobs/%s" % (c["repo"], c["foreign_layer"])) == 404


OPS = {
    # name: (scope actions, op, check, allowed identities, success statuses)
    "pull_manifest": ("pull", op_pull_manifest, None, READERS, {200}),
    "head_blob": ("pull", op_head_blob, None, READERS, {200}),
    "get_blob": ("pull", op_get_blob, None, READERS, {200}),
    "tags_list": ("pull", op_tags, None, READERS, {200}),
    "referrers": ("pull", op_referrers, None, READERS, {200}),
    "push_blob": ("pull,push", op_push_blob, check_push_blob, PUBLISHERS, {201}),
    "push_manifest": ("pull,push", op_push_manifest, check_push_manifest, PUBLISHERS, {201}),
    "delete_manifest": ("delete", op_delete_manifest, check_delete_manifest, PUBLISHERS, {202}),
    "delete_blob": ("delete", op_delete_blob, check_delete_blob, PUBLISHERS, {202}),
    "cross_mount": ("pull,push", op_cross_mount, check_cross_mount, PUBLISHERS, {201}),
    "push_foreign_manifest": ("pull,push", op_push_foreign_manifest, check_push_foreign_manifest,
                              PUBLISHERS, {400}),
}


def credentials_for(srv, creds, who, mode, ctx, actions):
    """Basic credentials, or a Bearer token for the operation's scope(s)."""
    if mode == "basic":
        return creds[who]
    scopes = ["repository:%s:%s" % (ctx["repo"], actions)]
    if "target" in ctx:
        scopes.append("repository:%s:pull,push" % ctx["target"])
    return token(srv, creds[who], scopes)


@pytest.mark.parametrize("mode", ["basic", "bearer"])
@pytest.mark.parametrize("op_name", list(OPS))
@pytest.mark.parametrize("who", IDENTITIES)
def test_repository_operation(world, who, op_name, mode):
    srv, creds = world
    actions, op, check, allowed_set, ok_statuses = OPS[op_name]
    ctx = fresh(srv)
    if op_name == "cross_mount":
        ctx["target"] = "golden/mnt-" + secrets.token_hex(4)
    addressed = ctx.get("target", ctx["repo"])
    auth = credentials_for(srv, creds, who, mode, ctx, actions)
    allowed = who in allowed_set
    r = op(srv, auth, ctx)
    if allowed:
        assert r.status_code in ok_statuses, (who, op_name, mode, r.status_code, r.text[:300])
    elif who == "anonymous":
        assert_oci_error(r, 401, "UNAUTHORIZED")
        challenge = r.headers.get("WWW-Authenticate", "")
        assert challenge.startswith("Bearer realm="), challenge
        assert 'service="meridian"' in challenge, challenge
        assert 'scope="repository:%s:' % addressed in challenge, challenge
    else:
        assert_oci_error(r, 403, "DENIED")
        assert "WWW-Authenticate" not in r.headers
    if check is not None:
        check(srv, ctx, allowed)


def test_outsider_mount_from_unreadable_source_falls_back(world):
    """A publisher of other/* mounting from golden/ (which it cannot read) gets an upload
    session instead of the blob: nothing of golden/ leaks through a mount."""
    srv, creds = world
    ctx = fresh(srv)
    target = "other/m-" + secrets.token_hex(4)
    r = srv.request("POST", "/v2/%s/blobs/uploads/" % target, auth=creds["outsider"],
                    params={"mount": ctx["layer"], "from": ctx["repo"]}, data=b"")
    assert r.status_code == 202, r.text
    assert admin_status(srv, "HEAD", "/v2/%s/blobs/%s" % (target, ctx["layer"])) == 404


def test_denied_looks_the_same_for_missing_repositories(world):
    """403 for a repository that exists and one that does not: nothing is revealed."""
    srv, creds = world
    ctx = fresh(srv)
    a = srv.request("GET", "/v2/%s/tags/list" % ctx["repo"], auth=creds["outsider"])
    b = srv.request("GET", "/v2/golden/nope-%s/tags/list" % secrets.token_hex(4),
                    auth=creds["outsider"])
    assert a.status_code == b.status_code == 403
    assert a.json() == b.json()


def test_base_endpoint(world):
    srv, creds = world
    r = srv.request("GET", "/v2/")
    assert_oci_error(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="http://')
    assert r.headers.get("Docker-Distribution-API-Version") == "registry/2.0"
    for who in ("admin", "consumer", "outsider", "robot"):
        assert srv.request("GET", "/v2/", auth=creds[who]).status_code == 200
        assert srv.request("GET", "/v2/", auth=token(srv, creds[who])).status_code == 200
    # an anonymous token is enough for the version check
    assert srv.request("GET", "/v2/", auth=token(srv, None)).status_code == 200
    assert_oci_error(srv.request("GET", "/v2/", auth=("con", "wrong-password")), 401,
                     "UNAUTHORIZED")
    assert_oci_error(srv.request("GET", "/v2/", auth="not.a.token"), 401, "UNAUTHORIZED")


MGMT_OPS = [
    # (name, method, path, json body maker, allowed, success status)
    ("create_user", "POST", "users", lambda: {"name": "u-" + secrets.token_hex(3),
                                               "password": "password-1"}, {"admin"}, 201),
    ("list_users", "GET", "users", None, {"admin"}, 200),
    ("assign_role", "POST", "roles", lambda: {"subject": "con", "role": "publisher",
                                               "pattern": "x-%s/*" % secrets.token_hex(3)},
     {"admin"}, 201),
    ("list_roles", "GET", "roles", None, {"admin"}, 200),
    ("create_robot", "POST", "robots", lambda: {"name": "r-" + secrets.token_hex(3)},
     {"admin"}, 201),
    ("audit", "GET", "audit", None, {"admin"}, 200),
    # replication topology (endpoints, lag, bytes) is the operator's
    ("list_replications", "GET", "replications", None, {"admin"}, 200),
    ("show_replication", "GET", "replications/local", None, {"admin"}, 200),
    ("delete_replication", "DELETE", "replications/elsewhere", None, {"admin"}, 404),
    ("info", "GET", "info", None, {"admin", "publisher", "consumer", "robot", "outsider"}, 200),
    # image definitions and versions: publishers write, consumers read (issue 12)
    ("create_definition", "POST",
     lambda: "image-definitions?repository=golden/d-" + secrets.token_hex(3), lambda: {},
     PUBLISHERS, 201),
    ("list_definitions", "GET", "image-definitions", None, READERS | {"outsider"}, 200),
    ("show_definition", "GET", "image-definitions?repository=" + DEFINED, None, READERS, 200),
    ("update_definition", "PATCH", "image-definitions?repository=" + DEFINED,
     lambda: {"description": secrets.token_hex(4)}, PUBLISHERS, 200),
    ("delete_definition", "DELETE", "image-definitions?repository=" + DEFINED, None,
     PUBLISHERS, 409),  # allowed, but it still has a version
    ("list_versions", "GET", "image-versions?repository=" + DEFINED, None, READERS, 200),
    ("show_version", "GET", "image-versions?repository=%s&reference=1.0.0" % DEFINED, None,
     READERS, 200),
    ("create_version", "POST",
     lambda: "image-versions?repository=%s&reference=%d.0.0" % (DEFINED,
                                                                secrets.randbelow(10**6) + 2),
     lambda: {}, PUBLISHERS, 201),
    ("update_version", "PATCH", "image-versions?repository=%s&reference=1.0.0" % DEFINED,
     lambda: {"excludeFromLatest": secrets.randbelow(2) == 1}, PUBLISHERS, 200),
    # locks (issue 19): admins and publishers of the repository change them, readers see them
    ("show_lock", "GET", "repositories?repository=%s&reference=v1" % LOCKED, None, READERS,
     200),
    ("update_tag_lock", "PATCH", "repositories?repository=%s&reference=v1" % LOCKED,
     lambda: {"listEnabled": True}, PUBLISHERS, 200),
    ("update_repository_lock", "PATCH", "repositories?repository=" + LOCKED,
     lambda: {"readEnabled": True}, PUBLISHERS, 200),
]


@pytest.mark.parametrize("who", IDENTITIES + ["peer"])
@pytest.mark.parametrize("name,method,path,body,allowed,ok", MGMT_OPS,
                         ids=[m[0] for m in MGMT_OPS])
def test_management_operation(world, who, name, method, path, body, allowed, ok):
    srv, creds = world
    adm = srv.admin()
    payload = body() if body else None
    before = adm.call("GET", "users", expect=200).json() + adm.call("GET", "robots").json()
    roles_before = adm.call("GET", "roles", expect=200).json()
    if callable(path):
        path = path()
    r = srv.request(method, "/_meridian/v1/" + path, auth=creds[who], json=payload)
    if who in allowed:
        assert r.status_code == ok, (who, name, r.status_code, r.text)
        return
    if who == "anonymous":
        assert_oci_error(r, 401, "UNAUTHORIZED")
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
    else:
        assert_oci_error(r, 403, "DENIED")
    after = adm.call("GET", "users", expect=200).json() + adm.call("GET", "robots").json()
    assert [u["name"] for u in after] == [u["name"] for u in before]
    assert adm.call("GET", "roles", expect=200).json() == roles_before


def test_image_definitions_are_listed_to_their_readers_only(world):
    """Listing definitions needs no repository, so it is filtered by pull rights."""
    srv, creds = world
    for who in ("consumer", "publisher", "outsider"):
        r = srv.request("GET", "/_meridian/v1/image-definitions", auth=creds[who])
        names = [d["repository"] for d in r.json()]
        assert (DEFINED in names) == (who != "outsider"), (who, names)


def test_info_shows_the_deployment_to_admins_only(world):
    """Any user or robot learns which region answered; version and storage are admin's."""
    srv, creds = world
    for who in ("publisher", "consumer", "robot", "outsider"):
        r = srv.request("GET", "/_meridian/v1/info", auth=creds[who])
        assert r.status_code == 200
        assert r.json() == {"region": "local"}, (who, r.json())
    body = srv.request("GET", "/_meridian/v1/info", auth=creds["admin"]).json()
    assert body["region"] == "local" and body["version"] and body["storage"]


def test_peer_keeps_the_replication_api(world):
    """The peer reads what replication needs (the replication API, /v2/ reads), and no
    other management resource."""
    srv, creds = world
    peer = creds["peer"]
    r = srv.request("GET", "/_meridian/v1/replication/summary", auth=peer, timeout=10)
    assert r.status_code not in (401, 403), r.text
    assert srv.request("GET", "/v2/_catalog", auth=peer).status_code == 200
    for path in ("replications", "info", "audit"):
        assert_oci_error(srv.request("GET", "/_meridian/v1/" + path, auth=peer), 403, "DENIED")
    for who in ("admin", "consumer"):
        r = srv.request("GET", "/_meridian/v1/replication/summary", auth=creds[who])
        assert_oci_error(r, 401, "UNAUTHORIZED")


def test_bearer_tokens_do_not_open_management(world):
    srv, creds = world
    tok = token(srv, creds["admin"], ["repository:golden/x:pull"])
    r = srv.request("GET", "/_meridian/v1/users", auth=tok)
    assert_oci_error(r, 401, "UNAUTHORIZED")


def test_metrics_are_the_administrators_when_access_control_is_on(world):
    """/metrics names every repository (storage per repository) and its storage totals
    tell whether a pushed blob was already stored anywhere: with access control on it is
    an administrator's, like the storage API (it was open to anyone)."""
    srv, creds = world
    r = srv.request("GET", "/metrics")
    assert r.status_code == 401, (r.status_code, r.text[:200])
    assert LOCKED not in r.text
    for who in ("publisher", "consumer", "robot", "outsider"):
        r = srv.request("GET", "/metrics", auth=creds[who])
        assert r.status_code in (401, 403), (who, r.status_code)
        assert LOCKED not in r.text, who
    for who in ("admin", "peer"):  # the regions' own credential reads them too
        r = srv.request("GET", "/metrics", auth=creds[who])
        assert r.status_code == 200 and "meridian_http_requests_total" in r.text, who
    # health and readiness stay open: probes carry no credentials
    assert srv.request("GET", "/healthz").status_code == 200
    assert srv.request("GET", "/readyz").status_code == 200


def compliance_gauge(srv, kind):
    text = srv.request("GET", "/metrics", auth=("admin", ADMIN_PASSWORD)).text
    for line in text.splitlines():
        if line.startswith('meridian_compliance_violations{kind="%s"} ' % kind):
            return int(line.split()[1])
    return None


def test_a_partial_compliance_check_leaves_the_registry_gauges(world):
    """The compliance gauges on /metrics are the registry's: a check by a caller who may
    pull only part of the registry answers what it may see, and leaves the gauges as the
    last whole check set them (it used to clear violations it could not see)."""
    srv, creds = world
    repo = "golden/compliance-" + secrets.token_hex(3)
    push_image(srv, creds["admin"], repo, tag="latest")
    matrix = {"rules": [{"repositories": repo, "maxLatestAgeS": 1}]}

    def whole_check_flags_it():
        r = srv.request("POST", "/_meridian/v1/compliance/check", auth=creds["admin"],
                        json=matrix)
        assert r.status_code == 200, r.text
        return compliance_gauge(srv, "latest-too-old") == 1
    wait_until(whole_check_flags_it, 30, what="the whole check to flag latest as too old")
    r = srv.request("POST", "/_meridian/v1/compliance/check", auth=creds["outsider"],
                    json=matrix)
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [], r.text  # it may not pull the repository
    assert compliance_gauge(srv, "latest-too-old") == 1


def test_an_upload_session_is_its_starters(world):
    """Another identity that may push to the repository cannot resume, read, finish or
    cancel a session someone else started (its id leaked from a log or a proxy): it is told
    the session does not exist, and the starter carries on."""
    srv, creds = world
    repo = "golden/session-" + secrets.token_hex(3)
    r = srv.request("POST", "/v2/%s/blobs/uploads/" % repo, auth=creds["publisher"])
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    r = srv.request("PATCH", loc, auth=creds["publisher"], data=b"first",
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    sep = "&" if "?" in loc else "?"
    data = b"first" + b"second"
    for method, kw in (("GET", {}), ("PATCH", {"data": b"x"}), ("DELETE", {}),
                       ("PUT", {"data": b"second"})):
        target = loc + (sep + "digest=" + digest_of(data) if method == "PUT" else "")
        r = srv.request(method, target, auth=creds["robot"], **kw)
        assert_oci_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    r = srv.request("PUT", loc + sep + "digest=" + digest_of(data), auth=creds["publisher"],
                    data=b"second")
    assert r.status_code == 201, (r.status_code, r.text)
    r = srv.request("GET", "/v2/%s/blobs/%s" % (repo, digest_of(data)), auth=creds["publisher"])
    assert r.status_code == 200 and r.content == data


def test_a_refused_referrer_names_the_subjects_repository_to_its_readers_only(world):
    """A referrer pushed into an image definition whose subject is a manifest of another
    repository is refused naming that repository: to a caller who may pull it. A publisher
    of golden/* is told "another repository" and learns no name it cannot list (the
    message used to name vault/...)."""
    srv, creds = world
    vault = "vault/r-" + secrets.token_hex(4)
    subject, _layer = push_image(srv, creds["admin"], vault)
    empty = b"{}"
    body = json.dumps({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "artifactType": "application/x-sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": digest_of(empty), "size": len(empty)},
        "layers": [], "subject": {"mediaType": MT_OCI_MANIFEST, "digest": subject,
                                  "size": 100}}).encode()
    cosign_tag = "sha256-%s.sig" % subject.split(":", 1)[1]
    for who in ("publisher", "robot", "admin"):
        assert push_blob(srv, creds[who], DEFINED, empty).status_code == 201
        for ref in (digest_of(body), cosign_tag):
            r = srv.request("PUT", "/v2/%s/manifests/%s" % (DEFINED, ref), auth=creds[who],
                            data=body, headers={"Content-Type": MT_OCI_MANIFEST})
            assert_oci_error(r, 400, "MANIFEST_INVALID")
            msg = r.json()["errors"][0]["message"]
            assert "another repository" in msg, msg
            assert (vault in msg) == (who == "admin"), (who, msg)
            assert admin_status(srv, "GET", "/v2/%s/manifests/%s" % (DEFINED, ref)) == 404
