"""Several nodes of one region (docs/scale-out.md, MERIDIAN_TEST_METASTORE=pg only): two
`meridian serve` processes share one PostgreSQL database and one data directory (the
filesystem blob store on a shared directory) behind a round-robin TCP balancer
(roundrobin.py: one connection per request, so consecutive requests of a client reach the
nodes in turn).

- a chunked upload started on one node continues and finishes on the other, also when
  the node is killed (-9) in the middle of a chunk; a request on a session in use through
  one node waits up to a second through the other, and is then refused, as on one node;
- an upload whose session row is not there yet (another node between creating its bytes
  and its row) survives the first sweep that sees it, and goes at the next;
- a data endpoint URL signed by one node is honoured by the other's data listener;
- concurrent pushes through the balancer: every tag is served by both nodes, and the
  region's event log has one event per origin sequence number, in commit order, with
  clocks strictly increasing along it (no two events of the region share a clock);
- background work runs on one node (the lease holder); the other takes over when it stops,
  at once after a clean stop, when the lease runs out after kill -9; scheduled compaction
  passes too;
- a webhook fires once per push, whichever node took the push;
- a second region pulling from the two-node region while both nodes take concurrent
  pushes ends with every event of the region exactly once.
"""

import concurrent.futures
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest
import requests

import pg_metastore
from conftest import (MT_OCI_INDEX, OCI, all_at_once, digest_of, random_bytes,
                      recv_until_close, referrers_tag_index, unique_name, wait_until)
from regions import faketime_env, faketime_missing
from roundrobin import RoundRobin

pytestmark = pytest.mark.skipif(not pg_metastore.is_pg(),
                                reason="needs the servers on PostgreSQL (MERIDIAN_TEST_METASTORE=pg)")
pytest_plugins = ["geo_plugin"]

REGION = "eastus"
NODE_ARGS = ["--region", REGION, "--webhook-backoff-max", "1s"]
OWNER_LINE = "this node runs the region's background work"


@pytest.fixture
def nodes(server_factory):
    """Two nodes of region REGION on one database and one data directory, and a balancer."""
    a = server_factory(*NODE_ARGS)
    b = server_factory(*NODE_ARGS, data_dir=a.data_dir)
    lb = RoundRobin([("127.0.0.1", a.port), ("127.0.0.1", b.port)]).start()
    try:
        yield a, b, lb
    finally:
        lb.stop()


def balanced(lb):
    """An OCI client through the balancer, one connection per request."""
    oci = OCI(lb.url)
    oci.s.headers["Connection"] = "close"
    return oci


def log_text(srv):
    with open(srv.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def check_log_order(data_dir, origin):
    """The origin's events: origin_seq 1..n in log order, clocks strictly increasing."""
    rows = pg_metastore.query_rows(
        data_dir, "SELECT origin_seq, hlc FROM events WHERE origin = ? ORDER BY seq", origin)
    seqs = [r[0] for r in rows]
    assert seqs == list(range(1, len(rows) + 1)), "origin_seq out of log order or with gaps"
    ties = [(rows[i - 1], rows[i]) for i in range(1, len(rows)) if rows[i][1] <= rows[i - 1][1]]
    assert not ties, "clocks not increasing along the log: %s" % ties[:5]
    return len(rows)


# ----------------------------------------------------------------------------
# uploads

def test_chunked_upload_moves_between_nodes(nodes):
    a, b, _ = nodes
    repo = unique_name("e2e/split")
    data = random_bytes(300_000)
    parts = [data[:100_000], data[100_000:210_000], data[210_000:]]
    r = requests.post(a.url + "/v2/%s/blobs/uploads/" % repo, data=b"", timeout=30)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    path = location if location.startswith("/") else "/" + location.split("/", 3)[3]
    offset = 0
    # a, b, a: the first node must notice that the session grew on the other one
    for srv, part in zip((a, b, a), parts):
        r = requests.patch(srv.url + path, data=part, timeout=30, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": "%d-%d" % (offset, offset + len(part) - 1)})
        assert r.status_code == 202, (srv.url, r.status_code, r.text)
        offset += len(part)
        assert r.headers["Range"] == "0-%d" % (offset - 1)
        path = r.headers["Location"] if r.headers["Location"].startswith("/") else path
    r = requests.get(a.url + path, timeout=30)
    assert r.status_code == 204 and r.headers["Range"] == "0-%d" % (len(data) - 1)

    # node A killed (-9) in the middle of the next chunk's body: the client asks node B
    # where the upload stands and sends the chunk again there
    more = random_bytes(200_000)
    sock = socket.create_connection(("127.0.0.1", a.port), timeout=30)
    sock.sendall(("PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                  "Content-Range: %d-%d\r\nContent-Length: %d\r\n\r\n"
                  % (path, offset, offset + len(more) - 1, len(more))).encode())
    sock.sendall(more[:120_000])
    a.kill()
    sock.close()
    r = requests.get(b.url + path, timeout=30)
    assert r.status_code == 204 and r.headers["Range"] == "0-%d" % (offset - 1)
    r = requests.patch(b.url + path, data=more, timeout=30, headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": "%d-%d" % (offset, offset + len(more) - 1)})
    assert r.status_code == 202, (r.status_code, r.text)
    data += more
    dig = digest_of(data)
    r = requests.put(b.url + path, params={"digest": dig}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    got = requests.get(b.url + "/v2/%s/blobs/%s" % (repo, dig), timeout=30)
    assert got.status_code == 200 and got.content == data


def patch_held_open(srv, path, body, other):
    """Starts a PATCH of body through srv and sends half of it: the request holds the
    session until the rest comes. Empty PATCHes through srv tell when it holds it (400
    while it does; a status GET answers 204 even then); the PATCH itself is refused if it
    arrives while such a probe holds the session, and is then sent again. The hold is
    confirmed through the other node too (400: the database's claim is held), with the
    PATCH still unanswered after both: a probe's 400 alone may come while the PATCH,
    holding this node's flag, is being refused the claim a probe just gave up. Returns the
    open socket."""
    def is_refused(node):
        return requests.patch(node.url + path, data=b"", timeout=30, headers={
            "Content-Type": "application/octet-stream"}).status_code == 400

    head = ("PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            "Content-Range: 0-%d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (path, len(body) - 1, len(body))).encode()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        sock.sendall(head + body[:len(body) // 2])
        while time.monotonic() < deadline:
            if (is_refused(srv) and is_refused(other) and
                    not select.select([sock], [], [], 0)[0]):
                return sock
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:  # answered already: refused while a GET held the session
                break
        sock.close()
    pytest.fail("no PATCH held the session")


def test_session_in_use_through_one_node_is_refused_through_the_other(nodes):
    """One request at a time per upload session, across the nodes: while a PATCH is in
    flight through node A (its body half sent), a PATCH and a PUT of the same session
    through node B get what a second request on one node gets (400 BLOB_UPLOAD_INVALID)
    and write nothing; the first PATCH then finishes and the upload completes through B
    with exactly the client's bytes."""
    a, b, _ = nodes
    repo = unique_name("e2e/claim")
    first = random_bytes(200_000)
    r = requests.post(a.url + "/v2/%s/blobs/uploads/" % repo, data=b"", timeout=30)
    assert r.status_code == 202, r.text
    path = urlparse(r.headers["Location"]).path
    sock = patch_held_open(a, path, first, b)
    try:
        intruder = random_bytes(200_000)
        r = requests.patch(b.url + path, data=intruder, timeout=30, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": "0-%d" % (len(intruder) - 1)})
        assert r.status_code == 400, (r.status_code, r.text)
        assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID", r.text
        r = requests.put(b.url + path, params={"digest": digest_of(intruder)}, timeout=30)
        assert r.status_code == 400, (r.status_code, r.text)
        assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID", r.text
        # Its status is still answered (distribution-spec: 204), at what is acknowledged.
        r = requests.get(b.url + path, timeout=30)
        assert r.status_code == 204 and r.headers["Range"] == "0-0", (r.status_code, r.text)
        sock.sendall(first[len(first) // 2:])
        reply = recv_until_close(sock)
        assert reply.startswith(b"HTTP/1.1 202"), reply[:200]
    finally:
        sock.close()
    r = requests.get(b.url + path, timeout=30)
    assert r.status_code == 204 and r.headers["Range"] == "0-%d" % (len(first) - 1), \
        (r.status_code, r.headers)
    rest = random_bytes(50_000)
    r = requests.patch(b.url + path, data=rest, timeout=30, headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": "%d-%d" % (len(first), len(first) + len(rest) - 1)})
    assert r.status_code == 202, (r.status_code, r.text)
    data = first + rest
    r = requests.put(a.url + path, params={"digest": digest_of(data)}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    for srv in (a, b):
        got = requests.get(srv.url + "/v2/%s/blobs/%s" % (repo, digest_of(data)), timeout=30)
        assert got.status_code == 200 and got.content == data


def test_request_through_another_node_waits_for_the_session_to_be_given_up(nodes):
    """A request reaching node B while node A's request holds the session waits for it (up
    to a second, docs/scale-out.md) rather than being refused at once: a node killed
    mid-request keeps its claim until the database notices its connection closed, and a
    client resuming through the other node then must not be told the session is in use.
    Here B's PATCH of the bytes after A's chunk is sent while A's PATCH is half-way; A's
    then finishes, and B's is taken (202): the upload holds both chunks, in order."""
    a, b, _ = nodes
    repo = unique_name("e2e/wait")
    first, second = random_bytes(200_000), random_bytes(100_000)
    r = requests.post(a.url + "/v2/%s/blobs/uploads/" % repo, data=b"", timeout=30)
    assert r.status_code == 202, r.text
    path = urlparse(r.headers["Location"]).path
    sock = patch_held_open(a, path, first, b)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            later = pool.submit(requests.patch, b.url + path, data=second, timeout=30, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": "%d-%d" % (len(first), len(first) + len(second) - 1)})
            # time for B's PATCH to meet A's claim (refused at once, it is answered by then)
            concurrent.futures.wait([later], timeout=0.2)
            sock.sendall(first[len(first) // 2:])
            reply = recv_until_close(sock)
            assert reply.startswith(b"HTTP/1.1 202"), reply[:200]
            r = later.result()
        assert r.status_code == 202, (r.status_code, r.text)
        assert r.headers["Range"] == "0-%d" % (len(first) + len(second) - 1)
    finally:
        sock.close()
    data = first + second
    r = requests.put(a.url + path, params={"digest": digest_of(data)}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text)
    got = requests.get(b.url + "/v2/%s/blobs/%s" % (repo, digest_of(data)), timeout=30)
    assert got.status_code == 200 and got.content == data


def test_upload_without_row_survives_one_sweep(server_factory):
    a = server_factory(*NODE_ARGS, "--upload-sweep-interval", "1")
    repo = unique_name("e2e/rowless")
    loc = a.oci().start_upload(repo).headers["Location"]
    uid = loc.split("?")[0].rstrip("/").rsplit("/", 1)[1]
    files = set(a.upload_files())  # its file, or its objects in S3
    assert files, "the session has no file"
    a.stop()
    pg_metastore.query_rows(a.data_dir, "DELETE FROM uploads WHERE id = ?", uid)
    a.start()  # its first sweep runs before it is ready
    assert files <= set(a.upload_files()), "removed at first sight"
    wait_until(lambda: not files & set(a.upload_files()), timeout_s=20,
               what="the rowless upload removed by a later sweep")


def test_monolithic_post_in_flight_through_one_node_outlives_the_others_sweeps(server_factory):
    """The lease holder's sweep removes monolithic POST sessions that no request holds
    (cut by a crash); one whose POST is streaming through the other node is held (its
    claim) and stays across several sweeps: the POST then completes with its bytes."""
    a = server_factory(*NODE_ARGS, "--upload-sweep-interval", "1")
    b = server_factory(*NODE_ARGS, "--upload-sweep-interval", "1", data_dir=a.data_dir)
    owners = lambda: [s for s in (a, b) if OWNER_LINE in log_text(s)]  # noqa: E731
    wait_until(lambda: len(owners()) == 1, timeout_s=15, what="one lease holder")
    other = b if owners()[0] is a else a
    repo = unique_name("e2e/single")
    data = random_bytes(300_000)
    head = ("POST /v2/%s/blobs/uploads/?digest=%s HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n"
            "Connection: close\r\n\r\n" % (repo, digest_of(data), len(data))).encode()
    singles = lambda: pg_metastore.query_rows(  # noqa: E731
        a.data_dir, "SELECT id FROM uploads WHERE is_single_request = 1")
    sock = socket.create_connection(("127.0.0.1", other.port), timeout=30)
    try:
        sock.sendall(head + data[:len(data) // 2])
        wait_until(lambda: len(singles()) == 1, timeout_s=10, what="the POST's session")
        # a negative check: the session must stay across several sweeps of the holder
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            assert len(singles()) == 1, "the sweep removed a session in flight"
            time.sleep(0.25)
        sock.sendall(data[len(data) // 2:])
        reply = recv_until_close(sock)
        assert reply.startswith(b"HTTP/1.1 201"), reply[:300]
    finally:
        sock.close()
    for srv in (a, b):
        got = requests.get(srv.url + "/v2/%s/blobs/%s" % (repo, digest_of(data)), timeout=30)
        assert got.status_code == 200 and got.content == data


def test_data_url_signed_by_one_node_is_served_by_the_other(server_factory):
    import re
    args = NODE_ARGS + ["--data-listen", "127.0.0.1:0"]
    a = server_factory(*args)
    b = server_factory(*args, data_dir=a.data_dir)
    data_of = lambda srv: re.search(r"data endpoint at (http://[0-9.:]+)",  # noqa: E731
                                    log_text(srv)).group(1)
    repo = unique_name("e2e/data")
    data = random_bytes(50_000)
    dig = OCI(a.url).push_blob(repo, data)
    r = requests.get(a.url + "/v2/%s/blobs/%s" % (repo, dig), allow_redirects=False, timeout=30)
    assert r.status_code == 307, (r.status_code, r.text)
    loc = r.headers["Location"]
    assert loc.startswith(data_of(a))
    # the same URL on the other node's data listener (a balancer in front of both)
    r = requests.get(data_of(b) + loc[len(data_of(a)):], timeout=30)
    assert r.status_code == 200 and r.content == data


# ----------------------------------------------------------------------------
# the event log under concurrent writers

def test_concurrent_pushes_through_both_nodes(nodes):
    a, b, lb = nodes
    repo = unique_name("e2e/both")
    n_threads, per_thread = 4, 8

    def pushes(t):
        oci = balanced(lb)
        out = {}
        for i in range(per_thread):
            tag = "t%d-%d" % (t, i)
            out[tag] = oci.push_image(repo, tag=tag, layers=1, layer_size=512).digest
        return out

    with concurrent.futures.ThreadPoolExecutor(n_threads) as pool:
        pushed = {}
        for got in pool.map(pushes, range(n_threads)):
            pushed.update(got)
    assert min(lb.counts) > 0, lb.counts
    for srv in (a, b):
        oci = OCI(srv.url)
        assert sorted(oci.tag_list(repo)) == sorted(pushed)
        for tag, dig in pushed.items():
            assert oci.get_manifest(repo, tag).headers["Docker-Content-Digest"] == dig
    n = check_log_order(a.data_dir, REGION)
    assert n >= 2 * len(pushed)  # a manifest and a tag event per push at least


def test_conditional_puts_through_both_nodes_let_one_writer_win(nodes):
    """If-Match racing across nodes: the check runs in the write's transaction, and the
    nodes' write transactions queue on one database lock, so one writer wins."""
    a, b, lb = nodes
    repo = unique_name("e2e/cond")
    direct = OCI(a.url)
    for race in range(6):
        tag = "t%d" % race
        assert direct.put_manifest(repo, tag, referrers_tag_index(-1 - race),
                                   MT_OCI_INDEX).status_code == 201
        headers = {"If-Match": direct.get_manifest(repo, tag).headers["ETag"]}
        bodies = [referrers_tag_index(100 * (race + 1) + i) for i in range(10)]
        statuses = all_at_once(bodies, lambda body: balanced(lb).put_manifest(
            repo, tag, body, MT_OCI_INDEX, headers=headers).status_code)
        assert statuses.count(201) == 1 and statuses.count(412) == len(bodies) - 1, statuses
        winner = bodies[statuses.index(201)]
        for srv in (a, b):
            assert OCI(srv.url).get_manifest(repo, tag).content == winner
    assert min(lb.counts) > 0, lb.counts


# ----------------------------------------------------------------------------
# background work

def test_one_node_runs_background_work_and_another_takes_over(nodes):
    a, b, _ = nodes
    owners = lambda: [s for s in (a, b) if OWNER_LINE in log_text(s)]  # noqa: E731
    wait_until(lambda: len(owners()) == 1, timeout_s=10, what="one lease holder")
    owner = owners()[0]
    other = b if owner is a else a
    holder = pg_metastore.query_rows(a.data_dir,
                                     "SELECT holder FROM node_leases WHERE name = 'background'")
    assert len(holder) == 1 and (":%d:" % owner.proc.pid) in holder[0][0]
    owner.stop()  # a clean stop gives the lease up: no wait for it to run out
    wait_until(lambda: OWNER_LINE in log_text(other), timeout_s=10, what="takeover")


def test_lease_of_a_killed_node_runs_out_and_another_takes_it(nodes):
    a, b, _ = nodes
    owners = lambda: [s for s in (a, b) if OWNER_LINE in log_text(s)]  # noqa: E731
    wait_until(lambda: len(owners()) == 1, timeout_s=10, what="one lease holder")
    owner = owners()[0]
    other = b if owner is a else a
    owner.kill()  # -9: nothing given up; the lease runs out (10 s) and the other takes it
    t0 = time.monotonic()
    wait_until(lambda: OWNER_LINE in log_text(other), timeout_s=30, what="takeover")
    assert time.monotonic() - t0 <= 10 + 2 + 5  # the lease's length, a renewal period, slack


needs_faketime = pytest.mark.skipif(faketime_missing() is not None,
                                    reason=str(faketime_missing()))


def lease_row(srv):
    rows = pg_metastore.query_rows(srv.data_dir, "SELECT holder, expires_ms FROM node_leases"
                                   " WHERE name = 'background'")
    assert len(rows) == 1, rows
    return rows[0][0], int(rows[0][1])


@needs_faketime
def test_a_node_whose_clock_runs_ahead_leaves_a_held_lease_alone(server_factory):
    """The holder renews; a node an hour ahead must not take the lease from it (the
    lease's expiry is in the database's clock, not the nodes')."""
    a = server_factory(*NODE_ARGS)
    wait_until(lambda: OWNER_LINE in log_text(a), timeout_s=10, what="a to hold the lease")
    b = server_factory(*NODE_ARGS, data_dir=a.data_dir, env=faketime_env("+1h"))
    # b tried at its start; two renewals of a after that, and b has tried again meanwhile
    seen = [lease_row(a)[1]]

    def renewed_twice():
        holder, expires = lease_row(a)
        if expires != seen[-1]:
            seen.append(expires)
        return len(seen) >= 3 or (":%d:" % a.proc.pid) not in holder
    wait_until(renewed_twice, timeout_s=20, what="two renewals of the lease")
    holder, _ = lease_row(a)
    assert (":%d:" % a.proc.pid) in holder, holder
    assert OWNER_LINE not in log_text(b)


@needs_faketime
def test_a_node_whose_clock_runs_behind_takes_over_from_a_killed_holder_in_time(server_factory):
    """The holder dies (-9); a node an hour behind takes the lease when it runs out by the
    database's clock (10 s), not an hour later."""
    a = server_factory(*NODE_ARGS)
    wait_until(lambda: OWNER_LINE in log_text(a), timeout_s=10, what="a to hold the lease")
    b = server_factory(*NODE_ARGS, data_dir=a.data_dir, env=faketime_env("-1h"))
    assert OWNER_LINE not in log_text(b)
    a.kill()
    t0 = time.monotonic()
    wait_until(lambda: OWNER_LINE in log_text(b), timeout_s=30, what="takeover by b")
    assert time.monotonic() - t0 <= 10 + 2 + 5  # the lease's length, a renewal period, slack


@needs_faketime
def test_a_tag_pushed_through_a_node_whose_clock_runs_behind_after_another_wins(server_factory):
    """Two nodes of one region, one an hour behind: a tag pushed through it after a push
    through the other is the tag's value (the region's clock moves past the newest event
    in the shared log before each write)."""
    a = server_factory(*NODE_ARGS)
    b = server_factory(*NODE_ARGS, data_dir=a.data_dir, env=faketime_env("-1h"))
    repo = unique_name("skewnodes")
    first = OCI(a.url).push_image(repo, "v1")
    second = OCI(b.url).push_image(repo, "v1")
    assert first.digest != second.digest
    for srv in (a, b):
        r = OCI(srv.url).get_manifest(repo, "v1")
        assert r.headers["Docker-Content-Digest"] == second.digest, srv.url


def compaction(srv):
    r = requests.get(srv.url + "/_meridian/v1/compaction", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_only_the_lease_holder_compacts_and_another_takes_over(server_factory):
    """Scheduled compaction passes run on the lease holder only (one pass per region, not
    one per node); after the holder is killed (-9) the other node runs them."""
    args = NODE_ARGS + ["--compact-interval", "1s"]
    a = server_factory(*args)
    b = server_factory(*args, data_dir=a.data_dir)
    owners = lambda: [s for s in (a, b) if OWNER_LINE in log_text(s)]  # noqa: E731
    wait_until(lambda: len(owners()) == 1, timeout_s=10, what="one lease holder")
    owner = owners()[0]
    other = b if owner is a else a
    wait_until(lambda: compaction(owner)["passes"] >= 3, timeout_s=15,
               what="the holder's passes")
    st = compaction(other)
    assert st["passes"] == 0, st  # the other node's thread ran no pass
    assert st["is_scheduled_here"] is False and compaction(owner)["is_scheduled_here"] is True
    owner.kill()
    wait_until(lambda: compaction(other)["passes"] >= 2, timeout_s=30,
               what="the other node's passes after the takeover")
    assert compaction(other)["is_scheduled_here"] is True


class Receiver:
    """Webhook receiver that records every delivery and answers slowly, so that the
    deliveries of the two nodes overlap."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ids = []
        rcv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(0.05)  # a slow receiver, not a wait for the test's sake
                with rcv.lock:
                    rcv.ids.append(json.loads(body)["id"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.httpd.server_address[1]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_webhook_fires_once_per_push_whichever_node_took_it(nodes):
    a, b, lb = nodes
    rcv = Receiver()
    try:
        name = "once" + unique_name("h").replace("-", "")[:20]
        r = requests.post(a.url + "/_meridian/v1/webhooks", timeout=30, json={
            "name": name, "location": REGION, "uri": rcv.url, "actions": ["push"]})
        assert r.status_code == 201, r.text
        repo = unique_name("e2e/hook")
        n_threads, per_thread = 4, 6

        def pushes(t):
            oci = balanced(lb)
            for i in range(per_thread):
                oci.push_image(repo, tag="t%d-%d" % (t, i), layers=1, layer_size=256)

        with concurrent.futures.ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(pushes, range(n_threads)))
        total = n_threads * per_thread

        def settled():
            r = requests.get(a.url + "/_meridian/v1/webhooks/%s/events" % name, timeout=30)
            assert r.status_code == 200
            states = [d["state"] for d in r.json()]
            return len(states) == total and all(s == "delivered" for s in states)
        wait_until(settled, timeout_s=60, what="every delivery recorded as delivered")
        with rcv.lock:
            ids = list(rcv.ids)
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        assert not dupes, "delivered more than once: %s" % dupes
        assert len(ids) == total
    finally:
        rcv.stop()


# ----------------------------------------------------------------------------
# a peer region pulling from the two-node region

def start_second_node(region):
    """Another process of `region` (same data directory, database and name), on a port of
    its own; returns (process, url)."""
    import re
    import subprocess
    from regions import hermetic_env
    log_path = region.log_path + ".node2"
    log = open(log_path, "ab")
    proc = subprocess.Popen(region.argv(0), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=hermetic_env(), cwd=region.dir)
    url = None

    def listening():
        nonlocal url
        assert proc.poll() is None, open(log_path).read()[-3000:]
        m = re.search(r"listening on (http://[0-9.]+:\d+)", open(log_path).read())
        url = m.group(1) if m else None
        return url is not None
    wait_until(listening, timeout_s=30, what="second node listening")
    wait_until(lambda: requests.get(url + "/readyz", timeout=5).status_code == 200,
               timeout_s=30, what="second node ready")
    return proc, url, log


def test_peer_region_gets_every_event_of_a_two_node_region_once(geo):
    cluster = geo(2)
    r1, r2 = cluster
    proc, url_b, log = start_second_node(r1)
    try:
        repo = unique_name("e2e/geo2")
        n_threads, per_thread = 4, 10

        def pushes(t):
            # threads alternate between the nodes; each push on one node
            oci = OCI(r1.url if t % 2 == 0 else url_b)
            return {"t%d-%d" % (t, i): oci.push_image(repo, tag="t%d-%d" % (t, i), layers=1,
                                                     layer_size=256).digest
                    for i in range(per_thread)}

        with concurrent.futures.ThreadPoolExecutor(n_threads) as pool:
            pushed = {}
            for got in pool.map(pushes, range(n_threads)):
                pushed.update(got)

        def has_all():
            r = requests.get(r2.url + "/v2/%s/tags/list" % repo, params={"n": 1000}, timeout=30)
            return r.status_code == 200 and sorted(r.json().get("tags") or []) == sorted(pushed)
        wait_until(has_all, timeout_s=90, what="every tag in r2")
        n1 = check_log_order(r1.data_dir, "r1")
        wait_until(lambda: pg_metastore.query_rows(
            r2.data_dir, "SELECT count(*) FROM events WHERE origin = 'r1'")[0][0] >= n1,
            timeout_s=60, what="r2 holds r1's whole log")
        rows = pg_metastore.query_rows(
            r2.data_dir, "SELECT origin_seq FROM events WHERE origin = 'r1' ORDER BY origin_seq")
        got = [r[0] for r in rows]
        assert got[:n1] == list(range(1, n1 + 1)), "r2 misses or repeats events of r1"
        for tag, dig in pushed.items():
            r = requests.get(r2.url + "/v2/%s/manifests/%s" % (repo, tag), timeout=30,
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == dig
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=30) == 0, "second node exited non-zero"
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
