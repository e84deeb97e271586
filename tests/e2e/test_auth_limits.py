"""Hostile clients against the login and the audit log: a flood of bad Authorization
headers writes a bounded number of audit entries (one per address, actor and action and
minute, with a count); wrong passwords are limited per (address, identity), per address
and per identity, answered 429 TOOMANYREQUESTS with Retry-After on /v2/, the token
endpoint and the management API, while the right user keeps logging in from elsewhere;
the audit table keeps at most --audit-max-rows entries; NUL in credentials is refused.

Clients on other addresses bind 127.0.0.N as their source (loopback only)."""

import time

import requests
from requests.adapters import HTTPAdapter

import tier
from auth_helpers import (ADMIN_PASSWORD, assert_oci_error, basic, server_pool,  # noqa: F401
                          token)

ADMIN = ("admin", ADMIN_PASSWORD)


class SourceAdapter(HTTPAdapter):
    """Connections from a given local address."""

    def __init__(self, src, **kw):
        self.src = src
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        kw["source_address"] = (self.src, 0)
        super().init_poolmanager(*args, **kw)


def client(src="127.0.0.1"):
    s = requests.Session()
    s.mount("http://", SourceAdapter(src))
    return s


def call(srv, method, path, auth=None, src="127.0.0.1", session=None, **kw):
    h = dict(kw.pop("headers", {}))
    if isinstance(auth, str):
        h["Authorization"] = "Bearer " + auth
    elif auth is not None:
        h["Authorization"] = basic(*auth)
    s = session or client(src)
    kw.setdefault("timeout", 30)
    return s.request(method, srv.url + path, headers=h, **kw)


def audit(srv, **params):
    r = srv.request("GET", "/_meridian/v1/audit", auth=ADMIN,
                    params=dict({"limit": 10000}, **params))
    assert r.status_code == 200, r.text
    return r.json()


def db_bytes(srv):
    return tier.meta_bytes(srv.data_dir)


def test_bad_header_flood_is_aggregated(server_pool):
    """3 000 bad Authorization headers from one address: one audit entry with count 3 000
    (before: 3 000 entries), and the database barely grows."""
    srv = server_pool()
    s = client()
    before = db_bytes(srv)
    n = 0
    t0 = time.monotonic()
    for i in range(1500):
        for hv in ("Basic !!!not-base64", "Bearer bogus.%d.token" % i):
            r = s.get(srv.url + "/v2/", headers={"Authorization": hv}, timeout=30)
            assert r.status_code == 401
            n += 1
    elapsed = time.monotonic() - t0
    entries = [e for e in audit(srv) if e["action"] == "auth.failed"]
    assert len(entries) == 1, entries[:5]
    e = entries[0]
    assert e["count"] == n
    assert e["actor"] == "anonymous" and e["remote"] == "127.0.0.1" and e["status"] == 401
    assert e["lastTime"] >= e["time"]
    grown = db_bytes(srv) - before
    print("flood: %d bad headers in %.1f s (%.0f/s), 1 audit entry, database +%d bytes"
          % (n, elapsed, n / elapsed, grown))
    assert grown < 512 * 1024, grown


def test_rotating_names_are_folded(server_pool):
    """Wrong passwords for ever new names from one address: a few entries, not one per
    name; the counts add up to every refusal (throttled ones included)."""
    srv = server_pool("--failed-login-burst", "100")  # the per-address budget is 400
    s = client("127.0.0.5")
    n = 60
    for i in range(n):
        r = call(srv, "GET", "/v2/", auth=("ghost%d" % i, "wrong"), session=s)
        assert r.status_code == 401
    entries = [e for e in audit(srv) if e["action"] == "auth.failed"]
    assert len(entries) <= 9, [(e["actor"], e["count"]) for e in entries]
    assert any(e["actor"] == "*" for e in entries)
    assert sum(e["count"] for e in entries) == n


def test_failed_logins_are_limited(server_pool):
    """burst 3 (address, identity): the 4th wrong password gets 429 with Retry-After on
    /v2/, the token endpoint (GET and form POST) and the management API, even with the
    right password; the right user from another address logs in; after Retry-After the
    address may try again."""
    # 4 s: the three password hashes before the 429 must not outlast one interval
    srv = server_pool("--failed-login-burst", "3", "--failed-login-interval", "4s")
    adm = srv.admin()
    alice = adm.user("alice", "alice-password-1", role="consumer", pattern="*")
    wrong = ("alice", "not-her-password")
    s = client("127.0.0.1")
    for _ in range(3):
        assert_oci_error(call(srv, "GET", "/v2/", auth=wrong, session=s), 401, "UNAUTHORIZED")
    # now every attempt from this address for alice is refused before the secret is checked
    for attempt in (wrong, alice):
        r = call(srv, "GET", "/v2/", auth=attempt, session=s)
        assert_oci_error(r, 429, "TOOMANYREQUESTS")
        retry = int(r.headers["Retry-After"])
        assert 1 <= retry <= 4, retry
        assert r.headers.get("Docker-Distribution-API-Version") == "registry/2.0"
    r = call(srv, "GET", "/_meridian/v1/token", auth=alice, session=s,
             params={"service": "meridian"})
    assert_oci_error(r, 429, "TOOMANYREQUESTS")
    assert int(r.headers["Retry-After"]) >= 1
    r = s.post(srv.url + "/_meridian/v1/token", timeout=30,
               data={"grant_type": "password", "username": "alice", "password": alice[1]})
    assert_oci_error(r, 429, "TOOMANYREQUESTS")
    assert "Retry-After" in r.headers
    r = call(srv, "GET", "/_meridian/v1/info", auth=alice, session=s)
    assert_oci_error(r, 429, "TOOMANYREQUESTS")
    assert "Retry-After" in r.headers
    # answered at once: no password hash behind a 429
    t1 = time.monotonic()
    for _ in range(50):
        assert call(srv, "GET", "/v2/", auth=wrong, session=s).status_code == 429
    rate = 50 / (time.monotonic() - t1)
    print("throttled: %.0f answers/s" % rate)
    # the right user from another address is not locked out
    assert call(srv, "GET", "/v2/", auth=alice, src="127.0.0.2").status_code == 200
    assert call(srv, "GET", "/_meridian/v1/token", auth=alice, src="127.0.0.2",
                params={"service": "meridian"}).status_code == 200
    # other users from the hammering address are not either
    assert call(srv, "GET", "/v2/", auth=ADMIN, session=s).status_code == 200
    # once Retry-After has passed, one more attempt (the right one) goes through
    t_asked = time.monotonic()
    r = call(srv, "GET", "/v2/", auth=alice, session=s)
    assert r.status_code == 429
    time.sleep(max(0.0, t_asked + int(r.headers["Retry-After"]) - time.monotonic()))
    r = call(srv, "GET", "/v2/", auth=alice, session=s)
    assert r.status_code == 200, (r.status_code, r.headers.get("Retry-After"))
    # the audit log has the refusals, aggregated, with their counts
    entries = audit(srv, actor="alice")
    counts = {e["action"]: e["count"] for e in entries if e["remote"] == "127.0.0.1"}
    assert counts.get("auth.failed") == 3
    assert counts.get("login.throttled", 0) >= 53
    assert counts.get("login.throttled") == sum(
        e["count"] for e in entries if e["action"] == "login.throttled")


def test_identity_budget_spares_known_addresses(server_pool):
    """Guessing one identity from many addresses spends its budget (10 x burst); new
    addresses then wait, but an address the user logged in from keeps working."""
    # identity budget: 20 failures, then one per 30 s (no refill can slip in mid-test)
    srv = server_pool("--failed-login-burst", "2", "--failed-login-interval", "300s")
    adm = srv.admin()
    alice = adm.user("alice", "alice-password-1", role="consumer", pattern="*")
    assert call(srv, "GET", "/v2/", auth=alice, src="127.0.0.2").status_code == 200
    refused = 0
    for k in range(10, 22):
        for _ in range(2):
            r = call(srv, "GET", "/v2/", auth=("alice", "guess"), src="127.0.0.%d" % k)
            assert r.status_code in (401, 429)
            refused += r.status_code == 429
    assert refused > 0  # the identity's budget of 20 is spent
    r = call(srv, "GET", "/v2/", auth=alice, src="127.0.0.3")
    assert_oci_error(r, 429, "TOOMANYREQUESTS")
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    assert call(srv, "GET", "/v2/", auth=alice, src="127.0.0.2").status_code == 200
    # other identities are untouched
    assert call(srv, "GET", "/v2/", auth=ADMIN, src="127.0.0.3").status_code == 200


def test_audit_table_is_capped(server_pool):
    """--audit-max-rows 30: after 60 recorded writes, the 30 newest entries remain."""
    srv = server_pool("--audit-max-rows", "30")
    adm = srv.admin()
    adm.user("carol")
    for i in range(60):
        adm.assign("carol", "consumer", "cap-%02d/*" % i)
    entries = audit(srv)
    assert len(entries) == 30
    details = [e["detail"] for e in entries]
    assert any("cap-59/*" in d for d in details)
    assert not any("cap-29/*" in d for d in details)
    assert [e["id"] for e in entries] == list(range(entries[0]["id"], entries[0]["id"] - 30, -1))


def test_nul_in_credentials_is_refused(server_pool):
    """A NUL in a username or password (form, Basic, JSON) is refused, never cut."""
    srv = server_pool()
    adm = srv.admin()
    adm.user("dave", "dave-password-1", role="consumer", pattern="*")
    form = "/_meridian/v1/token"
    for body in ("grant_type=password&username=dave%00x&password=dave-password-1",
                 "grant_type=password&username=dave&password=dave-password-1%00tail",
                 "grant_type=password&username=dave&password=dave-password-1\x00tail",
                 "grant_type=password%00&username=dave&password=dave-password-1"):
        r = srv.request("POST", form, data=body.encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.json()["error"] == "invalid_request"
        assert "token" not in r.json()
    # the same form without the NUL works
    r = srv.request("POST", form, data=b"grant_type=password&username=dave&password=dave-password-1",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    # Basic: NUL in the user or the secret
    import base64
    for raw in (b"dave\x00x:dave-password-1", b"dave:dave-password-1\x00tail"):
        hv = "Basic " + base64.b64encode(raw).decode()
        for path in ("/v2/", "/_meridian/v1/token"):
            r = srv.request("GET", path, headers={"Authorization": hv})
            assert r.status_code == 401, (raw, path, r.status_code)
    # JSON: a password with \u0000 is refused, and no user is created
    r = srv.request("POST", "/_meridian/v1/users", auth=ADMIN,
                    data=b'{"name":"erin","password":"erin-pass\\u0000word"}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert "NUL" in r.json()["error"]["message"]
    assert srv.request("GET", "/_meridian/v1/users/erin", auth=ADMIN).status_code == 404


def test_wrong_peer_secrets_never_throttle_the_right_one(server_pool):
    """Wrong peer secrets sent from a region's address spend that address's budget
    (answered 429 once it is spent), but the right secret from there is still taken:
    otherwise anyone sharing the address could cut that region's replication off with one
    wrong guess every interval. From an address no region has authenticated from, the
    budget comes first, right secret or not, so a throttled guesser learns nothing."""
    secret = "peer-secret-0123456789abcdef"
    srv = server_pool("--failed-login-burst", "3", "--failed-login-interval", "300s",
                      "--peer-secret", secret)
    path = "/_meridian/v1/replication/summary"
    region = client("127.0.0.7")
    assert call(srv, "GET", path, auth=("peer", secret), session=region).status_code == 200
    codes = [call(srv, "GET", path, auth=("peer", "wrong-%d" % i), session=region).status_code
             for i in range(8)]
    assert set(codes) <= {401, 429} and codes[-1] == 429, codes
    for _ in range(3):
        r = call(srv, "GET", path, auth=("peer", secret), session=region)
        assert r.status_code == 200, (r.status_code, r.text)
    # past the address's own budget (4 x burst) too: wrong ones are refused before any
    # check, the right one is still taken
    codes = [call(srv, "GET", path, auth=("peer", "more-%d" % i), session=region).status_code
             for i in range(16)]
    assert codes[-4:] == [429] * 4, codes
    assert call(srv, "GET", path, auth=("peer", secret), session=region).status_code == 200
    # a guesser elsewhere: throttled, and the right secret then gets the same 429
    guesser = client("127.0.0.8")
    codes = [call(srv, "GET", path, auth=("peer", "guess-%d" % i), session=guesser).status_code
             for i in range(8)]
    assert codes[-1] == 429, codes
    r = call(srv, "GET", path, auth=("peer", secret), session=guesser)
    assert r.status_code == 429, (r.status_code, r.text)
