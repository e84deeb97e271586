"""HTTPS behaviour of issue 18: session resumption (tickets, TLS 1.2 and 1.3), TLS 1.2 and
1.3 each and --tls-min-version, no HelloRetryRequest for the usual X25519 key share, a
handshake that waits without burning CPU, hostile input (half-open handshakes, slow and
truncated ClientHellos, garbage) that costs only its own connection, a certificate reload
under a request loop that loses no request, blobs (whole and ranges) over TLS, and podman
over HTTPS with the CA trusted through --cert-dir. test_auth_tls.py covers the basics
(skopeo, SIGHUP, the default priorities)."""

import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests

from auth_helpers import AuthServer, make_cert, wait_until
from clients_helpers import OciLayout, clients, tool_missing  # noqa: F401


def start_tls(tmp_path, *extra, name="srv"):
    certs = tmp_path / ("certs-" + name)
    cert, key = make_cert(certs)
    live_cert, live_key = str(certs / "live.crt"), str(certs / "live.key")
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    srv = AuthServer(tmp_path / name, auth=False,
                     args=["--tls-cert", live_cert, "--tls-key", live_key] + list(extra))
    srv.verify = cert
    srv.start()
    srv.cert, srv.live_cert, srv.live_key = cert, live_cert, live_key
    return srv


@pytest.fixture
def tls_srv(tmp_path):
    srv = start_tls(tmp_path)
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def s_client(srv, *args, timeout=20):
    """openssl s_client's report. It sends a request and reads to the end of the answer
    (-ign_eof): TLS 1.3 session tickets come after the handshake."""
    host, port = srv.hostport.rsplit(":", 1)
    out = subprocess.run(["openssl", "s_client", "-connect", "%s:%s" % (host, port),
                          "-servername", "localhost", "-ign_eof"] + [str(a) for a in args],
                         input=b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                         capture_output=True, timeout=timeout)
    return out.stdout.decode("utf-8", "replace")


def server_cpu_s(srv):
    """utime + stime of the server process, all threads, in seconds."""
    with open("/proc/%d/stat" % srv.proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def addr(srv):
    host, port = srv.hostport.rsplit(":", 1)
    return host, int(port)


def get_v2(srv, timeout=10):
    return requests.get(srv.url + "/v2/", verify=srv.verify, timeout=timeout)


# --- resumption -----------------------------------------------------------


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_session_resumption_with_tickets(tls_srv, tmp_path, version):
    sess = tmp_path / ("sess" + version)
    first = s_client(tls_srv, version, "-sess_out", sess)
    assert "\nNew, " in first, first[-2000:]
    assert sess.exists() and sess.stat().st_size > 0
    again = s_client(tls_srv, version, "-sess_in", sess)
    assert "\nReused, " in again, again[-2000:]


def test_ticket_key_file_shared_by_two_nodes(tmp_path):
    """A ticket one node issued resumes on another node with the same key file, and not on
    a node with a different one."""
    shared = tmp_path / "ticket.key"
    shared.write_bytes(os.urandom(48))
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(48))
    a = start_tls(tmp_path, "--tls-ticket-key-file", shared, name="a")
    b = start_tls(tmp_path, "--tls-ticket-key-file", shared, name="b")
    c = start_tls(tmp_path, "--tls-ticket-key-file", other, name="c")
    try:
        # The same certificate on all three, as behind one name.
        for srv in (b, c):
            shutil.copy(a.live_cert, srv.live_cert)
            shutil.copy(a.live_key, srv.live_key)
            srv.signal(signal.SIGHUP)
            wait_until(lambda: "SIGHUP: reloaded" in srv.log_text(), what="the reload")
        sess = tmp_path / "sess"
        assert "\nNew, " in s_client(a, "-tls1_3", "-sess_out", sess)
        assert "\nReused, " in s_client(b, "-tls1_3", "-sess_in", sess)
        assert "\nNew, " in s_client(c, "-tls1_3", "-sess_in", sess)
    finally:
        for srv in (a, b, c):
            assert srv.stop() == 0, srv.log_tail()


def test_ticket_key_file_reloaded_on_sighup(tmp_path):
    """SIGHUP reads --tls-ticket-key-file again: a ticket sealed with the old key no longer
    resumes, tickets sealed from then on resume on a node that has the new key, and a file
    that does not load keeps the key in use."""
    key_file = tmp_path / "ticket.key"
    key_file.write_bytes(os.urandom(48))
    next_key = os.urandom(48)
    (tmp_path / "next.key").write_bytes(next_key)
    a = start_tls(tmp_path, "--tls-ticket-key-file", key_file, name="a")
    b = start_tls(tmp_path, "--tls-ticket-key-file", tmp_path / "next.key", name="b")
    try:
        shutil.copy(a.live_cert, b.live_cert)
        shutil.copy(a.live_key, b.live_key)
        b.signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP: reloaded" in b.log_text(), what="b's reload")
        old_sess, new_sess = tmp_path / "old-sess", tmp_path / "new-sess"
        assert "\nNew, " in s_client(a, "-tls1_3", "-sess_out", old_sess)
        assert "\nReused, " in s_client(a, "-tls1_3", "-sess_in", old_sess)

        key_file.write_bytes(next_key)
        a.signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP: new TLS session ticket key" in a.log_text(),
                   what="the ticket key reload")
        assert "\nNew, " in s_client(a, "-tls1_3", "-sess_in", old_sess)
        assert "\nNew, " in s_client(a, "-tls1_3", "-sess_out", new_sess)
        assert "\nReused, " in s_client(b, "-tls1_3", "-sess_in", new_sess)

        key_file.write_bytes(b"x" * 8)
        a.signal(signal.SIGHUP)
        wait_until(lambda: "failed to reload the TLS session ticket key" in a.log_text(),
                   what="the refused reload")
        assert "\nReused, " in s_client(a, "-tls1_3", "-sess_in", new_sess)
        assert get_v2(a).status_code == 200
    finally:
        for srv in (a, b):
            assert srv.stop() == 0, srv.log_tail()


def test_ticket_key_file_too_short(tmp_path):
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 8)
    cert, key = make_cert(tmp_path / "c")
    srv = AuthServer(tmp_path / "srv", auth=False,
                     args=["--tls-cert", cert, "--tls-key", key,
                           "--tls-ticket-key-file", str(short)])
    with pytest.raises(AssertionError):
        srv.start(timeout_s=10)
    assert "fewer than 32 bytes" in srv.log_text()


# --- versions and key exchange -------------------------------------------


def test_tls12_and_tls13_each(tls_srv):
    for flag, want in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        text = s_client(tls_srv, flag)
        assert "\nNew, %s, " % want in text, text[-2000:]
    # both serve HTTP
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=tls_srv.verify)
        ctx.minimum_version = ctx.maximum_version = version
        with socket.create_connection(addr(tls_srv), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert s.recv(64).startswith(b"HTTP/1.1 200")


def test_tls_min_version_13(tmp_path):
    srv = start_tls(tmp_path, "--tls-min-version", "1.3")
    try:
        assert "\nNew, TLSv1.3, " in s_client(srv, "-tls1_3")
        assert "\nNew, TLSv1.2, " not in s_client(srv, "-tls1_2")
        assert get_v2(srv).status_code == 200
    finally:
        assert srv.stop() == 0
    bad = AuthServer(tmp_path / "bad", auth=False, args=["--tls-min-version", "1.1"])
    with pytest.raises(AssertionError):
        bad.start(timeout_s=10)
    assert "tls-min-version" in bad.log_text()


def test_x25519_key_share_needs_no_hello_retry(tls_srv):
    """OpenSSL, Go and curl send an X25519 key share: the server takes it instead of asking
    for another group (a HelloRetryRequest costs a whole round trip)."""
    text = s_client(tls_srv, "-tls1_3", "-msg")
    assert "\nNew, TLSv1.3, " in text
    assert text.count(", ClientHello") == 1, text[:3000]
    assert "Server Temp Key: X25519" in text


# --- the wait in the handshake ------------------------------------------


def test_waiting_handshakes_cost_no_cpu(tls_srv):
    """Connections that have not finished their handshake (nothing sent yet, or half a
    ClientHello) are waited for, not spun on: with libmicrohttpd's epoll loop each one kept
    a worker busy until its next flight arrived."""
    get_v2(tls_srv)  # warm
    conns = [socket.create_connection(addr(tls_srv), timeout=10) for _ in range(4)]
    conns[0].sendall(b"\x16\x03\x01\x01\x00\x01")  # a ClientHello header, then silence
    before = server_cpu_s(tls_srv)
    time.sleep(2.0)
    used = server_cpu_s(tls_srv) - before
    for c in conns:
        c.close()
    assert used < 0.5, "the server used %.2f s of CPU in 2 s with 4 idle handshakes" % used


def test_half_open_and_slow_handshakes_do_not_stop_others(tls_srv):
    """A flood of connections that never finish (or dribble) their ClientHello: other
    clients are still served promptly."""
    hello = bytes.fromhex("160301") + (512).to_bytes(2, "big") + b"\x01" + b"\x00" * 40
    stop = threading.Event()
    socks = []

    def dribble(s):
        for b in hello:
            if stop.wait(0.2):
                return
            try:
                s.sendall(bytes([b]))
            except OSError:
                return

    threads = []
    for i in range(100):
        s = socket.create_connection(addr(tls_srv), timeout=10)
        socks.append(s)
        if i % 4 == 0:
            t = threading.Thread(target=dribble, args=(s,), daemon=True)
            t.start()
            threads.append(t)
    try:
        for _ in range(10):
            t0 = time.monotonic()
            assert get_v2(tls_srv, timeout=5).status_code == 200
            assert time.monotonic() - t0 < 2.0
    finally:
        stop.set()
        for s in socks:
            s.close()
        for t in threads:
            t.join(5)


@pytest.mark.parametrize("junk", [
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
    # a whole record of an unknown content type, then noise
    b"\x99\x03\x03\x00\x20" + bytes(range(32)) + bytes(range(200, 256)) * 8,
    # a handshake record cut short, the sender gone
    bytes.fromhex("16030100ff") + b"\x01\x00\x00\xfb" + b"\x03" * 20,
], ids=["plain-http", "bad-record-type", "truncated-record"])
def test_garbage_closes_only_that_connection(tmp_path, junk):
    """What GnuTLS can tell is not TLS ends at once; what could still become a record
    (GnuTLS waits for its announced length) ends at --header-timeout."""
    tls_srv = start_tls(tmp_path, "--header-timeout", "3s")
    try:
        check_garbage(tls_srv, junk)
    finally:
        assert tls_srv.stop() == 0, tls_srv.log_tail()


def check_garbage(tls_srv, junk):
    ctx = ssl.create_default_context(cafile=tls_srv.verify)
    other = ctx.wrap_socket(socket.create_connection(addr(tls_srv), timeout=10),
                            server_hostname="127.0.0.1")
    bad = socket.create_connection(addr(tls_srv), timeout=10)
    bad.sendall(junk)
    if junk.startswith(b"\x16\x03\x01\x00\xff"):
        bad.shutdown(socket.SHUT_WR)  # the rest of the record never comes
    # the connection opened before is served while the bad one is pending
    other.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert other.recv(64).startswith(b"HTTP/1.1 200")
    other.close()
    # The server ends the bad connection (an alert at most, then EOF or a reset).
    got, deadline = b"", time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            chunk = bad.recv(4096)
            if not chunk:
                break
            got += chunk
        else:
            pytest.fail("the server kept the connection open")
    except ConnectionResetError:
        pass
    bad.close()
    assert not got.startswith(b"HTTP/"), got[:100]
    assert get_v2(tls_srv).status_code == 200
    assert tls_srv.is_running()


# --- certificate reload under load -------------------------------------------


def served_cert_pem(srv):
    """The leaf certificate a new connection gets, as PEM."""
    return ssl.get_server_certificate(addr(srv))


def same_cert(pem_a, pem_b):
    return ssl.PEM_cert_to_DER_cert(pem_a) == ssl.PEM_cert_to_DER_cert(pem_b)


def test_reload_under_a_request_loop_loses_no_request(tmp_path):
    """Certificate, key and session ticket key reloaded on SIGHUP four times under three
    request loops (two opening a connection per request, one keep-alive): every request
    succeeds, and after each reload new connections get the pair just loaded."""
    ticket_key = tmp_path / "ticket.key"
    ticket_key.write_bytes(os.urandom(48))
    srv = start_tls(tmp_path, "--tls-ticket-key-file", ticket_key)
    next_cert, next_key = make_cert(tmp_path / "next", name="next", cn="meridian-next")
    bundle = tmp_path / "both.pem"
    bundle.write_text(open(srv.cert).read() + open(next_cert).read())
    stop = threading.Event()
    counts = {"ok": 0, "failed": []}

    def loop(keep_alive):
        session = requests.Session() if keep_alive else None
        while not stop.is_set():
            try:
                get = session.get if session else requests.get
                r = get(srv.url + "/v2/", verify=str(bundle), timeout=10)
                if r.status_code == 200:
                    counts["ok"] += 1
                else:
                    counts["failed"].append(r.status_code)
            except requests.RequestException as e:
                counts["failed"].append(repr(e))

    threads = [threading.Thread(target=loop, args=(k,)) for k in (False, False, True)]
    for t in threads:
        t.start()
    try:
        pairs = [(next_cert, next_key), (srv.cert, srv.cert.replace(".crt", ".key"))] * 2
        for i, (c, k) in enumerate(pairs):
            time.sleep(0.4)
            shutil.copy(c, srv.live_cert)
            shutil.copy(k, srv.live_key)
            ticket_key.write_bytes(os.urandom(48))
            srv.signal(signal.SIGHUP)
            wait_until(lambda: srv.log_text().count("SIGHUP: new TLS session ticket key")
                       == i + 1, what="reload %d" % (i + 1))
            assert srv.log_text().count("SIGHUP: reloaded TLS certificate") == i + 1
            assert same_cert(served_cert_pem(srv), open(c).read()), "reload %d" % (i + 1)
        time.sleep(0.4)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        assert srv.stop() == 0, srv.log_tail()
    assert counts["failed"] == [], counts["failed"][:5]
    assert counts["ok"] >= 20, counts


# --- data over TLS -----------------------------------------------------------------


def test_blob_whole_and_ranges_over_tls(tls_srv):
    """Blobs over HTTPS are read in large blocks (not libmicrohttpd's 4 KiB): whole, from
    an offset, and across block boundaries, byte for byte."""
    srv = tls_srv
    data = os.urandom(3 * 256 * 1024 + 12345)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.post(srv.url + "/v2/tls/blob/blobs/uploads/?digest=" + digest, data=data,
                      verify=srv.verify, timeout=60)
    assert r.status_code == 201, r.text
    url = srv.url + "/v2/tls/blob/blobs/" + digest
    r = requests.get(url, verify=srv.verify, timeout=60)
    assert r.status_code == 200 and r.content == data
    for first, last in ((0, 0), (1, 262144), (262143, 600000), (len(data) - 7, len(data) - 1)):
        r = requests.get(url, verify=srv.verify, timeout=60,
                         headers={"Range": "bytes=%d-%d" % (first, last)})
        assert r.status_code == 206, (first, last, r.status_code)
        assert r.content == data[first:last + 1], (first, last)
    empty = "sha256:" + hashlib.sha256(b"").hexdigest()
    assert requests.post(srv.url + "/v2/tls/blob/blobs/uploads/?digest=" + empty, data=b"",
                         verify=srv.verify, timeout=60).status_code == 201
    r = requests.get(srv.url + "/v2/tls/blob/blobs/" + empty, verify=srv.verify, timeout=60)
    assert r.status_code == 200 and r.content == b""


# --- clients --------------------------------------------------------------------


@pytest.mark.skipif(tool_missing("podman") or tool_missing("skopeo"),
                    reason="podman or skopeo is not installed")
def test_podman_pull_and_push_with_cert_dir(tls_srv, clients, tmp_path):
    srv = tls_srv
    certdir = tmp_path / "trust"
    certdir.mkdir()
    shutil.copy(srv.cert, certdir / "ca.crt")
    layout = OciLayout(tmp_path / "src")
    desc, _ = layout.add_image([{"podman.txt": b"podman over https"}])
    layout.tag(desc, "v1")
    ref = "%s/tls/podman:v1" % srv.hostport
    clients.skopeo("copy", "--dest-cert-dir", certdir, layout.ref("v1"), "docker://" + ref)
    # without the CA podman refuses; with it, it pulls and pushes under another name
    assert clients.podman("pull", ref, check=False).returncode != 0
    clients.podman("pull", "--cert-dir", certdir, ref)
    again = "%s/tls/podman-again:v2" % srv.hostport
    clients.podman("push", "--cert-dir", certdir, ref, "docker://" + again)
    r = requests.get(srv.url + "/v2/tls/podman-again/manifests/v2", verify=srv.verify,
                     timeout=10, headers={"Accept": "application/vnd.oci.image.manifest.v1+json,"
                                          "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.status_code == 200, r.text
