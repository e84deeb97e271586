/* config: defaults, flags, environment, config file, precedence, bad values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static void test_defaults(void **state)
{
    struct config c;
    (void)state;
    config_defaults(&c);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 5000);
    assert_string_equal(c.data_dir, "./data");
    assert_int_equal(c.upload_ttl_s, 86400);
    assert_true(c.is_delete_enabled);
    assert_true(c.is_access_log);
    config_fini(&c);
}

static void test_flags(void **state)
{
    struct config c;
    struct err e = {0};
    bool help;
    char *argv[] = {"--listen", "127.0.1.2:0", "--data=/tmp/x", "--no-delete", "--threads",
                    "4", "--upload-ttl", "15m", "--no-access-log", "--log-level", "debug"};
    (void)state;
    config_defaults(&c);
    assert_int_equal(config_load(&c, 11, argv, &help, &e), 0);
    assert_false(help);
    assert_string_equal(c.listen_host, "127.0.1.2");
    assert_int_equal(c.listen_port, 0);
    assert_string_equal(c.data_dir, "/tmp/x");
    assert_false(c.is_delete_enabled);
    assert_false(c.is_access_log);
    assert_int_equal(c.threads, 4);
    assert_int_equal(c.upload_ttl_s, 900);
    assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
    config_fini(&c);
}

static void test_ipv6_listen(void **state)
{
    struct config c;
    struct err e = {0};
    (void)state;
    config_defaults(&c);
    assert_int_equal(config_set(&c, "listen", "[::1]:8080", &e), 0);
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 8080);
    config_fini(&c);
}

static void test_bad_values(void **state)
{
    static const struct {
        const char *key, *value;
    } bad[] = {
        {"listen", "nope"},        {"listen", "host:99999"}, {"listen", ":80"},
        {"threads", "0"},          {"threads", "x"},         {"upload-ttl", "5y"},
        {"upload-ttl", "-1"},      {"log-level", "loud"},    {"no-such-option", "1"},
        {"delete", "maybe"},       {"data", ""},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config c;
        struct err e = {0};
        config_defaults(&c);
        assert_int_equal(config_set(&c, bad[i].key, bad[i].value, &e), -1);
        assert_int_equal(e.code, ERR_BAD_REQUEST);
        assert_true(strlen(e.msg) > 0);
        config_fini(&c);
    }
}

/* Issue 9: slow bodies, the per-address cap and TLS suites have safe defaults. */
static void test_hardening_defaults_and_options(void **state)
{
    struct config c;
    struct err e = {0};
    (void)state;
    config_defaults(&c);
    assert_int_equal(c.conn_limit_per_ip, 128);
    assert_int_equal(c.body_timeout_s, 30);
    assert_int_equal(c.body_min_rate, 1024);
    assert_string_equal(c.tls_priorities, CONFIG_TLS_PRIORITIES_DEFAULT);
    assert_non_null(strstr(c.tls_priorities, "-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"));
    assert_non_null(strstr(c.tls_priorities, "-KX-ALL"));
    assert_null(strstr(c.tls_priorities, "+RSA"));
    char *argv[] = {"--body-timeout", "5s", "--body-min-rate", "0", "--tls-priorities",
                    "SECURE256", "--conn-limit-per-ip", "0"};
    bool help;
    assert_int_equal(config_load(&c, 8, argv, &help, &e), 0);
    assert_int_equal(c.body_timeout_s, 5);
    assert_int_equal(c.body_min_rate, 0);
    assert_int_equal(c.conn_limit_per_ip, 0);
    assert_string_equal(c.tls_priorities, "SECURE256");
    assert_int_equal(config_set(&c, "body-timeout", "0", &e), 0);
    assert_int_equal(c.body_timeout_s, 0);
    assert_int_equal(config_set(&c, "body-min-rate", "fast", &e), -1);
    assert_int_equal(config_set(&c, "tls-priorities", "", &e), -1);
    config_fini(&c);
}

/* Issue 18: --tls-min-version takes 1.2 or 1.3 only; --tls-ticket-key-file is a path;
 * the default groups put X25519 first (no HelloRetryRequest for the usual key share). */
static void test_tls_options(void **state)
{
    struct config c;
    struct err e = {0};
    (void)state;
    config_defaults(&c);
    assert_null(c.tls_min_version);
    assert_null(c.tls_ticket_key_file);
    assert_non_null(strstr(c.tls_priorities, "-GROUP-ALL:+GROUP-X25519:"));
    assert_int_equal(config_set(&c, "tls-min-version", "1.3", &e), 0);
    assert_string_equal(c.tls_min_version, "1.3");
    assert_int_equal(config_set(&c, "tls-min-version", "1.1", &e), -1);
    assert_int_equal(config_set(&c, "tls-min-version", "1.3x", &e), -1);
    assert_string_equal(c.tls_min_version, "1.3");
    assert_int_equal(config_set(&c, "tls-ticket-key-file", "/etc/meridian/ticket.key", &e), 0);
    assert_string_equal(c.tls_ticket_key_file, "/etc/meridian/ticket.key");
    config_fini(&c);
}

/* Issue 13: mutual TLS between regions. --peer-auth takes secret, cert or both; unset, it
 * follows what is configured (a peer CA turns certificates on, a secret as well keeps it). */
static void test_peer_auth(void **state)
{
    struct config c;
    struct err e = {0};
    (void)state;
    config_defaults(&c);
    assert_int_equal(config_peer_auth(&c), CONFIG_PEER_AUTH_SECRET);
    assert_int_equal(config_set(&c, "peer-secret", "s3cret-s3cret", &e), 0);
    assert_int_equal(config_peer_auth(&c), CONFIG_PEER_AUTH_SECRET);
    assert_int_equal(config_set(&c, "peer-ca", "/etc/meridian/peer-ca.pem", &e), 0);
    assert_int_equal(config_peer_auth(&c), CONFIG_PEER_AUTH_BOTH);
    free(c.peer_secret);
    c.peer_secret = NULL;
    assert_int_equal(config_peer_auth(&c), CONFIG_PEER_AUTH_CERT);
    assert_int_equal(config_set(&c, "peer-auth", "secret", &e), 0);
    assert_int_equal(config_peer_auth(&c), CONFIG_PEER_AUTH_SECRET);
    assert_int_equal(config_set(&c, "peer-auth", "both", &e), 0);
    assert_int_equal(config_peer_auth(&c), CONFIG_PEER_AUTH_BOTH);
    assert_int_equal(config_set(&c, "peer-auth", "certs", &e), -1);
    assert_non_null(strstr(err_message(&e), "peer-auth"));
    assert_int_equal(config_peer_auth(&c), CONFIG_PEER_AUTH_BOTH);
    assert_int_equal(config_set(&c, "peer-tls-cert", "r1.pem", &e), 0);
    assert_int_equal(config_set(&c, "peer-tls-key", "r1.key", &e), 0);
    assert_string_equal(c.peer_tls_cert_file, "r1.pem");
    assert_string_equal(c.peer_tls_key_file, "r1.key");
    config_fini(&c);
}

static void test_durations(void **state)
{
    int64_t v;
    (void)state;
    assert_int_equal(config_parse_duration("90", &v), 0);
    assert_int_equal(v, 90);
    assert_int_equal(config_parse_duration("2d", &v), 0);
    assert_int_equal(v, 172800);
    assert_int_equal(config_parse_duration("24h", &v), 0);
    assert_int_equal(v, 86400);
    assert_int_equal(config_parse_duration("", &v), -1);
    assert_int_equal(config_parse_duration("h", &v), -1);
    assert_int_equal(config_parse_duration("1.5h", &v), -1);
}

/* File < environment < flags. */
static void test_scrub_options(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint64_t bytes;
    } sizes[] = {
        {"0", 0, 0},           {"1048576", 0, 1048576}, {"512K", 0, 512u << 10},
        {"64M", 0, 64u << 20}, {"2g", 0, 2ull << 30},   {"", -1, 0},
        {"M", -1, 0},          {"1.5M", -1, 0},         {"-1", -1, 0},
        {"99999999999999999999", -1, 0},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t v = 12345;
        assert_int_equal(config_parse_bytes(sizes[i].text, &v), sizes[i].rc);
        if (sizes[i].rc == 0)
            assert_int_equal(v, sizes[i].bytes);
    }
    struct config cfg;
    struct err e = {0};
    config_defaults(&cfg);
    assert_int_equal(cfg.scrub_interval_s, 7 * 86400);
    assert_int_equal(cfg.scrub_rate_bytes, 32u << 20);
    assert_int_equal(config_set(&cfg, "scrub-interval", "0", &e), 0);
    assert_int_equal(cfg.scrub_interval_s, 0);
    assert_int_equal(config_set(&cfg, "scrub-rate", "8M", &e), 0);
    assert_int_equal(cfg.scrub_rate_bytes, 8u << 20);
    assert_int_equal(config_set(&cfg, "scrub-rate", "fast", &e), -1);
    assert_int_equal(e.code, ERR_BAD_REQUEST);
    config_fini(&cfg);
}

static void test_precedence(void **state)
{
    char path[] = "/tmp/meridian-config-XXXXXX";
    int fd = mkstemp(path);
    (void)state;
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# comment\nregion = \"from-file\"\ndata = /from/file\nthreads = 3\n"
               "upload-ttl = 1h\n");
    fclose(f);
    setenv("MERIDIAN_DATA", "/from/env", 1);
    setenv("MERIDIAN_THREADS", "5", 1);
    char *argv[] = {"--config", path, "--threads", "7"};
    struct config c;
    struct err e = {0};
    bool help;
    config_defaults(&c);
    assert_int_equal(config_load(&c, 4, argv, &help, &e), 0);
    assert_string_equal(c.region, "from-file");
    assert_string_equal(c.data_dir, "/from/env");
    assert_int_equal(c.threads, 7);
    assert_int_equal(c.upload_ttl_s, 3600);
    config_fini(&c);
    unsetenv("MERIDIAN_DATA");
    unsetenv("MERIDIAN_THREADS");
    unlink(path);
}

static void test_bad_file_line(void **state)
{
    char path[] = "/tmp/meridian-config-XXXXXX";
    int fd = mkstemp(path);
    (void)state;
    FILE *f = fdopen(fd, "w");
    fprintf(f, "threads = 2\nthis line has no equals sign\n");
    fclose(f);
    char *argv[] = {"--config", path};
    struct config c;
    struct err e = {0};
    bool help;
    config_defaults(&c);
    assert_int_equal(config_load(&c, 2, argv, &help, &e), -1);
    assert_non_null(strstr(e.msg, ":2:"));
    config_fini(&c);
    unlink(path);
}

/* --region-location LAT,LON: degrees in range, nothing else; --console-dir a path. */
static void test_console_options(void **state)
{
    static const struct {
        const char *value;
        bool is_ok;
        double lat, lon;
    } cases[] = {
        {"50.11,8.68", true, 50.11, 8.68},   {"-33.9,151.2", true, -33.9, 151.2},
        {"90,180", true, 90, 180},           {"-90,-180", true, -90, -180},
        {"0,0", true, 0, 0},                 {"90.1,0", false, 0, 0},
        {"0,180.5", false, 0, 0},            {"50.1", false, 0, 0},
        {"50.1,", false, 0, 0},              {",8.6", false, 0, 0},
        {"50.1,8.6,1", false, 0, 0},         {"nan,0", false, 0, 0},
        {"inf,0", false, 0, 0},              {"50.1;8.6", false, 0, 0},
        {"50.1, 8.6x", false, 0, 0},         {"north,east", false, 0, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config c;
        struct err e = {0};
        config_defaults(&c);
        assert_false(c.has_location);
        int rc = config_set(&c, "region-location", cases[i].value, &e);
        if (cases[i].is_ok) {
            assert_int_equal(rc, 0);
            assert_true(c.has_location);
            assert_true(c.latitude == cases[i].lat && c.longitude == cases[i].lon);
        } else {
            assert_int_equal(rc, -1);
            assert_false(c.has_location);
            assert_non_null(strstr(e.msg, "region-location"));
        }
        config_fini(&c);
    }
    struct config c;
    struct err e = {0};
    config_defaults(&c);
    assert_null(c.console_dir);
    assert_int_equal(config_set(&c, "console-dir", "/srv/console", &e), 0);
    assert_string_equal(c.console_dir, "/srv/console");
    config_fini(&c);
}

/* Data endpoints: a second listen address, the redirect base URL and the URLs' lifetime. */
static void test_data_endpoint_options(void **state)
{
    struct config c;
    struct err e = {0};
    (void)state;
    config_defaults(&c);
    assert_null(c.data_listen_host);
    assert_null(c.data_endpoint);
    assert_int_equal(c.data_url_ttl_s, 60);
    assert_int_equal(config_set(&c, "data-listen", "[::1]:5001", &e), 0);
    assert_string_equal(c.data_listen_host, "::1");
    assert_int_equal(c.data_listen_port, 5001);
    assert_string_equal(c.listen_host, "127.0.0.1"); /* the main listener is untouched */
    assert_int_equal(c.listen_port, 5000);
    assert_int_equal(config_set(&c, "data-endpoint", "https://westeurope.data.example", &e), 0);
    assert_string_equal(c.data_endpoint, "https://westeurope.data.example");
    assert_int_equal(config_set(&c, "data-endpoint", "westeurope.data.example", &e), -1);
    assert_int_equal(e.code, ERR_BAD_REQUEST);
    assert_int_equal(config_set(&c, "data-listen", "nohostport", &e), -1);
    assert_int_equal(config_set(&c, "data-url-ttl", "5m", &e), 0);
    assert_int_equal(c.data_url_ttl_s, 300);
    config_fini(&c);
}

static void test_help_and_unexpected(void **state)
{
    char *help_argv[] = {"--help"};
    char *bad_argv[] = {"positional"};
    struct config c;
    struct err e = {0};
    bool help;
    (void)state;
    config_defaults(&c);
    assert_int_equal(config_load(&c, 1, help_argv, &help, &e), 0);
    assert_true(help);
    assert_int_equal(config_load(&c, 1, bad_argv, &help, &e), -1);
    config_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),    cmocka_unit_test(test_flags),
        cmocka_unit_test(test_ipv6_listen), cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_durations),   cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_scrub_options),
        cmocka_unit_test(test_bad_file_line), cmocka_unit_test(test_help_and_unexpected),
        cmocka_unit_test(test_hardening_defaults_and_options),
        cmocka_unit_test(test_tls_options),  cmocka_unit_test(test_peer_auth),
        cmocka_unit_test(test_console_options),
        cmocka_unit_test(test_data_endpoint_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
