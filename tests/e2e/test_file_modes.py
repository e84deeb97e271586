"""Issue 9 item 6: what the server stores is readable by the server's user only.

The server is started with umask 000 (the most permissive a service manager could hand it):
the data directory and every directory under it must still be 0700, and meta.db, its -wal and
-shm, blobs, upload files and keys 0600. A data directory left 0755/0644 by an older version is
made private on start. Webhook secret headers are not stored in clear: not in a new database,
and not after starting on a database that an older version wrote them into in clear (the
migration seals them); the receiver still gets the header. The same for a webhook's uri, which
may hold a secret of its own (userinfo, a query token).
"""

import base64
import os
import secrets
import sqlite3
import stat

import pytest
import requests

import pg_metastore
from conftest import random_bytes, unique_name, wait_until
from test_webhooks import Receiver

# The files looked at are the SQLite database's (meta.db and its WAL).
pytestmark = pytest.mark.skipif(pg_metastore.is_pg(),
                                reason="reads the SQLite database's files")

REGION = "eastus"


@pytest.fixture
def receiver():
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def start_with_umask(server_factory, mask, *args, data_dir=None):
    old = os.umask(mask)
    try:
        return server_factory("--region", REGION, *args, data_dir=data_dir)
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def all_paths(root):
    for d, dirs, files in os.walk(root):
        yield d, True
        for f in files:
            yield os.path.join(d, f), False


def create_webhook(url, name, uri, headers):
    r = requests.post(url + "/_meridian/v1/webhooks", timeout=30,
                      json={"name": name, "location": REGION, "uri": uri, "actions": ["push"],
                            "customHeaders": headers})
    assert r.status_code == 201, r.text
    return r.json()


def db_bytes(data_dir):
    out = b""
    for suffix in ("", "-wal", "-shm"):
        p = os.path.join(data_dir, "meta.db" + suffix)
        if os.path.exists(p):
            with open(p, "rb") as f:
                out += f.read()
    return out


def ping_header(url, name, receiver, header):
    r = requests.post(url + "/_meridian/v1/webhooks/%s/ping" % name, timeout=30)
    assert r.status_code == 202, r.text
    got = wait_until(lambda: receiver.events(name, "ping"), what="the ping at the receiver")
    return got[-1]["headers"].get(header.lower())


def test_every_file_is_private_whatever_the_umask(server_factory, receiver):
    srv = start_with_umask(server_factory, 0o000)
    oci = srv.oci()
    repo = "modes/" + unique_name("r")
    oci.push_image(repo, tag="v1")
    oci.start_upload(repo)  # left open: its file stays in uploads/
    create_webhook(srv.url, "modeshook1", receiver.url, {"X-Token": "t"})
    data = srv.data_dir
    for suffix in ("-wal", "-shm"):
        assert os.path.exists(os.path.join(data, "meta.db" + suffix))
    assert os.listdir(os.path.join(data, "uploads"))
    n_files = 0
    for path, is_dir in all_paths(data):
        want = 0o700 if is_dir else 0o600
        assert mode(path) == want, "%s is %o, want %o" % (path, mode(path), want)
        n_files += not is_dir
    # the walk saw the database, its WAL and shm, blobs, the upload file and the keys
    for name in ("meta.db", "meta.db-wal", "meta.db-shm", "secrets.key"):
        assert mode(os.path.join(data, name)) == 0o600
    assert n_files >= 9


def test_existing_data_dir_is_made_private(server_factory, tmp_path):
    data = str(tmp_path / "data")
    srv = start_with_umask(server_factory, 0o022, data_dir=data)
    srv.oci().push_blob("modes/old", random_bytes(100))
    srv.stop()
    # what an older version left: 0755 directories, 0644 files
    for path, is_dir in all_paths(data):
        os.chmod(path, 0o755 if is_dir else 0o644)
    srv.start()
    assert mode(data) == 0o700
    for sub in ("blobs", "blobs/sha256", "uploads", "tmp", "quarantine"):
        assert mode(os.path.join(data, sub)) == 0o700, sub
    for name in ("meta.db", "meta.db-wal", "meta.db-shm", "secrets.key"):
        assert mode(os.path.join(data, name)) == 0o600, name


def test_webhook_secret_is_not_stored_in_clear(server_factory, receiver):
    srv = start_with_umask(server_factory, 0o022)
    token = "Bearer " + secrets.token_hex(16)
    w = create_webhook(srv.url, "sealhook1", receiver.url, {"Authorization": token})
    assert w["customHeaders"] == {"Authorization": "***"}
    assert token.encode() not in db_bytes(srv.data_dir)
    assert ping_header(srv.url, "sealhook1", receiver, "Authorization") == token
    # and after a restart (read back from the database, not from memory)
    srv.restart()
    assert token.encode() not in db_bytes(srv.data_dir)
    receiver.requests.clear()
    assert ping_header(srv.url, "sealhook1", receiver, "Authorization") == token


def test_clear_secrets_written_by_an_older_version_are_sealed(server_factory, receiver):
    srv = start_with_umask(server_factory, 0o022)
    create_webhook(srv.url, "oldhook01", receiver.url, {"Authorization": "placeholder"})
    srv.stop()
    # What a version without sealing wrote: the definition and its event in clear.
    token = "Bearer " + secrets.token_hex(16)
    db = sqlite3.connect(os.path.join(srv.data_dir, "meta.db"))
    value = ('{"name":"oldhook01","location":"%s","uri":"%s","actions":["push"],"scope":"*",'
             '"enabled":true,"customHeaders":{"Authorization":"%s"}}'
             % (REGION, receiver.url, token))
    with db:
        assert db.execute("UPDATE objects SET value = ? WHERE kind = 'webhook'",
                          (value,)).rowcount == 1
        n = db.execute("UPDATE events SET payload = ? WHERE kind = 'object_put'"
                       " AND payload LIKE '{\"kind\":\"webhook\"%'",
                       ('{"kind":"webhook","value":%s}' % value,)).rowcount
        assert n == 1
        # ... and no mark of a sealing pass (a version without sealing never wrote one)
        db.execute("DELETE FROM auth_meta WHERE k IN ('sealed_through_seq',"
                   " 'sealed_v2_through_seq')")
    db.close()
    assert token.encode() in db_bytes(srv.data_dir)

    srv.start()
    assert token.encode() not in db_bytes(srv.data_dir)
    db = sqlite3.connect(os.path.join(srv.data_dir, "meta.db"))
    stored = db.execute("SELECT value FROM objects WHERE kind = 'webhook'").fetchone()[0]
    db.close()
    assert '"Authorization":"enc:v1:' in stored
    assert ping_header(srv.url, "oldhook01", receiver, "Authorization") == token
    r = requests.get(srv.url + "/_meridian/v1/webhooks/oldhook01", timeout=30)
    assert r.json()["customHeaders"] == {"Authorization": "***"}


def test_a_uri_in_clear_from_the_release_before_is_sealed_and_still_delivers(server_factory,
                                                                             receiver):
    """The release before sealed header values only: its database holds each webhook's uri
    in clear, in the definition and in its event, under the mark of a sealing pass that
    covered those events ('sealed_through_seq'). Started on it, this release seals the uri
    too (the old mark does not say the uri is sealed: the log is read once more), the
    webhook still delivers to the real URL, and the API shows it redacted."""
    srv = start_with_umask(server_factory, 0o022)
    create_webhook(srv.url, "olduri01", receiver.url, {})
    srv.stop()
    user_pw = "hookuser:" + secrets.token_hex(8)
    q_token = secrets.token_hex(12)
    uri = "http://%s@127.0.0.1:%d/hook?token=%s" % (user_pw, receiver.port, q_token)
    db = sqlite3.connect(os.path.join(srv.data_dir, "meta.db"))
    value = ('{"name":"olduri01","location":"%s","uri":"%s","actions":["push"],"scope":"*",'
             '"enabled":true,"customHeaders":{}}' % (REGION, uri))
    with db:
        assert db.execute("UPDATE objects SET value = ? WHERE kind = 'webhook'",
                          (value,)).rowcount == 1
        assert db.execute("UPDATE events SET payload = ? WHERE kind = 'object_put'"
                          " AND payload LIKE '{\"kind\":\"webhook\"%'",
                          ('{"kind":"webhook","value":%s}' % value,)).rowcount == 1
        db.execute("DELETE FROM auth_meta WHERE k = 'sealed_v2_through_seq'")
        db.execute("INSERT OR REPLACE INTO auth_meta(k, v) VALUES ('sealed_through_seq',"
                   " (SELECT max(seq) FROM events))")
    db.close()
    assert q_token.encode() in db_bytes(srv.data_dir)

    srv.start()
    for secret in (q_token, user_pw):
        assert secret.encode() not in db_bytes(srv.data_dir)
    db = sqlite3.connect(os.path.join(srv.data_dir, "meta.db"))
    stored = db.execute("SELECT value FROM objects WHERE kind = 'webhook'").fetchone()[0]
    marks = dict(db.execute("SELECT k, v FROM auth_meta WHERE k LIKE 'sealed%'").fetchall())
    db.close()
    assert '"uri":"enc:v1:' in stored, stored
    assert list(marks) == ["sealed_v2_through_seq"], marks
    r = requests.post(srv.url + "/_meridian/v1/webhooks/olduri01/ping", timeout=30)
    assert r.status_code == 202, r.text
    got = wait_until(lambda: receiver.events("olduri01", "ping"), what="the ping at the receiver")
    assert got[-1]["path"] == "/hook?token=" + q_token
    assert got[-1]["headers"]["authorization"] == \
        "Basic " + base64.b64encode(user_pw.encode()).decode()
    r = requests.get(srv.url + "/_meridian/v1/webhooks/olduri01", timeout=30)
    assert r.json()["uri"] == "http://***@127.0.0.1:%d/hook?token=***" % receiver.port
    # a second start on the migrated data is as good as the first
    srv.restart()
    assert q_token.encode() not in db_bytes(srv.data_dir)
    receiver.requests.clear()
    assert ping_header(srv.url, "olduri01", receiver, "Authorization").startswith("Basic ")
