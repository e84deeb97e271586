/* bench/mhd_floor.c: the floor under Meridian's small-request rows. A libmicrohttpd 0.9.75
 * server set up the way src/http/http.c sets up Meridian's (a pool of worker threads, poll()
 * with TLS and epoll without, 32 KiB connection pools, turbo, its own listening socket and
 * one acceptor thread handing connections over with MHD_add_connection, GnuTLS with X25519
 * first) that answers every request with a fixed 400-byte manifest from memory: no routing,
 * no metadata lookup, no access control. Whatever this reaches against nginx is the most
 * Meridian can reach with this HTTP library and thread model (docs/performance.md, HTTPS).
 *
 *   cc -O2 -o mhd_floor bench/mhd_floor.c -lmicrohttpd -lpthread
 *   mhd_floor PORT THREADS [CERT.pem KEY.pem]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct MHD_Daemon *daemon_;
static int listen_fd;
static char body[400];

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (*con_cls == NULL) { /* headers in; answer on the next call, as Meridian does */
        *con_cls = conn;
        return MHD_YES;
    }
    *upload_data_size = 0;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof(body), body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/vnd.oci.image.manifest.v1+json");
    MHD_add_response_header(r, "Docker-Content-Digest",
                            "sha256:0000000000000000000000000000000000000000000000000000000000000000");
    enum MHD_Result rc = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return rc;
}

static void *accept_loop(void *arg)
{
    (void)arg;
    for (;;) {
        struct sockaddr_storage a;
        socklen_t len = sizeof(a);
        int fd = accept4(listen_fd, (struct sockaddr *)&a, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0)
            MHD_add_connection(daemon_, fd, (struct sockaddr *)&a, len);
    }
    return NULL;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    char *s = calloc(1, 1 << 20);
    fread(s, 1, (1 << 20) - 1, f);
    fclose(f);
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: mhd_floor PORT THREADS [CERT.pem KEY.pem]\n");
        return 2;
    }
    memset(body, 'x', sizeof(body));
    /* Blocked in every thread (they inherit it); main takes them with sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    int tls = argc == 5;
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(listen_fd, 4096) != 0) {
        perror("listen");
        return 1;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_TURBO |
                     MHD_USE_NO_LISTEN_SOCKET | (tls ? MHD_USE_POLL | MHD_USE_TLS : MHD_USE_EPOLL);
    /* Meridian's default (src/core/config.h). */
    const char *prio =
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:"
        "-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:"
        "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:"
        "%SERVER_PRECEDENCE";
    struct MHD_OptionItem o[4] = {{MHD_OPTION_END, 0, NULL}};
    if (tls) {
        o[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, slurp(argv[3])};
        o[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, slurp(argv[4])};
        o[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)prio};
    }
    daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL,
                               MHD_OPTION_THREAD_POOL_SIZE, (unsigned)atoi(argv[2]),
                               MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
                               MHD_OPTION_CONNECTION_LIMIT, 4000u,
                               MHD_OPTION_ARRAY, o, MHD_OPTION_END);
    if (daemon_ == NULL) {
        fprintf(stderr, "MHD_start_daemon failed\n");
        return 1;
    }
    pthread_t t;
    pthread_create(&t, NULL, accept_loop, NULL);
    int sig;
    sigwait(&stop, &sig);
    _exit(0);
}
