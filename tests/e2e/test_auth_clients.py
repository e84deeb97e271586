"""Real clients against a registry with access control on: `podman login`, `skopeo login`
and `buildah login`, then pushes and pulls that go through the Bearer challenge and the
token endpoint; a consumer can pull but not push or delete; anonymous pull follows the
anonymous role binding. Plain HTTP here (--tls-verify=false); test_auth_tls.py does the
same over HTTPS with --cert-dir.
"""

import json
import os

import pytest

from auth_helpers import ADMIN_PASSWORD, module_server  # noqa: F401
from clients_helpers import OciLayout, clients, tool_missing  # noqa: F401

pytestmark = pytest.mark.skipif(tool_missing("skopeo"), reason="skopeo is not installed")

NOTLS = "--tls-verify=false"


@pytest.fixture(scope="module")
def people(module_server):
    adm = module_server.admin()
    return {
        "publisher": adm.user("alice", "alice-password", role="publisher", pattern="golden/*"),
        "consumer": adm.user("bob", "bob-password", role="consumer", pattern="golden/*"),
        "robot": adm.robot("builder", role="publisher", pattern="golden/*"),
    }


def layout_image(tmp_path, name="src", text=b"hello"):
    layout = OciLayout(tmp_path / name)
    desc, _ = layout.add_image([{"hello.txt": text}])
    layout.tag(desc, "v1")
    return layout, desc


def refused(out):
    err = out.stderr.lower()
    return out.returncode != 0 and any(w in err for w in (b"403", b"forbidden", b"denied",
                                                           b"unauthorized", b"401"))


def ref(srv, repo, tag="v1"):
    return "docker://%s/%s:%s" % (srv.hostport, repo, tag)


def test_podman_login(module_server, people, clients):
    srv = module_server
    user, pw = people["publisher"]
    out = clients.podman("login", NOTLS, "-u", user, "-p", pw, srv.hostport)
    assert b"Login Succeeded" in out.stdout
    saved = json.loads(clients.auth.read_text())
    assert srv.hostport in saved["auths"]
    bad = clients.podman("login", NOTLS, "-u", user, "-p", "wrong-password", srv.hostport,
                         check=False)
    assert bad.returncode != 0
    assert b"invalid username/password" in bad.stderr or b"unauthorized" in bad.stderr.lower()
    clients.podman("logout", srv.hostport)


def test_skopeo_login_push_pull_delete(module_server, people, clients, tmp_path):
    srv = module_server
    layout, desc = layout_image(tmp_path)
    user, pw = people["publisher"]
    clients.skopeo("login", NOTLS, "-u", user, "-p", pw, srv.hostport)
    clients.skopeo("copy", "--dest-tls-verify=false", layout.ref("v1"),
                   ref(srv, "golden/skopeo"))
    info = json.loads(clients.skopeo("inspect", NOTLS, ref(srv, "golden/skopeo")).stdout)
    assert info["Digest"] == desc["digest"]
    tags = json.loads(clients.skopeo("list-tags", NOTLS,
                                     "docker://%s/golden/skopeo" % srv.hostport).stdout)
    assert tags["Tags"] == ["v1"]
    back = OciLayout(tmp_path / "back")
    clients.skopeo("copy", "--src-tls-verify=false", ref(srv, "golden/skopeo"), back.ref("v1"))
    assert back.resolve("v1")["digest"] == desc["digest"]
    # outside its pattern the publisher is denied
    out = clients.skopeo("copy", "--dest-tls-verify=false", layout.ref("v1"),
                         ref(srv, "secret/skopeo"), check=False)
    assert out.returncode != 0
    assert refused(out), out.stderr
    clients.skopeo("delete", NOTLS, ref(srv, "golden/skopeo"))
    r = srv.request("GET", "/v2/golden/skopeo/tags/list", auth=("admin", ADMIN_PASSWORD))
    assert r.json()["tags"] in ([], None)


def test_consumer_pulls_but_cannot_push_or_delete(module_server, people, clients, tmp_path):
    srv = module_server
    layout, desc = layout_image(tmp_path, text=b"consumer")
    clients.skopeo("copy", "--dest-tls-verify=false", "--dest-creds",
                   "%s:%s" % people["publisher"], layout.ref("v1"), ref(srv, "golden/shared"))
    user, pw = people["consumer"]
    clients.skopeo("login", NOTLS, "-u", user, "-p", pw, srv.hostport)
    info = json.loads(clients.skopeo("inspect", NOTLS, ref(srv, "golden/shared")).stdout)
    assert info["Digest"] == desc["digest"]
    out = clients.skopeo("copy", "--dest-tls-verify=false", layout.ref("v1"),
                         ref(srv, "golden/shared", "v2"), check=False)
    assert out.returncode != 0
    out = clients.skopeo("delete", NOTLS, ref(srv, "golden/shared"), check=False)
    assert out.returncode != 0
    r = srv.request("GET", "/v2/golden/shared/tags/list", auth=("admin", ADMIN_PASSWORD))
    assert r.json()["tags"] == ["v1"]


@pytest.mark.skipif(tool_missing("buildah") or tool_missing("podman"),
                    reason="buildah or podman is not installed")
def test_buildah_login_push_podman_pull(module_server, people, clients, tmp_path):
    srv = module_server
    (tmp_path / "hello.txt").write_text("hello from an authenticated buildah\n")
    ctr = clients.buildah("from", "--signature-policy", clients.policy,
                          "scratch").stdout.decode().strip()
    clients.buildah("copy", ctr, tmp_path / "hello.txt", "/hello.txt")
    clients.buildah("commit", "--signature-policy", clients.policy, ctr,
                    "localhost/auth-buildah:latest")
    robot, secret = people["robot"]
    clients.buildah("login", NOTLS, "-u", robot, "-p", secret, srv.hostport)
    digestfile = tmp_path / "digest"
    clients.buildah("push", "--signature-policy", clients.policy, NOTLS, "--digestfile",
                    digestfile, "localhost/auth-buildah:latest", ref(srv, "golden/buildah"))
    digest = digestfile.read_text().strip()
    clients.buildah("logout", srv.hostport)
    # without credentials the pull is refused, with the consumer's it works
    image = "%s/golden/buildah:v1" % srv.hostport
    out = clients.podman("pull", NOTLS, image, check=False)
    assert out.returncode != 0
    user, pw = people["consumer"]
    clients.podman("login", NOTLS, "-u", user, "-p", pw, srv.hostport)
    clients.podman("pull", NOTLS, image)
    clients.podman("image", "exists", image)
    r = srv.request("HEAD", "/v2/golden/buildah/manifests/v1", auth=("admin", ADMIN_PASSWORD),
                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                       "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.headers["Docker-Content-Digest"] == digest


def test_anonymous_pull_with_skopeo(module_server, people, clients, tmp_path):
    srv = module_server
    layout, desc = layout_image(tmp_path, text=b"public")
    clients.skopeo("copy", "--dest-tls-verify=false", "--dest-creds",
                   "%s:%s" % ("admin", ADMIN_PASSWORD), layout.ref("v1"),
                   ref(srv, "public/app"))
    out = clients.skopeo("inspect", NOTLS, ref(srv, "public/app"), check=False)
    assert out.returncode != 0  # off by default
    srv.admin().assign("anonymous", "consumer", "public/*")
    try:
        info = json.loads(clients.skopeo("inspect", NOTLS, ref(srv, "public/app")).stdout)
        assert info["Digest"] == desc["digest"]
        out = clients.skopeo("copy", "--dest-tls-verify=false", layout.ref("v1"),
                             ref(srv, "public/app", "v2"), check=False)
        assert out.returncode != 0  # anonymous clients never push
    finally:
        srv.admin().revoke("anonymous", "consumer", "public/*")
    assert clients.skopeo("inspect", NOTLS, ref(srv, "public/app"), check=False).returncode != 0


def test_cli_manages_identities(module_server, tmp_path):
    """meridian user/robot/role/audit against the server, as an admin would."""
    import subprocess
    srv = module_server
    binary = os.environ.get("MERIDIAN_BIN", "build/meridian")
    env = dict(os.environ, MERIDIAN_USERNAME="admin", MERIDIAN_PASSWORD=ADMIN_PASSWORD)

    def cli(*args, ok=True):
        p = subprocess.run([binary] + list(args) + ["--registry", srv.url], env=env,
                           capture_output=True, text=True, timeout=60)
        if ok:
            assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p

    out = cli("user", "create", "dave")
    assert "password (shown only now):" in out.stdout
    pw = out.stdout.strip().rsplit(" ", 1)[-1]
    assert srv.request("GET", "/v2/", auth=("dave", pw)).status_code == 200
    cli("role", "assign", "--assignee", "dave", "--role", "publisher", "--scope", "golden/*")
    listed = json.loads(cli("role", "list", "--assignee", "dave", "--output", "json").stdout)
    assert listed[0]["role"] == "publisher" and listed[0]["pattern"] == "golden/*"
    users = json.loads(cli("user", "list", "--output", "json").stdout)
    dave = next(u for u in users if u["name"] == "dave")
    assert dave["roles"] == [{"role": "publisher", "pattern": "golden/*"}]
    out = cli("robot", "create", "nightly", "--expires-in", "30d")
    secret = out.stdout.strip().rsplit(" ", 1)[-1]
    assert srv.request("GET", "/v2/", auth=("nightly", secret)).status_code == 200
    assert "nightly" in cli("robot", "list").stdout
    cli("user", "reset-secret", "dave", "--new-password", "a-new-password")
    assert srv.request("GET", "/v2/", auth=("dave", "a-new-password")).status_code == 200
    cli("role", "revoke", "--assignee", "dave", "--role", "publisher", "--scope", "golden/*")
    cli("robot", "delete", "nightly")
    cli("user", "delete", "dave")
    assert srv.request("GET", "/v2/", auth=("dave", "a-new-password")).status_code == 401
    audit = cli("audit", "list", "--top", "200").stdout
    for action in ("user.create", "role.assign", "role.revoke", "robot.create", "robot.delete",
                   "user.delete", "user.reset-secret"):
        assert action in audit, action
    # without credentials the CLI is refused
    env.pop("MERIDIAN_PASSWORD")
    p = cli("user", "list", ok=False)
    assert p.returncode == 1 and "UNAUTHORIZED" in p.stderr
