"""Runs the e2e servers on PostgreSQL when env MERIDIAN_TEST_METASTORE=pg.

metastore_args(data_dir) gives the `serve` flags that put a server's metadata in its own
database of one PostgreSQL cluster, started once per pytest process with pg-up.sh and
stopped (and removed) at exit. The database is named after the data directory, so a
server restarted on the same data directory finds its metadata again. Without the
setting it gives no flags: the server keeps SQLite in its data directory.

Environment
  MERIDIAN_TEST_METASTORE  "pg" to use PostgreSQL; anything else (or unset): SQLite
  MERIDIAN_PG_TOOLS        directory of pg-up.sh / pg-down.sh (default: the shared
                           tools next to the worktrees, then /work/shared/tools)
"""

import atexit
import hashlib
import os
import socket
import subprocess
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))

_lock = threading.Lock()
_cluster = {}


def is_pg():
    return os.environ.get("MERIDIAN_TEST_METASTORE", "") == "pg"


def _tools_dir():
    candidates = [os.environ.get("MERIDIAN_PG_TOOLS", ""),
                  os.path.join(REPO_ROOT, "..", "shared", "tools"),
                  os.path.join(REPO_ROOT, "..", "..", "shared", "tools"),
                  "/work/shared/tools"]
    for d in candidates:
        if d and os.path.isfile(os.path.join(d, "pg-up.sh")):
            return os.path.abspath(d)
    raise RuntimeError("pg-up.sh not found (set MERIDIAN_PG_TOOLS)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_up(db):
    out = subprocess.run([os.path.join(_cluster["tools"], "pg-up.sh"), _cluster["dir"],
                          str(_cluster["port"]), db],
                         check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=120)
    return out.stdout.decode().strip().splitlines()[-1]


def _stop():
    if "dir" in _cluster:
        subprocess.run([os.path.join(_cluster["tools"], "pg-down.sh"), _cluster["dir"], "--rm"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def database_uri(data_dir):
    """The URI of data_dir's own database (created on first use; the cluster too)."""
    db = "m_" + hashlib.sha256(os.path.realpath(str(data_dir)).encode()).hexdigest()[:24]
    with _lock:
        if "dir" not in _cluster:
            _cluster["tools"] = _tools_dir()
            _cluster["dir"] = tempfile.mkdtemp(prefix="meridian-e2e-pg-")
            os.chmod(_cluster["dir"], 0o755)
            _cluster["port"] = _free_port()
            _cluster["dbs"] = {}
            atexit.register(_stop)
        if db not in _cluster["dbs"]:
            _cluster["dbs"][db] = _create(db) if _cluster["dbs"] else _pg_up(db)
        return _cluster["dbs"][db]


def _create(db):
    """A new database on the running cluster: one psql (pg-up.sh's checks cost a second
    per server under load, minutes over the whole suite)."""
    first = next(iter(_cluster["dbs"].values()))
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", first,
                    "-c", 'CREATE DATABASE "%s"' % db],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    return first.rsplit("/", 1)[0] + "/" + db


def _admin(sql):
    """One statement on the cluster's maintenance database (CREATE/DROP DATABASE)."""
    first = next(iter(_cluster["dbs"].values()))
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                    "-d", first.rsplit("/", 1)[0] + "/postgres", "-c", sql],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)


def copy_database(data_dir):
    """Copies data_dir's database aside, as a backup would (its server stopped: a template
    database takes no other session)."""
    db = database_uri(data_dir).rsplit("/", 1)[1]
    _admin('DROP DATABASE IF EXISTS "%s_copy"' % db)
    _admin('CREATE DATABASE "%s_copy" TEMPLATE "%s"' % (db, db))


def restore_database(data_dir):
    """Puts the copy of copy_database back in place of data_dir's database (its server
    stopped)."""
    db = database_uri(data_dir).rsplit("/", 1)[1]
    _admin('DROP DATABASE "%s" WITH (FORCE)' % db)
    _admin('CREATE DATABASE "%s" TEMPLATE "%s_copy"' % (db, db))


def metastore_args(data_dir, extra_args=()):
    if not is_pg() or any(a == "--metastore" or a.startswith("--metastore=")
                          for a in extra_args):
        return []
    return ["--metastore", database_uri(data_dir)]


def _literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, (int, float)):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def query_rows(data_dir, sql, *args):
    """Rows of a read-only query (`?` placeholders) on data_dir's PostgreSQL database, for
    tests that look at the metadata directly; values come back as ints where they read as
    ints, bytes for bytea, else text."""
    parts = sql.split("?")
    assert len(parts) == len(args) + 1, "one argument per ?"
    text = parts[0] + "".join(_literal(a) + p for a, p in zip(args, parts[1:]))
    out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                          "-d", database_uri(data_dir), "-c", text],
                         check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=60)
    rows = []
    for line in out.stdout.decode().splitlines():
        rows.append(tuple(_value(c) for c in line.split("\t")))
    return rows


def _value(c):
    if c.lstrip("-").isdigit():
        return int(c)
    if c.startswith("\\x") and all(ch in "0123456789abcdef" for ch in c[2:]):
        return bytes.fromhex(c[2:])  # bytea (psql prints it as hex)
    return c


def cluster_stop():
    """Stops the session's cluster (its data stays): the servers lose their database."""
    subprocess.run([os.path.join(_cluster["tools"], "pg-down.sh"), _cluster["dir"]],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def cluster_start():
    """Starts the session's cluster again on its port, with its databases (they are kept:
    one pg-up.sh starts the server, not one per database, which took minutes in a whole
    suite's session with hundreds of them)."""
    _pg_up(next(iter(_cluster["dbs"])))
