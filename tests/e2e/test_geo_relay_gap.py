"""A region that reaches another region's events only through a relay that withholds some of
them (a residency policy keeps the relay out of a repository: it stores redacted stand-ins and
relays none of them, docs/governance.md "Residency") still gets everything else the relay
holds, and does not poll the relay in a loop while the withheld events are missing (before,
the first event after a withheld one stopped the whole batch, every later event of every
origin waited behind it, and the poll was repeated at once: hundreds of polls a second).

Harness: regions.py (r1..r3 behind their proxies)."""

import secrets
import time

from regions import unique_repo, wait_converged, wait_for

pytest_plugins = ["geo_plugin"]


def test_relay_through_a_region_residency_keeps_out_does_not_stall(geo):
    cluster = geo(3)
    r1, r2, r3 = cluster
    r = r1.api("PUT", "policies/residency/keep-out", json={"repositories": "eu-*",
                                                            "deniedRegions": ["r2"]})
    assert r.status_code in (200, 201), (r.status_code, r.text)
    for reg in cluster:
        wait_for(lambda reg=reg: reg.api("GET", "policies/residency/keep-out").status_code
                 == 200, 30, "the policy at %s" % reg.name)
    cluster.cut_link(r3, r1)                     # r3 reads r1's events through r2 only
    r1.oci().push_image("eu-%s" % secrets.token_hex(3), "v1")   # withheld by r2 from r3
    plain = unique_repo("relayed")
    img1 = r1.oci().push_image(plain, "from-r1")
    img2 = r2.oci().push_image(plain, "from-r2")
    wait_converged([r2, r3], repos=[plain], timeout_s=60,
                   expect={plain: {"from-r1": img1.digest, "from-r2": img2.digest}},
                   what="r1's and r2's plain pushes to reach r3 through r2")

    # r1's events after the withheld ones still wait for r1 (cut off): r3 asks r2 for them
    # again now and then, not in a loop
    before = r2.proxy.stats(r3.host)
    t0 = time.monotonic()
    time.sleep(3)  # a measurement window: count r3's requests to r2 in it
    after = r2.proxy.stats(r3.host)
    took = time.monotonic() - t0
    polls = after["connections"] - before["connections"]
    down = after["down"] - before["down"]
    print("r3 -> r2 in %.1fs: %d connections, %d bytes down" % (took, polls, down))
    assert polls <= 3 * took + 5 and down < 200 * 1024, (polls, down, took)

    cluster.heal()
    wait_converged(cluster, repos=[plain], timeout_s=60,
                   expect={plain: {"from-r1": img1.digest, "from-r2": img2.digest}})
