/* Unit tests for auth.c (roles, patterns, the Authorization header, scopes, base64url,
 * HS256 tokens) and the parts of secret.c they rely on. Tables of input and expected
 * output where the behaviour is a mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* cmocka.h needs the four headers above first. */
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "base64.h"
#include "config.h"
#include "secret.h"

static void test_roles(void **state)
{
    (void)state;
    enum auth_role r;
    assert_int_equal(auth_role_parse("consumer", &r), 0);
    assert_int_equal(r, AUTH_ROLE_CONSUMER);
    assert_int_equal(auth_role_parse("publisher", &r), 0);
    assert_int_equal(r, AUTH_ROLE_PUBLISHER);
    assert_int_equal(auth_role_parse("admin", &r), 0);
    assert_int_equal(r, AUTH_ROLE_ADMIN);
    assert_int_equal(auth_role_parse("Admin", &r), -1);
    assert_int_equal(auth_role_parse("", &r), -1);
    assert_int_equal(auth_role_parse(NULL, &r), -1);
    assert_int_equal(auth_role_perms(AUTH_ROLE_CONSUMER), AUTH_PERM_PULL);
    assert_int_equal(auth_role_perms(AUTH_ROLE_PUBLISHER),
                     AUTH_PERM_PULL | AUTH_PERM_PUSH | AUTH_PERM_DELETE);
    assert_true(auth_role_perms(AUTH_ROLE_ADMIN) & AUTH_PERM_ADMIN);
    assert_false(auth_role_perms(AUTH_ROLE_PUBLISHER) & AUTH_PERM_ADMIN);
    assert_string_equal(auth_role_name(AUTH_ROLE_PUBLISHER), "publisher");
}

static void test_names_and_patterns(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool is_name;
        bool is_pattern;
    } cases[] = {
        {"alice", true, true},      {"ci-bot.2", true, true}, {"a_b", true, true},
        {"-x", false, true},        {"Alice", false, false},  {"peer", false, true},
        {"anonymous", false, true}, {"a b", false, false},    {"a:b", false, false},
        {"golden/*", false, true},  {"*", false, true},       {"team/app", false, true},
        {"", false, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(auth_name_is_valid(cases[i].s, strlen(cases[i].s)), cases[i].is_name);
        assert_int_equal(auth_pattern_is_valid(cases[i].s, strlen(cases[i].s)),
                         cases[i].is_pattern);
    }
    char long_name[AUTH_NAME_MAX + 2];
    memset(long_name, 'a', sizeof(long_name));
    assert_true(auth_name_is_valid(long_name, AUTH_NAME_MAX));
    assert_false(auth_name_is_valid(long_name, AUTH_NAME_MAX + 1));
}

static void test_policy(void **state)
{
    (void)state;
    static const struct auth_binding b[] = {
        {"alice", AUTH_ROLE_PUBLISHER, "golden/*"},    {"alice", AUTH_ROLE_CONSUMER, "*"},
        {"bob", AUTH_ROLE_CONSUMER, "golden/app"},     {"root", AUTH_ROLE_ADMIN, "*"},
        {"anonymous", AUTH_ROLE_CONSUMER, "public/*"},
    };
    size_t n = sizeof(b) / sizeof(b[0]);
    unsigned pub = AUTH_PERM_PULL | AUTH_PERM_PUSH | AUTH_PERM_DELETE;
    static const struct {
        const char *subject;
        const char *repo;
        unsigned perms;
    } cases[] = {
        {"alice", "golden/app", AUTH_PERM_PULL | AUTH_PERM_PUSH | AUTH_PERM_DELETE},
        {"alice", "golden/a/b", AUTH_PERM_PULL | AUTH_PERM_PUSH | AUTH_PERM_DELETE},
        {"alice", "golden", AUTH_PERM_PULL}, /* the pattern needs the slash */
        {"alice", "other/x", AUTH_PERM_PULL},
        {"bob", "golden/app", AUTH_PERM_PULL},
        {"bob", "golden/app2", 0},
        {"bob", "golden/ap", 0},
        {"carol", "golden/app", 0},
        {"anonymous", "public/x", AUTH_PERM_PULL},
        {"anonymous", "golden/app", 0},
        {"root", "anything/at/all",
         AUTH_PERM_PULL | AUTH_PERM_PUSH | AUTH_PERM_DELETE | AUTH_PERM_ADMIN},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(auth_policy_perms(b, n, cases[i].subject, cases[i].repo), cases[i].perms);
    /* NULL repo: only "*" bindings count (registry-wide). */
    assert_int_equal(auth_policy_perms(b, n, "alice", NULL), AUTH_PERM_PULL);
    assert_true(auth_policy_perms(b, n, "root", NULL) & AUTH_PERM_ADMIN);
    assert_int_equal(auth_policy_perms(b, n, "bob", NULL), 0);
    (void)pub;
}

static char *basic(const char *raw)
{
    char *b64 = base64_encode(raw, strlen(raw));
    size_t n = strlen(b64) + 8;
    char *v = malloc(n);
    snprintf(v, n, "Basic %s", b64);
    free(b64);
    return v;
}

static void test_authorization_basic(void **state)
{
    (void)state;
    struct auth_credentials c;
    char *v = basic("alice:s3cret:with:colons");
    assert_int_equal(auth_parse_authorization(v, strlen(v), &c), AUTH_SCHEME_BASIC);
    assert_string_equal(c.user, "alice");
    assert_string_equal(c.secret, "s3cret:with:colons");
    assert_int_equal(c.secret_len, strlen("s3cret:with:colons"));
    auth_credentials_wipe(&c);
    assert_int_equal(c.scheme, AUTH_SCHEME_BASIC);
    assert_string_equal(c.secret, "");
    free(v);

    /* scheme case-insensitive, several spaces, trailing space */
    v = basic("bob:pw");
    v[0] = 'b';
    v[2] = 'S';
    char spaced[128];
    snprintf(spaced, sizeof(spaced), "bASIC   %s  ", v + 6);
    assert_int_equal(auth_parse_authorization(spaced, strlen(spaced), &c), AUTH_SCHEME_BASIC);
    assert_string_equal(c.user, "bob");
    assert_string_equal(c.secret, "pw");
    free(v);

    /* empty password is allowed by the grammar; an empty user is not */
    v = basic("bob:");
    assert_int_equal(auth_parse_authorization(v, strlen(v), &c), AUTH_SCHEME_BASIC);
    assert_string_equal(c.secret, "");
    free(v);
    static const char *const bad[] = {"nocolon", ":pw", ""};
    for (size_t i = 0; i < 3; i++) {
        v = basic(bad[i]);
        assert_int_equal(auth_parse_authorization(v, strlen(v), &c), AUTH_SCHEME_INVALID);
        free(v);
    }
    static const char *const malformed[] = {"Basic",
                                            "Basic ",
                                            "Basic !!!!",
                                            "Basic YWJj",
                                            "Basic YWxpY2U6cHc",
                                            "Basicx YWxpY2U6cHc=",
                                            "Digest abc",
                                            "Negotiate",
                                            "Bearer",
                                            "Bearer  ",
                                            "Bearer a b",
                                            "Bearer a\"b"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        assert_int_equal(auth_parse_authorization(malformed[i], strlen(malformed[i]), &c),
                         AUTH_SCHEME_INVALID);
    assert_int_equal(auth_parse_authorization(NULL, 0, &c), AUTH_SCHEME_NONE);

    /* NUL inside the credentials is refused */
    char raw[] = "al\0ce:pw";
    char *b64 = base64_encode(raw, sizeof(raw) - 1);
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "Basic %s", b64);
    free(b64);
    assert_int_equal(auth_parse_authorization(hdr, strlen(hdr), &c), AUTH_SCHEME_INVALID);

    /* over-long user or secret */
    char big[AUTH_SECRET_MAX + 80];
    memset(big, 'a', sizeof(big));
    big[AUTH_NAME_MAX + 1] = ':';
    big[sizeof(big) - 1] = '\0';
    v = basic(big);
    assert_int_equal(auth_parse_authorization(v, strlen(v), &c), AUTH_SCHEME_INVALID);
    free(v);

    /* auth_basic_value round trip */
    v = auth_basic_value("robot-1", "x:y z");
    assert_int_equal(auth_parse_authorization(v, strlen(v), &c), AUTH_SCHEME_BASIC);
    assert_string_equal(c.user, "robot-1");
    assert_string_equal(c.secret, "x:y z");
    free(v);
}

static void test_authorization_bearer(void **state)
{
    (void)state;
    struct auth_credentials c;
    const char *v = "Bearer abc.DEF-_~+/=";
    assert_int_equal(auth_parse_authorization(v, strlen(v), &c), AUTH_SCHEME_BEARER);
    assert_int_equal(c.token_len, strlen("abc.DEF-_~+/="));
    assert_memory_equal(c.token, "abc.DEF-_~+/=", c.token_len);
    v = "bearer tok";
    assert_int_equal(auth_parse_authorization(v, strlen(v), &c), AUTH_SCHEME_BEARER);
    /* the length given counts, not a NUL */
    assert_int_equal(auth_parse_authorization("Bearer tokXYZ", 10, &c), AUTH_SCHEME_BEARER);
    assert_int_equal(c.token_len, 3);
    static char huge[AUTH_TOKEN_MAX + 16];
    memcpy(huge, "Bearer ", 7);
    memset(huge + 7, 'a', AUTH_TOKEN_MAX + 1);
    huge[AUTH_TOKEN_MAX + 8] = '\0';
    assert_int_equal(auth_parse_authorization(huge, strlen(huge), &c), AUTH_SCHEME_INVALID);
    huge[AUTH_TOKEN_MAX + 7] = '\0'; /* exactly the cap */
    assert_int_equal(auth_parse_authorization(huge, strlen(huge), &c), AUTH_SCHEME_BEARER);
}

static void test_peer_authorization(void **state)
{
    (void)state;
    struct config cfg;
    config_defaults(&cfg);
    assert_null(auth_peer_authorization(&cfg));
    assert_int_equal(config_set(&cfg, "peer-secret", "shh-its-a-secret", NULL), 0);
    const char *v = auth_peer_authorization(&cfg);
    assert_non_null(v);
    assert_ptr_equal(v, auth_peer_authorization(&cfg)); /* computed once */
    struct auth_credentials c;
    assert_int_equal(auth_parse_authorization(v, strlen(v), &c), AUTH_SCHEME_BASIC);
    assert_string_equal(c.user, AUTH_PEER_USER);
    assert_string_equal(c.secret, "shh-its-a-secret");
    config_fini(&cfg);
}

static void test_scope(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        size_t n;
        const char *first_name;
        unsigned first_perms;
    } cases[] = {
        {"repository:samalba/my-app:pull,push", 0, 1, "samalba/my-app",
         AUTH_PERM_PULL | AUTH_PERM_PUSH},
        {"repository:a:pull repository:b:push", 0, 2, "a", AUTH_PERM_PULL},
        {"repository:a:*", 0, 1, "a", AUTH_PERM_PULL | AUTH_PERM_PUSH | AUTH_PERM_DELETE},
        {"repository:a:delete", 0, 1, "a", AUTH_PERM_DELETE},
        {"repository:a:pull repository:a:push", 0, 1, "a", AUTH_PERM_PULL | AUTH_PERM_PUSH},
        {"repository(plugin):a:pull", 0, 1, "a", AUTH_PERM_PULL},
        {"registry:catalog:*", 0, 1, "catalog", AUTH_PERM_PULL},
        {"repository:a:frobnicate", 0, 0, NULL, 0},
        {"repository:a:", 0, 0, NULL, 0},
        {"registry:catalog:c", 0, 0, NULL, 0}, /* found by fuzz_auth_header */
        {"repository:a:frob,pull", 0, 1, "a", AUTH_PERM_PULL},
        {"repository:localhost:5000/a:pull", 0, 0, NULL, 0}, /* not a repository name here */
        {"repository:Upper:pull", 0, 0, NULL, 0},
        {"other:thing:pull", 0, 0, NULL, 0},
        {"   ", 0, 0, NULL, 0},
        {"", 0, 0, NULL, 0},
        {"repository:a", -1, 0, NULL, 0},
        {"repository", -1, 0, NULL, 0},
        {":a:pull", -1, 0, NULL, 0},
        {"repository::pull", -1, 0, NULL, 0},
        {"Repository:a:pull", -1, 0, NULL, 0},
        {"repository:a:PULL", -1, 0, NULL, 0},
        {"repository(:a:pull", -1, 0, NULL, 0},
        {"repository:a\"b:pull", -1, 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct auth_access out[AUTH_TOKEN_MAX_ACCESS];
        size_t n = 0;
        int rc = auth_parse_scope(cases[i].in, strlen(cases[i].in), out, AUTH_TOKEN_MAX_ACCESS, &n);
        if (rc != cases[i].rc)
            fail_msg("scope \"%s\": rc %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc != 0)
            continue;
        if (n != cases[i].n)
            fail_msg("scope \"%s\": %zu entries, want %zu", cases[i].in, n, cases[i].n);
        if (n > 0) {
            assert_string_equal(out[0].name, cases[i].first_name);
            assert_int_equal(out[0].perms, cases[i].first_perms);
        }
    }
    /* the cap holds */
    struct auth_access two[2];
    size_t n = 0;
    const char *three = "repository:a:pull repository:b:pull repository:c:pull";
    assert_int_equal(auth_parse_scope(three, strlen(three), two, 2, &n), -1);
    assert_int_equal(n, 2);
    /* formatting gives back a parseable scope */
    struct auth_access a = {
        .type = AUTH_RES_REPOSITORY, .name = "x/y", .perms = AUTH_PERM_PULL | AUTH_PERM_DELETE};
    struct buf b;
    buf_init(&b, 1024);
    auth_format_scope(&a, &b);
    assert_string_equal(b.data, "repository:x/y:pull,delete");
    buf_fini(&b);
}

static void test_b64url(void **state)
{
    (void)state;
    static const struct {
        const char *raw;
        const char *enc;
    } v[] = {{"", ""},        {"f", "Zg"},        {"fo", "Zm8"},
             {"foo", "Zm9v"}, {"foob", "Zm9vYg"}, {"\xfb\xff", "-_8"}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char out[32];
        uint8_t back[32];
        long n = auth_b64url_encode(v[i].raw, strlen(v[i].raw), out, sizeof(out));
        assert_int_equal(n, (long)strlen(v[i].enc));
        assert_string_equal(out, v[i].enc);
        n = auth_b64url_decode(out, strlen(out), back, sizeof(back));
        assert_int_equal(n, (long)strlen(v[i].raw));
        assert_memory_equal(back, v[i].raw, (size_t)n);
    }
    uint8_t out[8];
    assert_int_equal(auth_b64url_decode("Zg==", 4, out, sizeof(out)), -1);
    assert_int_equal(auth_b64url_decode("Z", 1, out, sizeof(out)), -1);
    assert_int_equal(auth_b64url_decode("Zh", 2, out, sizeof(out)), -1); /* stray bits */
    assert_int_equal(auth_b64url_decode("a+b/", 4, out, sizeof(out)), -1);
    assert_int_equal(auth_b64url_decode("Zm9vYmFyYmF6", 12, out, 8), -1);
    char small[4];
    assert_int_equal(auth_b64url_encode("foo", 3, small, sizeof(small)), -1);
}

static struct auth_token_key test_key(uint8_t fill)
{
    struct auth_token_key k;
    memset(k.bytes, fill, sizeof(k.bytes));
    auth_token_key_id(&k);
    return k;
}

static char *signed_token(const struct auth_token *t, const struct auth_token_key *k,
                          const char *aud)
{
    struct buf b;
    buf_init(&b, AUTH_TOKEN_MAX);
    assert_int_equal(auth_token_sign(t, "meridian", aud, k, &b), 0);
    return buf_steal(&b, NULL);
}

/* The secret mark: carried when set, absent from a token issued without one, and a mark
 * of the wrong length makes the claims malformed. */
static void test_token_secret_mark(void **state)
{
    (void)state;
    struct auth_token_key k = test_key(9);
    struct auth_token t = {.sub = "dan", .iat_s = 1000, .exp_s = 1300, .jti = "j2"};
    char mark[AUTH_SECRET_MARK_LEN + 1], other[AUTH_SECRET_MARK_LEN + 1];
    auth_secret_mark("$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA", mark);
    auth_secret_mark("$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$b3RoZXI", other);
    assert_int_equal(strlen(mark), AUTH_SECRET_MARK_LEN);
    assert_string_not_equal(mark, other);
    snprintf(t.sh, sizeof(t.sh), "%s", mark);
    char *tok = signed_token(&t, &k, "meridian");
    struct auth_token got;
    struct err e = {0};
    assert_int_equal(
        auth_token_verify(tok, strlen(tok), &k, "meridian", "meridian", 1100, &got, &e), 0);
    assert_string_equal(got.sh, mark);
    free(tok);
    t.sh[0] = '\0';
    tok = signed_token(&t, &k, "meridian");
    assert_int_equal(
        auth_token_verify(tok, strlen(tok), &k, "meridian", "meridian", 1100, &got, &e), 0);
    assert_string_equal(got.sh, "");
    free(tok);
    snprintf(t.sh, sizeof(t.sh), "%s", "abc");
    tok = signed_token(&t, &k, "meridian");
    assert_int_equal(
        auth_token_verify(tok, strlen(tok), &k, "meridian", "meridian", 1100, &got, &e), -1);
    assert_string_equal(err_message(&e), "malformed token claims");
    free(tok);
}

static void test_token_round_trip(void **state)
{
    (void)state;
    struct auth_token_key k = test_key(7);
    assert_int_equal(strlen(k.kid), 16);
    struct auth_token t = {.sub = "alice", .iat_s = 1000, .exp_s = 1300, .jti = "j1"};
    t.access[0] =
        (struct auth_access){AUTH_RES_REPOSITORY, "golden/app", AUTH_PERM_PULL | AUTH_PERM_PUSH};
    t.access[1] = (struct auth_access){AUTH_RES_CATALOG, "catalog", AUTH_PERM_PULL};
    t.access[2] = (struct auth_access){AUTH_RES_REPOSITORY, "x", AUTH_PERM_DELETE};
    t.n_access = 3;
    char *tok = signed_token(&t, &k, "meridian");
    struct auth_token got;
    struct err e = {0};
    assert_int_equal(
        auth_token_verify(tok, strlen(tok), &k, "meridian", "meridian", 1100, &got, &e), 0);
    assert_string_equal(got.sub, "alice");
    assert_string_equal(got.jti, "j1");
    assert_int_equal(got.exp_s, 1300);
    assert_int_equal(got.n_access, 3);
    assert_int_equal(auth_token_perms(&got, AUTH_RES_REPOSITORY, "golden/app"),
                     AUTH_PERM_PULL | AUTH_PERM_PUSH);
    assert_int_equal(auth_token_perms(&got, AUTH_RES_CATALOG, "catalog"), AUTH_PERM_PULL);
    assert_int_equal(auth_token_perms(&got, AUTH_RES_REPOSITORY, "x"), AUTH_PERM_DELETE);
    assert_int_equal(auth_token_perms(&got, AUTH_RES_REPOSITORY, "golden/other"), 0);
    free(tok);

    /* an anonymous token with no access */
    struct auth_token anon = {.sub = "", .iat_s = 1000, .exp_s = 1060};
    tok = signed_token(&anon, &k, "meridian");
    assert_int_equal(
        auth_token_verify(tok, strlen(tok), &k, "meridian", "meridian", 1000, &got, &e), 0);
    assert_string_equal(got.sub, "");
    assert_int_equal(got.n_access, 0);
    free(tok);
}

static void test_token_rejects(void **state)
{
    (void)state;
    struct auth_token_key k = test_key(7);
    struct auth_token_key other = test_key(8);
    struct auth_token t = {.sub = "alice", .iat_s = 1000, .exp_s = 1300};
    t.access[0] = (struct auth_access){AUTH_RES_REPOSITORY, "a", AUTH_PERM_PULL};
    t.n_access = 1;
    char *tok = signed_token(&t, &k, "meridian");
    size_t len = strlen(tok);
    struct auth_token got;
    struct err e = {0};

    assert_int_equal(auth_token_verify(tok, len, &k, "meridian", "meridian", 1300, &got, &e), -1);
    assert_int_equal(e.code, ERR_UNAUTHORIZED);
    assert_string_equal(e.msg, "token expired");
    assert_int_equal(auth_token_verify(tok, len, &other, "meridian", "meridian", 1100, &got, &e),
                     -1);
    assert_int_equal(auth_token_verify(tok, len, &k, "meridian", "elsewhere", 1100, &got, &e), -1);
    assert_int_equal(auth_token_verify(tok, len, &k, "someone", "meridian", 1100, &got, &e), -1);
    assert_int_equal(auth_token_verify(tok, len, &k, "meridian", "meridian", 900, &got, &e), -1);
    assert_string_equal(e.msg, "token not valid yet");
    /* every single-character change breaks it */
    for (size_t i = 0; i < len; i++) {
        char saved = tok[i];
        tok[i] = saved == 'A' ? 'B' : 'A';
        if (tok[i] != saved)
            assert_int_equal(
                auth_token_verify(tok, len, &k, "meridian", "meridian", 1100, &got, &e), -1);
        tok[i] = saved;
    }
    /* truncated, no dots, empty */
    assert_int_equal(auth_token_verify(tok, len - 1, &k, "meridian", "meridian", 1100, &got, &e),
                     -1);
    assert_int_equal(auth_token_verify("abc", 3, &k, "meridian", "meridian", 1100, &got, &e), -1);
    assert_int_equal(auth_token_verify("", 0, &k, "meridian", "meridian", 1100, &got, &e), -1);
    free(tok);

    /* alg "none" with the right claims and an empty signature */
    const char *hdr = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    const char *claims =
        "{\"iss\":\"meridian\",\"sub\":\"root\",\"aud\":\"meridian\",\"exp\":9999,"
        "\"access\":[{\"type\":\"repository\",\"name\":\"a\",\"actions\":[\"*\"]}]}";
    char forged[1024];
    char h64[256], c64[512];
    auth_b64url_encode(hdr, strlen(hdr), h64, sizeof(h64));
    auth_b64url_encode(claims, strlen(claims), c64, sizeof(c64));
    snprintf(forged, sizeof(forged), "%s.%s.", h64, c64);
    assert_int_equal(
        auth_token_verify(forged, strlen(forged), &k, "meridian", "meridian", 1100, &got, &e), -1);
    /* a correctly signed HS256 token whose header names another algorithm */
    const char *hdr2 = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    auth_b64url_encode(hdr2, strlen(hdr2), h64, sizeof(h64));
    snprintf(forged, sizeof(forged), "%s.%s", h64, c64);
    uint8_t mac[SECRET_HMAC_BYTES];
    secret_hmac_sha256(k.bytes, sizeof(k.bytes), forged, strlen(forged), mac);
    char m64[64];
    auth_b64url_encode(mac, sizeof(mac), m64, sizeof(m64));
    strcat(forged, ".");
    strcat(forged, m64);
    assert_int_equal(
        auth_token_verify(forged, strlen(forged), &k, "meridian", "meridian", 1100, &got, &e), -1);
    assert_string_equal(e.msg, "unsupported token algorithm");
}

static void test_secrets(void **state)
{
    (void)state;
    char hash[SECRET_HASH_MAX];
    assert_int_equal(secret_hash_password("correct horse", 13, hash), 0);
    assert_memory_equal(hash, "$argon2id$", 10);
    assert_true(secret_verify_password(hash, "correct horse", 13));
    assert_false(secret_verify_password(hash, "correct horsf", 13));
    assert_false(secret_verify_password(hash, "correct hors", 12));
    assert_false(secret_verify_password("$2y$10$abcdefghijklmnopqrstuv", "x", 1));
    char again[SECRET_HASH_MAX];
    assert_int_equal(secret_hash_password("correct horse", 13, again), 0);
    assert_string_not_equal(hash, again); /* salted */
    assert_true(secret_equal("abc", 3, "abc", 3));
    assert_false(secret_equal("abc", 3, "abd", 3));
    assert_false(secret_equal("abc", 3, "abcd", 4));
    char t1[64], t2[64];
    secret_random_token(32, t1, sizeof(t1));
    secret_random_token(32, t2, sizeof(t2));
    assert_int_equal(strlen(t1), 43);
    assert_string_not_equal(t1, t2);
    /* RFC 4231 test case 2 */
    uint8_t mac[SECRET_HMAC_BYTES];
    secret_hmac_sha256((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, mac);
    static const uint8_t want[] = {0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
                                   0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
                                   0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    assert_memory_equal(mac, want, sizeof(want));
}

static void test_config_auth(void **state)
{
    (void)state;
    struct config cfg;
    config_defaults(&cfg);
    assert_false(config_is_auth_on(&cfg)); /* 127.0.0.1 */
    assert_int_equal(config_set(&cfg, "listen", "0.0.0.0:5000", NULL), 0);
    assert_true(config_is_auth_on(&cfg));
    assert_int_equal(config_set(&cfg, "no-auth", NULL, NULL), 0);
    assert_false(config_is_auth_on(&cfg));
    assert_int_equal(config_set(&cfg, "listen", "127.0.1.2:5000", NULL), 0);
    assert_int_equal(config_set(&cfg, "auth", NULL, NULL), 0);
    assert_true(config_is_auth_on(&cfg));
    assert_int_equal(config_set(&cfg, "auth", "false", NULL), 0);
    assert_false(config_is_auth_on(&cfg));
    assert_int_equal(config_set(&cfg, "token-ttl", "2s", NULL), 0);
    assert_int_equal(cfg.token_ttl_s, 2);
    assert_int_equal(config_set(&cfg, "conn-limit-per-ip", "0", NULL), 0);
    assert_int_equal(config_set(&cfg, "upload-limit-per-identity", "0", NULL), -1);
    assert_int_equal(config_set(&cfg, "tls-cert", "/x.pem", NULL), 0);
    assert_string_equal(cfg.tls_cert_file, "/x.pem");
    config_fini(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_names_and_patterns),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_authorization_basic),
        cmocka_unit_test(test_authorization_bearer),
        cmocka_unit_test(test_peer_authorization),
        cmocka_unit_test(test_scope),
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_token_round_trip),
        cmocka_unit_test(test_token_secret_mark),
        cmocka_unit_test(test_token_rejects),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_config_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
