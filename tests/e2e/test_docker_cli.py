"""The docker command-line client against a registry with access control on, without a Docker
daemon: `docker login` (the Bearer challenge and the token endpoint), `docker manifest
inspect`, and `docker manifest create` / `push`, which writes a manifest list (an OCI index
for OCI children) whose children it checks itself. Each test has its own DOCKER_CONFIG. Skipped where no
`docker` binary is installed (Debian's `docker.io` package has one).
"""

import gzip
import hashlib
import json
import os
import subprocess

import pytest

from auth_helpers import ADMIN_PASSWORD, module_server  # noqa: F401
from clients_helpers import OciLayout, clients, tool_missing  # noqa: F401

pytestmark = pytest.mark.skipif(tool_missing("docker") or tool_missing("skopeo"),
                                reason="docker or skopeo is not installed")

# docker writes a Docker manifest list, or an OCI index when the children are OCI manifests
# (as skopeo's copies of an OCI layout are)
LISTS = ("application/vnd.docker.distribution.manifest.list.v2+json",
         "application/vnd.oci.image.index.v1+json")


@pytest.fixture(scope="module")
def people(module_server):
    adm = module_server.admin()
    return {
        "publisher": adm.user("carol", "carol-password", role="publisher", pattern="golden/*"),
        "consumer": adm.user("dave", "dave-password", role="consumer", pattern="golden/*"),
    }


class Docker:
    def __init__(self, root):
        self.config = root / "docker-config"
        self.config.mkdir()
        self.env = dict(os.environ, DOCKER_CONFIG=str(self.config))

    def __call__(self, *args, check=True):
        p = subprocess.run(["docker"] + [str(a) for a in args], env=self.env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError("docker %s exited %d\nstdout: %s\nstderr: %s" % (
                " ".join(map(str, args)), p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace")))
        return p

    def login(self, hostport, user, password, check=True):
        return self("login", "-u", user, "-p", password, hostport, check=check)


@pytest.fixture
def docker(tmp_path):
    return Docker(tmp_path)


def push_image(srv, clients, tmp_path, people, repo, tag, text):
    layout = OciLayout(tmp_path / ("src-" + tag))
    desc, _ = layout.add_image([{"hello.txt": text}])
    layout.tag(desc, tag)
    clients.skopeo("copy", "--dest-tls-verify=false", "--dest-creds",
                   "%s:%s" % people["publisher"], layout.ref(tag),
                   "docker://%s/%s:%s" % (srv.hostport, repo, tag))
    return desc


def test_docker_login_and_manifest_inspect(module_server, people, clients, docker, tmp_path):
    srv = module_server
    desc = push_image(srv, clients, tmp_path, people, "golden/dock", "v1", b"docker inspect")
    image = "%s/golden/dock:v1" % srv.hostport
    # without credentials the manifest is refused
    out = docker("manifest", "inspect", "--insecure", image, check=False)
    assert out.returncode != 0
    user, _ = people["consumer"]
    bad = docker.login(srv.hostport, user, "wrong-password", check=False)
    assert bad.returncode != 0
    assert b"unauthorized" in bad.stderr.lower() or b"invalid" in bad.stderr.lower(), bad.stderr
    out = docker.login(srv.hostport, *people["consumer"])
    assert b"Login Succeeded" in out.stdout, out.stdout
    saved = json.loads((docker.config / "config.json").read_text())
    assert srv.hostport in saved["auths"]
    got = json.loads(docker("manifest", "inspect", "--insecure", image).stdout)
    r = srv.request("GET", "/v2/golden/dock/manifests/v1", auth=("admin", ADMIN_PASSWORD),
                    headers={"Accept": desc["mediaType"]})
    assert r.status_code == 200
    assert got == r.json()
    docker("logout", srv.hostport)
    out = docker("manifest", "inspect", "--insecure", image, check=False)
    assert out.returncode != 0


def test_docker_manifest_create_and_push(module_server, people, clients, docker, tmp_path):
    srv = module_server
    one = push_image(srv, clients, tmp_path, people, "golden/multi", "amd", b"for amd64")
    two = push_image(srv, clients, tmp_path, people, "golden/multi", "arm", b"for arm64")
    base = "%s/golden/multi" % srv.hostport
    docker.login(srv.hostport, *people["publisher"])
    docker("manifest", "create", "--insecure", base + ":all", base + ":amd", base + ":arm")
    docker("manifest", "annotate", "--arch", "arm64", base + ":all", base + ":arm")
    out = docker("manifest", "push", "--insecure", base + ":all")
    pushed = out.stdout.decode().strip().splitlines()[-1]
    assert pushed.startswith("sha256:"), out.stdout

    r = srv.request("GET", "/v2/golden/multi/manifests/all", auth=("admin", ADMIN_PASSWORD),
                    headers={"Accept": ", ".join(LISTS)})
    assert r.status_code == 200
    assert r.headers["Content-Type"] in LISTS
    assert r.json()["mediaType"] == r.headers["Content-Type"]
    assert r.headers["Docker-Content-Digest"] == pushed
    children = {m["digest"]: m["platform"]["architecture"] for m in r.json()["manifests"]}
    assert children[one["digest"]] != "arm64" and children[two["digest"]] == "arm64", children
    # the list reads back through the client as pushed
    got = json.loads(docker("manifest", "inspect", "--insecure", base + ":all").stdout)
    assert got == r.json()

    # a consumer may read it but not push one
    docker("logout", srv.hostport)
    docker.login(srv.hostport, *people["consumer"])
    docker("manifest", "rm", base + ":all")
    docker("manifest", "create", "--insecure", base + ":other", base + ":amd")
    out = docker("manifest", "push", "--insecure", base + ":other", check=False)
    assert out.returncode != 0
    r = srv.request("GET", "/v2/golden/multi/tags/list", auth=("admin", ADMIN_PASSWORD))
    assert "other" not in r.json()["tags"]


def push_docker_image(srv, repo, tag, text):
    """A Docker schema 2 image (config and one layer) pushed as the admin: what a Docker
    daemon's push writes."""
    admin = ("admin", ADMIN_PASSWORD)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()

    def blob(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        r = srv.request("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, d), auth=admin,
                        data=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return {"digest": d, "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": dict(blob(config), mediaType="application/vnd.docker.container.image.v1+json"),
        "layers": [dict(blob(gzip.compress(text)),
                        mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip")],
    }
    body = json.dumps(manifest).encode()
    r = srv.request("PUT", "/v2/%s/manifests/%s" % (repo, tag), auth=admin, data=body,
                    headers={"Content-Type": manifest["mediaType"]})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def test_docker_manifest_list_of_docker_images(module_server, people, docker):
    """Children in Docker's own format make a Docker manifest list, which a client that
    accepts only that type reads back (a Docker daemon's pull asks this way)."""
    srv = module_server
    one = push_docker_image(srv, "golden/dlist", "one", b"one")
    two = push_docker_image(srv, "golden/dlist", "two", b"two")
    base = "%s/golden/dlist" % srv.hostport
    docker.login(srv.hostport, *people["publisher"])
    docker("manifest", "create", "--insecure", base + ":both", base + ":one", base + ":two")
    docker("manifest", "annotate", "--arch", "arm64", base + ":both", base + ":two")
    pushed = docker("manifest", "push", "--insecure", base + ":both").stdout.decode().split()[-1]
    r = srv.request("GET", "/v2/golden/dlist/manifests/both", auth=("admin", ADMIN_PASSWORD),
                    headers={"Accept": LISTS[0]})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == LISTS[0]
    assert r.headers["Docker-Content-Digest"] == pushed
    assert {m["digest"] for m in r.json()["manifests"]} == {one, two}
    got = json.loads(docker("manifest", "inspect", "--insecure", base + ":both").stdout)
    assert got == r.json()
