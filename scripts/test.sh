#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test suite:
#   0. the layer check (scripts/check_layers.py): folders of src/ include downwards only
#   1. unit tests (cmocka, meson test --suite unit) on build/
#   2. end-to-end tests (pytest tests/e2e) against build/meridian on the embedded default
#      (SQLite, blobs in files), then the whole suite again (--scaleout-quick: only
#      $SCALEOUT_E2E_FILES) on the scale-out tier (stage e2e-scaleout): every server's metadata in
#      PostgreSQL (MERIDIAN_TEST_METASTORE=pg) and its blobs in S3 (MERIDIAN_TEST_BLOBSTORE=s3,
#      a Ceph RGW), both started by the fixtures (tests/e2e/tier.py); the PostgreSQL-only
#      tests (test_pg_restart.py, test_pg_blackhole.py, test_scaleout_nodes.py) run there. The unit tests of the PostgreSQL driver and
#      metastore run on a cluster started here (pg-up.sh).
#   3. an AddressSanitizer + UBSan build in build-asan/: its unit tests, and the e2e tests
#      matching $ASAN_E2E_FILTER against build-asan/meridian; any sanitizer report fails.
#   4. a ThreadSanitizer build in build-tsan/: its unit tests, and the e2e tests matching
#      $TSAN_E2E_FILTER (those where several of Meridian's threads work at once) against
#      build-tsan/meridian; any race or lock-order report fails (docs/threads.md).
# Counts the results of every suite and ends with one line `N passed, M failed` (skipped
# tests are reported on the line before, not as passed). Exits non-zero if anything failed.
#
# usage: scripts/test.sh [--no-asan] [--no-tsan] [--no-pg] [--scaleout-quick]
#   --no-pg: no scale-out stage; --scaleout-quick: only $SCALEOUT_E2E_FILES in it
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ASAN=1
TSAN=1
PG=1
SCALEOUT_FULL=1
for arg in "$@"; do
    case "$arg" in
        --no-asan) ASAN=0 ;;
        --no-tsan) TSAN=0 ;;
        --no-pg) PG=0 ;;
        --scaleout-full) SCALEOUT_FULL=1 ;;  # the default; kept for older command lines
        --scaleout-quick) SCALEOUT_FULL=0 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "test.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

PYTHON=/usr/bin/python3  # Debian's, which has python3-pytest; not a pyenv shim
# Under test, the store stops on a broken invariant it checks (a write outside its writer
# mutex: meta_sql.c, check_write_locked); a production server logs it and goes on.
export MERIDIAN_STRICT_CHECKS=1
ASAN_E2E_FILTER=${ASAN_E2E_FILTER:-(push or pull or manifests or front or peer_positions or membership) and not large and not crash}
# TSan makes code 5-15x slower: it runs the tests where several of Meridian's own threads
# work at once (long polls and the replication threads, the webhook worker, the upload
# sweeper and writer pool, the HTTP watchdog, token reloads, uploads and deletes racing on
# the gc lock, a version conflict reported by whichever merge path comes first), not the
# one-request API checks. The 1 GiB geo test stays behind
# MERIDIAN_SLOW (its threads are those of test_geo_crash's large image, at 20x the bytes).
TSAN_E2E_FILTER=${TSAN_E2E_FILTER:-longpoll or concurrency or geo or version_immutability or webhooks or webhook_effects or uploads_expiry or test_crash.py or test_push.py or push_staged or test_delete.py or slowloris or auth_tokens or blob_integrity or http_strict or auth_limits or upload_failures or blob_links or peer_positions}
# The scale-out stage runs the whole e2e suite on PostgreSQL + RGW (about 22 minutes), with
# SCALEOUT_E2E_FILTER as -k if set. --scaleout-quick runs only these files there (about 6
# minutes): the API's core, geo replication, the PostgreSQL-only and S3 fault tests.
SCALEOUT_E2E_FILES=${SCALEOUT_E2E_FILES:-tests/e2e/test_push.py tests/e2e/test_pull.py tests/e2e/test_tags.py tests/e2e/test_manifests.py tests/e2e/test_delete.py tests/e2e/test_referrers.py tests/e2e/test_catalog.py tests/e2e/test_geo_basic.py tests/e2e/test_pg_restart.py tests/e2e/test_pg_blackhole.py tests/e2e/test_scaleout_nodes.py tests/e2e/test_geo_compaction.py tests/e2e/test_readiness.py tests/e2e/test_push_staged.py tests/e2e/test_uploads_expiry.py tests/e2e/test_s3_blobstore.py}
SCALEOUT_E2E_FILTER=${SCALEOUT_E2E_FILTER-}
# A hung suite is cut after this; the whole suite on the scale-out tier took 21-37 minutes.
E2E_TIMEOUT_S=${E2E_TIMEOUT_S:-3000}
LOG_DIR=$ROOT/build-logs
rm -rf "$LOG_DIR"
mkdir -p "$LOG_DIR"

RUN_PREFIX=()  # prepended to the suites' commands (the TSan stage may need setarch)
total_pass=0
total_fail=0
total_skip=0
report=()

# record SUITE PASSED FAILED SKIPPED [NOTE]
record() {
    total_pass=$((total_pass + $2))
    total_fail=$((total_fail + $3))
    total_skip=$((total_skip + $4))
    report+=("$(printf '%-22s %5d passed %5d failed %5d skipped  %s' "$1" "$2" "$3" "$4" "${5:-}")")
}

# step NAME LOGFILE CMD...: runs CMD with output to the terminal and LOGFILE; returns its status.
step() {
    local name=$1 log=$2
    shift 2
    echo
    echo "=== $name: $*"
    local start=$SECONDS rc=0
    # With pipefail the pipeline fails with the command's status (tee itself succeeds).
    "$@" 2>&1 | tee "$log" || rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start))s"
    return "$rc"
}

# meson test's summary: "Ok: N", "Expected Fail: N", "Fail: N", "Unexpected Pass: N",
# "Skipped: N", "Timeout: N".
meson_count() {
    local log=$1 key=$2
    sed -n "s/^${key}:[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$log" | tail -n 1
}

# run_unit SUITE BUILD_DIR
run_unit() {
    local suite=$1 dir=$2 log="$LOG_DIR/$1.log" rc=0
    step "$suite" "$log" "${RUN_PREFIX[@]}" meson test -C "$dir" --suite unit --print-errorlogs ||
        rc=$?
    local ok xfail fail xpass skip timeout
    ok=$(meson_count "$log" "Ok")
    xfail=$(meson_count "$log" "Expected Fail")
    fail=$(meson_count "$log" "Fail")
    xpass=$(meson_count "$log" "Unexpected Pass")
    skip=$(meson_count "$log" "Skipped")
    timeout=$(meson_count "$log" "Timeout")
    if [ -z "$ok" ]; then
        record "$suite" 0 1 0 "no summary from meson test (exit $rc)"
        return
    fi
    local passed=$((ok + ${xfail:-0})) failed=$((${fail:-0} + ${xpass:-0} + ${timeout:-0}))
    if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        failed=1
    fi
    record "$suite" "$passed" "$failed" "${skip:-0}"
}

# pytest's closing line, e.g. "3 failed, 10 passed, 2 skipped, 1 error in 12.3s".
pytest_count() {
    local line=$1 word=$2
    printf '%s\n' "$line" | grep -oE "[0-9]+ ${word}\b" | grep -oE '^[0-9]+' | head -n 1 || true
}

# run_pytest SUITE ENV... -- PYTEST_ARGS...
run_pytest() {
    local suite=$1 log="$LOG_DIR/$1.log" rc=0
    shift
    local envs=()
    while [ "$1" != "--" ]; do
        envs+=("$1")
        shift
    done
    shift
    # A hung suite is interrupted (SIGINT lets pytest tear its servers down and summarise).
    step "$suite" "$log" "${RUN_PREFIX[@]}" timeout --signal=INT --kill-after=60 "$E2E_TIMEOUT_S" \
        env "${envs[@]}" "$PYTHON" -m pytest -q -rfEs -p no:cacheprovider "$@" || rc=$?
    local line
    line=$(grep -E '^=*[[:space:]]*(no tests ran|[0-9]+ (passed|failed|skipped|errors?|deselected|xfailed|xpassed|warnings?))' \
        "$log" | tail -n 1 || true)
    local passed failed errors skipped xfailed xpassed
    passed=$(pytest_count "$line" passed)
    failed=$(pytest_count "$line" failed)
    errors=$(pytest_count "$line" "errors?")
    skipped=$(pytest_count "$line" skipped)
    xfailed=$(pytest_count "$line" xfailed)
    xpassed=$(pytest_count "$line" xpassed)
    passed=$((${passed:-0} + ${xpassed:-0}))
    failed=$((${failed:-0} + ${errors:-0}))
    skipped=$((${skipped:-0} + ${xfailed:-0}))
    local note=""
    case "$rc" in
        0) ;;
        5) note="no tests collected" ;;  # pytest's exit 5: not a failure in itself
        124|137) failed=$((failed + 1)); note="timed out after ${E2E_TIMEOUT_S}s" ;;
        *) if [ "$failed" -eq 0 ]; then failed=1; note="pytest exit $rc"; fi ;;
    esac
    record "$suite" "$passed" "$failed" "$skipped" "$note"
}

# sanitizer_reports SUITE DIR: prints the report files the e2e servers left in DIR; each one
# is a failure.
sanitizer_reports() {
    local suite=$1 dir=$2 n
    n=$(find "$dir" -type f | wc -l)
    if [ "$n" -gt 0 ]; then
        for f in "$dir"/*; do
            echo "--- sanitizer report $f"
            head -n 60 "$f"
            grep '^SUMMARY' "$f" || true  # every report of the file, past the first
        done
        record "$suite" 0 "$n" 0 "sanitizer reports from e2e servers"
    else
        record "$suite" 0 0 0 "no sanitizer report from any e2e server"
    fi
}

finish() {
    echo
    echo "=== summary (logs in ${LOG_DIR#"$ROOT"/}/, total $((SECONDS / 60))m$((SECONDS % 60))s)"
    printf '%s\n' "${report[@]}"
    echo "skipped: $total_skip"
    echo "$total_pass passed, $total_fail failed"
    [ "$total_fail" -eq 0 ]
}

# --- 0: the layer check (no build needed) ----------------------------------------------------

# One test per problem found: an upward include, a cycle between folders, an unknown folder.
layers_log="$LOG_DIR/layers.log"
layers_rc=0
step layers "$layers_log" "$PYTHON" scripts/check_layers.py || layers_rc=$?
layers_n=$(sed -n 's/^check_layers: \([0-9][0-9]*\) problem.*/\1/p' "$layers_log" | tail -n 1)
if [ "$layers_rc" -eq 0 ] && [ "${layers_n:-1}" -eq 0 ]; then
    record layers 1 0 0 "src/ folders include downwards only"
else
    record layers 0 "${layers_n:-1}" 0 "upward includes or cycles: see build-logs/layers.log"
fi

# --- dependencies and the release build ------------------------------------------------------

if ! step deps "$LOG_DIR/deps.log" scripts/install-deps.sh; then
    record deps 0 1 0 "scripts/install-deps.sh failed; no suite ran"
    finish
    exit 1
fi

if ! step build "$LOG_DIR/build.log" scripts/build.sh; then
    record build 0 1 0 "scripts/build.sh failed; no suite ran"
    finish
    exit 1
fi

# --- PostgreSQL for the unit tests of its driver and metastore ------------------------------

# pg_tools: the directory of pg-up.sh / pg-down.sh (tests/e2e/pg_metastore.py looks alike).
pg_tools() {
    local d
    for d in "${MERIDIAN_PG_TOOLS:-}" "$ROOT/../shared/tools" "$ROOT/../../shared/tools" \
        /work/shared/tools; do
        if [ -n "$d" ] && [ -x "$d/pg-up.sh" ]; then
            (cd "$d" && pwd)
            return
        fi
    done
}
if [ "$PG" = 1 ]; then
    PG_TOOLS=$(pg_tools)
    if [ -z "$PG_TOOLS" ]; then
        record pg-up 0 1 0 "pg-up.sh not found (set MERIDIAN_PG_TOOLS, or --no-pg)"
        PG=0
    else
        PG_DIR=$(mktemp -d /tmp/meridian-test-pg.XXXXXX)
        chmod 755 "$PG_DIR"
        PG_PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        trap '"$PG_TOOLS/pg-down.sh" "$PG_DIR" --rm >/dev/null 2>&1 || true' EXIT
        if step pg-up "$LOG_DIR/pg-up.log" "$PG_TOOLS/pg-up.sh" "$PG_DIR" "$PG_PORT" unit; then
            export MERIDIAN_TEST_PG
            MERIDIAN_TEST_PG=$(grep -E "^postgres(ql)?://" "$LOG_DIR/pg-up.log" | tail -n 1)
        else
            record pg-up 0 1 0 "pg-up.sh failed: the PostgreSQL unit tests skip"
        fi
    fi
fi

# --- 1 and 2: unit and e2e on the release build ----------------------------------------------

run_unit unit build
# MERIDIAN_SLOW=1: the 1 GiB layer across a link reset twice runs too (about 12 s, 2.2 GiB).
run_pytest e2e MERIDIAN_BIN="$ROOT/build/meridian" MERIDIAN_SLOW=1 -- tests/e2e
if [ "$PG" = 1 ]; then
    # The same suite on the scale-out tier (issue 11): one PostgreSQL cluster and one Ceph
    # RGW per session, a database and a bucket prefix per server (tests/e2e/pg_metastore.py,
    # s3_blobstore.py; S3_ENDPOINT names another S3 server). Tests that look at one tier's
    # files skip on the other with their reason (-rs lists them).
    scaleout_k=()
    [ -n "$SCALEOUT_E2E_FILTER" ] && scaleout_k=(-k "$SCALEOUT_E2E_FILTER")
    # shellcheck disable=SC2086 # a list of files
    if [ "$SCALEOUT_FULL" = 1 ]; then scaleout_files=(tests/e2e); else scaleout_files=($SCALEOUT_E2E_FILES); fi
    run_pytest e2e-scaleout MERIDIAN_BIN="$ROOT/build/meridian" MERIDIAN_TEST_METASTORE=pg \
        MERIDIAN_TEST_BLOBSTORE=s3 MERIDIAN_PG_TOOLS="$PG_TOOLS" -- "${scaleout_files[@]}" \
        "${scaleout_k[@]}"
fi

# --- 3: sanitizers ---------------------------------------------------------------------------

if [ "$ASAN" = 1 ]; then
    # halt on the first error; exit non-zero on a leak; reports of the e2e servers go to files
    # (one per process) that are counted below, whatever the fixtures do with exit codes.
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=86"
    asan_ok=1
    # No -Werror here: GCC's instrumentation for -fsanitize makes its flow analysis report
    # warnings (format-truncation on a "null" argument, ...) that the release build, which
    # keeps -Werror, does not have. This build is for the run-time checks.
    if [ ! -f build-asan/build.ninja ]; then
        step asan-setup "$LOG_DIR/asan-setup.log" meson setup build-asan \
            --buildtype=debugoptimized -Db_sanitize=address,undefined -Dwerror=false || asan_ok=0
    fi
    if [ "$asan_ok" = 1 ]; then
        step asan-build "$LOG_DIR/asan-build.log" ninja -C build-asan || asan_ok=0
    fi
    if [ "$asan_ok" = 0 ]; then
        record asan-build 0 1 0 "sanitizer build failed"
    else
        run_unit asan-unit build-asan
        reports=$LOG_DIR/asan-reports
        mkdir -p "$reports"
        run_pytest asan-e2e MERIDIAN_BIN="$ROOT/build-asan/meridian" \
            ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$reports/asan" \
            UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$reports/ubsan" \
            -- tests/e2e -k "$ASAN_E2E_FILTER"
        sanitizer_reports asan-reports "$reports"
    fi
    unset ASAN_OPTIONS UBSAN_OPTIONS
fi

# --- 4: ThreadSanitizer ----------------------------------------------------------------------

if [ "$TSAN" = 1 ]; then
    tsan_start=$SECONDS
    # Go on after a report (halt_on_error=0) so that one run finds them all, but exit 66 at
    # the end so that the fixtures fail the test; check the lock order too. The e2e servers
    # write reports to files, counted below whatever became of the process (kill -9 too).
    export TSAN_OPTIONS="halt_on_error=0:exitcode=66:detect_deadlocks=1:second_deadlock_stack=1:suppressions=$ROOT/tests/tsan.supp"
    tsan_ok=1
    # No -Werror, as for ASan: this build is for the run-time checks.
    if [ ! -f build-tsan/build.ninja ]; then
        step tsan-setup "$LOG_DIR/tsan-setup.log" meson setup build-tsan \
            --buildtype=debugoptimized -Db_sanitize=thread -Dwerror=false || tsan_ok=0
    fi
    if [ "$tsan_ok" = 1 ]; then
        step tsan-build "$LOG_DIR/tsan-build.log" ninja -C build-tsan || tsan_ok=0
    fi
    if [ "$tsan_ok" = 0 ]; then
        record tsan-build 0 1 0 "ThreadSanitizer build failed"
    else
        # GCC 12's TSan runtime cannot place its shadow memory when the kernel randomises
        # mmap with more than 28 bits: then the stage runs without address randomisation.
        if ! build-tsan/meridian --help >/dev/null 2>"$LOG_DIR/tsan-probe.log" &&
            grep -q 'unexpected memory mapping' "$LOG_DIR/tsan-probe.log"; then
            RUN_PREFIX=(setarch "$(uname -m)" -R)
        fi
        run_unit tsan-unit build-tsan
        reports=$LOG_DIR/tsan-reports
        mkdir -p "$reports"
        run_pytest tsan-e2e MERIDIAN_BIN="$ROOT/build-tsan/meridian" \
            TSAN_OPTIONS="$TSAN_OPTIONS:log_path=$reports/tsan" \
            -- tests/e2e -k "$TSAN_E2E_FILTER"
        sanitizer_reports tsan-reports "$reports"
        RUN_PREFIX=()
    fi
    echo "=== tsan stage: $((SECONDS - tsan_start))s"
fi

finish
