/* Static files of the web console. A request's path is checked as a name first
 * (console_is_safe_path: no "..", no hidden files, a short alphabet), then opened
 * without following a final symlink, and its real path must still lie inside the
 * console directory, so neither a crafted URL nor a link in the directory serves a file
 * from elsewhere. Only the types of the table are served (nosniff), with a
 * Content-Security-Policy that allows no inline script and no other origin. */
#include "console.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "registry_ctx.h"
#include "util.h"

#define CONSOLE_PATH_MAX 200

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
};

const char *console_content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL || strchr(dot, '/') != NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    }
    return NULL;
}

bool console_is_safe_path(const char *rel, size_t rel_len)
{
    if (rel_len > CONSOLE_PATH_MAX)
        return false;
    bool is_segment_start = true;
    for (size_t i = 0; i < rel_len; i++) {
        char c = rel[i];
        bool is_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '.' || c == '_' || c == '-' || c == '/';
        if (!is_ok)
            return false;
        /* An empty segment ("//", a leading '/') or a dot first ("..", ".git"). */
        if (is_segment_start && (c == '/' || c == '.'))
            return false;
        is_segment_start = c == '/';
    }
    return !is_segment_start || rel_len == 0; /* no trailing '/' (an empty last segment) */
}

/* The console directory's real path, resolved on first use: --console-dir, else
 * console/ beside the binary (the build directory, or an installation's bin/). "" when
 * it does not exist (logged once). */
static pthread_mutex_t root_mu = PTHREAD_MUTEX_INITIALIZER;
static bool is_root_resolved;
static char root_path[PATH_MAX];

static void resolve_root(const char *configured)
{
    char want[PATH_MAX];
    if (configured != NULL) {
        snprintf(want, sizeof(want), "%s", configured);
    } else {
        char exe[PATH_MAX - 16];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n <= 0)
            return;
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL)
            *slash = '\0';
        snprintf(want, sizeof(want), "%s/console", exe);
    }
    if (realpath(want, root_path) == NULL) {
        root_path[0] = '\0';
        log_warn("console", "failed to find the console directory %s: not serving /console/",
                 want);
    }
}

static const char *console_root(const char *configured)
{
    AZ(pthread_mutex_lock(&root_mu));
    if (!is_root_resolved) {
        resolve_root(configured);
        is_root_resolved = true;
    }
    AZ(pthread_mutex_unlock(&root_mu));
    return root_path; /* written once, under the mutex, before any reader gets it */
}

static void reply_not_found(struct http_req *req)
{
    http_reply(req, 404, "text/plain; charset=utf-8", "not found\n", 10);
}

void console_serve(struct http_req *req)
{
    const char *path = req->path;
    if (strcmp(path, CONSOLE_PREFIX) == 0) {
        http_reply_header(req, "Location", CONSOLE_PREFIX "/");
        http_reply(req, 301, NULL, NULL, 0);
        return;
    }
    const char *root = console_root(req->reg->cfg->console_dir);
    const char *rel = path + strlen(CONSOLE_PREFIX "/");
    size_t rel_len = strlen(rel);
    if (root[0] == '\0' || !console_is_safe_path(rel, rel_len)) {
        reply_not_found(req);
        return;
    }
    char name[CONSOLE_PATH_MAX + 16];
    snprintf(name, sizeof(name), "%s", rel_len == 0 ? "index.html" : rel);
    const char *type = console_content_type(name);
    char full[PATH_MAX + CONSOLE_PATH_MAX + 32];
    snprintf(full, sizeof(full), "%s/%s", root, name);
    char real[PATH_MAX];
    size_t root_len = strlen(root);
    if (type == NULL || realpath(full, real) == NULL || strncmp(real, root, root_len) != 0 ||
        real[root_len] != '/') {
        reply_not_found(req);
        return;
    }
    int fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        reply_not_found(req);
        return;
    }
    char etag[64];
    snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.st_size,
             (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec);
    http_reply_header(req, "ETag", "%s", etag);
    /* Third-party files (vendor/) change only with an installation; the console's own
     * are revalidated on each load, a cheap 304. */
    http_reply_header(req, "Cache-Control", "%s",
                      strncmp(name, "vendor/", 7) == 0 ? "public, max-age=86400" : "no-cache");
    http_reply_header(req, "X-Content-Type-Options", "nosniff");
    http_reply_header(req, "X-Frame-Options", "DENY");
    http_reply_header(req, "Referrer-Policy", "no-referrer");
    http_reply_header(req, "Content-Security-Policy",
                      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' "
                      "data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                      "frame-ancestors 'none'; form-action 'self'");
    const char *inm = http_req_header(req, "If-None-Match");
    if (inm != NULL && strcmp(inm, etag) == 0) {
        close(fd);
        http_reply(req, 304, NULL, NULL, 0);
        return;
    }
    http_reply_header(req, "Content-Type", "%s", type);
    http_reply_fd(req, 200, fd, 0, (uint64_t)st.st_size);
}
