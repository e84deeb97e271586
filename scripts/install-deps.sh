#!/usr/bin/env bash
# Installs, with apt-get, what Meridian needs to build and test (and, with --bench, to run
# the benchmarks). Installs only what is missing; runs `apt-get update` once, only if
# something is missing. Debian 12; runs as root, or through sudo otherwise. Then installs
# the web console's third-party code from npm into node_modules/ (package-lock.json).
#
# usage: scripts/install-deps.sh [--bench]
set -euo pipefail

BUILD_PKGS=(build-essential meson ninja-build pkg-config
            libmicrohttpd-dev libcurl4-openssl-dev libssl-dev libjansson-dev libsqlite3-dev
            libpq-dev
            libcmocka-dev libsodium-dev libgnutls28-dev zlib1g-dev)
# chromium, chromium-driver, python3-selenium: the web console's browser tests
# postgresql-15: the PostgreSQL metastore's tests (tools/pg-up.sh starts a throwaway cluster)
# faketime: a region whose wall clock is off (test_geo_clock_skew.py)
TEST_PKGS=(postgresql-15 python3-pytest python3-requests skopeo buildah podman valgrind openssl
           chromium chromium-driver python3-selenium faketime)
# ceph-*, radosgw: a one-node Ceph RGW for the S3 blob store tests (ceph-rgw-up.sh)
TEST_PKGS+=(ceph-base ceph-common ceph-mon ceph-osd radosgw)
BENCH_PKGS=(docker-registry nginx wrk hyperfine)

bench=0
for arg in "$@"; do
    case "$arg" in
        --bench) bench=1 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "install-deps: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

pkgs=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}")
if [ "$bench" = 1 ]; then
    pkgs+=("${BENCH_PKGS[@]}")
fi

missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

# The console's map code (d3-geo, topojson-client, world-atlas), as package-lock.json pins
# it; again only when package-lock.json changed since the last install.
npm_deps() {
    local root
    root=$(cd "$(dirname "$0")/.." && pwd)
    if [ -f "$root/node_modules/.package-lock.json" ] &&
        [ "$root/node_modules/.package-lock.json" -nt "$root/package-lock.json" ]; then
        return 0
    fi
    echo "install-deps: npm ci (the web console's map code)"
    (cd "$root" && npm ci --no-audit --no-fund --loglevel=error)
}

# npm fetches the web console's map code; Debian's package only if no npm is installed
# (a Node.js from elsewhere brings its own, and conflicts with Debian's).
if ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages present"
    npm_deps
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"

# Debian starts the services of these packages on install; a registry already on port 5000
# (Meridian's default) or nginx on port 80 would get in the way of runs and benchmarks.
if [ "$bench" = 1 ] && [ -d /run/systemd/system ]; then
    for svc in docker-registry nginx; do
        if printf '%s\n' "${missing[@]}" | grep -qx "$svc"; then
            "${sudo[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
        fi
    done
fi

npm_deps
