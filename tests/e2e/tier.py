"""What a test looks at behind a server's API, on the tier the suite runs on.

The e2e suite runs on the embedded default (SQLite in DATA/meta.db, blobs under DATA/blobs)
and on the scale-out tier (MERIDIAN_TEST_METASTORE=pg: metadata in PostgreSQL,
MERIDIAN_TEST_BLOBSTORE=s3: blobs in S3). A test that checks what is stored asks here, so
it checks the same thing on both instead of finding nothing where the tier keeps nothing.

  meta_rows(data_dir, sql, *args)  rows of a read-only query on the server's metadata
  meta_bytes(data_dir)             the metadata's size on disk (files, or the database)
  stored_blobs(data_dir, hex)      where blob `hex` is stored: file paths or "s3:KEY"
  blob_store_entries(data_dir)     everything in the blob area, with names relative to it
  upload_entries(data_dir)         the upload sessions' files or objects
  upload_sessions(data_dir)        the ids of the sessions those belong to
  stored_size(loc), stored_bytes(loc)  of one of those
  put_stray_blob(data_dir, digest, data)  a blob stored behind the server's back
  meta_exec(data_dir, sql)         statements run on the metadata behind the server's back
                                   (a fault: a table made unreadable, a counter moved)
  meta_copy(data_dir), meta_restore(data_dir)  a backup of the metadata taken aside, put back
                                   (the server stopped; on SQLite the data directory's copy
                                   holds it: nothing to do)
  on_sqlite(), on_fs_blobs()       which store the tier has (for skip markers)
  server_args(data_dir, extra_args) the `serve` flags that put a server on the tier; every
                                    launcher of the suite adds them
"""

import os
import sqlite3

import pg_metastore
import s3_blobstore

S3 = "s3:"


def on_sqlite():
    return not pg_metastore.is_pg()


def on_fs_blobs():
    return not s3_blobstore.is_on()


def server_args(data_dir, extra_args=()):
    """The flags that put the server on data_dir on the tier (none on the embedded default,
    and none for a store the test chose itself with --metastore or --blobstore)."""
    extra = [str(a) for a in extra_args]
    blobs = [] if "--volume" in extra else s3_blobstore.args_for(data_dir, extra)
    # (--volume: the test chose its blob store, directories on volumes, test_volumes.py)
    return pg_metastore.metastore_args(data_dir, extra) + blobs


def meta_rows(data_dir, sql, *args):
    """Rows of a read-only query (`?` placeholders) on the metadata of the server on
    data_dir: its meta.db (WAL: readers see the last commit) or its PostgreSQL database."""
    if pg_metastore.is_pg():
        return pg_metastore.query_rows(data_dir, sql, *args)
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(str(data_dir), "meta.db"), uri=True,
                         timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def meta_exec(data_dir, sql):
    """Runs sql (statements separated by `;`, no placeholders) on the metadata of the server
    on data_dir in one transaction, as another client of its store would."""
    if pg_metastore.is_pg():
        pg_metastore.query_rows(data_dir, sql)  # one psql -c: one transaction
        return
    db = sqlite3.connect(os.path.join(str(data_dir), "meta.db"), timeout=30,
                         isolation_level=None)
    try:
        db.executescript("BEGIN IMMEDIATE; %s; COMMIT;" % sql)
    finally:
        db.close()


def meta_copy(data_dir):
    """Takes a copy of the metadata where it is not in the data directory (PostgreSQL)."""
    if pg_metastore.is_pg():
        pg_metastore.copy_database(data_dir)


def meta_restore(data_dir):
    """Puts the copy of meta_copy back (PostgreSQL); the server is stopped."""
    if pg_metastore.is_pg():
        pg_metastore.restore_database(data_dir)


def meta_bytes(data_dir):
    """The size of the metadata: meta.db and its WAL, or the PostgreSQL database."""
    if pg_metastore.is_pg():
        return pg_metastore.query_rows(data_dir,
                                       "SELECT pg_database_size(current_database())")[0][0]
    return sum(os.path.getsize(os.path.join(str(data_dir), f)) for f in ("meta.db", "meta.db-wal")
               if os.path.exists(os.path.join(str(data_dir), f)))


def _walk(root):
    for d, _dirs, files in os.walk(root):
        for f in files:
            yield os.path.join(d, f)


def _s3_prefix(data_dir, sub):
    return "%s/%s/" % (s3_blobstore.prefix_of(str(data_dir)), sub)


def stored_blobs(data_dir, hexdigest):
    """Where the blob of hex digest `hexdigest` is stored (any algorithm): paths under
    DATA/blobs, or "s3:KEY" of the objects under the server's prefix."""
    if s3_blobstore.is_on():
        return [S3 + k for k in s3_blobstore.list_keys(_s3_prefix(data_dir, "blobs"))
                if k.rsplit("/", 1)[-1] == hexdigest]
    return [p for p in _walk(os.path.join(str(data_dir), "blobs"))
            if os.path.basename(p) == hexdigest]


def blob_store_entries(data_dir):
    """[(relative name, location)] of everything in the blob area: on the filesystem store
    "<alg>/<hex[:2]>/<hex>" under DATA/blobs, on S3 "<alg>/<hex>" under the prefix's blobs/."""
    if s3_blobstore.is_on():
        pre = _s3_prefix(data_dir, "blobs")
        return [(k[len(pre):], S3 + k) for k in s3_blobstore.list_keys(pre)]
    root = os.path.join(str(data_dir), "blobs")
    return [(os.path.relpath(p, root), p) for p in _walk(root)]


def upload_entries(data_dir):
    """The upload sessions' storage: files under DATA/uploads, or "s3:KEY" of the objects
    under the prefix's uploads/ (uploads/<id>/.session and its chunks)."""
    if s3_blobstore.is_on():
        return [S3 + k for k in s3_blobstore.list_keys(_s3_prefix(data_dir, "uploads"))]
    return list(_walk(os.path.join(str(data_dir), "uploads")))


def upload_sessions(data_dir):
    """Sorted ids of the upload sessions that have storage: the files under DATA/uploads
    are named by their session, the objects in S3 are under uploads/<id>/."""
    if s3_blobstore.is_on():
        return sorted({loc.rsplit("/", 2)[-2] for loc in upload_entries(data_dir)})
    return sorted(os.path.basename(p) for p in upload_entries(data_dir))


def put_stray_blob(data_dir, digest, data):
    """Stores `data` as blob `digest` ("alg:hex") behind the server's back, as a crash after
    a purge's commit leaves it: a file under DATA/blobs/<alg>/<hex[:2]>/, or the object
    <alg>/<hex> under the prefix's blobs/."""
    alg, hexd = digest.split(":")
    if s3_blobstore.is_on():
        key = "%s%s/%s" % (_s3_prefix(data_dir, "blobs"), alg, hexd)
        status, body = s3_blobstore.request("PUT", key, data)
        assert status == 200, (key, status, body[:200])
        return
    folder = os.path.join(str(data_dir), "blobs", alg, hexd[:2])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hexd), "wb") as f:
        f.write(data)


def stored_bytes(loc):
    if loc.startswith(S3):
        return s3_blobstore.get_object(loc[len(S3):])
    with open(loc, "rb") as f:
        return f.read()


def stored_size(loc):
    if loc.startswith(S3):
        key = loc[len(S3):]
        return dict(s3_blobstore.list_objects(key)).get(key, 0)
    return os.path.getsize(loc)
