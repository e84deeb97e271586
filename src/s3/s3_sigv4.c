/* AWS Signature Version 4 (docs.aws.amazon.com, "Signature Version 4 signing process"):
 * canonical request -> string to sign -> signature under a key derived from the secret,
 * the date, the region and the service. */
#include "s3_sigv4.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "digest.h"
#include "secret.h"

void s3_sigv4_date(int64_t t, char out[S3_AMZ_DATE_LEN])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, S3_AMZ_DATE_LEN, "%Y%m%dT%H%M%SZ", &tm);
}

size_t s3_uri_encode(const char *s, int keep_slash, char *out, size_t out_len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char tmp[4];
        size_t k;
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/')) {
            tmp[0] = (char)*p;
            k = 1;
        } else {
            tmp[0] = '%';
            tmp[1] = hex[*p >> 4];
            tmp[2] = hex[*p & 15];
            k = 3;
        }
        for (size_t i = 0; i < k; i++, n++)
            if (n + 1 < out_len)
                out[n] = tmp[i];
    }
    if (out_len > 0)
        out[n < out_len ? n : out_len - 1] = '\0';
    return n;
}

static void hex_of(const uint8_t *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The hex signature of a canonical request. */
static void sign(const struct s3_creds *c, const char *amz_date, const char *canonical,
                 char sig[2 * SECRET_HMAC_BYTES + 1])
{
    struct digest d;
    digest_of_buffer(DIGEST_SHA256, canonical, strlen(canonical), &d);
    char date[9];
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    struct buf sts;
    buf_init(&sts, SIZE_MAX);
    buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/s3/aws4_request\n%s", amz_date, date,
               c->region, digest_hex(&d));
    char k0[256];
    snprintf(k0, sizeof(k0), "AWS4%s", c->secret_key);
    uint8_t k1[SECRET_HMAC_BYTES], k2[SECRET_HMAC_BYTES], k3[SECRET_HMAC_BYTES],
        k4[SECRET_HMAC_BYTES], out[SECRET_HMAC_BYTES];
    secret_hmac_sha256((const uint8_t *)k0, strlen(k0), date, 8, k1);
    secret_hmac_sha256(k1, sizeof(k1), c->region, strlen(c->region), k2);
    secret_hmac_sha256(k2, sizeof(k2), "s3", 2, k3);
    secret_hmac_sha256(k3, sizeof(k3), "aws4_request", 12, k4);
    secret_hmac_sha256(k4, sizeof(k4), sts.data, sts.len, out);
    hex_of(out, sizeof(out), sig);
    secret_wipe(k0, sizeof(k0));
    buf_fini(&sts);
}

char *s3_sigv4_authorization(const struct s3_creds *c, const char *method, const char *path,
                             const char *query, const struct s3_sig_header *headers,
                             size_t n_headers, const char *payload_hash, const char *amz_date)
{
    struct buf cr, names;
    buf_init(&cr, SIZE_MAX);
    buf_init(&names, SIZE_MAX);
    buf_printf(&cr, "%s\n%s\n%s\n", method, path, query);
    for (size_t i = 0; i < n_headers; i++) {
        buf_printf(&cr, "%s:%s\n", headers[i].name, headers[i].value);
        buf_printf(&names, "%s%s", i ? ";" : "", headers[i].name);
    }
    buf_printf(&cr, "\n%s\n%s", names.data ? names.data : "", payload_hash);
    char sig[2 * SECRET_HMAC_BYTES + 1];
    sign(c, amz_date, cr.data, sig);
    struct buf out;
    buf_init(&out, SIZE_MAX);
    buf_printf(&out, "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/s3/aws4_request, "
               "SignedHeaders=%s, Signature=%s", c->access_key, amz_date, c->region,
               names.data ? names.data : "", sig);
    buf_fini(&cr);
    buf_fini(&names);
    return buf_steal(&out, NULL);
}

char *s3_sigv4_presign(const struct s3_creds *c, const char *method, const char *base,
                       const char *host, const char *path, const char *amz_date,
                       int64_t expires_s)
{
    char cred[512], cred_enc[1024];
    snprintf(cred, sizeof(cred), "%s/%.8s/%s/s3/aws4_request", c->access_key, amz_date,
             c->region);
    s3_uri_encode(cred, 0, cred_enc, sizeof(cred_enc));
    struct buf q, cr;
    buf_init(&q, SIZE_MAX);
    buf_init(&cr, SIZE_MAX);
    /* Names in sorted order, as the canonical query wants them. */
    buf_printf(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s&X-Amz-Date=%s"
               "&X-Amz-Expires=%lld&X-Amz-SignedHeaders=host", cred_enc, amz_date,
               (long long)expires_s);
    buf_printf(&cr, "%s\n%s\n%s\nhost:%s\n\nhost\n%s", method, path, q.data, host,
               S3_UNSIGNED_PAYLOAD);
    char sig[2 * SECRET_HMAC_BYTES + 1];
    sign(c, amz_date, cr.data, sig);
    struct buf out;
    buf_init(&out, SIZE_MAX);
    buf_printf(&out, "%s%s?%s&X-Amz-Signature=%s", base, path, q.data, sig);
    buf_fini(&q);
    buf_fini(&cr);
    return buf_steal(&out, NULL);
}

int64_t s3_http_date(const char *value)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char mon[4] = "";
    struct tm tm = {0};
    int n = 0;
    if (value == NULL ||
        sscanf(value, "%*3s, %2d %3s %4d %2d:%2d:%2d GMT%n", &tm.tm_mday, mon, &tm.tm_year,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n == 0)
        return -1;
    const char *m = strlen(mon) == 3 ? strstr(months, mon) : NULL;
    if (m == NULL || (m - months) % 3 != 0 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_year < 1970 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_mon = (int)((m - months) / 3);
    tm.tm_year -= 1900;
    return (int64_t)timegm(&tm);
}
