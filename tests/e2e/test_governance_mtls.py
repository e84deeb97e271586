"""Mutual TLS between regions (issue 13 item 4; docs/governance.md, docs/tls.md).

Regions serve HTTPS and authenticate each other with client certificates issued by the peer
CA (`--peer-ca`, `--peer-tls-cert`, `--peer-tls-key`), instead of the peer secret or besides
it. Every certificate is made here with the `openssl` command.

- A three-region registry over HTTPS replicates with certificates alone; clients without a
  certificate (requests here, as docker would) push and pull as before; the replication API
  refuses a caller without a region certificate, with the reason in the body.
- A region whose certificate comes from another CA, has expired, names another region, or
  that has none, cannot pull events: the regions it calls refuse it, log why and count it
  (`meridian_peer_cert_refusals_total{reason=...}`), and it never receives what the others
  replicate. With the peer secret configured too, the secret alone is not enough.
- A region certificate introduces only the region it names.
- The peer CA and the region certificates are rotated with SIGHUP (CA1 -> CA1+CA2 -> CA2
  certificates -> CA2 alone) while replication goes on: nothing is refused on the way, and
  at the end a CA1 certificate is refused.

Harness: regions.py, with each region serving HTTPS (`--tls-cert`) on 127.0.1.N and reached by
its peers through its proxy on 127.0.2.N (TLS passes through the proxy untouched).
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest
import requests

from regions import (MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_MANIFEST, Cluster, Region,
                     _live_clusters, push_image_with_layer, sha256_digest, unique_repo,
                     wait_converged, wait_for)

pytest_plugins = ["geo_plugin"]


# ---------------------------------------------------------------------------------------------
# certificates


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True)
    assert p.returncode == 0, (args, p.stderr)


class Pki:
    """Certificate authorities and leaf certificates in a directory, made with openssl."""

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)

    def path(self, name):
        return os.path.join(self.root, name)

    def ca(self, name):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", name + ".key", "-out", name + ".pem",
                "-subj", "/CN=%s" % name, "-days", "3",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.root)
        return self.path(name + ".pem")

    def leaf(self, name, ca, cn, dns=(), ips=(), days=2, usage="serverAuth,clientAuth"):
        """A certificate signed by ca (days < 0: expired). Returns (cert, key) paths."""
        san = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips]
        with open(self.path(name + ".ext"), "w") as f:
            if san:
                f.write("subjectAltName=%s\n" % ",".join(san))
            f.write("extendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n" % usage)
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=%s" % cn, cwd=self.root)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                "-CAcreateserial", "-out", name + ".pem", "-days", str(days),
                "-extfile", name + ".ext", cwd=self.root)
        return self.path(name + ".pem"), self.path(name + ".key")

    def bundle(self, name, *cas):
        with open(self.path(name), "w") as out:
            for ca in cas:
                with open(self.path(ca + ".pem")) as f:
                    out.write(f.read())
        return self.path(name)

    def install(self, src_cert, src_key, dst_cert, dst_key):
        """Replaces dst with src atomically (write, then rename), as an operator would."""
        for src, dst in ((src_cert, dst_cert), (src_key, dst_key)):
            with open(src, "rb") as f:
                data = f.read()
            with open(dst + ".tmp", "wb") as f:
                f.write(data)
            os.replace(dst + ".tmp", dst)


# ---------------------------------------------------------------------------------------------
# regions over HTTPS with region certificates


class TlsRegion(Region):
    LISTEN_RE = re.compile(r"listening on https://(127\.0\.1\.\d+):(\d+)")

    @property
    def url(self):
        return "https://%s:%d" % (self.host, self.port)

    @property
    def endpoint(self):
        return "https://%s:%d" % self.proxy.address

    def argv(self, port):
        argv = super().argv(port)
        if not self.cluster.with_secret:
            i = argv.index("--peer-secret")
            del argv[i:i + 2]
        p = self.cluster.pki
        argv += ["--tls-cert", p.path("%s-server.pem" % self.name),
                 "--tls-key", p.path("%s-server.key" % self.name),
                 "--peer-ca", p.path("%s-peer-ca.pem" % self.name)]
        if os.path.exists(p.path("%s-peer.pem" % self.name)):
            argv += ["--peer-tls-cert", p.path("%s-peer.pem" % self.name),
                     "--peer-tls-key", p.path("%s-peer.key" % self.name)]
        return argv

    def join_via_api(self, via):
        """`replication create` through the API (the CLI trusts only the system's CAs)."""
        r = via.api("POST", "replications", json={"location": self.name,
                                                  "endpoint": self.endpoint},
                    auth=self.cluster.admin)
        assert r.status_code == 201, (r.status_code, r.text)

    def sighup(self):
        self.proc.send_signal(signal.SIGHUP)

    def metrics_text(self):
        """/metrics, with the administrator's credentials when access control is on."""
        r = self.get("/metrics", auth=self.cluster.admin)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.text

    def metric(self, name, labels=""):
        text = self.metrics_text()
        m = re.search(r"^%s%s (\d+)" % (re.escape(name), re.escape(labels)), text, re.M)
        return int(m.group(1)) if m else 0

    def refusals(self, reason):
        return self.metric("meridian_peer_cert_refusals_total", '{reason="%s"}' % reason)

    def all_refusals(self):
        text = self.metrics_text()
        return sum(int(v) for v in
                   re.findall(r"^meridian_peer_cert_refusals_total\{[^}]*\} (\d+)", text, re.M))


class TlsCluster(Cluster):
    def __init__(self, binary, root, pki, with_secret, admin=None):
        # admin: (user, password) of every region, with access control on; else off.
        super().__init__(binary, root, ["--auth", "--admin-password", admin[1]] if admin else [])
        self.pki = pki
        self.with_secret = with_secret
        self.admin = admin

    def add(self, start=True, join=True, via=None, extra_args=()):
        n = len(self.regions) + len(self.removed) + 1
        region = TlsRegion(self, n, extra_args)
        self.regions.append(region)
        self.issue_server_cert(region)
        if start:
            region.start()
            if join and len(self.regions) > 1:
                region.join_via_api(via or self.regions[0])
        return region

    def issue_server_cert(self, region, ca="ca1"):
        """The certificate region serves (its address and its proxy's), from ca."""
        cert, key = self.pki.leaf("%s-server-%s" % (region.name, ca), ca, region.name,
                                  dns=["localhost"], ips=[region.host, "127.0.2.%d" % region.n],
                                  usage="serverAuth")
        self.pki.install(cert, key, self.pki.path("%s-server.pem" % region.name),
                         self.pki.path("%s-server.key" % region.name))


@pytest.fixture
def mtls(geo_bin, tmp_path, monkeypatch):
    """Factory: mtls(n, peer_certs={name: (kind)}, with_secret=False) -> a started, joined
    TlsCluster whose regions all trust ca1 (their server certificates and, by default, their
    region certificates come from it). peer_certs[name] overrides region name's certificate:
    "good", "other-ca", "expired", "other-region" or "none"."""
    pki = Pki(tmp_path / "pki")
    pki.ca("ca1")
    pki.ca("ca-rogue")
    # Test clients (requests) trust the CA of the regions' server certificates.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.bundle("clients-ca.pem", "ca1"))
    clusters = []

    def make(n=3, peer_certs=None, with_secret=False, join=True, admin=None):
        peer_certs = peer_certs or {}
        for i in range(1, n + 1):
            name = "r%d" % i
            pki.bundle("%s-peer-ca.pem" % name, "ca1")
            kind = peer_certs.get(name, "good")
            if kind == "none":
                continue
            ca = "ca-rogue" if kind == "other-ca" else "ca1"
            cn = "r9" if kind == "other-region" else name
            cert, key = pki.leaf("%s-peer-issued" % name, ca, cn, dns=[cn],
                                 days=-1 if kind == "expired" else 2, usage="clientAuth")
            pki.install(cert, key, pki.path("%s-peer.pem" % name),
                        pki.path("%s-peer.key" % name))
        c = TlsCluster(geo_bin, tmp_path / "geo", pki, with_secret, admin)
        clusters.append(c)
        _live_clusters.append(c)
        for _ in range(n):
            c.add(join=join)
        return c
    yield make
    problems = []
    for c in clusters:
        problems += c.close()
        if c in _live_clusters:
            _live_clusters.remove(c)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def push_small_image(region, repo, tag, auth=None):
    """An image of one small layer; returns (manifest digest, layer)."""
    if auth is None:
        layer = os.urandom(3000) + tag.encode()
        region.oci().push_blob(repo, layer)
        digest, _, _ = push_image_with_layer(region, repo, tag, sha256_digest(layer), len(layer))
        return digest
    oci = region.oci()
    oci.s.auth = auth
    layer = os.urandom(3000) + tag.encode()
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    oci.push_blob(repo, layer)
    oci.push_blob(repo, config)
    m = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                    "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256_digest(config),
                               "size": len(config)},
                    "layers": [{"mediaType": MT_OCI_LAYER, "digest": sha256_digest(layer),
                                "size": len(layer)}]}).encode()
    return oci.push_manifest(repo, tag, m, MT_OCI_MANIFEST), layer


def events_with_cert(region, cert=None, caller="r2"):
    return requests.get(region.url + "/_meridian/v1/replication/events?after=0&wait=0&from="
                        + caller, cert=cert, timeout=10)


# ---------------------------------------------------------------------------------------------
# tests


def test_three_regions_replicate_with_region_certificates_alone(mtls):
    cluster = mtls(3)
    r1, r2, r3 = cluster
    cluster.wait_members()
    cluster.wait_contacted()
    # While regions join, one may call another before the other has learnt of it (the
    # replication object is on its way): that call is refused and retried. From here on
    # nothing may be refused.
    joined = [r.all_refusals() for r in cluster]
    repo = unique_repo("mtls")
    digest = push_small_image(r1, repo, "v1")
    wait_converged(cluster, repos=[repo], expect={repo: {"v1": digest}})
    # The peers were admitted by certificate, and nothing was refused.
    assert sum(r.metric("meridian_peer_cert_accepted_total") for r in cluster) > 0
    assert [r.all_refusals() for r in cluster] == joined
    # A client without a certificate pulls and pushes as before (requests, like docker).
    assert r3.oci().get_manifest(repo, "v1").status_code == 200
    digest2 = push_small_image(r2, repo, "v2")
    wait_converged(cluster, repos=[repo], expect={repo: {"v1": digest, "v2": digest2}})
    # ...but cannot use the replication API: no secret is configured, a certificate is.
    before = r1.refusals("missing")
    r = events_with_cert(r1)
    assert r.status_code == 401, r.text
    assert "peer certificate refused: no client certificate" in r.text
    assert r1.refusals("missing") == before + 1
    # The region certificate of r2 opens it (as the regions' own calls do).
    p = cluster.pki
    r2_cert = (p.path("r2-peer.pem"), p.path("r2-peer.key"))
    r = events_with_cert(r1, r2_cert)
    assert r.status_code == 200, r.text
    assert r.json()["events"], r.text
    # ...as r2 only: what a region is sent depends on who asks.
    r = events_with_cert(r1, r2_cert, caller="r3")
    assert r.status_code == 403, r.text
    assert "the peer certificate does not name region r3" in r.text


def test_with_access_control_on_peers_fetch_content_by_certificate(mtls):
    """With credentials required, a peer's blob and manifest fetches on /v2/ carry no
    Authorization (no secret is configured): its region certificate is its credential."""
    admin = ("admin", "admin-password-%s" % os.getpid())
    cluster = mtls(2, admin=admin)
    r1, r2 = cluster
    repo = unique_repo("mtls-auth")
    digest, layer = push_small_image(r1, repo, "v1", auth=admin)
    s = requests.Session()
    s.auth = admin
    url = "%s/v2/%s/manifests/v1" % (r2.url, repo)
    wait_for(lambda: s.get(url, headers={"Accept": MT_OCI_MANIFEST}, timeout=10)
             .status_code == 200, 60, "r2 to serve the image pushed to r1")
    r = s.get("%s/v2/%s/blobs/%s" % (r2.url, repo, sha256_digest(layer)), timeout=10)
    assert r.status_code == 200 and r.content == layer
    assert r1.metric("meridian_peer_cert_accepted_total") > 0
    # Anonymous clients stay anonymous: no certificate, no pull.
    r = requests.get(url, timeout=10)
    assert r.status_code == 401, r.text


BAD_CERTS = {
    "other-ca": ("untrusted", "not issued by the peer CA"),
    "expired": ("expired", "certificate expired"),
    "other-region": ("wrong_region", "the certificate names no region of this registry (r9"),
    "none": ("missing", "no client certificate"),
}


@pytest.mark.parametrize("kind", sorted(BAD_CERTS))
def test_region_with_a_bad_certificate_cannot_pull(mtls, kind):
    reason, why = BAD_CERTS[kind]
    cluster = mtls(3, peer_certs={"r3": kind})
    r1, r2, r3 = cluster
    # r1 and r2 replicate; r3 joined (r1 introduced it, with r1's good certificate).
    cluster.wait_members(regions=[r1, r2], ready=False)
    repo = unique_repo("mtls-bad")
    digest = push_small_image(r1, repo, "v1")
    wait_converged([r1, r2], repos=[repo], expect={repo: {"v1": digest}})
    # r3's pulls from r1 (the one region it knows: it would learn of r2 from r1's events)
    # are refused, and r1 says why in its log and metrics.
    wait_for(lambda: r1.refusals(reason) > 0, 30, "r1 to count a refusal of r3 (%s)" % reason)
    assert re.search(r"peer request refused: GET /_meridian/v1/replication/events from "
                     r"[0-9.]+: " + re.escape(why), r1.log_text()), r1.log_tail()
    # ...after the push, too: what r1 holds never reaches r3.
    n = r1.refusals(reason)
    wait_for(lambda: r1.refusals(reason) > n, 30, "r3 to try r1 again after the push")
    assert r3.oci().get_manifest(repo, "v1").status_code == 404
    # The caller's side says it too: r3 logs the 401 with the reason.
    wait_for(lambda: "peer certificate refused" in r3.log_text(), 30,
             "r3 to log the refusal it got")


def test_with_the_peer_secret_too_the_secret_alone_is_not_enough(mtls):
    cluster = mtls(3, peer_certs={"r3": "none"}, with_secret=True)
    r1, r2, r3 = cluster
    cluster.wait_members(regions=[r1, r2], ready=False)
    repo = unique_repo("mtls-both")
    digest = push_small_image(r1, repo, "v1")
    wait_converged([r1, r2], repos=[repo], expect={repo: {"v1": digest}})
    wait_for(lambda: r1.refusals("missing") > 0, 30, "r1 to refuse r3 (secret, no cert)")
    assert r3.oci().get_manifest(repo, "v1").status_code == 404
    # A region certificate without the secret is refused as well.
    p = cluster.pki
    r = events_with_cert(r1, (p.path("r2-peer.pem"), p.path("r2-peer.key")))
    assert r.status_code == 401, r.text
    assert "replication needs the peer credential" in r.text


def test_a_region_certificate_introduces_only_its_own_region(mtls):
    cluster = mtls(2)
    r1, r2 = cluster
    cluster.wait_members()
    p = cluster.pki
    r2_cert = (p.path("r2-peer.pem"), p.path("r2-peer.key"))
    body = {"registry": "meridian", "location": "r7", "endpoint": "https://127.0.1.7:1"}
    r = requests.post(r1.url + "/_meridian/v1/replication/introduce", json=body,
                      cert=r2_cert, timeout=10)
    assert r.status_code == 403, r.text
    assert "does not name region r7" in r.text
    assert "r7" not in r1.replication_states()


def test_rotation_with_sighup_keeps_replicating(mtls):
    cluster = mtls(2)
    r1, r2 = cluster
    cluster.wait_members()
    cluster.wait_contacted()
    joined = [r.all_refusals() for r in cluster]
    p = cluster.pki
    repo = unique_repo("mtls-rotate")
    expect = {}

    def push_and_wait(tag):
        expect[tag] = push_small_image(r1 if len(expect) % 2 == 0 else r2, repo, tag)
        wait_converged(cluster, repos=[repo], expect={repo: dict(expect)}, timeout_s=60)

    def reload_all():
        marks = [r.log_text().count("SIGHUP: reloaded the peer TLS files") for r in cluster]
        for r in cluster:
            r.sighup()
        for r, m in zip(cluster, marks):
            wait_for(lambda: r.log_text().count("SIGHUP: reloaded the peer TLS files") > m, 10,
                     "%s to reload its peer TLS files" % r.name)

    push_and_wait("ca1")
    old_cert = (p.path("r1-peer-old.pem"), p.path("r1-peer-old.key"))
    p.install(p.path("r1-peer.pem"), p.path("r1-peer.key"), *old_cert)
    # 1. Every region (and client) trusts CA1 and CA2.
    p.ca("ca2")
    p.bundle("clients-ca.pem", "ca1", "ca2")
    for r in cluster:
        p.bundle("%s-peer-ca.pem" % r.name, "ca1", "ca2")
    reload_all()
    push_and_wait("both-cas")
    # 2. Every region gets certificates from CA2: its region certificate, and the one it
    # serves (peers trust the peer CA for that one too: with CA1 gone, a CA1 server
    # certificate would stop their calls).
    for r in cluster:
        cert, key = p.leaf("%s-peer-ca2" % r.name, "ca2", r.name, dns=[r.name],
                           usage="clientAuth")
        p.install(cert, key, p.path("%s-peer.pem" % r.name), p.path("%s-peer.key" % r.name))
        cluster.issue_server_cert(r, "ca2")
    reload_all()
    push_and_wait("ca2-certs")
    # 3. CA1 is no longer trusted: replication goes on, so the CA2 certificates are in use.
    for r in cluster:
        p.bundle("%s-peer-ca.pem" % r.name, "ca2")
    reload_all()
    push_and_wait("ca2-only")
    assert [r.all_refusals() for r in cluster] == joined
    assert cluster.regions[0].replication_states() == {"r1": "Ready", "r2": "Ready"}
    # ...and a CA1 certificate is refused now.
    r = events_with_cert(r2, old_cert)
    assert r.status_code == 401 and "not issued by the peer CA" in r.text, r.text
    # A CA file that does not load keeps the CA in use.
    with open(p.path("r2-peer-ca.pem"), "w") as f:
        f.write("not a certificate\n")
    r2.sighup()
    wait_for(lambda: "failed to reload the peer TLS files" in r2.log_text(), 10,
             "r2 to log the bad CA file")
    push_and_wait("after-bad-reload")
    assert [r.all_refusals() for r in cluster] == [joined[0], joined[1] + 1]  # the CA1 probe


def test_a_region_certificate_reads_only_what_residency_lets_its_region_hold(mtls):
    """A region operator holding r2's certificate fetches /v2/ content from r1 as a peer: only
    that of repositories r2 may hold. A residency policy keeping a repository out of r2 keeps
    its manifests and blobs from r2's certificate too (403 DENIED)."""
    admin = ("admin", "admin-password-%s" % os.getpid())
    cluster = mtls(2, admin=admin)
    r1, r2 = cluster
    tag = os.urandom(3).hex()
    kept, plain = "kept%s/app" % tag, "open%s/app" % tag
    r = r1.api("PUT", "policies/residency/kept" + tag, auth=admin,
               json={"repositories": "kept%s/*" % tag, "allowedRegions": ["r1"]})
    assert r.status_code == 200, r.text
    kept_digest, kept_layer = push_small_image(r1, kept, "v1", auth=admin)
    plain_digest, plain_layer = push_small_image(r1, plain, "v1", auth=admin)
    p = cluster.pki
    r2_cert = (p.path("r2-peer.pem"), p.path("r2-peer.key"))

    def fetch(repo, what):
        return requests.get("%s/v2/%s/%s" % (r1.url, repo, what), cert=r2_cert, timeout=10,
                            headers={"Accept": MT_OCI_MANIFEST, "Meridian-Peer-Fetch": "r2"})
    for what in ("manifests/" + kept_digest, "manifests/v1",
                 "blobs/" + sha256_digest(kept_layer), "tags/list"):
        r = fetch(kept, what)
        assert r.status_code == 403 and "DENIED" in r.text, (what, r.status_code, r.text)
    assert fetch(plain, "manifests/" + plain_digest).status_code == 200
    r = fetch(plain, "blobs/" + sha256_digest(plain_layer))
    assert r.status_code == 200 and r.content == plain_layer
    # The catalog shows r2's certificate only what r2 may hold.
    r = requests.get(r1.url + "/v2/_catalog", cert=r2_cert, timeout=10)
    assert r.status_code == 200, r.text
    assert plain in r.json()["repositories"] and kept not in r.json()["repositories"], r.text
    # The certificate names the region: a header naming another one changes nothing.
    r = requests.get("%s/v2/%s/manifests/v1" % (r1.url, kept), cert=r2_cert, timeout=10,
                     headers={"Accept": MT_OCI_MANIFEST, "Meridian-Peer-Fetch": "r1"})
    assert r.status_code == 403, r.text
