/* Raw HTTP/1.1 for the front's bodiless requests (upstream.h). A call owns one socket for
 * its exchange: the request head in one send, the response head read into a buffer
 * (its first body bytes with it), then the body read straight into the caller's buffer,
 * framed by Content-Length, chunked encoding or the end of the connection. Sockets are
 * blocking with TCP_NODELAY and a receive timeout of a slice: a call gives up after 60 s
 * without a byte (the front's rule), or sooner when its caller says the region is lost
 * (checked at each slice without a byte, so a waiting call costs no extra system call).
 * Calls are reused per thread (no allocation per request). */
#include "upstream.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "util.h"

#define POOL_IDLE_MAX 64
#define BUF_SIZE (64u << 10)   /* the response head must fit (as with curl's relay) */
#define STALL_S 60
#define SLICE_MS 250           /* how often a call waiting for bytes asks whether to give up */

struct upstream_pool {
    char *host;
    char *port;
    pthread_mutex_t mu;
    int idle[POOL_IDLE_MAX];   /* kept-alive connections, last in first out */
    size_t n_idle;
};

enum framing { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_TO_EOF };
enum chunk_step { CHUNK_SIZE, CHUNK_DATA, CHUNK_DATA_END, CHUNK_TRAILER };

struct upstream_call {
    struct upstream_pool *pool;
    int fd;
    char *req;                 /* BUF_SIZE: the request head */
    size_t req_len;
    char *buf;                 /* BUF_SIZE: the response head and first body bytes */
    size_t off, len;           /* received bytes not yet consumed: [off, len) */
    enum framing framing;
    enum chunk_step step;
    uint64_t left;             /* body (or chunk) bytes still to come */
    bool is_keep_alive;
    bool is_done;              /* the body was read whole */
    upstream_give_up_f *give_up;
    void *give_up_arg;
};

struct upstream_pool *upstream_pool_new(const char *host, const char *port)
{
    struct upstream_pool *p = xcalloc(1, sizeof(*p));
    p->host = xstrdup(host);
    p->port = xstrdup(port);
    AZ(pthread_mutex_init(&p->mu, NULL));
    return p;
}

static int pool_take(struct upstream_pool *p)
{
    int fd = -1;
    AZ(pthread_mutex_lock(&p->mu));
    if (p->n_idle > 0)
        fd = p->idle[--p->n_idle];
    AZ(pthread_mutex_unlock(&p->mu));
    return fd;
}

static void pool_put(struct upstream_pool *p, int fd)
{
    AZ(pthread_mutex_lock(&p->mu));
    if (p->n_idle < POOL_IDLE_MAX) {
        p->idle[p->n_idle++] = fd;
        fd = -1;
    }
    AZ(pthread_mutex_unlock(&p->mu));
    if (fd >= 0)
        close(fd);
}

void upstream_pool_flush(struct upstream_pool *p)
{
    int fds[POOL_IDLE_MAX];
    AZ(pthread_mutex_lock(&p->mu));
    size_t n = p->n_idle;
    memcpy(fds, p->idle, n * sizeof(fds[0]));
    p->n_idle = 0;
    AZ(pthread_mutex_unlock(&p->mu));
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

int upstream_connect(const char *host, const char *port, long timeout_ms)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    bool is_open = false;
    if (fd >= 0) {
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            is_open = true;
        } else if (errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int soerr = 0;
            socklen_t len = sizeof(soerr);
            is_open = poll(&pfd, 1, (int)timeout_ms) == 1 &&
                      getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0;
        }
    }
    freeaddrinfo(ai);
    if (!is_open) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    /* Blocking from here, bounded by timeouts; small writes leave at once. */
    int one = 1;
    struct timeval stall = {.tv_sec = STALL_S};
    struct timeval slice = {.tv_usec = SLICE_MS * 1000};
    int flags = 0;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof(slice)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stall, sizeof(stall)) != 0 ||
        (flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Per-thread spare call (its buffer), so that a request allocates nothing. */
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void call_destroy(void *arg)
{
    struct upstream_call *c = arg;
    if (c == NULL)
        return;
    free(c->req);
    free(c->buf);
    free(c);
}

static void spare_init(void)
{
    AZ(pthread_key_create(&spare_key, call_destroy));
}

static struct upstream_call *call_get(struct upstream_pool *pool)
{
    AZ(pthread_once(&spare_once, spare_init));
    struct upstream_call *c = pthread_getspecific(spare_key);
    if (c != NULL) {
        AZ(pthread_setspecific(spare_key, NULL));
    } else {
        c = xcalloc(1, sizeof(*c));
        c->req = xmalloc(BUF_SIZE);
        c->buf = xmalloc(BUF_SIZE);
    }
    *c = (struct upstream_call){.pool = pool, .fd = -1, .req = c->req, .buf = c->buf};
    return c;
}

/* Appends s (n bytes) to the request head. */
static bool put(struct upstream_call *c, const char *s, size_t n)
{
    if (c->req_len + n > BUF_SIZE)
        return false;
    memcpy(c->req + c->req_len, s, n);
    c->req_len += n;
    return true;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* recv on the call's socket: >0 bytes, 0 at the end of the connection, -1 on error, -2
 * when nothing came for STALL_S or the caller gave up on the region meanwhile. */
static long recv_some(struct upstream_call *c, char *p, size_t max)
{
    int64_t waited_ns = 0;
    for (;;) {
        ssize_t n = recv(c->fd, p, max, 0);
        if (n >= 0)
            return (long)n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        waited_ns += (int64_t)SLICE_MS * 1000000;
        if (waited_ns >= (int64_t)STALL_S * 1000000000 ||
            (c->give_up != NULL && c->give_up(c->give_up_arg)))
            return -2;
    }
}

/* Receives more bytes after [off, len), moving them to the front if the end is full: >0
 * bytes, 0 at the end of the connection, -1 on error, -2 when nothing came for STALL_S. */
static long fill(struct upstream_call *c)
{
    if (c->len == BUF_SIZE) {
        if (c->off == 0)
            return -1;
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    long n = recv_some(c, c->buf + c->len, BUF_SIZE - c->len);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static bool is_token(const char *line, size_t line_len, const char *name, const char **value,
                     size_t *value_len)
{
    size_t n = strlen(name);
    if (line_len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
        return false;
    const char *v = line + n + 1;
    const char *end = line + line_len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *value = v;
    *value_len = (size_t)(end - v);
    return true;
}

/* Parses the head in buf[off, head_end) (status line and header lines): status,
 * framing, keep-alive. -1 when it is not HTTP/1.x. */
static int parse_head(struct upstream_call *c, size_t head_end, bool is_head_method,
                      long *status)
{
    const char *p = c->buf + c->off;
    const char *end = c->buf + head_end;
    if (end - p < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
        return -1;
    bool is_11 = p[7] == '1';
    int s = 0;
    for (int k = 9; k < 12; k++) {
        if (p[k] < '0' || p[k] > '9')
            return -1;
        s = s * 10 + (p[k] - '0');
    }
    *status = s;
    c->is_keep_alive = is_11;
    bool has_length = false, is_chunked = false;
    const char *line = memchr(p, '\n', (size_t)(end - p));
    for (line = line ? line + 1 : end; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t n = (size_t)((eol ? eol : end) - line);
        size_t trimmed = n > 0 && line[n - 1] == '\r' ? n - 1 : n;
        const char *v;
        size_t vn;
        if (is_token(line, trimmed, "Content-Length", &v, &vn)) {
            if (util_parse_u64(v, vn, &c->left) != 0)
                return -1;
            has_length = true;
        } else if (is_token(line, trimmed, "Transfer-Encoding", &v, &vn)) {
            is_chunked = vn >= 7 && strncasecmp(v + vn - 7, "chunked", 7) == 0;
        } else if (is_token(line, trimmed, "Connection", &v, &vn)) {
            if (vn == 5 && strncasecmp(v, "close", 5) == 0)
                c->is_keep_alive = false;
            else if (vn == 10 && strncasecmp(v, "keep-alive", 10) == 0)
                c->is_keep_alive = true;
        }
        line = eol ? eol + 1 : end;
    }
    if (is_head_method || s == 204 || s == 304 || (s >= 100 && s < 200))
        c->framing = BODY_NONE;
    else if (is_chunked)
        c->framing = BODY_CHUNKED;
    else if (has_length)
        c->framing = BODY_LENGTH;
    else
        c->framing = BODY_TO_EOF;
    if (c->framing == BODY_TO_EOF)
        c->is_keep_alive = false;
    /* An interim 1xx head ends nothing: until the final head is in, the connection is
     * not reusable (upstream_call_free pools only a done exchange). */
    c->is_done = s >= 200 &&
                 (c->framing == BODY_NONE || (c->framing == BODY_LENGTH && c->left == 0));
    c->step = CHUNK_SIZE;
    return 0;
}

/* Sends the request head on c->fd and reads the final response head. 0, or -1 with
 * *is_closed when the region closed or reset the connection before a byte came back (a
 * kept-alive connection it had given up: the request may go again on a new one). */
static int exchange(struct upstream_call *c, bool is_head_method, long *status,
                    char **lines, size_t *lines_len, bool *is_closed)
{
    *is_closed = false;
    if (!send_all(c->fd, c->req, c->req_len)) {
        *is_closed = errno == EPIPE || errno == ECONNRESET;
        return -1;
    }
    c->off = c->len = 0;
    for (;;) {
        char *head_end;
        while ((head_end = memmem(c->buf + c->off, c->len - c->off, "\r\n\r\n", 4)) == NULL) {
            bool is_first = c->len == 0;
            long n = fill(c);
            if (n <= 0) {
                *is_closed = is_first && (n == 0 || (n == -1 && errno == ECONNRESET));
                return -1;
            }
        }
        size_t end = (size_t)(head_end - c->buf) + 4;
        if (parse_head(c, end, is_head_method, status) != 0)
            return -1;
        if (*status >= 100 && *status < 200) {  /* an interim answer: the final one follows */
            c->off = end;
            continue;
        }
        /* The header lines, after the status line, NUL-terminated in place of the blank
         * line's CR (the body starts after its LF). */
        char *first = (char *)memchr(c->buf + c->off, '\n', end - c->off) + 1;
        head_end[2] = '\0';
        *lines = first;
        *lines_len = (size_t)(head_end + 2 - first);
        c->off = end;
        return 0;
    }
}

int upstream_call_start(struct upstream_pool *pool, const char *method, const char *target,
                        const char *const *headers, long connect_timeout_ms,
                        upstream_give_up_f *give_up, void *give_up_arg,
                        struct upstream_call **out, long *status, char **lines,
                        size_t *lines_len, bool *is_connected)
{
    struct upstream_call *c = call_get(pool);
    c->give_up = give_up;
    c->give_up_arg = give_up_arg;
    *out = c;
    *is_connected = true;
    bool has_host = false;
    bool is_fit = put(c, method, strlen(method)) && put(c, " ", 1) &&
                  put(c, target, strlen(target)) && put(c, " HTTP/1.1\r\n", 11);
    for (size_t i = 0; is_fit && headers != NULL && headers[i] != NULL; i++) {
        has_host = has_host || strncasecmp(headers[i], "Host:", 5) == 0;
        is_fit = put(c, headers[i], strlen(headers[i])) && put(c, "\r\n", 2);
    }
    if (is_fit && !has_host)
        is_fit = put(c, "Host: ", 6) && put(c, pool->host, strlen(pool->host)) &&
                 put(c, ":", 1) && put(c, pool->port, strlen(pool->port)) &&
                 put(c, "\r\n", 2);
    if (!is_fit || !put(c, "\r\n", 2))
        return -1;
    bool is_head_method = strcmp(method, "HEAD") == 0;
    bool is_closed = false;
    /* A kept-alive connection first; if the region had closed it, once more on a new
     * one (GET and HEAD are safe to repeat). */
    c->fd = pool_take(pool);
    if (c->fd >= 0) {
        if (exchange(c, is_head_method, status, lines, lines_len, &is_closed) == 0)
            return 0;
        close(c->fd);
        c->fd = -1;
        if (!is_closed)
            return -1;
    }
    c->fd = upstream_connect(pool->host, pool->port, connect_timeout_ms);
    if (c->fd < 0) {
        *is_connected = false;
        return -1;
    }
    return exchange(c, is_head_method, status, lines, lines_len, &is_closed);
}

/* Body bytes of a length-framed stretch (the body, or a chunk): buffered ones first,
 * then straight from the socket. */
static long read_stretch(struct upstream_call *c, char *out, size_t max)
{
    if (max > c->left)
        max = (size_t)c->left;
    if (max == 0)
        return 0;
    long n;
    if (c->len > c->off) {
        n = (long)(c->len - c->off < max ? c->len - c->off : max);
        memcpy(out, c->buf + c->off, (size_t)n);
        c->off += (size_t)n;
    } else {
        n = recv_some(c, out, max);
        if (n <= 0)
            return -1; /* the end before the length, or a stall */
    }
    c->left -= (uint64_t)n;
    return n;
}

/* The next line of chunked framing (size line or trailer line) into [*line, *line_len),
 * consumed from the buffer; -1 when it broke. */
static int read_line(struct upstream_call *c, const char **line, size_t *line_len)
{
    for (;;) {
        char *lf = memchr(c->buf + c->off, '\n', c->len - c->off);
        if (lf != NULL) {
            *line = c->buf + c->off;
            *line_len = (size_t)(lf - *line);
            if (*line_len > 0 && lf[-1] == '\r')
                (*line_len)--;
            c->off = (size_t)(lf - c->buf) + 1;
            return 0;
        }
        if (fill(c) <= 0)
            return -1;
    }
}

static long read_chunked(struct upstream_call *c, char *out, size_t max)
{
    for (;;) {
        const char *line;
        size_t n;
        switch (c->step) {
        case CHUNK_SIZE: {
            if (read_line(c, &line, &n) != 0)
                return -1;
            uint64_t size = 0;
            size_t k = 0;
            for (; k < n && k < 16; k++) {
                char ch = line[k];
                int d = ch >= '0' && ch <= '9'   ? ch - '0'
                        : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                                 : -1;
                if (d < 0)
                    break;
                size = size * 16 + (uint64_t)d;
            }
            if (k == 0 || (k < n && line[k] != ';' && line[k] != ' ' && line[k] != '\t'))
                return -1;
            c->left = size;
            c->step = size == 0 ? CHUNK_TRAILER : CHUNK_DATA;
            break;
        }
        case CHUNK_DATA: {
            long got = read_stretch(c, out, max);
            if (got != 0) {
                if (got > 0 && c->left == 0)
                    c->step = CHUNK_DATA_END;
                return got;
            }
            c->step = CHUNK_DATA_END;
            break;
        }
        case CHUNK_DATA_END:
            if (read_line(c, &line, &n) != 0 || n != 0)
                return -1;
            c->step = CHUNK_SIZE;
            break;
        case CHUNK_TRAILER:
            if (read_line(c, &line, &n) != 0)
                return -1;
            if (n == 0) {
                c->is_done = true;
                return 0;
            }
            break;
        }
    }
}

long upstream_call_read(struct upstream_call *c, char *out, size_t max)
{
    if (c->is_done)
        return 0;
    if (c->fd < 0 || max == 0)
        return -1;
    long n;
    switch (c->framing) {
    case BODY_LENGTH:
        n = read_stretch(c, out, max);
        if (n > 0 && c->left == 0)
            c->is_done = true;
        return n;
    case BODY_CHUNKED:
        return read_chunked(c, out, max);
    case BODY_TO_EOF:
        if (c->len > c->off) {
            n = (long)(c->len - c->off < max ? c->len - c->off : max);
            memcpy(out, c->buf + c->off, (size_t)n);
            c->off += (size_t)n;
            return n;
        }
        n = recv_some(c, out, max);
        if (n == 0)
            c->is_done = true;
        return n < 0 ? -1 : n;
    case BODY_NONE:
        break;
    }
    return 0;
}

void upstream_call_free(struct upstream_call *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0) {
        /* Reusable only at a clean end, with nothing extra received. */
        if (c->is_done && c->is_keep_alive && c->off == c->len)
            pool_put(c->pool, c->fd);
        else
            close(c->fd);
    }
    c->fd = -1;
    struct upstream_call *spare = pthread_getspecific(spare_key);
    if (spare == NULL)
        AZ(pthread_setspecific(spare_key, c));
    else
        call_destroy(c);
}
