/* The acceptor thread: one epoll loop over the listening socket, a stop signal and, on a
 * plain-HTTP port, the new connections whose first bytes have not arrived yet.
 *
 * Why look at the first bytes: clients that do not know whether a registry speaks TLS
 * try https first and fall back to http when the answer shows an HTTP server (docker's
 * `manifest` and `login` commands for an insecure registry; Go reports "server gave HTTP
 * response to HTTPS client"). libmicrohttpd 0.9.75 answers most handshakes 400, but
 * closes the connection without a word when the handshake's bytes up to their first
 * newline hold no space (about one in seven), and the client then sees EOF, takes it
 * for a network failure and gives up. So a connection whose first byte starts a TLS
 * record is answered 400 here and closed; any other goes to the server.
 *
 * HTTP clients speak first and at once: a connection still silent after SNIFF_WAIT_MS
 * (or when SNIFF_PENDING_MAX are already waiting) is handed on unlooked-at, to the
 * server's header deadline as before. The per-address connection limit counts the
 * connections waiting here with those the server holds (it tells us, http_acceptor_note):
 * an address at its limit has a new connection closed at once, as the server would. */
#include "http_accept.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define SNIFF_WAIT_MS 200
#define SNIFF_PENDING_MAX 1024
#define EVENTS_MAX 64
#define DRAIN_MAX (64 * 1024) /* bytes of a refused handshake read before closing */

enum { TAG_LISTEN = 0, TAG_STOP = 1, TAG_FIRST_SLOT = 2 };

#define REFUSAL_BODY "This port speaks plain HTTP, not TLS: use an http:// address.\n"
static const char TLS_REFUSAL[] = "HTTP/1.1 400 Bad Request\r\n"
                                  "Content-Type: text/plain\r\n"
                                  "Connection: close\r\n"
                                  "Content-Length: %zu\r\n\r\n%s";

struct pending {
    int fd; /* -1: a free slot */
    int64_t deadline_ns;
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

/* Connections of one client address: waiting here, and held by the server. */
struct addr_count {
    unsigned char key[16];
    size_t key_len;
    unsigned n_waiting;
    unsigned n_held;
    struct addr_count *next;
};

#define ADDR_BUCKETS 256

struct http_acceptor {
    int listen_fd;
    bool is_plain;
    unsigned per_ip_max;
    pthread_mutex_t mu; /* guards counts */
    struct addr_count *counts[ADDR_BUCKETS];
    http_accept_add_f *add;
    void *ctx;
    int epfd;
    int stop_fd;
    pthread_t thread;
    struct pending *slots; /* SNIFF_PENDING_MAX, when is_plain */
    size_t n_pending;
};

bool http_looks_like_tls(const unsigned char *p, size_t n)
{
    /* A TLS record: content type 22 (handshake), then the protocol's major version 3.
     * No HTTP request line starts with byte 22. */
    return n >= 1 && p[0] == 0x16 && (n < 2 || p[1] == 0x03);
}

/* The address of sa as a key (IPv4 or IPv6 bytes; the port is not part of it); 0 for
 * another family (not counted). */
static size_t addr_key(const struct sockaddr *sa, unsigned char key[16])
{
    if (sa->sa_family == AF_INET) {
        memcpy(key, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return 16;
    }
    return 0;
}

/* addr's counts, created when is_create; caller holds mu. */
static struct addr_count *count_of(struct http_acceptor *a, const struct sockaddr *addr,
                                   bool is_create)
{
    unsigned char key[16];
    size_t len = addr_key(addr, key);
    if (len == 0)
        return NULL;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ key[i]) * 16777619u;
    struct addr_count **head = &a->counts[h % ADDR_BUCKETS];
    for (struct addr_count *c = *head; c != NULL; c = c->next) {
        if (c->key_len == len && memcmp(c->key, key, len) == 0)
            return c;
    }
    if (!is_create)
        return NULL;
    struct addr_count *c = xcalloc(1, sizeof(*c));
    memcpy(c->key, key, len);
    c->key_len = len;
    c->next = *head;
    *head = c;
    return c;
}

/* Drops addr's entry once it counts nothing; caller holds mu. */
static void count_trim(struct http_acceptor *a, const struct addr_count *gone)
{
    if (gone->n_waiting > 0 || gone->n_held > 0)
        return;
    for (size_t b = 0; b < ADDR_BUCKETS; b++) {
        for (struct addr_count **pp = &a->counts[b]; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == gone) {
                struct addr_count *c = *pp;
                *pp = c->next;
                free(c);
                return;
            }
        }
    }
}

void http_acceptor_note(struct http_acceptor *a, const struct sockaddr *addr, bool is_open)
{
    if (a == NULL || addr == NULL || a->per_ip_max == 0)
        return;
    AZ(pthread_mutex_lock(&a->mu));
    struct addr_count *c = count_of(a, addr, is_open);
    if (c != NULL) {
        if (is_open)
            c->n_held++;
        else if (c->n_held > 0)
            c->n_held--;
        count_trim(a, c);
    }
    AZ(pthread_mutex_unlock(&a->mu));
}

/* Counts a connection from addr as waiting here; false (nothing counted) when the address
 * is at its limit. */
static bool wait_begin(struct http_acceptor *a, const struct sockaddr *addr)
{
    if (a->per_ip_max == 0)
        return true;
    AZ(pthread_mutex_lock(&a->mu));
    struct addr_count *c = count_of(a, addr, true);
    bool is_room = c == NULL || c->n_waiting + c->n_held < a->per_ip_max;
    if (c != NULL && is_room)
        c->n_waiting++;
    if (c != NULL)
        count_trim(a, c);
    AZ(pthread_mutex_unlock(&a->mu));
    return is_room;
}

static void wait_end(struct http_acceptor *a, const struct sockaddr *addr)
{
    if (a->per_ip_max == 0)
        return;
    AZ(pthread_mutex_lock(&a->mu));
    struct addr_count *c = count_of(a, addr, false);
    if (c != NULL) {
        if (c->n_waiting > 0)
            c->n_waiting--;
        count_trim(a, c);
    }
    AZ(pthread_mutex_unlock(&a->mu));
}

/* Answers 400 and closes: the handshake's bytes are read first, so that the close does
 * not reset the connection under the answer. */
static void refuse_tls(int fd)
{
    char drain[4096];
    size_t drained = 0;
    for (;;) {
        ssize_t n = recv(fd, drain, sizeof(drain), MSG_DONTWAIT);
        if (n <= 0)
            break;
        drained += (size_t)n;
        if (drained >= DRAIN_MAX)
            break;
    }
    char reply[256];
    int len = snprintf(reply, sizeof(reply), TLS_REFUSAL, strlen(REFUSAL_BODY), REFUSAL_BODY);
    if (len > 0)
        (void)send(fd, reply, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    close(fd);
    log_debug("http", "answered a TLS handshake on the plain-HTTP port with 400");
}

/* Looks at what fd has sent so far: a TLS handshake is refused, anything else (bytes,
 * nothing yet, the peer gone) goes to the server. */
static void settle(struct http_acceptor *a, int fd, const struct sockaddr *addr,
                   socklen_t addr_len)
{
    unsigned char head[2];
    ssize_t n = recv(fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 && http_looks_like_tls(head, (size_t)n)) {
        refuse_tls(fd);
        return;
    }
    a->add(a->ctx, fd, addr, addr_len);
}

static void unpark(struct http_acceptor *a, struct pending *p)
{
    epoll_ctl(a->epfd, EPOLL_CTL_DEL, p->fd, NULL);
    wait_end(a, (const struct sockaddr *)&p->addr);
    p->fd = -1;
    a->n_pending--;
}

/* Waits for fd's first bytes (counted as waiting by the caller, until unpark); false when
 * it cannot (no free slot, epoll refuses). */
static bool park(struct http_acceptor *a, int fd, const struct sockaddr_storage *addr,
                 socklen_t addr_len)
{
    if (a->n_pending >= SNIFF_PENDING_MAX)
        return false;
    size_t i = 0;
    while (a->slots[i].fd >= 0)
        i++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = TAG_FIRST_SLOT + i};
    if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return false;

    struct pending *p = &a->slots[i];
    p->fd = fd;
    p->deadline_ns = util_mono_ns() + (int64_t)SNIFF_WAIT_MS * 1000000;
    p->addr = *addr;
    p->addr_len = addr_len;
    a->n_pending++;
    return true;
}

static void accept_all(struct http_acceptor *a)
{
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t len = sizeof(addr);
        int fd = accept4(a->listen_fd, (struct sockaddr *)&addr, &len,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("http", "accept: %s", strerror(errno));
                util_sleep_ms(10); /* let connections close */
            }
            return; /* EAGAIN: all taken; EINTR, ECONNABORTED: the next round */
        }
        if (!a->is_plain) {
            a->add(a->ctx, fd, (const struct sockaddr *)&addr, len);
            continue;
        }
        const struct sockaddr *sa = (const struct sockaddr *)&addr;
        if (!wait_begin(a, sa)) {
            close(fd); /* at its address's limit: closed, as the server would */
            continue;
        }
        unsigned char head[1];
        ssize_t n = recv(fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && park(a, fd, &addr, len))
            continue; /* waits, counted, until unpark */
        settle(a, fd, sa, len);
        wait_end(a, sa);
    }
}

/* Milliseconds until the first parked connection is due; -1 when none is parked. */
static int next_timeout_ms(const struct http_acceptor *a)
{
    if (a->n_pending == 0)
        return -1;
    int64_t first = INT64_MAX;
    for (size_t i = 0; i < SNIFF_PENDING_MAX; i++) {
        if (a->slots[i].fd >= 0 && a->slots[i].deadline_ns < first)
            first = a->slots[i].deadline_ns;
    }
    int64_t left_ns = first - util_mono_ns();
    if (left_ns <= 0)
        return 0;
    return (int)((left_ns + 999999) / 1000000);
}

static void hand_on_due(struct http_acceptor *a)
{
    if (a->n_pending == 0)
        return;
    int64_t now = util_mono_ns();
    for (size_t i = 0; i < SNIFF_PENDING_MAX; i++) {
        struct pending *p = &a->slots[i];
        if (p->fd < 0 || p->deadline_ns > now)
            continue;
        int fd = p->fd;
        struct sockaddr_storage addr = p->addr;
        socklen_t len = p->addr_len;
        unpark(a, p);
        a->add(a->ctx, fd, (const struct sockaddr *)&addr, len);
    }
}

static void *acceptor_loop(void *arg)
{
    struct http_acceptor *a = arg;
    struct epoll_event evs[EVENTS_MAX];
    for (;;) {
        int n = epoll_wait(a->epfd, evs, EVENTS_MAX, next_timeout_ms(a));
        if (n < 0 && errno != EINTR) {
            log_error("http", "epoll_wait of the acceptor: %s", strerror(errno));
            util_sleep_ms(10);
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag == TAG_STOP)
                return NULL;
            if (tag == TAG_LISTEN) {
                accept_all(a);
                continue;
            }
            struct pending *p = &a->slots[tag - TAG_FIRST_SLOT];
            if (p->fd < 0)
                continue;
            int fd = p->fd;
            struct sockaddr_storage addr = p->addr;
            socklen_t len = p->addr_len;
            unpark(a, p);
            settle(a, fd, (const struct sockaddr *)&addr, len);
        }
        hand_on_due(a);
    }
}

int http_acceptor_start(int listen_fd, bool is_plain, unsigned per_ip_max,
                        http_accept_add_f *add, void *ctx, struct http_acceptor **out)
{
    struct http_acceptor *a = xcalloc(1, sizeof(*a));
    a->listen_fd = listen_fd;
    a->is_plain = is_plain;
    /* Counted here only where connections wait here; on a TLS port the server's own
     * limit is the whole of it. */
    a->per_ip_max = is_plain ? per_ip_max : 0;
    AZ(pthread_mutex_init(&a->mu, NULL));
    a->add = add;
    a->ctx = ctx;
    a->epfd = epoll_create1(EPOLL_CLOEXEC);
    a->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int flags = fcntl(listen_fd, F_GETFL);
    struct epoll_event lev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    struct epoll_event sev = {.events = EPOLLIN, .data.u64 = TAG_STOP};
    if (a->epfd < 0 || a->stop_fd < 0 || flags < 0 ||
        fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, listen_fd, &lev) != 0 ||
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->stop_fd, &sev) != 0)
        goto fail;
    if (is_plain) {
        a->slots = xcalloc(SNIFF_PENDING_MAX, sizeof(*a->slots));
        for (size_t i = 0; i < SNIFF_PENDING_MAX; i++)
            a->slots[i].fd = -1;
    }
    /* Published before the thread runs: the server's connection notes use it. */
    *out = a;
    if (pthread_create(&a->thread, NULL, acceptor_loop, a) != 0) {
        *out = NULL;
        goto fail;
    }
    return 0;
fail:
    log_error("http", "failed to start the acceptor: %s", strerror(errno));
    if (a->epfd >= 0)
        close(a->epfd);
    if (a->stop_fd >= 0)
        close(a->stop_fd);
    pthread_mutex_destroy(&a->mu);
    free(a->slots);
    free(a);
    return -1;
}

void http_acceptor_stop(struct http_acceptor *a)
{
    if (a == NULL)
        return;
    uint64_t one = 1;
    ASSERT(write(a->stop_fd, &one, sizeof(one)) == (ssize_t)sizeof(one));
    AZ(pthread_join(a->thread, NULL));
    for (size_t i = 0; a->slots != NULL && i < SNIFF_PENDING_MAX; i++) {
        int fd = a->slots[i].fd;
        if (fd >= 0) {
            unpark(a, &a->slots[i]);
            close(fd);
        }
    }
}

void http_acceptor_free(struct http_acceptor *a)
{
    if (a == NULL)
        return;
    for (size_t b = 0; b < ADDR_BUCKETS; b++) {
        while (a->counts[b] != NULL) {
            struct addr_count *c = a->counts[b];
            a->counts[b] = c->next;
            free(c);
        }
    }
    pthread_mutex_destroy(&a->mu);
    close(a->epfd);
    close(a->stop_fd);
    free(a->slots);
    free(a);
}
