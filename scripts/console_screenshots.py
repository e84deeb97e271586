#!/usr/bin/env python3
"""Takes the screenshots of docs/console.md: starts three regions on loopback (placed at
Frankfurt, Virginia and Singapore, as tests/e2e/test_console.py does) and one node with access
control on, fills them with a few images, a signature and a webhook, and photographs each
console page with headless chromium into docs/console/*.png.

usage: scripts/console_screenshots.py [OUT_DIR]      (default docs/console; needs build/)
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import requests  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from conftest import digest_of  # noqa: E402
from regions import MIB, Cluster, wait_for  # noqa: E402
from test_console import LOCATIONS, push_image  # noqa: E402

BIN = os.path.join(ROOT, "build", "meridian")


def push_signature(region, repo, subject_digest, subject_size):
    """An artifact whose subject is the image: what `cosign sign` leaves (a referrer)."""
    s = requests.Session()
    empty, sig = b"{}", b"signature-bytes"
    for blob in (empty, sig):
        r = s.post(region.url + "/v2/%s/blobs/uploads/?digest=%s" % (repo, digest_of(blob)),
                   data=blob, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
    m = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(empty),
                   "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": digest_of(sig), "size": len(sig)}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": subject_digest, "size": subject_size}}).encode()
    r = s.put(region.url + "/v2/%s/manifests/%s" % (repo, digest_of(m)), data=m,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1366,860",
              "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def shot(driver, out, name, ready_css, timeout_s=20):
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ready_css), timeout_s, ready_css)
    time.sleep(0.3)  # let the last redraw land in the picture
    path = os.path.join(out, name + ".png")
    driver.save_screenshot(path)
    print("wrote", os.path.relpath(path, ROOT))


def main(out):
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="console-shots-")
    cluster = Cluster(BIN, tmp, region_args=lambda n: ["--region-location", LOCATIONS[n]])
    auth_node = None
    driver = browser()
    try:
        cluster.start(3)
        r1, r2, r3 = cluster
        requests.post(r1.url + "/_meridian/v1/webhooks", json={
            "name": "deployeu", "location": "r1", "uri": "http://127.0.0.1:9/hook",
            "actions": ["push"], "scope": "golden/*"}).raise_for_status()
        for name in ("golden/base", "golden/python", "team/api", "team/web", "tools/ci"):
            push_image(r1, name, "1.0", 64 * 1024)
        digest = push_image(r1, "golden/base", "1.1", 64 * 1024)
        size = len(requests.get(r1.url + "/v2/golden/base/manifests/1.1", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json"}).content)
        push_signature(r1, "golden/base", digest, size)

        driver.get(r1.url + "/console/#/map")
        wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "g.region[data-state=Ready]"))
                 == 3, 30, "three Ready regions")
        driver.execute_script("document.querySelector('g.region[data-region=r3]')"
                              ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
        shot(driver, out, "map", "#region-details dl")

        driver.get(r1.url + "/console/#/repos")
        shot(driver, out, "repositories", "#repos-table tbody tr")

        # a version while r2 is still copying it through a slow link
        r1.proxy.bandwidth(256 * 1024, src=r2.host)
        push_image(r1, "golden/base", "2.0", 2 * MIB)
        driver.get(r1.url + "/console/#/version?" + urllib.parse.urlencode(
            {"repo": "golden/base", "ref": "2.0"}))
        wait_for(lambda: driver.find_elements(
            By.CSS_SELECTOR, "#replication tr[data-region=r2][data-state=InProgress]"), 30,
            "r2 InProgress")
        shot(driver, out, "version-live", "#replication tr[data-region=r2]")
        r1.proxy.bandwidth(None, src=r2.host)
        driver.get(r1.url + "/console/#/version?" + urllib.parse.urlencode(
            {"repo": "golden/base", "ref": "1.1"}))
        shot(driver, out, "version", "#referrers table")

        # a version of an image definition: its publishing profile, latest per region,
        # end of life, and the admin's target-region editor with its confirmation
        requests.post(r1.url + "/_meridian/v1/image-definitions?repository=golden/workstation",
                      json={"description": "workstation", "os": "linux", "arch": "amd64",
                            "defaultTargetRegions": ["r1", "r2"]}).raise_for_status()
        push_image(r1, "golden/workstation", "1.4.0", 64 * 1024)
        requests.patch(r1.url + "/_meridian/v1/image-versions?repository=golden/workstation"
                       "&reference=1.4.0", json={"endOfLifeDate": "2027-03-31"}
                       ).raise_for_status()
        driver.get(r1.url + "/console/#/version?" + urllib.parse.urlencode(
            {"repo": "golden/workstation", "ref": "1.4.0"}))
        wait_for(lambda: driver.find_elements(
            By.CSS_SELECTOR, "#replication tr[data-region=r2][data-state=Completed]"), 30,
            "r2 Completed")
        wait_for(lambda: "this version" in driver.find_element(
            By.CSS_SELECTOR, "#targets td[data-latest=r2]").text, 30, "latest in r2")
        driver.execute_script("document.querySelector('#profile').scrollIntoView()")
        shot(driver, out, "version-profile", "#update-regions input[value=r3]")
        driver.find_element(By.CSS_SELECTOR, "#update-regions input[value=r3]").click()
        driver.find_element(By.CSS_SELECTOR, "#update-regions button[type=submit]").click()
        shot(driver, out, "version-update-regions", "dialog[data-confirm][open]")
        driver.find_element(By.CSS_SELECTOR, "dialog[data-confirm] button[value=cancel]").click()

        driver.get(r1.url + "/console/#/activity")
        shot(driver, out, "activity", "#storage-table")

        driver.get(r1.url + "/console/#/admin")
        shot(driver, out, "admin", "#admin-regions")

        cluster.partition([r2], [r1, r3])
        driver.get(r1.url + "/console/#/map")
        wait_for(lambda: driver.find_elements(
            By.CSS_SELECTOR, "g.region[data-region=r2][data-state=Unreachable]"), 45,
            "r2 Unreachable")
        shot(driver, out, "map-unreachable", "g.region[data-state=Unreachable]")
        cluster.heal()

        # the login page, on a node with access control on
        data = os.path.join(tmp, "auth")
        log = open(os.path.join(tmp, "auth.log"), "wb")
        auth_node = subprocess.Popen([BIN, "serve", "--auth", "--listen", "127.0.0.1:0",
                                      "--data", data, "--admin-password", "screenshots-pw"],
                                     stdout=log, stderr=subprocess.STDOUT)

        def port():
            with open(os.path.join(tmp, "auth.log")) as f:
                for line in f:
                    if "listening on http://" in line:
                        return line.split("listening on http://")[1].split()[0]
        addr = wait_for(port, 20, "the auth node listening")
        driver.get("http://%s/console/" % addr)
        shot(driver, out, "login", "#login")
    finally:
        driver.quit()
        if auth_node:
            auth_node.terminate()
            auth_node.wait(20)
        cluster.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "console"))
