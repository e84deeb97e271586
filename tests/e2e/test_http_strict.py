"""Issue 9 (hardening), items 3, 7 and 8, with raw sockets where the bytes on the wire
matter:

- strict framing (request smuggling): two Content-Length values, Content-Length with
  Transfer-Encoding, "Transfer-Encoding :" with a space, no Host on HTTP/1.1, NUL in the
  path or a header: 400 and the connection closed, and nothing after the head is read as
  a second request;
- answers before the body: an unauthenticated 2 GiB manifest PUT with Expect: 100-continue
  gets 401 (never 100) at once; an oversized manifest gets 413 before its body is sent;
- slow bodies: a body trickled below --body-min-rate is cut after --body-timeout while a
  steady one that takes longer is not; a default per-address connection cap;
- log injection: %0A, %1b and %20 in a path cannot forge or colour access-log lines.
"""

import json
import re
import socket
import ssl
import threading
import time

import requests

from auth_helpers import digest_of, server_pool, wait_until  # noqa: F401

MiB = 1024 * 1024


def hostport(srv):
    host, port = srv.hostport.rsplit(":", 1)
    return host, int(port)


def exchange(srv, raw, wait_s=3.0):
    """Sends raw bytes, reads until the server closes or wait_s passes.
    Returns (bytes received, closed_by_server)."""
    s = socket.create_connection(hostport(srv), timeout=5)
    s.sendall(raw)
    s.settimeout(0.2)
    out = b""
    deadline = time.monotonic() + wait_s
    closed = False
    while time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            closed = True
            break
        if not data:
            closed = True
            break
        out += data
    s.close()
    return out, closed


def responses_in(data):
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", data)


def body_of(data):
    return data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""


SMUGGLED = b"GET /v2/_catalog HTTP/1.1\r\nHost: x\r\n\r\n"

MALFORMED = {
    # each head carries a second request where a lenient parser would end the first body
    "two_content_length": b"PUT /v2/a/manifests/x HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
                          + SMUGGLED,
    "content_length_and_chunked": b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"0\r\n\r\n" % (5 + len(SMUGGLED)) + SMUGGLED,
    "transfer_encoding_space": b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
                               b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n"
                               b"0\r\n\r\n" + SMUGGLED,
    "no_host_http11": b"GET /v2/ HTTP/1.1\r\nAccept: */*\r\n\r\n" + SMUGGLED,
    "two_hosts": b"GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + SMUGGLED,
    "nul_in_path": b"GET /v2/a\x00/tags/list HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED,
    "encoded_nul_in_path": b"GET /v2/a%00/tags/list HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED,
    "nul_in_header": b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nAccept: */*\r\n\r\n"
                     + SMUGGLED,
    "two_nuls_in_header": b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\x00\x00b\r\n"
                          b"Accept: */*\r\n\r\n" + SMUGGLED,
    "nul_in_last_header": b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: chunked\x00b\r\n\r\n"
                          + SMUGGLED,
    "cr_in_header": b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n" + SMUGGLED,
}


def test_issue9_malformed_framing_is_400_and_closed(server_pool):
    srv = server_pool(auth=False)
    for name, raw in MALFORMED.items():
        data, closed = exchange(srv, raw)
        assert responses_in(data) == [b"400"], (name, data[:300])
        assert closed, "%s: the connection stayed open" % name
        err = json.loads(body_of(data))
        assert err["errors"][0]["code"] == "BAD_REQUEST", (name, err)
        assert "malformed request" in err["errors"][0]["message"], (name, err)
    # the smuggled request never ran, and well-formed requests are served as before
    assert srv.log_text().count("path=/v2/_catalog") == 0
    assert requests.get(srv.url + "/v2/_catalog", timeout=5).status_code == 200
    assert srv.log_text().count("refused a malformed request") == len(MALFORMED)
    # pipelined well-formed requests on one connection are all answered
    one = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
    data, closed = exchange(srv, one * 3 + b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"
                            b"Connection: close\r\n\r\n")
    assert responses_in(data) == [b"200"] * 4, data[:500]


def test_issue9_malformed_management_request_gets_management_error(server_pool):
    srv = server_pool(auth=False)
    data, closed = exchange(srv, b"GET /_meridian/v1/info HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert responses_in(data) == [b"400"] and closed, data[:300]
    assert json.loads(body_of(data))["error"]["code"] == "BAD_REQUEST"


def read_status_line(s, timeout_s):
    s.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_issue9_unauthenticated_huge_put_is_refused_before_its_body(server_pool):
    srv = server_pool()  # access control on
    s = socket.create_connection(hostport(srv), timeout=5)
    t0 = time.monotonic()
    s.sendall(b"PUT /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: %s\r\n"
              b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
              b"Content-Length: 2147483648\r\nExpect: 100-continue\r\n\r\n"
              % srv.hostport.encode())
    data = read_status_line(s, 5)
    elapsed = time.monotonic() - t0
    s.close()
    assert data.startswith(b"HTTP/1.1 401 "), data[:200]
    assert b"100 Continue" not in data
    assert b"WWW-Authenticate: Bearer" in data
    assert elapsed < 2.0, elapsed


def test_issue9_oversized_manifest_is_413_before_its_body(server_pool):
    srv = server_pool(auth=False)
    s = socket.create_connection(hostport(srv), timeout=5)
    s.sendall(b"PUT /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
              b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (64 * MiB))
    data = read_status_line(s, 5)
    s.close()
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    # and a client that sends the body without waiting still reads the 413, not a reset
    big = b"{" + b" " * (5 * MiB) + b"}"
    r = requests.put(srv.url + "/v2/team/app/manifests/v2", data=big, timeout=10,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 413
    assert requests.get(srv.url + "/v2/", timeout=5).status_code == 200


def start_put(srv, length):
    """Opens an upload session; returns the path to PUT its bytes to."""
    r = requests.post(srv.url + "/v2/slow/body/blobs/uploads/", timeout=5)
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    path = loc if loc.startswith("/") else "/" + loc.split("/", 3)[3]
    return path


def test_issue9_trickled_body_is_cut_steady_body_is_not(server_pool):
    srv = server_pool("--body-timeout", "2s", "--body-min-rate", "4096", auth=False)
    blob = b"x" * (256 * 1024)
    digest = digest_of(blob)

    # a body trickled at 20 bytes/s never earns time: cut a little after 2 s
    path = start_put(srv, len(blob))
    slow = socket.create_connection(hostport(srv), timeout=5)
    slow.sendall(b"PUT %s%sdigest=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                 % (path.encode(), b"&" if b"?" in path.encode() else b"?", digest.encode(),
                    len(blob)))
    t0 = time.monotonic()
    cut_after = None
    slow.settimeout(0.05)
    while time.monotonic() - t0 < 8:
        try:
            slow.send(b"x")
            if slow.recv(4096) == b"":
                cut_after = time.monotonic() - t0
                break
        except socket.timeout:
            pass
        except OSError:
            cut_after = time.monotonic() - t0
            break
        time.sleep(0.05)
    slow.close()
    assert cut_after is not None, "the trickling body was never cut"
    assert 1.5 < cut_after < 6.0, cut_after
    # the watchdog logs after it has shut the sockets: the client may see EOF first
    wait_until(lambda: "request body came too slowly" in srv.log_text(), timeout_s=5,
               what="the slow-body log line")

    # a body that keeps coming at 64 KiB/s takes 4 s, twice the timeout, and is served
    path = start_put(srv, len(blob))
    steady = socket.create_connection(hostport(srv), timeout=10)
    steady.sendall(b"PUT %s%sdigest=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                   % (path.encode(), b"&" if b"?" in path.encode() else b"?", digest.encode(),
                      len(blob)))
    for i in range(0, len(blob), 16 * 1024):
        steady.sendall(blob[i:i + 16 * 1024])
        time.sleep(0.25)
    data = read_status_line(steady, 10)
    steady.close()
    assert data.startswith(b"HTTP/1.1 201 "), data[:300]


def test_issue9_default_connection_cap_per_address(server_pool):
    srv = server_pool(auth=False)  # no --conn-limit-per-ip: the default applies
    held = []
    try:
        for _ in range(128):
            held.append(socket.create_connection(hostport(srv), timeout=5))
        # every one of the 128 is served
        held[0].sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_status_line(held[0], 5).startswith(b"HTTP/1.1 200 ")
        extra = socket.create_connection(hostport(srv), timeout=5)
        extra.settimeout(5)
        try:
            extra.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            got = extra.recv(4096)
        except OSError:
            got = b""
        extra.close()
        assert got == b"", "the 129th connection from one address was served"
    finally:
        for s in held:
            s.close()
    # once they are gone, the address is served again
    deadline = time.monotonic() + 10
    while True:
        try:
            if requests.get(srv.url + "/v2/", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "the address stayed locked out"
        time.sleep(0.1)


def test_issue9_access_log_escapes_paths(server_pool):
    srv = server_pool(auth=False)
    forged = "/v2/app%0A2026-01-01T00:00:00.000Z%20info%20region=local%20access:%20forged=1" \
             "%1b[31m%20status=200%5c%22/tags/list"
    data, _ = exchange(srv, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       % forged.encode())
    assert responses_in(data), data[:200]

    def logged():
        return b"tags/list" in open(srv.log_path, "rb").read()

    deadline = time.monotonic() + 5
    while not logged():
        assert time.monotonic() < deadline, "no access line"
        time.sleep(0.05)
    raw = open(srv.log_path, "rb").read()
    assert b"\x1b" not in raw
    lines = raw.decode("ascii").splitlines()
    assert not any("forged=1" in ln and "path=" not in ln for ln in lines)
    line = [ln for ln in lines if "tags/list" in ln]
    assert len(line) == 1, line
    assert ("path=/v2/app\\x0a2026-01-01T00:00:00.000Z\\x20info\\x20region=local\\x20access:"
            "\\x20forged=1\\x1b[31m\\x20status=200\\\\\\\"/tags/list status=4") in line[0], line[0]


def test_issue9_trickling_puts_do_not_starve_others(server_pool):
    """The issue's attack: many PUTs whose bodies trickle in (here 200 from one address,
    a byte each on every round). The per-address cap bounds how many are held, the body
    deadline closes the rest, and a client on another address is served throughout."""
    srv = server_pool("--body-timeout", "3s", "--threads", "4", auth=False)
    host, port = hostport(srv)
    socks = []
    for i in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.2", 0))
        s.settimeout(2)
        try:
            s.connect((host, port))
            s.sendall(b"PUT /v2/slow/put%d/manifests/v1 HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                      b"Content-Length: 1000000\r\n\r\n{" % i)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            s.close()
    open_socks = list(socks)
    stop = threading.Event()

    def trickle():
        while not stop.is_set() and open_socks:
            for s in list(open_socks):
                try:
                    s.send(b" ")
                    if s.recv(4096) == b"":
                        open_socks.remove(s)
                except BlockingIOError:
                    pass
                except OSError:
                    open_socks.remove(s)
            time.sleep(0.3)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        time.sleep(1.0)
        assert len(open_socks) <= 128, len(open_socks)  # the default per-address cap
        latencies = []
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            t0 = time.monotonic()
            assert requests.get(srv.url + "/v2/_catalog", timeout=5).status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.05)
        assert max(latencies) < 1.0, max(latencies)
        deadline = time.monotonic() + 6
        while open_socks and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not open_socks, "%d trickling PUTs still open" % len(open_socks)
    finally:
        stop.set()
        t.join(10)
        for s in socks:
            s.close()
    wait_until(lambda: "request body came too slowly" in srv.log_text(), timeout_s=5,
               what="the slow-body log line")
    r = requests.get(srv.url + "/v2/slow/put0/manifests/v1", timeout=5)
    assert r.status_code == 404  # nothing half-received was stored


def tls_hello():
    """The first flight of a real TLS client (its random bytes differ each time)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname="registry.example")
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_a_tls_handshake_on_the_plain_port_gets_an_http_answer(server_pool):
    """Clients that try https before http (docker's manifest and login commands for an
    insecure registry) fall back to http only when the answer shows an HTTP server. One
    handshake in seven used to be closed without a word (libmicrohttpd drops a request
    line without a space), which such a client takes for a network failure."""
    srv = server_pool(auth=False)
    for i in range(150):
        data, closed = exchange(srv, tls_hello(), wait_s=2.0)
        assert data.startswith(b"HTTP/1.1 400 "), (i, data[:200])
        assert closed, i
    # HTTP clients that are slow to send their first bytes are served as before: a
    # moment (the acceptor waits for them) and longer (handed on unlooked-at)
    for pause_s in (0.05, 0.5):
        s = socket.create_connection(hostport(srv), timeout=5)
        time.sleep(pause_s)
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(5)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        assert responses_in(data) == [b"200"], (pause_s, data[:200])


def test_a_target_in_absolute_form_is_served_as_its_path(server_pool):
    """RFC 9112, 3.2.2: a server accepts "GET http://host/path" (what clients send to a
    proxy) as "GET /path"; it used to be 404."""
    srv = server_pool(auth=False)
    for target, status in ((b"http://registry.example/v2/", b"200"),
                           (b"HTTPS://registry.example:443/v2/_catalog?n=1", b"200"),
                           (b"http://registry.example/v2/nothing/here/tags/list", b"404")):
        data, _ = exchange(srv, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
                           b"Connection: close\r\n\r\n")
        assert responses_in(data) == [status], (target, data[:300])
    assert "path=/v2/_catalog" in srv.log_text()
    data, _ = exchange(srv, b"GET http://registry.example/v2/_catalog?n=1 HTTP/1.1\r\n"
                       b"Host: x\r\nConnection: close\r\n\r\n")
    assert json.loads(body_of(data)) == {"repositories": []}, data[:300]
