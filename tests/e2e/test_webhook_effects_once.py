"""Every effect that fires webhooks fires exactly one delivery per webhook, also across a
kill -9 and a restart of the region (docs/webhooks.md, "Durable"): a push and a delete made in
another region and replicated here, a tag deleted by a retention rule, an untagged manifest
deleted by the collector, and a client's own push and delete. Each delivery is written in the write transaction of its effect
(src/repl/webhook.h, webhook_tx_*), so a crash keeps both or neither.

The window itself (the effect committed, its delivery not yet) is shown without a fault point
in the server: a trigger the test puts in the region's own metastore refuses every delivery
for a while, as a crash between two commits would lose it. The effect must then not take place
(it is retried: the fetch, the event, the next collector or retention pass) and, once the
deliveries are let through, fire exactly once. Before 6 December each effect committed alone
and its refused delivery was only logged: nothing ever fired. Each test then kill -9s the
region with the deliveries still pending (the receiver down) and checks that after the restart
every effect fired exactly once.

Receivers are python http.server instances in threads on 127.0.0.1; waits poll observable
state against a deadline."""

import secrets

import pytest
import requests

import tier
import webhook_receiver
from conftest import wait_until
from regions import wait_for

pytest_plugins = ["geo_plugin"]

REGION = "eastus"
BACKOFF = ["--webhook-backoff-max", "1s"]


class Receiver(webhook_receiver.Receiver):
    """Records every POST and answers 200 (webhook_receiver.py), read as events."""

    def summary(self):
        """(action, digest, tag, request method) of each event received, pings left out."""
        got = [r["json"] for r in self.events() if r["json"]]
        return sorted((g["action"], g["target"]["digest"], g["target"].get("tag") or "",
                       g["request"]["method"]) for g in got if g["action"] != "ping")

    def ids(self):
        return [r["json"]["id"] for r in self.events() if r["json"]]


@pytest.fixture
def receiver():
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def api(srv, method, path, **kw):
    kw.setdefault("timeout", 30)
    return requests.request(method, srv.url + "/_meridian/v1/" + path, **kw)


def records(srv, hook):
    r = api(srv, "GET", "webhooks/%s/events" % hook)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()


def refuse_deliveries(srv, is_on):
    """While on, every insert into the region's delivery queue fails (a trigger of the test in
    the region's metastore; nothing in the server knows of it)."""
    if is_on and tier.on_sqlite():
        sql = ("CREATE TRIGGER refuse_delivery BEFORE INSERT ON webhook_deliveries"
               " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    elif is_on:
        sql = ("CREATE OR REPLACE FUNCTION refuse_delivery() RETURNS trigger AS"
               " $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql;"
               " CREATE TRIGGER refuse_delivery BEFORE INSERT ON webhook_deliveries"
               " FOR EACH ROW EXECUTE FUNCTION refuse_delivery()")
    else:
        sql = "DROP TRIGGER refuse_delivery" + ("" if tier.on_sqlite() else
                                                " ON webhook_deliveries")
    tier.meta_exec(srv.data_dir, sql)


def refusals(srv):
    """How many times the region logged a refused delivery."""
    with open(srv.log_path, "rb") as f:
        return f.read().decode(errors="replace").count("refused by the test")


def crash_and_restart(srv, receiver, hook, n_pending):
    """With the receiver down, waits until hook's n_pending deliveries were tried once (so the
    region is past the effects and their queueing), kill -9s the region, brings the receiver
    back and restarts the region."""
    def tried():
        recs = records(srv, hook)
        return (len(recs) == n_pending and
                all(r["state"] == "pending" and r["attempts"] >= 1 for r in recs) and recs)
    wait_until(tried, timeout_s=60, what="%d deliveries tried while the receiver is down"
               % n_pending)
    kill = getattr(srv, "kill9", None) or srv.kill
    kill()
    receiver.start()
    srv.start()


def test_replicated_effects_wait_for_their_deliveries(geo, receiver):
    a, b = geo(2, extra_args=BACKOFF)
    hook = "refusb%s" % secrets.token_hex(3)
    b.cli("webhook", "create", hook, "--location", b.name, "--uri", receiver.url,
          "--actions", "push,delete")
    wait_for(lambda: hook in {w["name"] for w in a.api("GET", "webhooks").json()}, 60,
             "the webhook to reach the other region")
    repo = "e2e/refused/%s" % secrets.token_hex(4)
    receiver.stop()   # the deliveries stay pending until after the kill
    refuse_deliveries(b, True)
    img1 = a.oci().push_image(repo, "v1")
    wait_for(lambda: refusals(b) >= 2, 60, "b to try to show the push, twice, refused")
    refuse_deliveries(b, False)
    wait_for(lambda: len(records(b, hook)) == 1, 60,
             "the push to take effect in b once its delivery can be written")

    n = refusals(b)
    refuse_deliveries(b, True)
    r = a.oci().delete("/v2/%s/manifests/v1" % repo)
    assert r.status_code == 202, (r.status_code, r.text)
    wait_for(lambda: refusals(b) >= n + 2, 60, "b to try to apply the delete, twice, refused")
    refuse_deliveries(b, False)
    crash_and_restart(b, receiver, hook, 2)
    img2 = a.oci().push_image(repo, "v2")   # a last one: a duplicate would arrive before it
    want = sorted([("push", img1.digest, "v1", "REPLICATE"),
                   ("delete", img1.digest, "v1", "REPLICATE"),
                   ("push", img2.digest, "v2", "REPLICATE")])
    wait_for(lambda: len(receiver.summary()) >= 3, 60, "the delete and the last push in b")
    assert receiver.summary() == want
    assert len(set(receiver.ids())) == 3
    assert len(records(b, hook)) == 3
    assert records(a, hook) == []   # recorded where the webhook is located only


def test_retention_and_collector_deletes_wait_for_their_deliveries(server_factory, receiver):
    srv = server_factory("--region", REGION, *BACKOFF)
    hook = "refusr%s" % secrets.token_hex(3)
    repo = "e2e/refused/%s" % secrets.token_hex(4)
    r = api(srv, "POST", "webhooks", json={"name": hook, "location": REGION, "uri": receiver.url,
                                           "actions": ["delete"], "scope": repo})
    assert r.status_code == 201, r.text
    old = srv.oci().push_image(repo, tag="v1", layers=1)
    srv.oci().push_image(repo, tag="v2", layers=1)
    r = api(srv, "POST", "retention", json={"pattern": repo, "keepNewest": 1, "untaggedAfterS": 1})
    assert r.status_code == 200, r.text

    receiver.stop()   # the deliveries stay pending until after the kill
    refuse_deliveries(srv, True)
    r = api(srv, "POST", "retention/run")
    assert r.status_code == 200 and r.json()["deleted"] == 0, r.text  # refused: v1 stays
    assert srv.oci().get("/v2/%s/manifests/v1" % repo).status_code == 200
    refuse_deliveries(srv, False)
    r = api(srv, "POST", "retention/run")
    assert r.status_code == 200 and r.json()["deleted"] == 1, r.text

    refuse_deliveries(srv, True)
    n = refusals(srv)

    def refused():   # v1's manifest, untagged now, is due once past its 1 s grace
        r = api(srv, "POST", "gc/run")
        assert r.status_code == 200 and r.json()["manifests_deleted"] == 0, r.text
        return refusals(srv) > n
    wait_until(refused, timeout_s=30, what="the collector's delete refused")
    refuse_deliveries(srv, False)

    def collected():
        r = api(srv, "POST", "gc/run")
        assert r.status_code == 200, r.text
        return r.json()["manifests_deleted"] == 1
    wait_until(collected, timeout_s=30, what="the untagged manifest collected")
    crash_and_restart(srv, receiver, hook, 2)
    # more passes delete nothing and announce nothing; a ping then marks the end of the queue
    assert api(srv, "POST", "retention/run").json()["deleted"] == 0
    assert api(srv, "POST", "gc/run").json()["manifests_deleted"] == 0
    assert api(srv, "POST", "webhooks/%s/ping" % hook).status_code == 202
    wait_until(lambda: len(receiver.ids()) >= 3, timeout_s=30, what="the deliveries and a ping")
    assert receiver.summary() == sorted([("delete", old.digest, "v1", "RETENTION"),
                                         ("delete", old.digest, "", "GC")])
    assert len(set(receiver.ids())) == 3
    assert len(records(srv, hook)) == 3


def test_a_client_push_and_delete_wait_for_their_deliveries(server_factory, receiver):
    """A client's push or delete whose delivery cannot be written is refused whole (5xx,
    nothing changed: the client retries it); before, it was answered 201/202 and its delivery
    was only logged."""
    srv = server_factory("--region", REGION, *BACKOFF)
    hook = "refusc%s" % secrets.token_hex(3)
    repo = "e2e/refused/%s" % secrets.token_hex(4)
    r = api(srv, "POST", "webhooks", json={"name": hook, "location": REGION, "uri": receiver.url,
                                           "actions": ["push", "delete"], "scope": repo})
    assert r.status_code == 201, r.text
    oci = srv.oci()
    img = oci.push_image(repo, tag="v1", layers=1)
    refuse_deliveries(srv, True)
    r = oci.put_manifest(repo, "v2", img.body, img.media_type)
    assert r.status_code >= 500, (r.status_code, r.text)
    assert oci.get_manifest(repo, "v2").status_code == 404
    r = oci.delete("/v2/%s/manifests/v1" % repo)
    assert r.status_code >= 500, (r.status_code, r.text)
    assert oci.get_manifest(repo, "v1").status_code == 200
    refuse_deliveries(srv, False)
    assert oci.put_manifest(repo, "v2", img.body, img.media_type).status_code == 201
    assert oci.delete("/v2/%s/manifests/v1" % repo).status_code == 202
    wait_until(lambda: len(receiver.summary()) >= 3, timeout_s=30, what="three deliveries")
    assert receiver.summary() == sorted([("push", img.digest, "v1", "PUT"),
                                         ("push", img.digest, "v2", "PUT"),
                                         ("delete", img.digest, "v1", "DELETE")])
    assert len(records(srv, hook)) == 3


FAST_COMPACTION = ["--compact-interval", "1s", "--tombstone-retention", "1s",
                   "--compact-horizon", "12s"]


def test_effects_a_region_gets_only_by_anti_entropy_fire_once(geo, receiver):
    """b is away past the compaction horizon while a deletes a manifest (with its tag) and
    tags a manifest b shows: b never sees those events (a compacted them) and gets the changes
    from a's tables (the snapshot, anti-entropy). Each fires in b what the replicated events
    would have, exactly once. Before 6 December a merged state fired nothing: the manifest and
    its tag vanished from b silently, and the new tag was never announced there."""
    a, b = geo(2, extra_args=BACKOFF + FAST_COMPACTION)
    repo = "e2e/repair/%s" % secrets.token_hex(4)
    hook = "repair%s" % secrets.token_hex(3)
    b.cli("webhook", "create", hook, "--location", b.name, "--uri", receiver.url,
          "--actions", "push,delete", "--scope", repo)
    wait_for(lambda: hook in {w["name"] for w in a.api("GET", "webhooks").json()}, 60,
             "the webhook to reach a")
    keep = a.oci().push_image(repo, "keep")
    doomed = a.oci().push_image(repo, "doomed")
    wait_for(lambda: len(receiver.summary()) >= 2, 90, "both pushes to fire in b")

    b.terminate()
    b.wait()
    r = a.oci().put_manifest(repo, "again", keep.body, keep.media_type)
    assert r.status_code == 201, (r.status_code, r.text)
    r = a.oci().delete("/v2/%s/manifests/%s" % (repo, doomed.digest))
    assert r.status_code == 202, (r.status_code, r.text)
    a.oci().push_image("e2e/repair-other/%s" % secrets.token_hex(4), "last")  # a's newest event

    def compacted_past_the_delete():   # b is silent past the horizon: a compacts without it
        assert a.api("POST", "compaction/run").status_code == 200
        s = a.api("GET", "compaction").json()
        return s["log_horizon"].get(a.name, 0) > 0 and s["log_events"] <= 2 and s
    wait_for(compacted_past_the_delete, 60, "a to compact its log past the delete",
             interval_s=0.5)

    b.start()
    want = sorted([("push", keep.digest, "keep", "REPLICATE"),
                   ("push", doomed.digest, "doomed", "REPLICATE"),
                   ("push", keep.digest, "again", "REPLICATE"),
                   ("delete", doomed.digest, "doomed", "REPLICATE"),
                   ("delete", doomed.digest, "", "REPLICATE")])
    wait_for(lambda: len(receiver.summary()) >= len(want), 90,
             lambda: "the repaired delete and tag to fire in b; got %s" % receiver.summary())
    assert "caught up from a snapshot" in b.log_text(), b.log_tail()
    assert b.oci().get_manifest(repo, doomed.digest).status_code == 404
    assert b.oci().get_manifest(repo, "again").status_code == 200
    # a last push through the log: a duplicate of anything above (a later anti-entropy
    # pass, the snapshot and a repair both merging the delete) would have arrived by then
    marker = a.oci().push_image(repo, "marker")
    want.append(("push", marker.digest, "marker", "REPLICATE"))
    wait_for(lambda: len(receiver.summary()) >= len(want), 90, "the last push to fire in b")
    assert receiver.summary() == sorted(want)
    assert len(set(receiver.ids())) == len(want)
