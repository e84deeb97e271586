"""A region whose disk fills up while it replicates. r2's data directory (blobs and its SQLite
metadata) is a small private tmpfs (its own mount namespace: nothing is mounted on the host);
r1 has room. An image larger than r2's free space is pushed to r1: r2 cannot store it, so
neither region may show r2 Completed and `image-version wait --replicated` must not return 0,
while r2 stays up and keeps serving what it holds. Once the disk has room again (the tmpfs is
grown in place), r2 fetches the image by itself and the wait returns 0 with both regions
serving it byte for byte.

Skipped where the kernel does not let a user namespace mount a tmpfs, or on the S3 blob
store (blobs are not on the region's disk there)."""

import os
import shutil
import stat
import subprocess

import pytest
import requests

import tier
from regions import (HTTP_TIMEOUT_S, MANIFEST_ACCEPT, MIB, replication_states, unique_repo,
                     wait_for, wait_replicated_cli)

pytest_plugins = ["geo_plugin"]

pytestmark = pytest.mark.skipif(not tier.on_fs_blobs() or not tier.on_sqlite(),
                                reason="fills the region's own disk: blobs and metadata on it")

SMALL_MIB = 12


def tmpfs_wrapper(tmp_path, binary, size_mib):
    """A program that runs binary with its --data directory on a private tmpfs of size_mib
    (same process: unshare and sh exec into it, so the region's pid is the server's)."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("nsenter") is None:
        pytest.skip("unshare(1) / nsenter(1) are not installed")
    probe = subprocess.run([unshare, "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs %s"
                            % tmp_path], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs in a user namespace here: %s" % probe.stderr)
    wrapper = tmp_path / "meridian-on-tmpfs"
    wrapper.write_text(
        "#!/bin/sh\n"
        "data=; prev=\n"
        "for a in \"$@\"; do [ \"$prev\" = --data ] && data=$a; prev=$a; done\n"
        "mkdir -p \"$data\"\n"
        "exec %s -rm sh -c 'mount -t tmpfs -o size=%dm tmpfs \"$1\" && shift && exec \"$@\"' "
        "sh \"$data\" %s \"$@\"\n" % (unshare, size_mib, binary))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


def grow_disk(region, size_mib):
    subprocess.run(["nsenter", "-t", str(region.pid), "-m", "mount", "-o",
                    "remount,size=%dm" % size_mib, region.data_dir], check=True)


def serves(region, img):
    r = requests.get("%s/v2/%s/manifests/%s" % (region.url, img.repo, img.digest),
                     headers={"Accept": MANIFEST_ACCEPT}, timeout=HTTP_TIMEOUT_S)
    if r.status_code != 200 or r.content != img.body:
        return False
    for d, data in img.blobs.items():
        b = requests.get("%s/v2/%s/blobs/%s" % (region.url, img.repo, d), timeout=HTTP_TIMEOUT_S)
        if b.status_code != 200 or b.content != data:
            return False
    return True


def test_a_region_whose_disk_fills_during_replication_is_not_completed_and_catches_up(
        geo, geo_bin, tmp_path):
    wrapper = tmpfs_wrapper(tmp_path, geo_bin, SMALL_MIB)
    cluster = geo(2, region_bin=lambda n: wrapper if n == 2 else None)
    a, b = cluster
    repo = unique_repo("diskfull")
    small = a.oci().push_image(repo, "small", layers=1, layer_size=64 * 1024)
    p = wait_replicated_cli(a, repo, "small", timeout="1m", timeout_s=90)
    assert p.returncode == 0, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])

    big = a.oci().push_image(repo, "big", layers=2, layer_size=(SMALL_MIB // 2 + 2) * MIB)
    # r2 has tried and failed to store it: its log says so, or its status is not Completed
    wait_for(lambda: "failed to replicate %s@%s" % (repo, big.digest) in b.log_text() and
             "insufficient storage" in b.log_text(), 60,
             "r2 to run out of space fetching the big image")
    for region in (a, b):
        agg, states = replication_states(region, repo, "big")
        assert states.get("r2") != "Completed", (region.name, agg, states)
    p = wait_replicated_cli(a, repo, "big", timeout="3s", timeout_s=60)
    assert p.returncode in (1, 2), (p.returncode, p.stdout[-1000:], p.stderr[-1000:])
    assert not serves(b, big)
    # r2 is up and serves what it held
    assert requests.get(b.url + "/v2/", timeout=HTTP_TIMEOUT_S).status_code == 200
    assert serves(b, small)
    assert b.is_running()

    grow_disk(b, 256)
    p = wait_replicated_cli(a, repo, "big", timeout="2m", timeout_s=150)
    assert p.returncode == 0, (p.returncode, p.stdout[-1000:], p.stderr[-1000:])
    for region in (a, b):
        assert serves(region, big), region.name
        assert serves(region, small), region.name
    assert os.path.isdir(b.data_dir)
