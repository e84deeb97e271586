"""The web console (/console/, docs/console.md) in a real headless browser (Debian's chromium
driven by selenium), and its static file server at the HTTP level.

- the static server: types, cache headers, the security headers, 304, and no file outside
  the console directory (traversal, encoded dots, hidden names, symlinks, unknown types);
- access: an anonymous visitor gets only the login page; a consumer logs in and is offered
  no admin action (not in the navigation, not on the admin page); an admin is;
- three regions (tests/e2e/regions.py) placed by --region-location on the world map; an image
  pushed to r1 shows r2's row going InProgress then Completed without a reload (ETag long
  poll of image-versions, the link to r2 slowed by its fault proxy); r2 cut off turns
  Unreachable on the map;
- first paint of the repository list with 1 000 repositories, measured in the browser;
- no JavaScript or console error in any of it (the browser's log is read after each test).
"""

import http.client
import json
import os
import shutil
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import digest_of
from regions import MIB, unique_repo, wait_for

pytest_plugins = ["geo_plugin"]

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONSOLE_BUILD = os.path.join(REPO_ROOT, "build", "console")
ADMIN_PW = "console-admin-pw-1"
CONSUMER_PW = "console-bob-pw-123"
LOCATIONS = {1: "50.11,8.68", 2: "38.90,-77.04", 3: "1.35,103.82"}  # Frankfurt, Virginia, Singapore
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


# -- the browser ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are needed (scripts/install-deps.sh)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1366,900", "--no-first-run", "--disable-extensions",
              "--disable-background-networking", "--proxy-server=direct://",
              "--proxy-bypass-list=*"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser):
    """The browser, with a clean session and its log read before and checked after the test:
    no JavaScript error, no console.error, no Content-Security-Policy violation."""
    browser.get("about:blank")
    browser.get_log("browser")
    yield browser
    errors = [e for e in browser.get_log("browser") if is_error(e)]
    assert not errors, errors


def is_error(entry):
    """A log entry that is a fault of the console: anything SEVERE except the browser's note
    of an HTTP error status (expected: the anonymous /v2/ probe answers 401, a version not yet
    in a region 404)."""
    if entry["level"] != "SEVERE":
        return False
    return not (entry.get("source") == "network" and "the server responded with a status of"
                in entry["message"])


def open_console(driver, base, hash_="#/map"):
    """A fresh load of the console at hash_, with no session."""
    driver.get(base + "/console/")
    driver.execute_script("sessionStorage.clear()")
    driver.get("about:blank")
    driver.get(base + "/console/" + hash_)


def find(driver, css):
    return driver.find_elements(By.CSS_SELECTOR, css)


def wait_css(driver, css, timeout_s=20, what=None, cond=None):
    def check():
        els = find(driver, css)
        return els if els and (cond is None or cond(els)) else None
    return wait_for(check, timeout_s, what or css, interval_s=0.05)


def texts(driver, css):
    """The text of every element matching css, read in one script (pages redraw live, so
    element handles can go stale between two calls)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", css)


def login(driver, base, user, password):
    open_console(driver, base, "#/login")
    wait_css(driver, "#login")
    find(driver, "#username")[0].send_keys(user)
    find(driver, "#password")[0].send_keys(password)
    find(driver, "#login button[type=submit]")[0].click()
    wait_css(driver, "#nav:not([hidden])", what="the navigation after login")


# -- servers ----------------------------------------------------------------------------------

@pytest.fixture
def console_dir(tmp_path):
    """A copy of the built console, with traps: a symlink to a file outside, a hidden file,
    a file of a type the console does not serve."""
    if not os.path.exists(os.path.join(CONSOLE_BUILD, "index.html")):
        pytest.fail("build/console is missing: run scripts/build.sh")
    d = tmp_path / "console"
    shutil.copytree(CONSOLE_BUILD, d)
    outside = tmp_path / "outside.txt"
    outside.write_text("outside secret\n")
    os.symlink(outside, d / "leak.txt")
    os.symlink(tmp_path, d / "up")
    (d / ".hidden.txt").write_text("hidden\n")
    (d / "data.bin").write_bytes(b"\0\1")
    return d


def raw_get(srv_url, target, headers=None, method="GET"):
    u = urllib.parse.urlsplit(srv_url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    c.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def test_static_server_types_caching_and_no_escape(server_factory, console_dir):
    srv = server_factory("--console-dir", str(console_dir))
    st, hd, _ = raw_get(srv.url, "/console")
    assert st == 301 and hd["location"] == "/console/", (st, hd)
    expect = {"/console/": "text/html; charset=utf-8",
              "/console/index.html": "text/html; charset=utf-8",
              "/console/app.css": "text/css; charset=utf-8",
              "/console/js/app.js": "text/javascript; charset=utf-8",
              "/console/vendor/countries-110m.json": "application/json",
              "/console/vendor/d3-geo.min.js": "text/javascript; charset=utf-8"}
    for path, ctype in expect.items():
        st, hd, body = raw_get(srv.url, path)
        assert st == 200 and hd["content-type"] == ctype, (path, st, hd)
        assert hd["x-content-type-options"] == "nosniff", hd
        assert "script-src 'self'" in hd["content-security-policy"], hd
        assert hd["x-frame-options"] == "DENY", hd
        assert body, path
        want_cache = "public, max-age=86400" if "/vendor/" in path else "no-cache"
        assert hd["cache-control"] == want_cache, (path, hd)
        st2, hd2, body2 = raw_get(srv.url, path, {"If-None-Match": hd["etag"]})
        assert st2 == 304 and body2 == b"", (path, st2)
    with open(os.path.join(console_dir, "index.html"), "rb") as f:
        assert raw_get(srv.url, "/console/")[2] == f.read()
    st, hd, body = raw_get(srv.url, "/console/app.css", method="HEAD")
    assert st == 200 and body == b"" and int(hd["content-length"]) > 0, (st, hd)
    for target in ("/console/../../etc/passwd", "/console/%2e%2e/%2e%2e/etc/passwd",
                   "/console/js/../../data/meta.db", "/console/..%2f..%2fetc%2fpasswd",
                   "/console/leak.txt", "/console/up/outside.txt", "/console/.hidden.txt",
                   "/console/data.bin", "/console//etc/passwd", "/console/js//app.js",
                   "/console/%00index.html", "/console/index.html%00.css", "/console/nothere.js",
                   "/console/js/", "/console/a\\..\\b.txt"):
        st, hd, body = raw_get(srv.url, target)
        assert st in (400, 404), (target, st, body[:200])
        assert b"secret" not in body and b"root:" not in body, (target, body[:200])
    st, _, _ = raw_get(srv.url, "/console/index.html", method="POST")
    assert st == 405, st


def test_without_a_console_directory_nothing_is_served(server_factory, tmp_path):
    srv = server_factory("--console-dir", str(tmp_path / "none"))
    assert raw_get(srv.url, "/console/")[0] == 404
    assert requests.get(srv.url + "/v2/").status_code == 200  # the registry still serves


# -- access -----------------------------------------------------------------------------------

def test_login_consumer_sees_no_admin_actions(server_factory, page):
    srv = server_factory("--auth", "--admin-password", ADMIN_PW)
    admin = ("admin", ADMIN_PW)
    r = requests.post(srv.url + "/_meridian/v1/users", auth=admin,
                      json={"name": "bob", "password": CONSUMER_PW})
    assert r.status_code == 201, r.text
    r = requests.post(srv.url + "/_meridian/v1/roles", auth=admin,
                      json={"subject": "bob", "role": "consumer", "pattern": "golden/*"})
    assert r.status_code in (200, 201), r.text
    r = requests.post(srv.url + "/_meridian/v1/image-definitions?repository=golden/app",
                      auth=admin, json={"description": "console test"})
    assert r.status_code == 201, r.text
    digest = push_image(srv, "golden/app", "1.0.0", 1024, auth=admin)
    push_image(srv, "secret/thing", "v1", 1024, auth=admin)

    # anonymous: the login page, whatever page is asked for
    for hash_ in ("#/repos", "#/admin"):
        open_console(page, srv.url, hash_)
        wait_css(page, "#login")
        assert not find(page, "#nav a") or not find(page, "#nav")[0].is_displayed()
        assert not find(page, "[data-remove], #add-region")

    # a wrong password is refused on the login page
    open_console(page, srv.url, "#/login")
    wait_css(page, "#login")
    find(page, "#username")[0].send_keys("bob")
    find(page, "#password")[0].send_keys("not-his-password")
    find(page, "#login button[type=submit]")[0].click()
    wait_css(page, "#login-error", cond=lambda e: "Wrong" in e[0].text)

    login(page, srv.url, "bob", CONSUMER_PW)
    links = [a.text for a in find(page, "#nav a")]
    assert links == ["Regions", "Repositories"], links
    assert "bob" in find(page, "#who")[0].text
    # read-only pages: the repositories he may pull, a version and its replication
    page.get(srv.url + "/console/#/repos")
    wait_css(page, "#repos-table tbody tr")
    assert texts(page, "#repos-table a") == ["golden/app"]
    page.get(srv.url + "/console/#/version?" + urllib.parse.urlencode(
        {"repo": "golden/app", "ref": "1.0.0"}))
    wait_css(page, "#replication tr[data-region=local][data-state=Completed]")
    wait_for(lambda: digest in "".join(texts(page, "#version-facts")), 10, "the digest shown")
    # the publishing profile, read-only: no update of the target regions for a consumer
    wait_css(page, "#targets td[data-latest=local]", cond=lambda e: "1.0.0" in e[0].text,
             what="latest in local")
    assert not find(page, "#update-regions, #regions-editor *")
    page.get(srv.url + "/console/#/admin")
    wait_css(page, "[data-page=admin] .card", cond=lambda e: "admin role" in e[0].text)
    assert not find(page, "[data-remove], #add-region, #assign-role, button.danger")
    page.get(srv.url + "/console/#/activity")
    wait_css(page, "[data-page=activity] .card", cond=lambda e: "admin role" in e[0].text)
    assert not find(page, "#audit-filter, #gc *, #storage *")

    # logging out ends the session
    find(page, "#logout")[0].click()
    wait_css(page, "#login")
    assert page.execute_script("return sessionStorage.length") == 0

    # a session whose credentials stop working (secret reset) ends at its next request
    login(page, srv.url, "bob", CONSUMER_PW)
    r = requests.post(srv.url + "/_meridian/v1/users/bob/reset-secret", auth=admin, json={})
    assert r.status_code == 200, r.text
    page.get(srv.url + "/console/#/repos")
    wait_css(page, "#login-error", cond=lambda e: "session has ended" in e[0].text)
    assert page.execute_script("return sessionStorage.length") == 0

    # an admin is offered the actions, each behind a confirmation
    login(page, srv.url, "admin", ADMIN_PW)
    links = [a.text for a in find(page, "#nav a")]
    assert links == ["Regions", "Repositories", "Activity", "Admin"], links
    page.get(srv.url + "/console/#/admin")
    wait_css(page, "#add-region")
    wait_css(page, "#assign-role")
    page.find_element(By.CSS_SELECTOR, "#assign-role input[name=subject]").send_keys("bob")
    page.find_element(By.CSS_SELECTOR, "#assign-role input[name=pattern]").send_keys("team/*")
    page.find_element(By.CSS_SELECTOR, "#assign-role button[type=submit]").click()
    dialog = wait_css(page, "dialog[data-confirm][open]")[0]
    dialog.find_element(By.CSS_SELECTOR, "button[value=cancel]").click()
    roles = requests.get(srv.url + "/_meridian/v1/roles?subject=bob", auth=admin).json()
    assert [b["pattern"] for b in roles] == ["golden/*"], roles  # cancelled: nothing changed
    page.find_element(By.CSS_SELECTOR, "#assign-role button[type=submit]").click()
    wait_css(page, "dialog[data-confirm][open]")[0].find_element(
        By.CSS_SELECTOR, "button[data-ok]").click()
    wait_for(lambda: len(requests.get(srv.url + "/_meridian/v1/roles?subject=bob",
                                      auth=admin).json()) == 2, 10, "the role assigned")
    # a webhook disabled from the admin page, after confirmation
    r = requests.post(srv.url + "/_meridian/v1/webhooks", auth=admin, json={
        "name": "hook1", "location": "local", "uri": "http://127.0.0.1:9/x",
        "actions": ["push"]})
    assert r.status_code == 201, r.text
    page.refresh()
    wait_css(page, "button[data-toggle=hook1]")[0].click()
    wait_css(page, "dialog[data-confirm][open]")[0].find_element(
        By.CSS_SELECTOR, "button[data-ok]").click()
    wait_for(lambda: requests.get(srv.url + "/_meridian/v1/webhooks/hook1", auth=admin)
             .json()["enabled"] is False, 10, "hook1 disabled")
    wait_for(lambda: texts(page, "button[data-toggle=hook1]") == ["Enable"], 10,
             "the page shows it disabled")
    page.get(srv.url + "/console/#/activity")
    wait_css(page, "#audit-list table", what="the audit log")
    # the collector's state and the bytes per repository, as GET gc / GET storage say
    gc = requests.get(srv.url + "/_meridian/v1/gc", auth=admin).json()
    wait_css(page, "#gc-status [data-gc=queue]",
             cond=lambda e: "%d blobs waiting" % gc["queue_length"] in e[0].text)
    assert texts(page, "#gc-status [data-gc=last-run]") != [""]
    wait_css(page, "#storage-table tr[data-repository='golden/app']")
    assert texts(page, "#storage-table tr[data-repository='secret/thing'] td")[3] == "2"
    # the residency compliance report, as GET compliance says (no policies: no violation)
    wait_css(page, "#compliance-summary", cond=lambda e: "0 violations" in e[0].text)
    wait_css(page, "#compliance-table tr[data-repository='golden/app']")
    find(page, "#audit-action")[0].send_keys("role")
    find(page, "#audit-filter button")[0].click()

    def filtered():
        rows = texts(page, "#audit-list tbody tr")
        return rows and all("role" in r for r in rows) and any("role.assign" in r for r in rows)
    wait_for(filtered, 20, "the audit log filtered to role actions")


# -- regions, live replication, faults ---------------------------------------------------------

def push_image(region, repo, tag, layer_size, auth=None):
    """A one-layer image pushed to region (anything with a .url) with raw requests, with
    Basic credentials auth if given; returns the manifest digest."""
    s = requests.Session()
    s.auth = auth
    layer = os.urandom(layer_size)
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    for blob in (config, layer):
        r = s.post(region.url + "/v2/%s/blobs/uploads/" % repo)
        assert r.status_code == 202, r.text
        loc = urllib.parse.urljoin(region.url, r.headers["Location"])
        sep = "&" if "?" in loc else "?"
        r = s.put(loc + sep + "digest=" + digest_of(blob), data=blob,
                  headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_of(layer), "size": len(layer)}]}).encode()
    r = s.put(region.url + "/v2/%s/manifests/%s" % (repo, tag), data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return digest_of(manifest)


def region_states(driver):
    """{region: state} as the map shows them (read in one script: the map is redrawn live)."""
    return driver.execute_script("""
        const out = {};
        for (const g of document.querySelectorAll('svg.map g.region'))
            out[g.dataset.region] = g.dataset.state;
        return out;""")


def row(driver, region):
    """The replication row of region on the version page: {state, seen, value, max}."""
    return driver.execute_script("""
        const tr = document.querySelector('#replication tr[data-region="' + arguments[0] + '"]');
        if (!tr) return null;
        const bar = tr.querySelector('progress');
        return {state: tr.dataset.state, seen: tr.dataset.seen,
                value: bar.getAttribute('value'), max: bar.getAttribute('max')};""", region)


def test_map_live_version_and_unreachable_region(geo, page):
    cluster = geo(3, region_args=lambda n: ["--region-location", LOCATIONS[n]])
    r1, r2, r3 = cluster
    # the coordinates reach every region's replication list
    for reg in cluster:
        by_name = reg.replications()
        assert by_name["r3"]["latitude"] == pytest.approx(1.35), by_name
        assert by_name["r2"]["longitude"] == pytest.approx(-77.04), by_name

    open_console(page, r1.url, "#/map")
    wait_css(page, "svg.map g.region", cond=lambda g: len(g) == 3, what="three regions")
    wait_for(lambda: set(region_states(page).values()) == {"Ready"}, 20, "all Ready on the map")
    assert find(page, "svg.map path.land"), "the world's countries are drawn"
    assert len(find(page, "svg.map path.link")) == 2, "links from r1 to r2 and r3"
    # positions follow the coordinates: Virginia west of Frankfurt west of Singapore
    xs = {g.get_attribute("data-region"): g.location["x"] for g in find(page, "svg.map g.region")}
    assert xs["r2"] < xs["r1"] < xs["r3"], xs
    # keyboard: a region is focusable and Enter shows its details
    g = find(page, "svg.map g.region[data-region=r3]")[0]
    page.execute_script("arguments[0].focus()", g)
    g.send_keys("\n")
    wait_for(lambda: r3.endpoint in "".join(texts(page, "#region-details dl")), 10,
             "r3's details")

    # live replication: r2 copies from r1 through a slowed link (r1's proxy, for r2's
    # connections), its row moves without a reload
    repo = unique_repo("console")
    r1.proxy.bandwidth(512 * 1024, src=r2.host)
    push_image(r1, repo, "v1", 3 * MIB)
    page.get(r1.url + "/console/#/version?" + urllib.parse.urlencode({"repo": repo, "ref": "v1"}))
    marker = page.execute_script("window.__same_document = 1; return 1")
    wait_for(lambda: row(page, "r2"), 20, "r2's row")
    wait_for(lambda: "InProgress" in row(page, "r2")["seen"], 30, "r2 InProgress")
    wait_for(lambda: row(page, "r2")["state"] == "Completed", 60, "r2 Completed")
    r2_row = row(page, "r2")
    seen = r2_row["seen"].split()
    assert seen.index("InProgress") < seen.index("Completed"), seen
    assert page.execute_script("return window.__same_document") == marker, "no reload"
    assert r2_row["value"] == r2_row["max"], ("a full bar when Completed", r2_row)
    r1.proxy.bandwidth(None, src=r2.host)

    # an admin (access control off: everyone is) adds r2 to a version's target regions
    # through the confirmation dialog; r2's rows appear without a reload
    golden = unique_repo("golden")
    r = r1.api("POST", "image-definitions", params={"repository": golden},
               json={"defaultTargetRegions": ["r1"]})
    assert r.status_code == 201, r.text
    push_image(r1, golden, "1.0.0", 64 * 1024)
    page.get(r1.url + "/console/#/version?" + urllib.parse.urlencode(
        {"repo": golden, "ref": "1.0.0"}))
    wait_css(page, "#targets td[data-latest=r1]", cond=lambda e: "this version" in e[0].text,
             what="latest in r1")
    assert texts(page, "#targets tbody th") == ["r1"]
    marker = page.execute_script("window.__same_document = 2; return 2")
    box = wait_css(page, "#update-regions input[value=r2]")[0]
    assert not box.is_selected()
    assert not find(page, "#update-regions input[value=r1]")[0].is_enabled(), "the source"
    box.click()
    find(page, "#update-regions button[type=submit]")[0].click()
    dialog = wait_css(page, "dialog[data-confirm][open]")[0]
    assert "add r2" in dialog.text, dialog.text
    dialog.find_element(By.CSS_SELECTOR, "button[value=cancel]").click()
    doc = r1.api("GET", "image-versions", params={"repository": golden, "reference": "1.0.0"})
    assert [t["name"] for t in doc.json()["publishingProfile"]["targetRegions"]] == ["r1"]
    find(page, "#update-regions button[type=submit]")[0].click()
    wait_css(page, "dialog[data-confirm][open]")[0].find_element(
        By.CSS_SELECTOR, "button[data-ok]").click()
    wait_for(lambda: texts(page, "#targets tbody th") == ["r1", "r2"], 20, "r2 a target")
    wait_for(lambda: (row(page, "r2") or {}).get("state") == "Completed", 60, "r2 Completed")
    wait_css(page, "#targets td[data-latest=r2]", cond=lambda e: "this version" in e[0].text,
             what="latest in r2")
    assert page.execute_script("return window.__same_document") == marker, "no reload"
    doc = r1.api("GET", "image-versions", params={"repository": golden, "reference": "1.0.0"})
    assert sorted(t["name"] for t in doc.json()["publishingProfile"]["targetRegions"]) == \
        ["r1", "r2"]

    # r2 cut off: the map shows it Unreachable
    page.get(r1.url + "/console/#/map")
    wait_css(page, "svg.map g.region", cond=lambda g: len(g) == 3)
    cluster.partition([r2], [r1, r3])
    wait_for(lambda: region_states(page).get("r2") == "Unreachable", 45, "r2 Unreachable",
             interval_s=0.2)
    assert find(page, "svg.map path.link.down"), "the link to r2 is drawn as down"
    assert find(page, "#regions-table tr[data-region=r2][data-state=Unreachable]")
    cluster.heal()


# -- speed ------------------------------------------------------------------------------------

def make_repositories(srv, n):
    """n repositories, each with one tiny image: the blob is uploaded once and mounted."""
    s = requests.Session()
    config = b'{"architecture":"amd64","os":"linux"}'
    d = digest_of(config)
    r = s.post(srv.url + "/v2/perf/r0000/blobs/uploads/?digest=" + d, data=config,
               headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d,
                   "size": len(config)}, "layers": []}).encode()

    def one(i):
        sess = requests.Session()
        name = "perf/r%04d" % i
        if i:
            r = sess.post(srv.url + "/v2/%s/blobs/uploads/?mount=%s&from=perf/r0000" % (name, d))
            assert r.status_code == 201, r.text
        r = sess.put(srv.url + "/v2/%s/manifests/v1" % name, data=manifest,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201, r.text
    one(0)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(1, n)))


def test_first_paint_with_1000_repositories(server_factory, page):
    srv = server_factory()
    make_repositories(srv, 1000)
    open_console(page, srv.url, "#/map")      # sets up the session (access control off)
    # Three cold loads (browser cache emptied), the best of each figure kept: the VM's 2
    # cores are shared with other
    # builds and tests, and a load's timing says what the console costs, not the neighbours.
    runs = []
    for _ in range(3):
        page.get("about:blank")
        page.execute_cdp_cmd("Network.clearBrowserCache", {})  # a cold load each time
        page.get(srv.url + "/console/#/repos")
        rows = wait_css(page, "#repos-table tbody tr", cond=lambda r: len(r) >= 200)
        assert len(rows) == 200, len(rows)
        assert "1000 of 1000" in find(page, "#repo-count")[0].text
        runs.append(page.execute_script("""
            const fcp = performance.getEntriesByName('first-contentful-paint')[0];
            const listed = performance.getEntriesByName('repos-listed')[0];
            return {fcp: fcp ? fcp.startTime : null,
                    listed: listed ? listed.startTime : null};"""))
    assert all(r["fcp"] is not None and r["listed"] is not None for r in runs), runs
    fcp = min(r["fcp"] for r in runs)
    listed = min(r["listed"] for r in runs)
    print("console first paint: first-contentful-paint %.0f ms, 1000 repositories listed "
          "%.0f ms (best of %s)" % (fcp, listed, runs))
    assert fcp < 1000, runs
    assert listed < 1000, runs
    search = find(page, "#repo-search")[0]
    search.send_keys("r099")
    wait_css(page, "#repos-table tbody tr", cond=lambda r: len(r) == 10)
    assert "10 of 1000" in find(page, "#repo-count")[0].text


# -- the long poll behind the live page ---------------------------------------------------------

def test_image_version_etag_and_long_poll(server_factory):
    """GET image-versions carries an ETag; If-None-Match of it gets 304 at once, and with
    ?wait=S is held until the version reads differently or S seconds have passed."""
    srv = server_factory("--threads", "4")
    repo = "console/poll"
    push_image(srv, repo, "v1", 1024)
    url = srv.url + "/_meridian/v1/image-versions"
    q = {"repository": repo, "reference": "v1"}
    r = requests.get(url, params=q)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-cache", r.headers
    etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"'), etag
    assert r.json()["replicationStatus"]["aggregatedState"] == "Completed", r.text
    r = requests.get(url, params=q, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == etag, r
    t0 = time.monotonic()
    r = requests.get(url, params=dict(q, wait="2"), headers={"If-None-Match": etag})
    took = time.monotonic() - t0
    assert r.status_code == 304 and 1.9 <= took < 6, (r.status_code, took)
    t0 = time.monotonic()
    r = requests.get(url, params=dict(q, wait="30"), headers={"If-None-Match": '"stale"'})
    assert r.status_code == 200 and time.monotonic() - t0 < 1.5, r.status_code
    assert r.headers["ETag"] == etag
    r = requests.get(url, params=dict(q, wait="soon"), headers={"If-None-Match": etag})
    assert r.status_code == 400 and r.json()["error"]["code"], r.text
    # held polls do not hold threads: more of them than the server has workers (--threads 4)
    # while another client is served at once
    with ThreadPoolExecutor(12) as pool:
        t0 = time.monotonic()
        polls = [pool.submit(lambda: requests.get(
            url, params=dict(q, wait="3"), headers={"If-None-Match": etag}).status_code)
            for _ in range(12)]
        time.sleep(0.5)  # let them park (a fixed pause is fine here: the check is that
        #                  /v2/ is not queued behind them, and it only gets easier later)
        t1 = time.monotonic()
        assert requests.get(srv.url + "/v2/", timeout=5).status_code == 200
        assert time.monotonic() - t1 < 1.0, "a worker thread was free"
        assert [f.result() for f in polls] == [304] * 12
        assert time.monotonic() - t0 >= 2.9


# -- through the front ----------------------------------------------------------------------

from test_front import front, request as front_request  # noqa: E402,F401 - the fixture


def test_front_forwards_the_console(geo, front):  # noqa: F811
    cluster = geo(1, join=False)
    (r1,) = cluster
    f = front([r1])
    status, hd, body = front_request(f, "GET", "/console/")
    assert status == 200 and hd["content-type"] == "text/html; charset=utf-8", (status, hd)
    assert b'<script type="module" src="js/app.js">' in body
    assert "script-src 'self'" in hd["content-security-policy"]
    status, hd, _ = front_request(f, "GET", "/console/js/app.js")
    assert status == 200 and hd["content-type"].startswith("text/javascript"), (status, hd)
    assert front_request(f, "GET", "/console")[0] == 301
    assert front_request(f, "GET", "/console/.hidden.txt")[0] == 404
