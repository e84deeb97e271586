"""A manifest deleted in a region while that region copies its content (the delete event is
applied during the copy) is neither shown nor announced there when the copy ends: no
`Completed` status event (before: the region reported the deleted manifest replicated and
Completed, so after a later push of the same manifest the others saw it Completed there while
it held nothing) and no `replicated` log line. Harness: regions.py."""

import requests

from regions import (MIB, MT_OCI_MANIFEST, Pattern, manifest_digest, push_blob_stream,
                     push_image_with_layer, replication_states, unique_repo, wait_for)

pytest_plugins = ["geo_plugin"]


def test_a_manifest_deleted_while_it_is_copied_is_not_reported_completed(geo):
    cluster = geo(2)
    a, b = cluster
    repo = unique_repo("delete-during-copy")
    content = Pattern(seed=7, size=12 * MIB)
    a.proxy.bandwidth(2 * MIB, src=b.host)          # the copy into r2 takes about 6 s
    push_blob_stream(a, repo, content)
    digest, body, _cfg = push_image_with_layer(a, repo, "v1", content.digest, content.size)
    wait_for(lambda: a.proxy.stats(b.host)["down"] >= 2 * MIB, 60, "r2 to be copying")
    r = a.oci().delete("/v2/%s/manifests/%s" % (repo, digest))
    assert r.status_code == 202, (r.status_code, r.text)
    wait_for(lambda: requests.get("%s/_meridian/v1/image-versions" % b.url,
                                  params={"repository": repo, "reference": digest},
                                  timeout=10).status_code == 404, 30,
             "r2 to apply the delete (its event stream is not behind the copy)")
    dropped = "%s@%s: deleted in this region during its copy" % (repo, digest)
    replicated = "replicated %s@%s" % (repo, digest)
    wait_for(lambda: dropped in b.log_text() or replicated in b.log_text(), 60,
             "the copy into r2 to end")
    assert replicated not in b.log_text(), "r2 reported a deleted manifest replicated"

    # r1 pushes the same manifest again while r2 cannot pull: r2 holds nothing of it, and
    # r1 must not see it Completed there
    cluster.cut_link(b, a)
    assert a.oci().push_manifest(repo, "v2", body, MT_OCI_MANIFEST) == digest
    assert manifest_digest(b, repo, digest) is None
    agg, states = replication_states(a, repo, "v2")
    assert states.get("r2") != "Completed", (agg, states)
    assert agg != "Completed", (agg, states)
