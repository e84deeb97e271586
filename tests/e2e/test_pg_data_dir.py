"""A server whose metadata is in PostgreSQL (MERIDIAN_TEST_METASTORE=pg only) keeps none in
its data directory: no meta.db, not even an empty one, which would say the metadata is
there (before, every start on PostgreSQL created DATA/meta.db of 0 bytes)."""

import os

import pytest

import pg_metastore

pytestmark = pytest.mark.skipif(not pg_metastore.is_pg(),
                                reason="needs the servers on PostgreSQL (MERIDIAN_TEST_METASTORE=pg)")


def test_no_meta_db_in_the_data_directory(registry, oci, repo):
    oci.push_image(repo, "v1")
    assert os.path.isfile(os.path.join(registry.data_dir, "secrets.key"))
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        assert not os.path.exists(os.path.join(registry.data_dir, name)), name
