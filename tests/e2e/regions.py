"""Multi-region harness for the geo-replication end-to-end tests. Test modules import helpers
from here and load the fixtures with `pytest_plugins = ["geo_plugin"]` (geo_plugin.py also
attaches the regions' logs to the report of a failed test).

Region N of a test registry is a real process

    meridian serve --region rN --listen 127.0.1.N:PORT --data DIR
                   --advertise http://127.0.2.N:PPORT --peer-secret S
                   --sync-interval 2s --fetch-backoff-max 2s

with a FaultProxy (faultproxy.py) listening on 127.0.2.N:PPORT and forwarding to it. Regions
advertise their proxy, so every byte of peer traffic INTO region N crosses proxy N, and since
a region's outbound traffic leaves from its own 127.0.1.N (docs/replication.md), proxy N sees
which region is calling: `cluster.partition([a], [b, c])` is per-source cuts on the proxies.
Test clients (requests, skopeo, the CLI) talk to the regions directly, not through proxies.

Regions are joined with `meridian replication create --location rN --endpoint <proxy N URL>
--registry <region 1 URL>`. Every wait polls a condition against a deadline. Regions can be
killed (-9), stopped (SIGSTOP), continued and restarted on the same data directory; teardown
stops every process by PID (SIGCONT, SIGTERM, then SIGKILL) and fails the test if a region died
on its own or exited non-zero. When a test fails, the tail of every region's log and the
proxies' counters are attached to its report (full logs stay under the test's tmp dir).

Fixtures
  geo        factory: geo(n=3) starts n regions, joins them and waits until every region
             lists every other as Ready and each has called each other through the proxies;
             returns a Cluster. geo(n, join=False) only starts them. Per-test: every test
             gets fresh regions (a cluster starts in about a second).
  geo_bin    path of the meridian binary (MERIDIAN_BIN, default build/meridian)

Cluster: add() a region later (joined), forget() one removed with `replication delete`,
cut_link(src, dst), partition(groups...), heal(), wait_members(), wait_state(), wait_contacted().
Region: start/kill9/sigstop/sigcont/stop/restart, url, endpoint, proxy, cli(), cli_json(),
api(), replications(), oci() (conftest's OCI client).

Helpers: Cluster, Region, registry_state, wait_converged, manifest_digest, image_version,
replication_states, Pattern (deterministic large content), push_blob_stream, blob_stream_digest,
push_image_with_layer, wait_for, MIB.
"""

import atexit
import hashlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.parse

import pytest
import requests

from faultproxy import FaultProxy
import tier

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1 << 20

SYNC_INTERVAL = "2s"
FETCH_BACKOFF_MAX = "2s"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0
JOIN_DEADLINE_S = 60.0
CLI_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_ACCEPT = ", ".join([
    MT_OCI_MANIFEST, MT_OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json"])

REPLICATION_STATES = {"Ready", "Syncing", "Unreachable"}
ARTIFACT_STATES = {"Pending", "InProgress", "Completed", "Failed"}


def meridian_bin():
    return os.environ.get("MERIDIAN_BIN", os.path.join(REPO_ROOT, "build", "meridian"))


def region_host(n):
    return "127.0.1.%d" % n


def proxy_host(n):
    return "127.0.2.%d" % n


def hermetic_env():
    """The caller's environment without MERIDIAN_* (no setting of the shell may change the
    servers or the CLI under test)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def faketime_missing():
    """Why a region cannot run with a skewed clock here, or None. ThreadSanitizer cannot see
    through libfaketime's wrapper of pthread_cond_timedwait (it reports every such wait as a
    double lock) nor its unlocked globals: the TSan stage skips these tests (TSAN_OPTIONS)."""
    if not os.path.exists(FAKETIME_LIB):
        return "libfaketime (Debian package faketime) is not installed"
    if os.environ.get("TSAN_OPTIONS"):
        return "libfaketime under ThreadSanitizer reports races of its own"
    return None


def faketime_env(skew):
    """The environment of a process whose wall clock is off by skew ("+1h", "-1h") through
    libfaketime (Debian's faketime); its monotonic clock stays real. Under AddressSanitizer
    the preloaded library comes before ASan's runtime, which ASan refuses unless told."""
    env = {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": skew, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    if os.environ.get("ASAN_OPTIONS"):
        env["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + ":verify_asan_link_order=0"
    return env


def wait_for(cond, timeout_s, what, interval_s=0.1):
    """Polls cond() until it returns a true value; fails the test after timeout_s with the last
    value (or the last exception) it saw. `what` may be a callable, asked at the failure."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            last = cond()
        except (requests.RequestException, OSError, ValueError, KeyError) as e:
            last = e
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            if callable(what):
                what = _safe(what)
            pytest.fail("timed out after %.0fs waiting for %s (last: %r)"
                        % (timeout_s, what, last), pytrace=False)
        time.sleep(interval_s)


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def unique_repo(prefix):
    return "geo/%s-%s" % (re.sub(r"[^a-z0-9]+", "-", prefix.lower()).strip("-")[:40],
                          secrets.token_hex(3))


# ---------------------------------------------------------------------------------------------
# one region


class Region:
    """One `meridian serve` process of a cluster and the proxy in front of it."""

    LISTEN_RE = re.compile(r"listening on http://(127\.0\.1\.\d+):(\d+)")

    def __init__(self, cluster, n, extra_args=()):
        self.cluster = cluster
        self.n = n
        self.name = "r%d" % n
        self.host = region_host(n)
        self.dir = os.path.join(cluster.root, self.name)
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "meridian.log")
        self.extra_args = list(extra_args)
        os.makedirs(self.dir, exist_ok=True)
        self.proxy = FaultProxy((proxy_host(n), 0), name=self.name).start()
        self.port = None
        self.proc = None
        self.starts = 0
        self._log = None
        self._expect_exit = False
        self.stopped = False          # SIGSTOPped
        self.may_exit = False         # a removed region may end itself (exit status 0)

    def __repr__(self):
        return "<Region %s %s pid=%s>" % (self.name, self.url if self.port else "-",
                                           self.proc.pid if self.proc else None)

    # -- addresses
    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    @property
    def hostport(self):
        """HOST:PORT as skopeo wants it."""
        return "%s:%d" % (self.host, self.port)

    @property
    def endpoint(self):
        """The URL other regions use: this region's proxy."""
        return self.proxy.url

    @property
    def pid(self):
        return self.proc.pid

    # -- lifecycle
    def argv(self, port):
        return [self.cluster.region_bin(self.n) or self.cluster.binary, "serve",
                "--region", self.name,
                "--listen", "%s:%d" % (self.host, port),
                "--data", self.data_dir,
                "--advertise", self.endpoint,
                "--peer-secret", self.cluster.secret,
                "--sync-interval", SYNC_INTERVAL,
                "--fetch-backoff-max", FETCH_BACKOFF_MAX,
                "--shutdown-grace", "5s",
                "--log-level", "info"] + self.cluster.extra_args + \
            list(self.cluster.region_args(self.n)) + self.extra_args + \
            tier.server_args(self.data_dir, self.cluster.extra_args +
                             list(self.cluster.region_args(self.n)) + self.extra_args)

    def start(self, timeout_s=START_DEADLINE_S):
        """Starts the process (again, on the same data directory after kill9/stop: on the same
        port if it is free, else a new one) and waits for /readyz."""
        assert not self.is_running(), "%s is already running" % self.name
        self.starts += 1
        self._log = open(self.log_path, "ab")
        ports = [self.port, 0] if self.port else [0]
        for port in ports:
            offset = self._spawn(port)
            if self._wait_listening(offset, timeout_s, last_try=(port == ports[-1])):
                break
        self.proxy.upstream = (self.host, self.port)
        wait_for(self._ready, timeout_s, "%s /readyz = 200" % self.name, interval_s=0.05)
        return self

    def _spawn(self, port):
        argv = self.argv(port)
        self._log.write(("\n# start %d: %s\n" % (self.starts, " ".join(argv))).encode())
        self._log.flush()
        offset = self._log.tell()
        self._expect_exit = False
        self.stopped = False
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT,
                                     env=dict(hermetic_env(), **self.cluster.region_env(self.n)),
                                     cwd=self.dir)
        _all_procs.add(self.proc)
        return offset

    def _wait_listening(self, offset, timeout_s, last_try):
        deadline = time.monotonic() + timeout_s
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                m = self.LISTEN_RE.search(f.read().decode(errors="replace"))
            if m:
                self.port = int(m.group(2))
                return True
            if self.proc.poll() is not None:
                if not last_try:
                    return False      # the old port is taken: try port 0
                raise AssertionError("%s exited with %s before listening:\n%s"
                                     % (self.name, self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError("%s did not log 'listening on' within %.0fs:\n%s"
                                     % (self.name, timeout_s, self.log_tail()))
            time.sleep(0.02)

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("%s exited with %s before ready:\n%s"
                                 % (self.name, self.proc.returncode, self.log_tail()))
        try:
            return requests.get(self.url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def crashed(self):
        """True if the process died without being asked to (for a region that may exit by
        itself: died with a non-zero status)."""
        if self.proc is None or self._expect_exit or self.proc.poll() is None:
            return False
        return not (self.may_exit and self.proc.returncode == 0)

    def kill9(self):
        if self.is_running():
            self._expect_exit = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=STOP_DEADLINE_S)
        self._close_log()

    def sigstop(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        self.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def terminate(self):
        """Sends SIGTERM (after SIGCONT if stopped); wait() collects it."""
        if not self.is_running():
            return
        self._expect_exit = True
        if self.stopped:
            self.sigcont()
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s=STOP_DEADLINE_S):
        """Waits for a terminated process; SIGKILL after timeout_s. Returns the exit status
        and whether it had to be killed."""
        if self.proc is None:
            return None, False
        killed = False
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            killed = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=timeout_s)
        self._close_log()
        return self.proc.returncode, killed

    def stop(self, timeout_s=STOP_DEADLINE_S):
        """Graceful stop; returns the exit status."""
        self.terminate()
        return self.wait(timeout_s)[0]

    def restart(self):
        self.stop()
        return self.start()

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def remove_data(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- clients
    def oci(self):
        from conftest import OCI
        return OCI(self.url)

    def get(self, path, **kw):
        kw.setdefault("timeout", HTTP_TIMEOUT_S)
        return requests.get(self.url + path, **kw)

    def api(self, method, path, **kw):
        """A management API call: /_meridian/v1/<path>."""
        kw.setdefault("timeout", HTTP_TIMEOUT_S)
        return requests.request(method, self.url + "/_meridian/v1/" + path.lstrip("/"), **kw)

    def cli(self, *args, check=True, timeout_s=CLI_TIMEOUT_S):
        """Runs `meridian ARGS --registry <this region>`; returns the CompletedProcess (text)."""
        argv = [self.cluster.binary] + [str(a) for a in args] + ["--registry", self.url]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout_s, env=hermetic_env())
        if check and p.returncode != 0:
            raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s"
                                 % (" ".join(argv), p.returncode, p.stdout[-3000:],
                                    p.stderr[-3000:]))
        return p

    def cli_json(self, *args, timeout_s=CLI_TIMEOUT_S):
        p = self.cli(*args, "--output", "json", timeout_s=timeout_s)
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise AssertionError("meridian %s --output json printed no JSON: %r"
                                 % (" ".join(map(str, args)), p.stdout[:2000]))

    def replications(self):
        """GET /_meridian/v1/replications as {location: entry}."""
        r = self.api("GET", "replications", timeout=10)
        assert r.status_code == 200, (self.name, r.status_code, r.text[:500])
        body = r.json()
        if isinstance(body, dict):          # tolerate {"replications": [...]} / {"items": ...}
            body = body.get("replications", body.get("items", body.get("value", [])))
        return {e["location"]: e for e in body}

    def replication_states(self):
        return {loc: e.get("state") for loc, e in self.replications().items()}


# ---------------------------------------------------------------------------------------------
# a registry of regions


class Cluster:
    """N regions of one registry. regions[0] is r1 (the home region); cluster["r2"] by name."""

    def __init__(self, binary, root, extra_args=(), region_args=None, region_env=None,
                 region_bin=None):
        self.binary = binary
        self.root = str(root)
        self.secret = secrets.token_hex(16)
        self.extra_args = list(extra_args)
        self.region_args = region_args or (lambda n: [])  # n -> extra flags of region n
        self.region_env = region_env or (lambda n: {})    # n -> extra environment of region n
        self.region_bin = region_bin or (lambda n: None)  # n -> region n's program, or None
        self.regions = []
        self.removed = []             # regions that left with `replication delete`
        os.makedirs(self.root, exist_ok=True)

    def __getitem__(self, key):
        if isinstance(key, int):
            return self.regions[key]
        for r in self.regions + self.removed:
            if r.name == key:
                return r
        raise KeyError(key)

    def __iter__(self):
        return iter(self.regions)

    def __len__(self):
        return len(self.regions)

    @property
    def names(self):
        return [r.name for r in self.regions]

    def add(self, start=True, join=True, via=None, extra_args=()):
        """Creates region r<N+1> (and its proxy); starts it; joins it through `via` (default
        the first region) unless it is the first."""
        n = len(self.regions) + len(self.removed) + 1
        region = Region(self, n, extra_args)
        self.regions.append(region)
        if start:
            region.start()
            if join and len(self.regions) > 1:
                self.join(region, via=via)
        return region

    def forget(self, region):
        """Marks region as removed (after `replication delete`): it no longer counts as a
        member, and it may exit by itself without that being a crash."""
        self.regions.remove(region)
        self.removed.append(region)
        region.may_exit = True

    def join(self, region, via=None):
        via = via or self.regions[0]
        via.cli("replication", "create", "--location", region.name,
                "--endpoint", region.endpoint)

    def start(self, n, join=True, wait_ready=True):
        for _ in range(n):
            self.add(join=join)
        if join:
            self.wait_members(ready=wait_ready)
            self.wait_contacted()
        return self

    def wait_contacted(self, regions=None, timeout_s=JOIN_DEADLINE_S):
        """Waits until every region has called every other one through its proxy (seen by
        the proxies, whatever the regions report about each other)."""
        regions = regions or [r for r in self.regions if r.is_running() and not r.stopped]

        def missing():
            return [(x.name, y.name) for x in regions for y in regions
                    if x is not y and y.proxy.stats(x.host)["connections"] == 0]
        wait_for(lambda: not missing(), timeout_s,
                 lambda: "every region to call every other one (caller, callee pairs not seen "
                 "yet: %s)" % missing())

    # -- waits on the replication view of each region
    def wait_members(self, names=None, regions=None, ready=True, timeout_s=JOIN_DEADLINE_S):
        """Waits until every region (of `regions`, default all running ones) lists exactly
        `names` (default every region) in `replication list`, all Ready if `ready`."""
        names = set(names or self.names)
        regions = regions or [r for r in self.regions if r.is_running() and not r.stopped]

        def check():
            for r in regions:
                states = r.replication_states()
                if set(states) != names:
                    return False
                if ready and any(s != "Ready" for s in states.values()):
                    return False
            return True
        wait_for(check, timeout_s, lambda: "regions %s to list %s%s (now: %s)" % (
            [r.name for r in regions], sorted(names), " all Ready" if ready else "",
            _safe(lambda: {r.name: r.replication_states() for r in regions})))

    def wait_state(self, observers, location, states, timeout_s=60):
        """Waits until every observer's `replication list` shows `location` in one of
        `states` (a string or a set)."""
        states = {states} if isinstance(states, str) else set(states)
        observers = list(observers)

        def check():
            return all(o.replication_states().get(location) in states for o in observers)
        wait_for(check, timeout_s, "%s to be %s as seen from %s" % (
            location, "/".join(sorted(states)), [o.name for o in observers]), interval_s=0.25)

    # -- faults between regions
    def cut_link(self, src, dst):
        """No traffic from region src into region dst (dst's proxy refuses src's address)."""
        dst.proxy.cut(src=src.host)

    def partition(self, *groups):
        """Cuts every link between regions of different groups (both directions)."""
        for g in groups:
            for h in groups:
                if g is h:
                    continue
                for a in g:
                    for b in h:
                        self.cut_link(a, b)

    def heal(self):
        for r in self.regions:
            r.proxy.heal()

    # -- teardown
    def close(self):
        """Stops every region by PID and closes the proxies. Returns a list of problems
        (crashed regions, non-zero exits)."""
        problems = []
        everyone = self.regions + self.removed
        for r in everyone:
            if r.crashed():
                problems.append("%s died during the test with status %s"
                                % (r.name, r.proc.returncode))
            r.terminate()
        for r in everyone:
            r.proxy.close()
        for r in everyone:
            if r.proc is None:
                continue
            asked = r._expect_exit and r.proc.returncode is None
            rc, killed = r.wait()
            if killed:
                problems.append("%s did not exit within %.0fs of SIGTERM"
                                % (r.name, STOP_DEADLINE_S))
            elif asked and rc not in (0, None):
                problems.append("%s exited with %s after SIGTERM" % (r.name, rc))
            _all_procs.discard(r.proc)
        return problems

    def report(self, lines=40):
        """Text for a failed test: each region's log tail and its proxy's counters."""
        out = ["cluster under %s (secret-authenticated, %d regions)" % (self.root,
                                                                       len(self.regions))]
        for r in self.regions + self.removed:
            out.append("--- %s %s %s" % (r.name, r.url if r.port else "",
                                        "running" if r.is_running() else "not running"))
            out.append("proxy %s: total %s" % (r.proxy.url, r.proxy.stats()))
            for src in r.proxy.sources():
                out.append("  from %s: %s" % (src, r.proxy.stats(src)))
            out.append(r.log_tail(lines))
        return "\n".join(out)


def _safe(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - only for messages
        return repr(e)


# ---------------------------------------------------------------------------------------------
# what a region holds, through /v2/


def _paginate(region, path, key):
    out = []
    url = region.url + path
    params = {"n": 1000}
    for _ in range(1000):
        r = requests.get(url, params=params, timeout=HTTP_TIMEOUT_S)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, (region.name, path, r.status_code, r.text[:300])
        out += r.json().get(key) or []
        link = r.headers.get("Link")
        if not link:
            return out
        m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link)
        url = urllib.parse.urljoin(region.url, m.group(1))
        params = None
    raise AssertionError("pagination of %s does not end" % path)


def manifest_digest(region, repo, ref):
    """The digest of the manifest `ref` resolves to in region (None if 404), after checking
    that the body hashes to the Docker-Content-Digest header."""
    r = requests.get("%s/v2/%s/manifests/%s" % (region.url, repo, ref),
                     headers={"Accept": MANIFEST_ACCEPT}, timeout=HTTP_TIMEOUT_S)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, (region.name, repo, ref, r.status_code, r.text[:300])
    d = sha256_digest(r.content)
    hdr = r.headers.get("Docker-Content-Digest")
    assert hdr in (None, d), "%s: %s:%s body hashes to %s, header says %s" % (
        region.name, repo, ref, d, hdr)
    return d


def registry_state(region, repos=None):
    """{repo: {tag: manifest digest}} for every repository of the catalog (or `repos`);
    repositories without tags are left out, so a catalog that keeps empty repositories
    compares equal to one that drops them."""
    if repos is None:
        repos = _paginate(region, "/v2/_catalog", "repositories") or []
    state = {}
    for repo in sorted(repos):
        tags = _paginate(region, "/v2/%s/tags/list" % repo, "tags") or []
        if not tags:
            continue
        state[repo] = {t: manifest_digest(region, repo, t) for t in sorted(tags)}
    return state


def wait_converged(regions, timeout_s=90, repos=None, expect=None, what="convergence"):
    """Waits until every region reports the same registry_state (equal to `expect` if given,
    restricted to `repos` if given); returns it."""
    regions = list(regions)
    last = {}

    def check():
        states = [registry_state(r, repos) for r in regions]
        last.clear()
        last.update({r.name: s for r, s in zip(regions, states)})
        if any(s != states[0] for s in states):
            return False
        if expect is not None and states[0] != expect:
            return False
        return states[0] or True
    got = wait_for(check, timeout_s, lambda: "%s of %s; last states: %s"
                   % (what, [r.name for r in regions], json.dumps(last, indent=1)),
                   interval_s=0.5)
    return got if isinstance(got, dict) else {}


def image_version(region, repo, ref, expand=True, missing_ok=False):
    """GET image-versions?repository=R&reference=REF (with the replication status); None for
    a 404 if missing_ok (a region that has not heard of the image yet)."""
    params = {"repository": repo, "reference": ref}
    if expand:
        params["expand"] = "replication-status"
    r = region.api("GET", "image-versions", params=params)
    if missing_ok and r.status_code == 404:
        return None
    assert r.status_code == 200, (region.name, r.status_code, r.text[:500])
    return r.json()


def replication_summary(iv):
    """{region: state entry} of an image-version document."""
    rs = iv.get("replicationStatus") or {}
    return {e["region"]: e for e in rs.get("summary", [])}


def replication_states(region, repo, ref):
    """(aggregated state, {region: state}) of repo:ref as `region` sees it."""
    iv = image_version(region, repo, ref)
    summary = replication_summary(iv)
    return ((iv.get("replicationStatus") or {}).get("aggregatedState"),
            {k: v.get("state") for k, v in summary.items()})


def wait_replicated_cli(region, repo, tag, timeout="2m", timeout_s=150):
    """`meridian image-version wait REPO:TAG --replicated --timeout T` against region."""
    return region.cli("image-version", "wait", "%s:%s" % (repo, tag), "--replicated",
                      "--timeout", timeout, check=False, timeout_s=timeout_s)


# ---------------------------------------------------------------------------------------------
# large content, streamed


class Pattern:
    """Deterministic content of `size` bytes generated 1 MiB at a time (a random block stamped
    with the chunk index, so a shifted, repeated or dropped chunk changes the digest). Nothing
    is ever held whole, and the digest is computed once."""

    def __init__(self, seed, size):
        self.size = size
        self.base = random.Random(seed).randbytes(MIB)
        self._digest = None

    def chunk(self, i):
        stamp = i.to_bytes(8, "big") * 2
        c = stamp + self.base[len(stamp):]
        last = self.size - i * MIB
        return c if last >= MIB else c[:last]

    def chunks(self):
        for i in range((self.size + MIB - 1) // MIB):
            yield self.chunk(i)

    @property
    def digest(self):
        if self._digest is None:
            h = hashlib.sha256()
            for c in self.chunks():
                h.update(c)
            self._digest = "sha256:" + h.hexdigest()
        return self._digest


def push_blob_stream(region, repo, content, timeout_s=600):
    """Monolithic streamed upload (POST, then PUT ?digest with Content-Length) of a Pattern."""
    r = requests.post("%s/v2/%s/blobs/uploads/" % (region.url, repo), timeout=HTTP_TIMEOUT_S)
    assert r.status_code == 202, (r.status_code, r.text[:300])
    loc = urllib.parse.urljoin(region.url + "/", r.headers["Location"])
    u = urllib.parse.urlparse(loc)
    path = u.path + "?" + (u.query + "&" if u.query else "") + "digest=" + content.digest
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout_s)
    try:
        conn.putrequest("PUT", path)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(content.size))
        conn.endheaders()
        for c in content.chunks():
            conn.send(c)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 201, (resp.status, body[:300])
    return content.digest


def blob_stream_digest(region, repo, digest, timeout_s=600):
    """(status, bytes read, digest of the bytes) of a streamed blob GET."""
    with requests.get("%s/v2/%s/blobs/%s" % (region.url, repo, digest), stream=True,
                      timeout=timeout_s) as r:
        if r.status_code != 200:
            return r.status_code, 0, None
        h = hashlib.sha256()
        n = 0
        for c in r.iter_content(MIB):
            h.update(c)
            n += len(c)
        return 200, n, "sha256:" + h.hexdigest()


def push_image_with_layer(region, repo, tag, layer_digest, layer_size):
    """Pushes a small config and a manifest whose one layer is an already pushed blob.
    Returns (manifest digest, manifest bytes, config bytes)."""
    oci = region.oci()
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                             "author": secrets.token_hex(8)})
    oci.push_blob(repo, config)
    m = canonical_json({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": MT_OCI_LAYER, "digest": layer_digest, "size": layer_size}]})
    return oci.push_manifest(repo, tag, m, MT_OCI_MANIFEST), m, config


# ---------------------------------------------------------------------------------------------
# fixtures (loaded through geo_plugin.py) and failure reports

_live_clusters = []
_all_procs = set()


@atexit.register
def _kill_leftovers():
    # if the test process is interrupted, no region outlives it
    for p in list(_all_procs):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture(scope="session")
def geo_bin():
    path = meridian_bin()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("meridian binary not found at %s (ninja -C build, or set MERIDIAN_BIN)"
                    % path)
    return path


@pytest.fixture
def geo(geo_bin, tmp_path_factory, request):
    """Factory: geo(n=3, join=True, extra_args=(), remove_data=False, region_args=None,
    region_env=None, region_bin=None) -> a started Cluster (region_args(n): flags of region n
    only, e.g. its --region-location; region_env(n): extra environment of region n's process;
    region_bin(n): the program region n runs instead of the binary (a wrapper), or None)
    (when join: joined, every region listing all as Ready, every pair of regions seen talking
    through the proxies). Everything is stopped after the test; with remove_data=True the
    data directories are removed then, pass or fail (large tests; logs are kept)."""
    clusters = []
    big = []

    def make(n=3, join=True, extra_args=(), wait_ready=True, remove_data=False,
             region_args=None, region_env=None, region_bin=None):
        c = Cluster(geo_bin, tmp_path_factory.mktemp("geo"), extra_args, region_args,
                    region_env, region_bin)
        clusters.append(c)
        _live_clusters.append(c)
        if remove_data:
            big.append(c)
        c.start(n, join=join, wait_ready=wait_ready)
        return c
    yield make
    problems = []
    for c in clusters:
        problems += c.close()
        if c in _live_clusters:
            _live_clusters.remove(c)
    for c in big:
        for r in c.regions + c.removed:
            r.remove_data()
    if problems:
        pytest.fail("; ".join(problems) + "\n" + "\n".join(c.report(30) for c in clusters),
                    pytrace=False)


def failure_sections():
    """(title, text) report sections for every cluster alive now (see geo_plugin.py)."""
    return [("geo cluster %s" % os.path.basename(c.root), c.report())
            for c in list(_live_clusters)]
