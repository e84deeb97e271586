"""The S3 blob store under the e2e fixtures: with MERIDIAN_TEST_BLOBSTORE=s3 every server
the fixtures start keeps its blobs in S3 (`--blobstore s3://meridian-e2e/<prefix>`), one
prefix per data directory (so a restart on the same data finds its blobs again).

The S3 server: S3_ENDPOINT/S3_ACCESS_KEY/S3_SECRET_KEY (and S3_REGION) from the environment
when set, otherwise a Ceph RGW started once per test session with ceph-rgw-up.sh (memstore,
under a temporary directory, stopped and removed at exit). MERIDIAN_RGW_TOOLS names the
folder of ceph-rgw-up.sh (default: ../shared/tools beside the repository, then
/work/shared/tools).
"""
import atexit
import hashlib
import os
import shlex
import socket
import subprocess
import tempfile

BUCKET = "meridian-e2e"
_server = {}


def is_on():
    return os.environ.get("MERIDIAN_TEST_BLOBSTORE", "") == "s3"


def _tools_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    for d in (os.environ.get("MERIDIAN_RGW_TOOLS"), os.path.join(repo, "..", "shared", "tools"),
              "/work/shared/tools"):
        if d and os.path.isfile(os.path.join(d, "ceph-rgw-up.sh")):
            return d
    raise RuntimeError("ceph-rgw-up.sh not found: set MERIDIAN_RGW_TOOLS or S3_ENDPOINT")


def _free_port():
    # RGW takes PORT and the monitor PORT+1: pick a pair that is free now.
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port pair for RGW")


def server():
    """{S3_ENDPOINT, S3_REGION, S3_ACCESS_KEY, S3_SECRET_KEY}, starting RGW at first use."""
    if _server:
        return _server
    if os.environ.get("S3_ENDPOINT"):
        for k in ("S3_ENDPOINT", "S3_REGION", "S3_ACCESS_KEY", "S3_SECRET_KEY"):
            _server[k] = os.environ.get(k, "us-east-1" if k == "S3_REGION" else "")
        return _server
    tools = _tools_dir()
    d = tempfile.mkdtemp(prefix="meridian-rgw-")
    env = dict(os.environ, CEPH_OSD_STORE=os.environ.get("CEPH_OSD_STORE", "memstore"))
    out = subprocess.run([os.path.join(tools, "ceph-rgw-up.sh"), d, str(_free_port())],
                         env=env, capture_output=True, text=True, timeout=300)
    atexit.register(subprocess.run, [os.path.join(tools, "ceph-rgw-down.sh"), d, "--rm"],
                    capture_output=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError("ceph-rgw-up.sh failed:\n" + out.stderr[-3000:])
    for line in out.stdout.splitlines():
        k, _, v = line.partition("=")
        if k.startswith("S3_"):
            _server[k] = shlex.split(v)[0] if v else ""
    return _server


def args_for(data_dir, extra_args):
    """The flags that put a server's blobs in S3 (none when off or given by the test)."""
    if not is_on() or any(str(a).startswith("--blobstore") for a in extra_args):
        return []
    # The endpoint and keys reach the server through its environment (inherited), not
    # its command line, which the logs and `ps` show.
    os.environ.update(server())
    prefix = hashlib.sha256(os.path.abspath(str(data_dir)).encode()).hexdigest()[:20]
    return ["--blobstore", "s3://%s/%s" % (BUCKET, prefix)]


def prefix_of(data_dir):
    return hashlib.sha256(os.path.abspath(str(data_dir)).encode()).hexdigest()[:20]


def available():
    """An S3 server is given, or one can be started here."""
    if os.environ.get("S3_ENDPOINT") or _server:
        return True
    try:
        _tools_dir()
    except RuntimeError:
        return False
    import shutil
    return shutil.which("radosgw") is not None


def request(method, key, data=None, query="", headers=()):
    """(status, body) of one signed request on BUCKET/key through the curl command line
    (its --aws-sigv4). query: already canonical (sorted, encoded)."""
    s = server()
    url = "%s/%s%s%s" % (s["S3_ENDPOINT"], BUCKET, ("/" + key) if key else "",
                         ("?" + query) if query else "")
    cmd = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method,
           "--aws-sigv4", "aws:amz:%s:s3" % (s.get("S3_REGION") or "us-east-1"),
           "--user", "%s:%s" % (s["S3_ACCESS_KEY"], s["S3_SECRET_KEY"]),
           "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
    for h in headers:
        cmd += ["-H", h]
    if method == "HEAD":
        cmd[cmd.index("-X") + 1:cmd.index("-X") + 2] = ["HEAD"]
        cmd += ["-I"]
    if data is not None:
        cmd += ["--data-binary", "@-"]
    out = subprocess.run(cmd + [url], input=data, capture_output=True, timeout=120).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), body


def list_objects(prefix):
    """[(key, size)] of every object under prefix, page after page."""
    import re
    import urllib.parse
    out, token = [], None
    while True:
        query = "list-type=2&prefix=" + urllib.parse.quote(prefix, safe="")
        if token:  # canonical order: continuation-token sorts before list-type
            query = "continuation-token=%s&%s" % (urllib.parse.quote(token, safe=""), query)
        status, body = request("GET", "", query=query)
        assert status == 200, body
        text = body.decode()
        for c in re.findall(r"<Contents>(.*?)</Contents>", text, re.S):
            key = re.search(r"<Key>([^<]*)</Key>", c).group(1)
            size = re.search(r"<Size>(\d+)</Size>", c)
            out.append((key, int(size.group(1)) if size else 0))
        m = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", text)
        if "<IsTruncated>true</IsTruncated>" not in text or not m:
            return out
        token = m.group(1)


def list_keys(prefix):
    """Keys under prefix."""
    return [k for k, _size in list_objects(prefix)]


def get_object(key):
    """The bytes of BUCKET/key."""
    status, body = request("GET", key)
    assert status == 200, (key, status, body[:200])
    return body


def put_many(keys, data):
    """PUTs `data` as each of keys with one curl process (its URLs from a config file, sent
    in parallel): thousands of objects in seconds, where a curl per object takes a minute."""
    s = server()
    with tempfile.NamedTemporaryFile("w", suffix=".curlrc") as cfg:
        for k in keys:
            cfg.write('url = "%s/%s/%s"\n' % (s["S3_ENDPOINT"], BUCKET, k))
            cfg.write('output = "/dev/null"\n')
        cfg.flush()
        cmd = ["curl", "-s", "--fail", "--parallel", "--parallel-max", "16", "-X", "PUT",
               "--aws-sigv4", "aws:amz:%s:s3" % (s.get("S3_REGION") or "us-east-1"),
               "--user", "%s:%s" % (s["S3_ACCESS_KEY"], s["S3_SECRET_KEY"]),
               "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "--data-binary", "@-",
               "-w", "%{http_code}\n", "--config", cfg.name]
        out = subprocess.run(cmd, input=data, capture_output=True, timeout=300)
    codes = out.stdout.decode().split()
    assert out.returncode == 0 and codes == ["200"] * len(keys), (out.returncode, codes[:5],
                                                                 out.stderr[-500:])
