/* The practical limit for a line-ack server on this machine: one thread, epoll, C.
 *
 * Serves aiotcp's ack protocol: for every line (a trailing \r stripped) it replies
 * <prefix><line>\n, in order; all replies to one read leave in one write. With
 * --framing length, every frame is a 4-byte big-endian length and the bytes, and the
 * reply is <length><prefix><bytes>. A client whose
 * replies do not fit in the socket is not read from until they are written (backpressure).
 * A line longer than MAX_LINE closes the connection. Prints "listening on HOST:PORT" to
 * stderr once bound, and exits 0 on SIGTERM or SIGINT.
 *
 * usage: aiotcp-c-server [--host H] [--port P] [--prefix P] [--backlog N] [--framing line|length]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Largest line accepted, aiotcp's default --max-line (Redis closes inline requests over it). */
#define MAX_LINE (64 * 1024)
/* One read takes at most this much (the socket's receive buffer is about this size). */
#define READ_BUF (256 * 1024)
/* A length frame's header: a 4-byte big-endian length. */
#define LEN_HDR 4
#define MAX_EVENTS 1024
#define MAX_PREFIX 1024

typedef struct {
    int fd, paused;
    char *in, *out;
    size_t in_len, out_len, out_off;
} conn_t;

static conn_t **table;
static int table_cap, ep;
static char prefix[MAX_PREFIX];
static size_t plen;
static char rbuf[MAX_LINE + LEN_HDR + READ_BUF];
static int length_framing;
static char *obuf;
static size_t obuf_cap;
static volatile sig_atomic_t stop;

static void on_signal(int s) { (void)s; stop = 1; }

static void drop(conn_t *c) {
    close(c->fd);
    table[c->fd] = NULL;
    free(c->in);
    free(c->out);
    free(c);
}

static void set_events(conn_t *c, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what is pending; pause reading while anything is left. Returns 0 if dropped. */
static int flush(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            drop(c);
            return 0;
        }
        c->out_off += (size_t)w;
    }
    if (c->out_off < c->out_len) {
        if (!c->paused) { c->paused = 1; set_events(c, EPOLLOUT); }
    } else {
        free(c->out);
        c->out = NULL;
        c->out_len = c->out_off = 0;
        if (c->paused) { c->paused = 0; set_events(c, EPOLLIN); }
    }
    return 1;
}

static void on_readable(conn_t *c) {
    size_t have = c->in_len;
    if (have) memcpy(rbuf, c->in, have);
    ssize_t n = read(c->fd, rbuf + have, READ_BUF);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        drop(c); /* every complete line was already answered */
        return;
    }
    size_t len = have + (size_t)n, pos = 0, o = 0;
    if (obuf_cap < len + (len / 1 + 1) * plen + 1) {
        obuf_cap = (len + 1) * (plen + 2);
        obuf = realloc(obuf, obuf_cap);
    }
    while (length_framing && len - pos >= LEN_HDR) {
        const unsigned char *h = (const unsigned char *)rbuf + pos;
        size_t body = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        if (body > MAX_LINE) { drop(c); return; }
        if (len - pos - LEN_HDR < body) break;
        size_t reply = plen + body;
        obuf[o++] = (char)(reply >> 24); obuf[o++] = (char)(reply >> 16);
        obuf[o++] = (char)(reply >> 8); obuf[o++] = (char)reply;
        memcpy(obuf + o, prefix, plen);
        o += plen;
        memcpy(obuf + o, rbuf + pos + LEN_HDR, body);
        o += body;
        pos += LEN_HDR + body;
    }
    for (; !length_framing;) {
        char *nl = memchr(rbuf + pos, '\n', len - pos);
        if (!nl) break;
        size_t end = (size_t)(nl - rbuf), body = end;
        if (body > pos && rbuf[body - 1] == '\r') body--;
        memcpy(obuf + o, prefix, plen);
        o += plen;
        memcpy(obuf + o, rbuf + pos, body - pos);
        o += body - pos;
        obuf[o++] = '\n';
        pos = end + 1;
    }
    size_t rest = len - pos;
    if (rest > (length_framing ? MAX_LINE + LEN_HDR : MAX_LINE)) { drop(c); return; }
    if (rest) {
        char *keep = realloc(c->in, rest);
        memcpy(keep, rbuf + pos, rest);
        c->in = keep;
    }
    c->in_len = rest;
    if (!o) return;
    ssize_t w = write(c->fd, obuf, o);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) { drop(c); return; }
        w = 0;
    }
    if ((size_t)w < o) {
        c->out = malloc(o - (size_t)w);
        memcpy(c->out, obuf + w, o - (size_t)w);
        c->out_len = o - (size_t)w;
        c->out_off = 0;
        flush(c);
    }
}

static void on_accept(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0) return; /* EAGAIN, or EMFILE: the listener stays readable and we retry */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fd >= table_cap) {
            int cap = table_cap ? table_cap : 1024;
            while (cap <= fd) cap *= 2;
            table = realloc(table, (size_t)cap * sizeof *table);
            memset(table + table_cap, 0, (size_t)(cap - table_cap) * sizeof *table);
            table_cap = cap;
        }
        conn_t *c = calloc(1, sizeof *c);
        c->fd = fd;
        table[fd] = c;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port = "8888";
    int backlog = 1024;
    snprintf(prefix, sizeof prefix, "%s", "\xe5\xb7\xb2\xe6\x94\xb6\xe5\x88\xb0: ");
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = argv[i + 1];
        else if (!strcmp(argv[i], "--backlog")) backlog = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prefix") && strlen(argv[i + 1]) < MAX_PREFIX) snprintf(prefix, sizeof prefix, "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "--framing") && (!strcmp(argv[i + 1], "line") || !strcmp(argv[i + 1], "length"))) length_framing = !strcmp(argv[i + 1], "length");
        else { fprintf(stderr, "aiotcp-c-server: bad option %s\n", argv[i]); return 2; }
    }
    if (argc % 2 == 0) { fprintf(stderr, "aiotcp-c-server: missing value for %s\n", argv[argc - 1]); return 2; }
    plen = strlen(prefix);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) { fprintf(stderr, "aiotcp-c-server: %s: %s\n", host, gai_strerror(rc)); return 2; }
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(lfd, backlog) < 0) {
        fprintf(stderr, "aiotcp-c-server: cannot listen on %s:%s: %s\n", host, port, strerror(errno));
        return 1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char name[INET6_ADDRSTRLEN] = "?";
    getsockname(lfd, (struct sockaddr *)&ss, &sl);
    int bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    inet_ntop(ss.ss_family, ss.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr : (void *)&((struct sockaddr_in *)&ss)->sin_addr, name, sizeof name);
    freeaddrinfo(ai);
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    fprintf(stderr, "listening on %s:%d\n", name, bound);
    struct epoll_event evs[MAX_EVENTS];
    while (!stop) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) { on_accept(lfd); continue; }
            if (c->paused) { if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) flush(c); }
            else on_readable(c);
        }
    }
    return 0;
}
