"""The replication event long poll under load (issue 20): many concurrent polls on
/_meridian/v1/replication/events while events arrive at random moments. Every poll is
answered exactly once, with one well-formed HTTP response carrying a well-formed events
reply, and every poller sees every event of the log, in order, none twice.

The bug this guards against: the replication manager resumed a suspended poll while the
HTTP worker that suspended it had not yet returned from it. When the resume won, the
worker queued an empty reply (a 500 "handler set no reply") and the events were never
sent. The window is a few instructions wide, so without ThreadSanitizer this test
catches it only by luck; under ThreadSanitizer (scripts/test.sh's TSan stage) the
unordered accesses are reported on every run, and the server then exits non-zero, which
fails the test below."""

import json
import random
import socket
import threading
import time

from conftest import MT_OCI_MANIFEST, OCI, canonical_json, digest_of, unique_name

POLLERS = 24
EVENTS_TO_MAKE = 120
POLL_WAIT_S = 1        # short: polls end by deadline as well as by news
DEADLINE_S = 240


def parse_one_response(raw):
    """raw: every byte the server sent on a `Connection: close` connection. Returns
    (status, headers, body) if raw is exactly one HTTP/1.1 response with a
    Content-Length body and nothing after it; raises AssertionError otherwise."""
    assert raw, "the server closed the connection without an answer"
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, "no end of headers in %r" % raw[:300]
    lines = head.decode("latin-1").split("\r\n")
    version, status, _reason = (lines[0].split(" ", 2) + [""])[:3]
    assert version == "HTTP/1.1", lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert "content-length" in headers, headers
    n = int(headers["content-length"])
    assert len(rest) == n, "body of %d bytes announced, %d bytes sent (%r)" % (
        n, len(rest), rest[:300])
    return int(status), headers, rest


def get_raw(host, port, path, timeout_s):
    """GET path on a connection of its own (`Connection: close`, the way peers poll: a
    new connection per call); returns every byte the server sent until it closed."""
    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
           % (path, host, port)).encode()
    chunks = []
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        s.sendall(req)
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)


def poll_once(host, port, after, wait_s, timeout_s):
    """One long poll; returns its reply, checked to be exactly one well-formed answer."""
    path = ("/_meridian/v1/replication/events?from=local&after=%d&wait=%d&max=2000"
            % (after, wait_s))
    status, headers, body = parse_one_response(get_raw(host, port, path, timeout_s))
    assert status == 200, (status, body[:300])
    assert headers.get("content-type") == "application/json", headers
    reply = json.loads(body)
    assert set(reply) == {"events", "last", "head", "region", "acks"}, reply
    assert reply["region"] == "local", reply
    assert isinstance(reply["acks"], dict), reply
    assert isinstance(reply["events"], list), reply
    seqs = [e["seq"] for e in reply["events"]]
    # only news, in log order ("head" is read before the events, so it may lag them)
    assert seqs == sorted(set(seqs)), seqs
    assert all(q > after for q in seqs), (after, seqs)
    assert reply["last"] >= (seqs[-1] if seqs else after), reply
    return reply


def make_events(srv, stop_at, made):
    """Moves tags of one repository at random moments: each move is one event."""
    c = OCI(srv.url)
    repo = unique_name("longpoll")
    cfg = canonical_json({"architecture": "amd64", "os": "linux"})
    c.push_blob(repo, cfg)
    rng = random.Random()
    bodies = []
    for i in range(4):
        bodies.append(canonical_json({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest_of(cfg), "size": len(cfg)},
            "layers": [], "annotations": {"n": str(i)}}))
    for i in range(EVENTS_TO_MAKE):
        if time.monotonic() > stop_at:
            break
        r = c.put_manifest(repo, "t%d" % rng.randrange(8), bodies[rng.randrange(4)],
                           MT_OCI_MANIFEST)
        assert r.status_code == 201, (r.status_code, r.text)
        made.append(i)
        # random gaps, some zero: events land while polls are being parked, resumed
        # and answered
        time.sleep(rng.choice([0, 0, 0.001, 0.005, 0.02, 0.05]))


def test_issue20_concurrent_long_polls_are_each_answered_once(server_factory):
    srv = server_factory("--threads", "4")
    host, port = srv.url[len("http://"):].rsplit(":", 1)
    port = int(port)
    stop_at = time.monotonic() + DEADLINE_S
    producer_done = threading.Event()
    made = []
    errors = []
    seen = [[] for _ in range(POLLERS)]
    n_polls = [0] * POLLERS
    n_empty = [0] * POLLERS
    final_head = []

    def poller(i):
        try:
            after = 0
            while time.monotonic() < stop_at:
                reply = poll_once(host, port, after, POLL_WAIT_S, timeout_s=POLL_WAIT_S + 60)
                n_polls[i] += 1
                seen[i].extend(e["seq"] for e in reply["events"])
                after = max(after, reply["last"])
                if final_head and after >= final_head[0]:
                    break
            # with no news left, the poll is woken by its deadline, and answered once
            reply = poll_once(host, port, after, POLL_WAIT_S, timeout_s=POLL_WAIT_S + 60)
            n_empty[i] = 1 if reply["events"] == [] else 0
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((i, e))

    def producer():
        try:
            make_events(srv, stop_at, made)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(("producer", e))
        finally:
            producer_done.set()

    threads = [threading.Thread(target=poller, args=(i,), daemon=True) for i in range(POLLERS)]
    for t in threads:
        t.start()
    prod = threading.Thread(target=producer, daemon=True)
    prod.start()
    prod.join(DEADLINE_S + 30)
    assert producer_done.is_set(), "the producer hung"
    # the log as it stands once every event is made: what every poller must end with
    head = poll_once(host, port, 0, 0, timeout_s=60)["head"]
    final_head.append(head)
    for t in threads:
        t.join(DEADLINE_S + 60)
    assert not any(t.is_alive() for t in threads), "pollers hung"
    if errors:
        raise AssertionError("poll %s failed: %r" % errors[0]) from errors[0][1]
    assert len(made) == EVENTS_TO_MAKE, "only %d events made in time" % len(made)
    for i in range(POLLERS):
        # nothing lost, nothing twice, in log order
        assert seen[i] == list(range(1, head + 1)), (i, seen[i][:20], head)
    # the polls were parked and woken many times, by news and by deadline alike
    assert sum(n_polls) >= 2 * POLLERS, n_polls
    assert n_empty == [1] * POLLERS, n_empty
    log = open(srv.log_path, "rb").read().decode("utf-8", "replace")
    assert "handler set no reply" not in log
    # a sanitizer build reports a race by exiting non-zero (TSan's exitcode)
    rc = srv.stop()
    assert rc == 0, "meridian exited with %s:\n%s" % (rc, srv.log_tail(80))

