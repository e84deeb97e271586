"""HTTPS: `meridian serve --tls-cert --tls-key` with a self-signed certificate made by
`openssl req`; skopeo trusts it through --cert-dir (no --tls-verify=false), logs in and
pushes and pulls through the token endpoint over HTTPS; SIGHUP swaps in a new
certificate without a restart, and a broken one leaves the old one serving. Issue 9:
TLS 1.0/1.1, static RSA and CBC suites are refused by default (openssl s_client), and
--tls-priorities changes that."""

import json
import os
import re
import shutil
import signal
import ssl
import subprocess

import pytest

from auth_helpers import ADMIN_PASSWORD, AuthServer, make_cert, wait_until
from clients_helpers import OciLayout, clients, tool_missing  # noqa: F401


@pytest.fixture
def tls_server(tmp_path):
    certs = tmp_path / "certs"
    cert, key = make_cert(certs)
    live_cert = str(tmp_path / "live.crt")
    live_key = str(tmp_path / "live.key")
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    srv = AuthServer(tmp_path / "srv", args=["--tls-cert", live_cert, "--tls-key", live_key])
    srv.verify = cert
    srv.start()
    srv.cert, srv.live_cert, srv.live_key = cert, live_cert, live_key
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def served_pem(srv):
    host, port = srv.hostport.rsplit(":", 1)
    return ssl.get_server_certificate((host, int(port)))


def same_cert(pem_a, path_b):
    der_a = ssl.PEM_cert_to_DER_cert(pem_a)
    der_b = ssl.PEM_cert_to_DER_cert(open(path_b).read())
    return der_a == der_b


def test_https_api_and_challenge(tls_server):
    srv = tls_server
    assert srv.url.startswith("https://127.0.0.1:")
    r = srv.request("GET", "/v2/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="https://127.0.0.1:')
    assert srv.request("GET", "/v2/", auth=("admin", ADMIN_PASSWORD)).status_code == 200
    # plain HTTP on the TLS port gets no answer a client could use
    import requests
    with pytest.raises(requests.RequestException):
        r = requests.get("http://%s/v2/" % srv.hostport, timeout=5)
        r.raise_for_status()


@pytest.mark.skipif(tool_missing("skopeo"), reason="skopeo is not installed")
def test_skopeo_with_cert_dir(tls_server, clients, tmp_path):
    srv = tls_server
    certdir = tmp_path / "trust"
    certdir.mkdir()
    shutil.copy(srv.cert, certdir / "ca.crt")
    layout = OciLayout(tmp_path / "src")
    desc, _ = layout.add_image([{"tls.txt": b"over https"}])
    layout.tag(desc, "v1")
    ref = "docker://%s/golden/tls:v1" % srv.hostport
    # without trusting the certificate, skopeo refuses
    out = clients.skopeo("login", "-u", "admin", "-p", ADMIN_PASSWORD, srv.hostport, check=False)
    assert out.returncode != 0
    assert b"certificate" in out.stderr.lower() or b"x509" in out.stderr.lower()
    clients.skopeo("login", "--cert-dir", certdir, "-u", "admin", "-p", ADMIN_PASSWORD,
                   srv.hostport)
    clients.skopeo("copy", "--dest-cert-dir", certdir, layout.ref("v1"), ref)
    info = json.loads(clients.skopeo("inspect", "--cert-dir", certdir, ref).stdout)
    assert info["Digest"] == desc["digest"]
    back = OciLayout(tmp_path / "back")
    clients.skopeo("copy", "--src-cert-dir", certdir, ref, back.ref("v1"))
    assert back.resolve("v1")["digest"] == desc["digest"]


def test_sighup_reloads_certificate(tls_server, tmp_path):
    srv = tls_server
    assert same_cert(served_pem(srv), srv.cert)
    new_cert, new_key = make_cert(tmp_path / "new", name="next", cn="meridian-next")
    shutil.copy(new_cert, srv.live_cert)
    shutil.copy(new_key, srv.live_key)
    srv.signal(signal.SIGHUP)
    wait_until(lambda: same_cert(served_pem(srv), new_cert), what="the new certificate")
    srv.verify = new_cert
    assert srv.request("GET", "/v2/", auth=("admin", ADMIN_PASSWORD)).status_code == 200
    # a key that does not belong to the certificate: the old pair keeps serving
    other_cert, other_key = make_cert(tmp_path / "other", name="other")
    shutil.copy(other_key, srv.live_key)
    srv.signal(signal.SIGHUP)
    wait_until(lambda: "failed to reload the TLS certificate" in srv.log_text(),
               what="the reload error")
    assert same_cert(served_pem(srv), new_cert)
    assert srv.is_running()
    assert srv.request("GET", "/healthz").status_code == 200


def test_tls_flags_must_come_in_pairs(tmp_path):
    cert, _key = make_cert(tmp_path / "c")
    srv = AuthServer(tmp_path / "srv", args=["--tls-cert", cert])
    with pytest.raises(AssertionError):
        srv.start(timeout_s=10)
    assert "tls-cert and tls-key go together" in srv.log_text()


def handshake(srv, *args):
    """Runs `openssl s_client` against srv with args; returns (ok, protocol, cipher).
    SECLEVEL=0 lets the client offer what the server must refuse (old versions, RSA)."""
    host, port = srv.hostport.rsplit(":", 1)
    out = subprocess.run(["openssl", "s_client", "-connect", "%s:%s" % (host, port),
                          "-servername", "localhost"] + list(args),
                         input=b"", capture_output=True, timeout=20)
    text = out.stdout.decode("utf-8", "replace")
    m = re.search(r"New, (\S+), Cipher is (\S+)", text)
    if out.returncode != 0 or m is None or m.group(2) == "(NONE)":
        return False, None, None
    return True, m.group(1), m.group(2)


def test_issue9_tls_refuses_old_versions_and_static_rsa(tls_server):
    srv = tls_server
    # TLS 1.0 and 1.1: refused
    for version in ("-tls1", "-tls1_1"):
        ok, proto, _ = handshake(srv, version, "-cipher", "DEFAULT@SECLEVEL=0")
        assert not ok, "%s was accepted (%s)" % (version, proto)
    # TLS 1.2 with static RSA key exchange (no forward secrecy), and with CBC: refused
    for cipher in ("AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA"):
        ok, _, got = handshake(srv, "-tls1_2", "-cipher", cipher + "@SECLEVEL=0")
        assert not ok, "%s was accepted (%s)" % (cipher, got)
    # ECDHE with AEAD on 1.2, and 1.3: accepted
    ok, proto, cipher = handshake(srv, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")
    assert ok and proto == "TLSv1.2" and cipher == "ECDHE-RSA-AES128-GCM-SHA256", (proto, cipher)
    ok, proto, _ = handshake(srv, "-tls1_3")
    assert ok and proto == "TLSv1.3", proto


def test_issue9_tls_priorities_option(tmp_path):
    cert, key = make_cert(tmp_path / "c")
    srv = AuthServer(tmp_path / "srv", args=["--tls-cert", cert, "--tls-key", key,
                                             "--tls-priorities", "NORMAL:-VERS-ALL:+VERS-TLS1.2"])
    srv.verify = cert
    srv.start()
    try:
        assert not handshake(srv, "-tls1_3")[0]
        assert handshake(srv, "-tls1_2")[1] == "TLSv1.2"
    finally:
        assert srv.stop() == 0
    bad = AuthServer(tmp_path / "bad", args=["--tls-cert", cert, "--tls-key", key,
                                             "--tls-priorities", "NORMAL:+NO-SUCH-THING"])
    with pytest.raises(AssertionError):
        bad.start(timeout_s=10)
    assert "tls-priorities" in bad.log_text()
