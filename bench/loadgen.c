/*
 * loadgen: a small epoll load generator for what wrk cannot do (CONNECT tunnels).
 *
 * Modes (against an explicit HTTP proxy, or straight at a redirected address):
 *   tunnel        per unit of work: new TCP connection, CONNECT target, one GET inside, close.
 *   tunnel-tls    same, with a full TLS handshake inside the tunnel (no verification,
 *                 no session resumption: every tunnel pays a full handshake).
 *   tunnel-tls-ka per connection: CONNECT target once, one TLS handshake inside, then
 *                 keep-alive GETs on that TLS connection one after another until -d ends;
 *                 the unit of work is one GET (latency: request sent to its last body byte;
 *                 the first also includes connect, CONNECT and the handshake).
 *   get           per unit of work: new TCP connection, one absolute-URI GET (Connection:
 *                 close) through the proxy, close.
 *   transparent   per unit of work: new TCP connection to --proxy (an address that nftables
 *                 redirects to a transparent proxy), one origin-form GET with Host: target's
 *                 name, close. No CONNECT.
 *   transparent-tls  same with a full TLS handshake first, SNI = target's name.
 *   bulk-connect  one tunnel, one GET of a large body inside; reports bytes and seconds.
 *   bulk-get      one absolute-URI GET of a large body through the proxy.
 *   idle          open -c tunnels (one keep-alive GET each), print "READY ok errors",
 *                 hold them until stdin closes or -d seconds pass, then close them all.
 *
 * Output: one JSON object on stdout at exit. With --lat-out FILE, the latency of every
 * completed unit (microseconds, uint32 native-endian) is written to FILE.
 * Every run is bounded by -d (plus the per-connection --timeout); nothing but the
 * given --proxy address is ever dialled, and it must be on loopback (127/8), in TEST-NET-1
 * (192.0.2.0/24, RFC 5737: never routed, reached only through the bench's redirect), or in
 * 10.213.0.0/16 (the pool awf's netns backend, and the bench's client namespace, take their
 * veth subnets from).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { M_TUNNEL, M_TUNNEL_TLS, M_BULK_CONNECT, M_BULK_GET, M_IDLE, M_TRANSPARENT,
            M_TRANSPARENT_TLS, M_GET, M_TUNNEL_TLS_KA };
enum state { ST_FREE, ST_CONNECTING, ST_SEND_CONNECT, ST_CONNECT_RESP, ST_TLS_HS, ST_SEND_REQ,
             ST_RESP, ST_IDLE };
enum err { E_CONNECT, E_STATUS, E_EOF, E_TIMEOUT, E_TLS, E_PROTO, E_COUNT };
static const char *err_names[E_COUNT] = {"connect", "status", "eof", "timeout", "tls", "protocol"};

#define HEAD_MAX 8192
#define SCRATCH (256 * 1024)

struct conn {
    int fd;
    enum state st;
    SSL *ssl;
    uint64_t t_start, deadline;
    char head[HEAD_MAX];
    size_t head_len;
    const char *out;
    size_t out_len, out_off;
    long long content_length, body_got;
    int head_done;
    uint32_t events;
};

static enum mode g_mode;
static struct sockaddr_in g_proxy;
static char g_target[256];
static char g_path[512] = "/small";
static int g_conc = 64;
static double g_duration = 10.0;
static double g_timeout = 10.0;
static const char *g_lat_out;
static int g_ep;
static SSL_CTX *g_ctx;
static char g_connect_req[1024], g_get_req[1024];
static size_t g_connect_len, g_get_len;
static char g_scratch[SCRATCH];
static long long g_errors[E_COUNT];
static char g_first_error[256];
static long long g_completed, g_bytes, g_started;
static uint32_t *g_lat;
static size_t g_lat_n, g_lat_cap;
static struct conn *g_conns;
static int g_accepting = 1; /* start new units of work */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static void record_latency(uint64_t ns) {
    if (g_lat_n == g_lat_cap) {
        g_lat_cap = g_lat_cap ? g_lat_cap * 2 : 65536;
        g_lat = realloc(g_lat, g_lat_cap * sizeof *g_lat);
        if (!g_lat) die("out of memory");
    }
    uint64_t us = ns / 1000;
    g_lat[g_lat_n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void set_events(struct conn *c, uint32_t ev) {
    if (c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl MOD");
    c->events = ev;
}

static void conn_close(struct conn *c) {
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) close(c->fd); /* close() also removes it from the epoll set */
    c->fd = -1;
    c->st = ST_FREE;
}

static void conn_fail(struct conn *c, enum err e, const char *detail) {
    g_errors[e]++;
    if (!g_first_error[0])
        snprintf(g_first_error, sizeof g_first_error, "%s: %s", err_names[e], detail);
    conn_close(c);
}

static void conn_start(struct conn *c) {
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->st = ST_FREE;
        c->fd = -1;
        g_errors[E_CONNECT]++;
        if (!g_first_error[0]) snprintf(g_first_error, sizeof g_first_error, "socket: %s",
                                        strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->t_start = now_ns();
    c->deadline = c->t_start + (uint64_t)(g_timeout * 1e9);
    g_started++;
    int r = connect(c->fd, (struct sockaddr *)&g_proxy, sizeof g_proxy);
    if (r < 0 && errno != EINPROGRESS) {
        char msg[128];
        snprintf(msg, sizeof msg, "connect: %s", strerror(errno));
        c->st = ST_CONNECTING;
        conn_fail(c, E_CONNECT, msg);
        return;
    }
    c->st = ST_CONNECTING;
    c->events = EPOLLOUT;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &e) < 0) die("epoll_ctl ADD");
}

static void begin_send(struct conn *c, enum state st, const char *buf, size_t len) {
    c->st = st;
    c->out = buf;
    c->out_len = len;
    c->out_off = 0;
    set_events(c, EPOLLOUT);
}

static void begin_response(struct conn *c) {
    c->st = ST_RESP;
    c->head_len = 0;
    c->head_done = 0;
    c->content_length = -1;
    c->body_got = 0;
    set_events(c, EPOLLIN);
}

/* Parse a response head: returns the status code, sets *cl to Content-Length or -1. */
static int parse_head(const char *h, size_t n, long long *cl) {
    *cl = -1;
    if (n < 12 || strncmp(h, "HTTP/1.", 7) != 0) return -1;
    int status = atoi(h + 9);
    const char *p = h;
    const char *end = h + n;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            *cl = atoll(p + 15);
        p = eol + 2;
    }
    return status;
}

/* Feed bytes read while waiting for a head; returns length of the head (incl. CRLFCRLF) or 0. */
static size_t feed_head(struct conn *c, const char *data, size_t n, size_t *consumed) {
    size_t room = HEAD_MAX - c->head_len;
    size_t take = n < room ? n : room;
    memcpy(c->head + c->head_len, data, take);
    size_t old = c->head_len;
    c->head_len += take;
    char *e = memmem(c->head, c->head_len, "\r\n\r\n", 4);
    if (!e) {
        *consumed = take;
        return 0;
    }
    size_t hl = (size_t)(e - c->head) + 4;
    *consumed = hl - old;
    return hl;
}

static void on_send(struct conn *c);

static void unit_done(struct conn *c) {
    uint64_t t = now_ns();
    if (g_accepting || g_mode == M_BULK_CONNECT || g_mode == M_BULK_GET) {
        g_completed++;
        record_latency(t - c->t_start);
    }
    if (g_mode == M_TUNNEL_TLS_KA && g_accepting) { /* the next GET on the same connection */
        c->t_start = t;
        c->deadline = t + (uint64_t)(g_timeout * 1e9);
        begin_send(c, ST_SEND_REQ, g_get_req, g_get_len);
        on_send(c);
        return;
    }
    if (g_mode == M_IDLE) {
        c->st = ST_IDLE;
        c->deadline = UINT64_MAX;
        set_events(c, EPOLLIN);
        return;
    }
    if (c->ssl) SSL_shutdown(c->ssl); /* one close_notify, no wait */
    conn_close(c);
}

/* Returns bytes read (>0), 0 on EOF, -1 on would-block, -2 on error. */
static long do_read(struct conn *c, char *buf, size_t n) {
    if (c->ssl) {
        int r = SSL_read(c->ssl, buf, (int)n);
        if (r > 0) return r;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) { set_events(c, EPOLLIN); return -1; }
        if (e == SSL_ERROR_WANT_WRITE) { set_events(c, EPOLLOUT); return -1; }
        if (e == SSL_ERROR_ZERO_RETURN) return 0;
        if (e == SSL_ERROR_SYSCALL && r == 0) return 0;
        return -2;
    }
    ssize_t r = read(c->fd, buf, n);
    if (r > 0) return r;
    if (r == 0) return 0;
    if (errno == EAGAIN || errno == EINTR) return -1;
    return -2;
}

static void on_response_bytes(struct conn *c) {
    for (;;) {
        long r = do_read(c, g_scratch, SCRATCH);
        if (r == -1) return;
        if (r == -2) { conn_fail(c, E_EOF, "read error in response"); return; }
        if (r == 0) { conn_fail(c, E_EOF, "EOF before the response completed"); return; }
        size_t off = 0;
        if (!c->head_done) {
            size_t used;
            size_t hl = feed_head(c, g_scratch, (size_t)r, &used);
            if (!hl) {
                if (c->head_len >= HEAD_MAX) { conn_fail(c, E_PROTO, "response head too big"); return; }
                continue;
            }
            c->head_done = 1;
            int status = parse_head(c->head, hl, &c->content_length);
            if (status != 200) {
                char msg[160];
                snprintf(msg, sizeof msg, "response status %d: %.100s", status, c->head);
                conn_fail(c, E_STATUS, msg);
                return;
            }
            if (c->content_length < 0) { conn_fail(c, E_PROTO, "no Content-Length"); return; }
            off = used;
        }
        long long body = (long long)r - (long long)off;
        c->body_got += body;
        g_bytes += body;
        if (c->body_got >= c->content_length) {
            if (c->body_got > c->content_length) { conn_fail(c, E_PROTO, "body longer than Content-Length"); return; }
            unit_done(c);
            return;
        }
    }
}

static int tls_mode(void) {
    return g_mode == M_TUNNEL_TLS || g_mode == M_TRANSPARENT_TLS || g_mode == M_TUNNEL_TLS_KA;
}

static void after_connect_established(struct conn *c) {
    if (tls_mode()) {
        c->ssl = SSL_new(g_ctx);
        if (!c->ssl) die("SSL_new");
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_connect_state(c->ssl);
        char host[256];
        snprintf(host, sizeof host, "%s", g_target);
        char *colon = strrchr(host, ':');
        if (colon) *colon = 0;
        SSL_set_tlsext_host_name(c->ssl, host);
        c->st = ST_TLS_HS;
        set_events(c, EPOLLOUT);
        return;
    }
    begin_send(c, ST_SEND_REQ, g_get_req, g_get_len);
}

static void on_connect_resp(struct conn *c) {
    for (;;) {
        ssize_t r = read(c->fd, g_scratch, SCRATCH);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (r <= 0) { conn_fail(c, E_EOF, "EOF or error before the CONNECT answer"); return; }
        size_t used;
        size_t hl = feed_head(c, g_scratch, (size_t)r, &used);
        if (!hl) {
            if (c->head_len >= HEAD_MAX) { conn_fail(c, E_PROTO, "CONNECT answer too big"); return; }
            continue;
        }
        if (used != (size_t)r || hl != c->head_len) {
            conn_fail(c, E_PROTO, "bytes after the CONNECT answer");
            return;
        }
        long long cl;
        int status = parse_head(c->head, hl, &cl);
        if (status != 200) {
            char msg[160];
            snprintf(msg, sizeof msg, "CONNECT status %d: %.100s", status, c->head);
            conn_fail(c, E_STATUS, msg);
            return;
        }
        after_connect_established(c);
        return;
    }
}

static void on_send(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w;
        if (c->ssl) {
            int r = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE) { set_events(c, EPOLLOUT); return; }
                if (e == SSL_ERROR_WANT_READ) { set_events(c, EPOLLIN); return; }
                conn_fail(c, E_TLS, "SSL_write failed");
                return;
            }
            w = r;
        } else {
            w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                conn_fail(c, E_EOF, "send failed");
                return;
            }
        }
        c->out_off += (size_t)w;
    }
    if (c->st == ST_SEND_CONNECT) {
        c->st = ST_CONNECT_RESP;
        c->head_len = 0;
        set_events(c, EPOLLIN);
    } else {
        begin_response(c);
    }
}

static void on_tls(struct conn *c) {
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        begin_send(c, ST_SEND_REQ, g_get_req, g_get_len);
        on_send(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) { set_events(c, EPOLLIN); return; }
    if (e == SSL_ERROR_WANT_WRITE) { set_events(c, EPOLLOUT); return; }
    char msg[200];
    snprintf(msg, sizeof msg, "TLS handshake: %s", ERR_reason_error_string(ERR_get_error()));
    ERR_clear_error();
    conn_fail(c, E_TLS, msg);
}

static void on_event(struct conn *c, uint32_t ev) {
    switch (c->st) {
    case ST_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            char msg[128];
            snprintf(msg, sizeof msg, "connect: %s", strerror(err));
            conn_fail(c, E_CONNECT, msg);
            return;
        }
        if (g_mode == M_TRANSPARENT || g_mode == M_TRANSPARENT_TLS) {
            after_connect_established(c); /* no CONNECT: the redirect is the proxy's input */
            if (c->st == ST_TLS_HS) on_tls(c);
            else on_send(c);
            return;
        }
        if (g_mode == M_BULK_GET || g_mode == M_GET) begin_send(c, ST_SEND_REQ, g_get_req, g_get_len);
        else begin_send(c, ST_SEND_CONNECT, g_connect_req, g_connect_len);
        on_send(c);
        return;
    }
    case ST_SEND_CONNECT:
    case ST_SEND_REQ: on_send(c); return;
    case ST_CONNECT_RESP: on_connect_resp(c); return;
    case ST_TLS_HS: on_tls(c); return;
    case ST_RESP: on_response_bytes(c); return;
    case ST_IDLE: {
        (void)ev;
        ssize_t r = read(c->fd, g_scratch, SCRATCH);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        conn_fail(c, E_EOF, "idle tunnel closed by the proxy");
        return;
    }
    case ST_FREE: return;
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen tunnel|tunnel-tls|tunnel-tls-ka|transparent|transparent-tls|get|bulk-connect|bulk-get|idle"
            " --proxy IP:PORT "
            "--target NAME:PORT [--path P] [-c N] [-d SECONDS] [--timeout SECONDS] [--lat-out FILE]\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    if (argc < 2) usage();
    const char *m = argv[1];
    if (!strcmp(m, "tunnel")) g_mode = M_TUNNEL;
    else if (!strcmp(m, "tunnel-tls")) g_mode = M_TUNNEL_TLS;
    else if (!strcmp(m, "tunnel-tls-ka")) g_mode = M_TUNNEL_TLS_KA;
    else if (!strcmp(m, "bulk-connect")) g_mode = M_BULK_CONNECT;
    else if (!strcmp(m, "bulk-get")) g_mode = M_BULK_GET;
    else if (!strcmp(m, "idle")) g_mode = M_IDLE;
    else if (!strcmp(m, "transparent")) g_mode = M_TRANSPARENT;
    else if (!strcmp(m, "transparent-tls")) g_mode = M_TRANSPARENT_TLS;
    else if (!strcmp(m, "get")) g_mode = M_GET;
    else usage();
    const char *proxy = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--proxy")) proxy = v;
        else if (!strcmp(a, "--target")) snprintf(g_target, sizeof g_target, "%s", v);
        else if (!strcmp(a, "--path")) snprintf(g_path, sizeof g_path, "%s", v);
        else if (!strcmp(a, "-c")) g_conc = atoi(v);
        else if (!strcmp(a, "-d")) g_duration = atof(v);
        else if (!strcmp(a, "--timeout")) g_timeout = atof(v);
        else if (!strcmp(a, "--lat-out")) g_lat_out = v;
        else usage();
    }
    if (!proxy || !g_target[0] || g_conc < 1 || g_duration <= 0 || g_timeout <= 0) usage();
    char host[64];
    snprintf(host, sizeof host, "%s", proxy);
    char *colon = strrchr(host, ':');
    if (!colon) usage();
    *colon = 0;
    memset(&g_proxy, 0, sizeof g_proxy);
    g_proxy.sin_family = AF_INET;
    g_proxy.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &g_proxy.sin_addr) != 1) die("--proxy must be an IPv4 address");
    uint32_t a = ntohl(g_proxy.sin_addr.s_addr);
    if ((a >> 24) != 127 && (a >> 8) != 0xC00002u /* 192.0.2/24 */ && (a >> 16) != 0x0AD5u /* 10.213/16 */)
        die("--proxy must be on loopback (127/8), in 192.0.2.0/24 or in 10.213.0.0/16");
    if (g_mode == M_BULK_CONNECT || g_mode == M_BULK_GET) g_conc = 1;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)g_conc + 64;
        if (rl.rlim_cur < want) {
            rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    }

    g_connect_len = (size_t)snprintf(g_connect_req, sizeof g_connect_req,
                                     "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", g_target, g_target);
    const char *conn_hdr = g_mode == M_IDLE || g_mode == M_TUNNEL_TLS_KA ? "keep-alive" : "close";
    if (g_mode == M_BULK_GET || g_mode == M_GET)
        g_get_len = (size_t)snprintf(g_get_req, sizeof g_get_req,
                                     "GET http://%s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                                     g_target, g_path, g_target);
    else
        g_get_len = (size_t)snprintf(g_get_req, sizeof g_get_req,
                                     "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: %s\r\n\r\n", g_path,
                                     g_target, conn_hdr);

    if (tls_mode()) {
        g_ctx = SSL_CTX_new(TLS_client_method());
        if (!g_ctx) die("SSL_CTX_new");
        SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_options(g_ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_OFF);
    }

    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) die("epoll_create1");
    g_conns = calloc((size_t)g_conc, sizeof *g_conns);
    if (!g_conns) die("out of memory");
    for (int i = 0; i < g_conc; i++) {
        g_conns[i].fd = -1;
        g_conns[i].st = ST_FREE;
    }

    int events_max = g_conc < 1024 ? g_conc : 1024;
    struct epoll_event *evs = calloc((size_t)events_max, sizeof *evs);
    uint64_t t0 = now_ns();
    uint64_t end = t0 + (uint64_t)(g_duration * 1e9);
    int idle_setup_limit = 256; /* tunnels being set up at once in idle mode */
    int idle_next = 0, ready_printed = 0;
    int bulk_started = 0;
    uint64_t t_ready = 0;

    for (;;) {
        uint64_t now = now_ns();
        if (now >= end) break;
        /* start new units of work */
        if (g_mode == M_TUNNEL || g_mode == M_TUNNEL_TLS || g_mode == M_TRANSPARENT ||
            g_mode == M_TRANSPARENT_TLS || g_mode == M_GET || g_mode == M_TUNNEL_TLS_KA) {
            for (int i = 0; i < g_conc; i++)
                if (g_conns[i].st == ST_FREE) conn_start(&g_conns[i]);
        } else if (g_mode == M_BULK_CONNECT || g_mode == M_BULK_GET) {
            if (!bulk_started) { conn_start(&g_conns[0]); bulk_started = 1; }
            if (g_conns[0].st == ST_FREE) break; /* finished or failed */
        } else { /* idle */
            int in_setup = 0;
            for (int i = 0; i < idle_next; i++)
                if (g_conns[i].st != ST_FREE && g_conns[i].st != ST_IDLE) in_setup++;
            while (idle_next < g_conc && in_setup < idle_setup_limit) {
                conn_start(&g_conns[idle_next++]);
                in_setup++;
            }
            if (!ready_printed && idle_next == g_conc && in_setup == 0) {
                long long ok = 0;
                for (int i = 0; i < g_conc; i++) ok += g_conns[i].st == ST_IDLE;
                long long errs = 0;
                for (int e = 0; e < E_COUNT; e++) errs += g_errors[e];
                printf("READY %lld %lld\n", ok, errs);
                fflush(stdout);
                ready_printed = 1;
                t_ready = now_ns();
            }
            if (ready_printed) {
                /* hold until stdin closes (or the duration ends) */
                struct pollfd p = {.fd = 0, .events = POLLIN};
                if (poll(&p, 1, 0) > 0) {
                    ssize_t r = read(0, g_scratch, sizeof g_scratch);
                    if (r <= 0) break;
                }
            }
        }
        int n = epoll_wait(g_ep, evs, events_max, 20);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) on_event((struct conn *)evs[i].data.ptr, evs[i].events);
        /* per-connection timeouts */
        now = now_ns();
        for (int i = 0; i < g_conc; i++) {
            struct conn *c = &g_conns[i];
            if (c->st != ST_FREE && c->st != ST_IDLE && now > c->deadline) {
                static const char *names[] = {"free", "connecting", "send-connect", "connect-resp",
                                              "tls-handshake", "send-request", "response", "idle"};
                char msg[96];
                snprintf(msg, sizeof msg, "no progress within --timeout in state %s", names[c->st]);
                conn_fail(c, E_TIMEOUT, msg);
            }
        }
    }
    uint64_t t1 = now_ns();
    g_accepting = 0;
    long long open_idle = 0, in_flight = 0;
    for (int i = 0; i < g_conc; i++) {
        if (g_conns[i].st == ST_IDLE) open_idle++;
        else if (g_conns[i].st != ST_FREE) in_flight++;
        if (g_conns[i].st != ST_FREE) conn_close(&g_conns[i]);
    }

    if (g_lat_out) {
        FILE *f = fopen(g_lat_out, "wb");
        if (!f) die("cannot open --lat-out");
        if (g_lat_n && fwrite(g_lat, sizeof *g_lat, g_lat_n, f) != g_lat_n) die("short write");
        fclose(f);
    }
    double elapsed = (double)(t1 - t0) / 1e9;
    if (g_mode == M_BULK_CONNECT || g_mode == M_BULK_GET)
        elapsed = g_lat_n ? (double)g_lat[0] / 1e6 : elapsed;
    printf("{\"mode\":\"%s\",\"completed\":%lld,\"started\":%lld,\"in_flight_at_end\":%lld,"
           "\"elapsed_s\":%.6f,\"bytes\":%lld,\"concurrency\":%d,\"idle_open_at_end\":%lld,"
           "\"held_s\":%.3f,\"errors\":{",
           argv[1], g_completed, g_started, in_flight, elapsed, g_bytes, g_conc, open_idle,
           t_ready ? (double)(t1 - t_ready) / 1e9 : 0.0);
    for (int e = 0; e < E_COUNT; e++)
        printf("%s\"%s\":%lld", e ? "," : "", err_names[e], g_errors[e]);
    printf("},\"first_error\":\"");
    for (const char *p = g_first_error; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    printf("\"}\n");
    return 0;
}
