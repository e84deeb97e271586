/*
 * scale.c: the client side of bench/scale.sh. Pushes many distinct small manifests as new
 * tags whose blobs (one config, one layer) are already in the registry, and measures the
 * reads whose cost could grow with the number of tags: manifest GET by tag, a page of the
 * tag list, the full tag list, a page of the catalog. Speaks plain distribution-spec HTTP, so
 * it measures Meridian and the peer alike. Prints one JSON object on stdout.
 *
 * Build: cc -O2 -std=c11 -o scale bench/scale.c -lcurl -lcrypto -lpthread
 * Usage:
 *   scale blobs   --url U --repo R                       upload the config and layer blobs to R
 *   scale push    --url U --repo R --from A --count N [--clients C] [--repos K --from-repo R0]
 *                 tags tA..t(A+N-1); with --repos K, N tags in each of K repositories
 *                 R/0000.. (blobs mounted from R0 first)
 *   scale get     --url U --repo R --tags T [--count N]  manifest GET of random tags < T
 *   scale list    --url U --repo R                       first page of 1000, a middle page,
 *                                                         the full listing in pages of 1000
 *   scale catalog --url U                                first page of 1000 repositories
 *   scale count   --url U --repo R                       number of tags (full listing)
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar+gzip"
#define CONFIG_BODY "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\"}}"
#define LAYER_BYTES 4096

static const char *url = "http://127.0.0.1:5000";
static const char *repo = "scale/app";
static const char *from_repo = NULL;
static long from = 0, count = 1000, clients = 8, repos = 0, tags = 1000;

static char config_digest[80], layer_digest[80];
static unsigned char layer[LAYER_BYTES];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sha256_hex(const void *p, size_t n, char *out)
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
    int k = snprintf(out, 80, "sha256:");
    for (int i = 0; i < 32; i++)
        k += snprintf(out + k, 80 - (size_t)k, "%02x", md[i]);
}

static void make_blobs(void)
{
    for (size_t i = 0; i < LAYER_BYTES; i++)
        layer[i] = (unsigned char)(i * 131u + 7u);
    sha256_hex(CONFIG_BODY, strlen(CONFIG_BODY), config_digest);
    sha256_hex(layer, LAYER_BYTES, layer_digest);
}

struct sink {
    char *data;
    size_t len;
    char link[1024];
    char location[1024];
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t add = size * n;
    s->data = realloc(s->data, s->len + add + 1);
    memcpy(s->data + s->len, p, add);
    s->len += add;
    s->data[s->len] = '\0';
    return add;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = size * n;
    char *dst = NULL;
    size_t skip = 0;
    if (len > 5 && strncasecmp(p, "Link:", 5) == 0) {
        dst = s->link;
        skip = 5;
    } else if (len > 9 && strncasecmp(p, "Location:", 9) == 0) {
        dst = s->location;
        skip = 9;
    }
    if (dst != NULL) {
        while (skip < len && p[skip] == ' ')
            skip++;
        size_t keep = len - skip;
        while (keep > 0 && (p[skip + keep - 1] == '\r' || p[skip + keep - 1] == '\n'))
            keep--;
        if (keep > 1023)
            keep = 1023;
        memcpy(dst, p + skip, keep);
        dst[keep] = '\0';
    }
    return len;
}

/* One request; returns the HTTP status (0 on a transport error). */
static long request(CURL *h, const char *method, const char *u, const char *ctype,
                    const void *body, size_t body_len, struct sink *out)
{
    struct curl_slist *hdrs = NULL;
    char ct[200];
    if (ctype != NULL) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
        hdrs = curl_slist_append(hdrs, ct);
    }
    hdrs = curl_slist_append(hdrs, "Accept: " MT_MANIFEST);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, u);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    return status;
}

static void sink_reset(struct sink *s)
{
    free(s->data);
    memset(s, 0, sizeof(*s));
}

/* POST then PUT ?digest= with the whole body (distribution-spec: monolithic upload). */
static int upload(CURL *h, const char *r, const char *digest, const void *body, size_t len)
{
    char u[2048];
    struct sink s = {0};
    snprintf(u, sizeof(u), "%s/v2/%s/blobs/uploads/", url, r);
    long st = request(h, "POST", u, NULL, NULL, 0, &s);
    if (st != 202) {
        fprintf(stderr, "scale: POST %s: %ld\n", u, st);
        sink_reset(&s);
        return -1;
    }
    char loc[1024];
    snprintf(loc, sizeof(loc), "%s", s.location);
    sink_reset(&s);
    if (strncmp(loc, "http", 4) == 0)
        snprintf(u, sizeof(u), "%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", digest);
    else
        snprintf(u, sizeof(u), "%s%s%sdigest=%s", url, loc, strchr(loc, '?') ? "&" : "?", digest);
    st = request(h, "PUT", u, "application/octet-stream", body, len, &s);
    sink_reset(&s);
    if (st != 201) {
        fprintf(stderr, "scale: PUT blob %s: %ld\n", digest, st);
        return -1;
    }
    return 0;
}

static int mount(CURL *h, const char *r, const char *digest)
{
    char u[2048];
    struct sink s = {0};
    snprintf(u, sizeof(u), "%s/v2/%s/blobs/uploads/?mount=%s&from=%s", url, r, digest, from_repo);
    long st = request(h, "POST", u, NULL, NULL, 0, &s);
    sink_reset(&s);
    if (st != 201) {
        fprintf(stderr, "scale: mount %s into %s: %ld\n", digest, r, st);
        return -1;
    }
    return 0;
}

static int put_manifest(CURL *h, const char *r, long i)
{
    char body[1024], u[2048];
    int n = snprintf(body, sizeof(body),
                     "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\","
                     "\"config\":{\"mediaType\":\"" MT_CONFIG "\",\"digest\":\"%s\",\"size\":%zu},"
                     "\"layers\":[{\"mediaType\":\"" MT_LAYER "\",\"digest\":\"%s\",\"size\":%d}],"
                     "\"annotations\":{\"org.opencontainers.image.version\":\"%ld\"}}",
                     config_digest, strlen(CONFIG_BODY), layer_digest, LAYER_BYTES, i);
    snprintf(u, sizeof(u), "%s/v2/%s/manifests/t%07ld", url, r, i);
    struct sink s = {0};
    long st = request(h, "PUT", u, MT_MANIFEST, body, (size_t)n, &s);
    sink_reset(&s);
    if (st != 201) {
        fprintf(stderr, "scale: PUT manifest %s: %ld\n", u, st);
        return -1;
    }
    return 0;
}

static atomic_long next_job, errors, mounted;
static atomic_bool is_mounted;
static long jobs_total;

static void *push_worker(void *arg)
{
    (void)arg;
    CURL *h = curl_easy_init();
    for (;;) {
        long j = atomic_fetch_add(&next_job, 1);
        if (j >= jobs_total)
            break;
        int rc;
        if (repos > 0) {
            /* Job j: repository j / count, tag j % count; the first tag of a repository
             * mounts its blobs. */
            /* Jobs 0..repos-1 mount the blobs into each repository (the peer refuses a
             * manifest whose blobs are not linked there); the rest push. */
            char r[512];
            if (j < repos) {
                snprintf(r, sizeof(r), "%s/%05ld", repo, j);
                rc = mount(h, r, config_digest) | mount(h, r, layer_digest);
                if (atomic_fetch_add(&mounted, 1) + 1 == repos)
                    atomic_store(&is_mounted, true);
            } else {
                while (!atomic_load(&is_mounted))
                    nanosleep(&(struct timespec){0, 1000000}, NULL);
                long k = j - repos;
                snprintf(r, sizeof(r), "%s/%05ld", repo, k / count);
                rc = put_manifest(h, r, k % count);
            }
        } else {
            rc = put_manifest(h, repo, from + j);
        }
        if (rc != 0)
            atomic_fetch_add(&errors, 1);
    }
    curl_easy_cleanup(h);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long list_all(CURL *h, const char *first, double *first_page_ms, long *pages)
{
    char u[4096];
    snprintf(u, sizeof(u), "%s", first);
    long n = 0;
    *pages = 0;
    for (;;) {
        struct sink s = {0};
        double t0 = now_s();
        long st = request(h, "GET", u, NULL, NULL, 0, &s);
        if (*pages == 0 && first_page_ms != NULL)
            *first_page_ms = (now_s() - t0) * 1000;
        if (st != 200) {
            fprintf(stderr, "scale: GET %s: %ld\n", u, st);
            sink_reset(&s);
            return -1;
        }
        (*pages)++;
        /* Names are t0000000.. (t1000000 and up too): count them, not the "tags" key. */
        for (char *p = s.data; p != NULL && (p = strstr(p, "\"t")) != NULL; p++)
            if (p[2] >= '0' && p[2] <= '9')
                n++;
        char link[1024];
        snprintf(link, sizeof(link), "%s", s.link);
        sink_reset(&s);
        char *lt = strchr(link, '<'), *gt = lt ? strchr(lt, '>') : NULL;
        if (lt == NULL || gt == NULL)
            break;
        *gt = '\0';
        snprintf(u, sizeof(u), "%s%s", lt[1] == '/' ? url : "", lt + 1);
    }
    return n;
}

static void usage(void)
{
    fprintf(stderr, "usage: scale blobs|push|get|list|catalog|count --url U [--repo R]"
                    " [--from A] [--count N] [--clients C] [--repos K --from-repo R0]"
                    " [--tags T]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    const char *cmd = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--url") == 0)
            url = v;
        else if (strcmp(k, "--repo") == 0)
            repo = v;
        else if (strcmp(k, "--from") == 0)
            from = strtol(v, NULL, 10);
        else if (strcmp(k, "--count") == 0)
            count = strtol(v, NULL, 10);
        else if (strcmp(k, "--clients") == 0)
            clients = strtol(v, NULL, 10);
        else if (strcmp(k, "--repos") == 0)
            repos = strtol(v, NULL, 10);
        else if (strcmp(k, "--from-repo") == 0)
            from_repo = v;
        else if (strcmp(k, "--tags") == 0)
            tags = strtol(v, NULL, 10);
        else
            usage();
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    make_blobs();
    CURL *h = curl_easy_init();
    int rc = 0;
    if (strcmp(cmd, "blobs") == 0) {
        rc = upload(h, repo, config_digest, CONFIG_BODY, strlen(CONFIG_BODY)) |
             upload(h, repo, layer_digest, layer, LAYER_BYTES);
        printf("{\"config\":\"%s\",\"layer\":\"%s\",\"ok\":%s}\n", config_digest, layer_digest,
               rc == 0 ? "true" : "false");
    } else if (strcmp(cmd, "push") == 0) {
        if (repos > 0 && from_repo == NULL)
            usage();
        jobs_total = repos > 0 ? repos + repos * count : count;
        pthread_t th[256];
        long nt = clients < 1 ? 1 : clients > 256 ? 256 : clients;
        double t0 = now_s();
        for (long i = 0; i < nt; i++)
            pthread_create(&th[i], NULL, push_worker, NULL);
        for (long i = 0; i < nt; i++)
            pthread_join(th[i], NULL);
        double dt = now_s() - t0;
        long pushes = repos > 0 ? repos * count : count;
        printf("{\"pushes\":%ld,\"seconds\":%.3f,\"pushes_per_s\":%.1f,\"errors\":%ld}\n",
               pushes, dt, (double)pushes / dt, atomic_load(&errors));
        rc = atomic_load(&errors) != 0;
    } else if (strcmp(cmd, "get") == 0) {
        double *ms = calloc((size_t)count, sizeof(double));
        long errs = 0;
        srand(42);
        for (long i = 0; i < count; i++) {
            char u[2048];
            snprintf(u, sizeof(u), "%s/v2/%s/manifests/t%07ld", url, repo,
                     (long)(rand() % (tags > 0 ? tags : 1)));
            struct sink s = {0};
            double t0 = now_s();
            long st = request(h, "GET", u, NULL, NULL, 0, &s);
            ms[i] = (now_s() - t0) * 1000;
            errs += st != 200;
            sink_reset(&s);
        }
        qsort(ms, (size_t)count, sizeof(double), cmp_double);
        printf("{\"gets\":%ld,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"errors\":%ld}\n", count,
               ms[count / 2], ms[count * 99 / 100], errs);
        free(ms);
        rc = errs != 0;
    } else if (strcmp(cmd, "list") == 0 || strcmp(cmd, "count") == 0) {
        char u[2048];
        double first_ms = 0, mid_ms = 0;
        long pages = 0;
        snprintf(u, sizeof(u), "%s/v2/%s/tags/list?n=1000", url, repo);
        double t0 = now_s();
        long n = list_all(h, u, &first_ms, &pages);
        double full_s = now_s() - t0;
        if (strcmp(cmd, "count") == 0) {
            printf("{\"tags\":%ld}\n", n);
        } else {
            /* A page from the middle: last= names a tag halfway through. */
            snprintf(u, sizeof(u), "%s/v2/%s/tags/list?n=1000&last=t%07ld", url, repo, n / 2);
            struct sink s = {0};
            double t1 = now_s();
            long st = request(h, "GET", u, NULL, NULL, 0, &s);
            mid_ms = (now_s() - t1) * 1000;
            sink_reset(&s);
            printf("{\"tags\":%ld,\"pages\":%ld,\"first_page_ms\":%.3f,\"middle_page_ms\":%.3f,"
                   "\"full_list_s\":%.3f,\"errors\":%d}\n",
                   n, pages, first_ms, mid_ms, full_s, st != 200);
        }
        rc = n < 0;
    } else if (strcmp(cmd, "catalog") == 0) {
        char u[2048];
        snprintf(u, sizeof(u), "%s/v2/_catalog?n=1000", url);
        struct sink s = {0};
        double best = 1e9;
        long st = 0;
        for (int i = 0; i < 5; i++) {
            double t0 = now_s();
            st = request(h, "GET", u, NULL, NULL, 0, &s);
            double ms = (now_s() - t0) * 1000;
            best = ms < best ? ms : best;
            sink_reset(&s);
        }
        printf("{\"catalog_page_ms\":%.3f,\"errors\":%d}\n", best, st != 200);
        rc = st != 200;
    } else {
        usage();
    }
    curl_easy_cleanup(h);
    curl_global_cleanup();
    return rc;
}
