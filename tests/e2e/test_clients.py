"""Real clients against one registry: skopeo, buildah and podman over plain HTTP.

Images are built locally as OCI layouts (no network); every round trip is compared byte for
byte: manifest bytes and digests, every config and layer blob.
"""

import json
import os
import random
import subprocess
import time

import pytest
import requests

from clients_helpers import (MANIFEST_ACCEPT, OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST,
                             OciLayout, assert_same_closure, clients, reg,  # noqa: F401
                             sha256_digest, tool_missing)

pytestmark = pytest.mark.skipif(tool_missing("skopeo"), reason="skopeo is not installed")

NOTLS = "--dest-tls-verify=false"
SRCNOTLS = "--src-tls-verify=false"


def docker_ref(reg, repo, ref):
    sep = "@" if ref.startswith("sha256:") else ":"
    return f"docker://{reg.host}/{repo}{sep}{ref}"


def get_manifest(reg, repo, ref):
    return requests.get(f"{reg.url}/v2/{repo}/manifests/{ref}",
                        headers={"Accept": MANIFEST_ACCEPT}, timeout=30)


def multilayer_image(layout, seed, n_layers=3, arch="amd64"):
    rng = random.Random(seed)
    layers = []
    for i in range(n_layers):
        layers.append({
            f"layer{i}/random.bin": rng.randbytes(rng.randrange(1000, 300_000)),
            f"layer{i}/hello.txt": f"image {seed} layer {i} {arch}\n".encode(),
        })
    return layout.add_image(layers, arch=arch, labels={"seed": str(seed)})


def test_skopeo_push_pull_multilayer_roundtrip(reg, clients, tmp_path):
    src = OciLayout(tmp_path / "src")
    desc, manifest_bytes = multilayer_image(src, seed=1, n_layers=3)
    src.tag(desc, "v1")

    clients.skopeo("copy", "--preserve-digests", NOTLS, src.ref("v1"),
                   docker_ref(reg, "e2e/multilayer", "v1"))

    # The registry serves the very bytes pushed, under their digest, by tag and by digest.
    for ref in ("v1", desc["digest"]):
        r = get_manifest(reg, "e2e/multilayer", ref)
        assert r.status_code == 200, r.text
        assert r.content == manifest_bytes
        assert r.headers.get("Docker-Content-Digest") == desc["digest"]
        assert r.headers.get("Content-Type") == OCI_MANIFEST

    inspect = json.loads(clients.skopeo("inspect", "--tls-verify=false",
                                        docker_ref(reg, "e2e/multilayer", "v1")).stdout)
    assert inspect["Digest"] == desc["digest"]
    assert inspect["Architecture"] == "amd64"
    assert inspect["Os"] == "linux"
    assert inspect["Labels"] == {"seed": "1"}
    assert inspect["Layers"] == [layer["digest"] for layer
                                 in json.loads(manifest_bytes)["layers"]]
    raw = clients.skopeo("inspect", "--raw", "--tls-verify=false",
                         docker_ref(reg, "e2e/multilayer", "v1")).stdout
    assert raw == manifest_bytes
    config = clients.skopeo("inspect", "--config", "--raw", "--tls-verify=false",
                            docker_ref(reg, "e2e/multilayer", "v1")).stdout
    assert sha256_digest(config) == json.loads(manifest_bytes)["config"]["digest"]

    dst = OciLayout(tmp_path / "dst")
    clients.skopeo("copy", "--preserve-digests", SRCNOTLS,
                   docker_ref(reg, "e2e/multilayer", "v1"), dst.ref("back"))
    assert_same_closure(src, dst, desc["digest"], "back")

    # By digest too.
    dst2 = OciLayout(tmp_path / "dst2")
    clients.skopeo("copy", "--preserve-digests", SRCNOTLS,
                   docker_ref(reg, "e2e/multilayer", desc["digest"]), dst2.ref("bydigest"))
    assert_same_closure(src, dst2, desc["digest"], "bydigest")


def test_skopeo_push_pull_multiarch_index_all(reg, clients, tmp_path):
    src = OciLayout(tmp_path / "src")
    amd64, _ = multilayer_image(src, seed=10, n_layers=2, arch="amd64")
    arm64, _ = multilayer_image(src, seed=11, n_layers=2, arch="arm64")
    index_desc, index_bytes = src.add_index([amd64, arm64])
    src.tag(index_desc, "multi")

    clients.skopeo("copy", "--all", "--preserve-digests", NOTLS, src.ref("multi"),
                   docker_ref(reg, "e2e/multiarch", "multi"))

    r = get_manifest(reg, "e2e/multiarch", "multi")
    assert r.status_code == 200, r.text
    assert r.content == index_bytes
    assert r.headers.get("Docker-Content-Digest") == index_desc["digest"]
    assert r.headers.get("Content-Type") == OCI_INDEX
    for child in (amd64, arm64):
        r = get_manifest(reg, "e2e/multiarch", child["digest"])
        assert r.status_code == 200, r.text
        assert r.content == src.read_blob(child["digest"])

    raw = clients.skopeo("inspect", "--raw", "--tls-verify=false",
                         docker_ref(reg, "e2e/multiarch", "multi")).stdout
    assert raw == index_bytes
    for arch, child in (("amd64", amd64), ("arm64", arm64)):
        info = json.loads(clients.skopeo(
            "--override-arch", arch, "--override-os", "linux", "inspect", "--tls-verify=false",
            docker_ref(reg, "e2e/multiarch", "multi")).stdout)
        assert info["Digest"] == index_desc["digest"] or info["Digest"] == child["digest"]
        assert info["Architecture"] == arch
        assert info["Layers"] == [layer["digest"] for layer
                                  in json.loads(src.read_blob(child["digest"]))["layers"]]

    dst = OciLayout(tmp_path / "dst")
    clients.skopeo("copy", "--all", "--preserve-digests", SRCNOTLS,
                   docker_ref(reg, "e2e/multiarch", "multi"), dst.ref("back"))
    assert_same_closure(src, dst, index_desc["digest"], "back")

    # A single-platform pull picks the arm64 image out of the index.
    one = OciLayout(tmp_path / "one")
    clients.skopeo("--override-arch", "arm64", "--override-os", "linux", "copy",
                   "--preserve-digests", SRCNOTLS,
                   docker_ref(reg, "e2e/multiarch", "multi"), one.ref("arm"))
    assert_same_closure(src, one, arm64["digest"], "arm")


def test_skopeo_list_tags_and_delete(reg, clients, tmp_path):
    src = OciLayout(tmp_path / "src")
    digests = {}
    for i, tag in enumerate(("a", "b", "c")):
        desc, _ = multilayer_image(src, seed=100 + i, n_layers=1)
        src.tag(desc, tag)
        digests[tag] = desc["digest"]
        clients.skopeo("copy", "--preserve-digests", NOTLS, src.ref(tag),
                       docker_ref(reg, "e2e/tags", tag))

    tags = json.loads(clients.skopeo("list-tags", "--tls-verify=false",
                                     f"docker://{reg.host}/e2e/tags").stdout)
    assert tags["Repository"] == f"{reg.host}/e2e/tags"
    assert sorted(tags["Tags"]) == ["a", "b", "c"]

    # skopeo delete resolves the tag to a digest and deletes the manifest by digest.
    clients.skopeo("delete", "--tls-verify=false", docker_ref(reg, "e2e/tags", "b"))
    assert get_manifest(reg, "e2e/tags", digests["b"]).status_code == 404
    assert get_manifest(reg, "e2e/tags", "b").status_code == 404
    p = clients.skopeo("inspect", "--tls-verify=false", docker_ref(reg, "e2e/tags", "b"),
                       check=False)
    assert p.returncode != 0
    tags = json.loads(clients.skopeo("list-tags", "--tls-verify=false",
                                     f"docker://{reg.host}/e2e/tags").stdout)
    assert sorted(tags["Tags"]) == ["a", "c"]

    # The others are untouched and still pull.
    for tag in ("a", "c"):
        dst = OciLayout(tmp_path / f"dst-{tag}")
        clients.skopeo("copy", "--preserve-digests", SRCNOTLS,
                       docker_ref(reg, "e2e/tags", tag), dst.ref(tag))
        assert_same_closure(src, dst, digests[tag], tag)

    # Deleting by digest directly, too.
    clients.skopeo("delete", "--tls-verify=false",
                   docker_ref(reg, "e2e/tags", digests["c"]))
    assert get_manifest(reg, "e2e/tags", "c").status_code == 404
    assert get_manifest(reg, "e2e/tags", "a").status_code == 200


def test_skopeo_pull_unknown_fails_cleanly(reg, clients, tmp_path):
    dst = OciLayout(tmp_path / "dst")
    p = clients.skopeo("copy", SRCNOTLS, docker_ref(reg, "e2e/nothing-here", "latest"),
                       dst.ref("x"), check=False)
    assert p.returncode != 0
    err = p.stderr.decode(errors="replace").lower()
    assert "manifest unknown" in err or "not found" in err or "name unknown" in err, err


@pytest.mark.skipif(tool_missing("buildah") or tool_missing("podman"),
                    reason="buildah or podman is not installed")
def test_buildah_push_podman_pull(reg, clients, tmp_path):
    payload = os.urandom(50_000)
    (tmp_path / "payload.bin").write_bytes(payload)
    (tmp_path / "hello.txt").write_text("hello from buildah\n")

    ctr = clients.buildah("from", "--signature-policy", clients.policy,
                          "scratch").stdout.decode().strip()
    clients.buildah("copy", ctr, tmp_path / "hello.txt", "/hello.txt")
    clients.buildah("copy", ctr, tmp_path / "payload.bin", "/data/payload.bin")
    clients.buildah("config", "--label", "built-by=meridian-e2e", "--arch", "amd64",
                    "--os", "linux", ctr)
    image_id = clients.buildah("commit", "--signature-policy", clients.policy, ctr,
                               "localhost/e2e-buildah:latest").stdout.decode().strip()
    assert image_id

    pushed = {}
    for fmt, repo in (("oci", "e2e/buildah-oci"), ("v2s2", "e2e/buildah-docker")):
        digestfile = tmp_path / f"digest-{fmt}"
        clients.buildah("push", "--signature-policy", clients.policy, "--tls-verify=false",
                        "--format", fmt, "--digestfile", digestfile,
                        "localhost/e2e-buildah:latest", f"docker://{reg.host}/{repo}:v1")
        pushed[repo] = digestfile.read_text().strip()
        r = get_manifest(reg, repo, "v1")
        assert r.status_code == 200, r.text
        assert sha256_digest(r.content) == pushed[repo]
        assert r.headers.get("Docker-Content-Digest") == pushed[repo]
        want_type = OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST
        assert r.headers.get("Content-Type") == want_type
        assert json.loads(r.content)["mediaType"] == want_type

    for repo, digest in pushed.items():
        ref = f"{reg.host}/{repo}:v1"
        clients.podman("pull", "--tls-verify=false", ref)
        info = json.loads(clients.podman("image", "inspect", ref).stdout)[0]
        # Both pushes share one config, so podman stores one image with two repo digests.
        assert f"{reg.host}/{repo}@{digest}" in info["RepoDigests"], info["RepoDigests"]
        assert info["Labels"]["built-by"] == "meridian-e2e"
        mnt = clients.podman("image", "mount", ref).stdout.decode().strip()
        try:
            with open(os.path.join(mnt, "hello.txt"), "rb") as f:
                assert f.read() == b"hello from buildah\n"
            with open(os.path.join(mnt, "data/payload.bin"), "rb") as f:
                assert f.read() == payload
        finally:
            clients.podman("image", "unmount", ref)

    # podman push back under another name, then skopeo sees the same layers.
    src_ref = f"{reg.host}/e2e/buildah-oci:v1"
    clients.podman("push", "--tls-verify=false", src_ref,
                   f"docker://{reg.host}/e2e/podman-pushed:v2")
    a = json.loads(clients.skopeo("inspect", "--tls-verify=false",
                                  f"docker://{src_ref}").stdout)
    b = json.loads(clients.skopeo("inspect", "--tls-verify=false",
                                  f"docker://{reg.host}/e2e/podman-pushed:v2").stdout)
    assert a["Layers"] == b["Layers"]
    assert b["Labels"]["built-by"] == "meridian-e2e"


def test_concurrent_skopeo_pushes(reg, clients, tmp_path):
    """20 skopeo pushes at once: 14 distinct images sharing a base layer (so the same blob is
    uploaded concurrently), 3 pushes of one image to one repo:tag, 3 more tags of one repo."""
    src = OciLayout(tmp_path / "src")
    rng = random.Random(2024)
    base = {"base/os-release": b"ID=meridian-e2e\n", "base/blob": rng.randbytes(200_000)}
    images = []
    for i in range(17):
        layers = [base, {f"app{i}/bin": rng.randbytes(rng.randrange(5_000, 400_000))}]
        desc, _ = src.add_image(layers, labels={"n": str(i)})
        src.tag(desc, f"img{i}")
        images.append(desc)

    pushes = []  # (oci tag, repo, tag, expected digest)
    for i in range(14):
        pushes.append((f"img{i}", f"e2e/conc{i}", "v1", images[i]["digest"]))
    for _ in range(3):
        pushes.append(("img14", "e2e/conc-same", "latest", images[14]["digest"]))
    for i, j in enumerate((15, 16, 0)):
        pushes.append((f"img{j}", "e2e/conc-shared", f"t{i}", images[j]["digest"]))
    assert len(pushes) == 20

    t0 = time.monotonic()
    procs = []
    for oci_tag, repo, tag, _ in pushes:
        argv = clients.skopeo_argv("copy", "--preserve-digests", NOTLS, src.ref(oci_tag),
                                   docker_ref(reg, repo, tag))
        procs.append(subprocess.Popen(argv, env=clients.env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    failures = []
    for p, push in zip(procs, pushes):
        out, err = p.communicate(timeout=300)
        if p.returncode != 0:
            failures.append((push, p.returncode, err.decode(errors="replace")[-2000:]))
    elapsed = time.monotonic() - t0
    assert not failures, f"{len(failures)} of 20 concurrent pushes failed: {failures}"
    print(f"20 concurrent skopeo pushes took {elapsed:.1f}s")

    for n, (oci_tag, repo, tag, digest) in enumerate(pushes):
        r = get_manifest(reg, repo, tag)
        assert r.status_code == 200, (repo, tag, r.text)
        assert r.headers.get("Docker-Content-Digest") == digest
        assert r.content == src.read_blob(digest)

    # Pull every distinct (repo, tag) back with skopeo and compare byte for byte.
    for n, (oci_tag, repo, tag, digest) in enumerate(sorted(set(pushes))):
        dst = OciLayout(tmp_path / f"back{n}")
        clients.skopeo("copy", "--preserve-digests", SRCNOTLS, docker_ref(reg, repo, tag),
                       dst.ref("x"))
        assert_same_closure(src, dst, digest, "x")
