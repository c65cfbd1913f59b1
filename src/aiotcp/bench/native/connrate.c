/* aiotcp's connection-rate client: one thread, epoll, every reply verified byte for byte.
 *
 * Each of --loops loops runs cycles until --duration ends: a non-blocking connect, one
 * line of --size bytes (the load engine's payloads, cycle k of a loop sends the
 * (k % DISTINCT)-th), the whole reply read and compared with the expected bytes, then close.
 * The client closes first, so TIME_WAIT sits on the client's side; with --sources K the
 * loops bind 127.0.0.1 .. 127.0.0.K (IP_BIND_ADDRESS_NO_PORT, so the port is still picked
 * at connect time) and the 4-tuples of K source addresses share out the ephemeral ports.
 *
 * A cycle's latency runs from socket() to close(). Errors are counted by kind and the loop
 * starts its next cycle: connect (socket, bind, connect or the first write failed), closed
 * (EOF or reset before the whole reply), verify or "ERR <code>" (wrong bytes), timeout (a
 * cycle over --timeout), unanswered (cycles still open --drain-timeout after the window).
 *
 * Protocol with the caller, as the load engine's: "connected N" on stderr once set up; with
 * --sync-start it waits for a line on stdin; then "start" and "end"; the result is one JSON
 * object on stdout (results.h), where messages_sent counts the cycles begun in the window
 * and messages_acked those completed in it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#include "results.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* Events per epoll_wait. */
#define MAX_EVENTS 1024
/* Distinct payloads cycled through, as the load engine's 256. */
#define DISTINCT 256
/* Longest reply prefix and message accepted. */
#define MAX_PREFIX 1024
#define MAX_SIZE 65536
/* A loop whose connect failed at once (no port free, say) retries after this pause. */
#define RETRY_MS 1

enum { L_IDLE, L_CONNECTING, L_READING, L_RETRY };

typedef struct {
    int fd, state;
    uint64_t cycles, started_ns;
    size_t got;
} loop_t;

static struct {
    const char *host;
    int port;
    char prefix[MAX_PREFIX];
    size_t plen;
    long loops, size, sources;
    double duration, timeout, drain_timeout;
    int sync_start;
} opt = {"127.0.0.1", 8888, "", 0, 50, 64, 1, 2.0, 5.0, 3.0, 0};

static loop_t *loops;
static unsigned char *msgs, *replies, rbuf[2 * MAX_SIZE + 2 * MAX_PREFIX];
static size_t wire_len, reply_len;
static struct sockaddr_in server_addr;
static int ep, sending;
static uint64_t begun, completed;



static const unsigned char *reply_of(const loop_t *l) { return replies + (l->cycles % DISTINCT) * reply_len; }

static void end_cycle(loop_t *l) {
    close(l->fd);
    l->fd = -1;
    l->state = L_IDLE;
    l->got = 0;
    l->cycles++;
}

static void fail(loop_t *l, const char *kind, const char *detail) {
    add_error(kind, detail);
    end_cycle(l);
}

static void fail_errno(loop_t *l, const char *kind, const char *what, int err) {
    char d[160];
    snprintf(d, sizeof d, "%s: %s (cycle %llu of loop %ld)", what, strerror(err),
             (unsigned long long)l->cycles, (long)(l - loops));
    fail(l, kind, d);
}

static void start_cycle(loop_t *l) {
    l->started_ns = now_ns();
    l->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (l->fd < 0) { add_error("connect", strerror(errno)); l->state = L_RETRY; return; }
    int one = 1;
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.sources > 1) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)((l - loops) % opt.sources));
        setsockopt(l->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(l->fd, (struct sockaddr *)&src, sizeof src) < 0) {
            int err = errno;
            fail_errno(l, "connect", "bind", err);
            l->state = L_RETRY;
            return;
        }
    }
    begun += sending;
    if (connect(l->fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0 && errno != EINPROGRESS) {
        int err = errno;
        fail_errno(l, "connect", "connect", err);
        l->state = L_RETRY; /* EADDRNOTAVAIL (no ephemeral port free) would spin: pause */
        return;
    }
    l->state = L_CONNECTING;
    /* Edge-triggered for both directions: one epoll_ctl per cycle; close() removes it. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = l};
    epoll_ctl(ep, EPOLL_CTL_ADD, l->fd, &ev);
}

static void describe_mismatch(loop_t *l, size_t bad) {
    char got[200], want[200], detail[600], kind[48] = "verify";
    const unsigned char *want_b = reply_of(l);
    size_t from = bad > 20 ? bad - 20 : 0, to = bad + 40 < l->got ? bad + 40 : l->got;
    repr(got, sizeof got, rbuf + from, to - from);
    repr(want, sizeof want, want_b + from, (reply_len - from) < 60 ? reply_len - from : 60);
    snprintf(detail, sizeof detail, "reply mismatch at byte %zu of cycle %llu: got b'%s', expected b'%s'",
             bad, (unsigned long long)l->cycles, got, want);
    if (l->got >= 4 && memcmp(rbuf, "ERR ", 4) == 0) {
        size_t k = 4;
        while (k < l->got && rbuf[k] != ' ' && rbuf[k] != '\n' && k < 40) k++;
        snprintf(kind, sizeof kind, "ERR %.*s", (int)(k - 4), rbuf + 4);
    }
    fail(l, kind, detail);
}

static void on_readable(loop_t *l) {
    for (;;) {
        /* Room for one byte more than the reply: extra bytes are a wrong reply too. */
        ssize_t n = read(l->fd, rbuf + l->got, reply_len + 1 - l->got);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            fail_errno(l, "closed", "connection lost before the whole reply", errno);
            return;
        }
        if (n == 0) {
            char d[160];
            snprintf(d, sizeof d, "server closed the connection after %zu of %zu reply bytes (cycle %llu)",
                     l->got, reply_len, (unsigned long long)l->cycles);
            fail(l, "closed", d);
            return;
        }
        size_t before = l->got;
        l->got += (size_t)n;
        const unsigned char *want = reply_of(l);
        size_t cmp = l->got < reply_len ? l->got : reply_len;
        if (memcmp(rbuf + before, want + before, cmp - before) != 0 || l->got > reply_len) {
            size_t bad = before;
            while (bad < cmp && rbuf[bad] == want[bad]) bad++;
            describe_mismatch(l, bad);
            return;
        }
        if (l->got == reply_len) {
            uint64_t t = now_ns();
            hist_add(t - l->started_ns, 1);
            completed += sending;
            end_cycle(l);
            if (sending) start_cycle(l);
            return;
        }
    }
}

static void on_event(loop_t *l, uint32_t events) {
    if (l->state == L_CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        ssize_t w = write(l->fd, msgs + (l->cycles % DISTINCT) * wire_len, wire_len);
        if (w != (ssize_t)wire_len) {
            int err = w < 0 ? errno : EMSGSIZE;
            fail_errno(l, "connect", "connect or first write", err);
            if (sending) start_cycle(l);
            return;
        }
        l->state = L_READING;
    }
    if (l->state == L_READING && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
        on_readable(l);
        if (l->state == L_IDLE && sending) start_cycle(l);
    }
}

static void build_payloads(void) {
    static const char pad[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    wire_len = (size_t)opt.size + 1;
    reply_len = opt.plen + (size_t)opt.size + 1;
    msgs = malloc(wire_len * DISTINCT);
    replies = malloc(reply_len * DISTINCT);
    char head[32];
    for (long i = 0; i < DISTINCT; i++) {
        unsigned char *s = msgs + (size_t)i * wire_len, *r = replies + (size_t)i * reply_len;
        int h = snprintf(head, sizeof head, "%ld-", i);
        for (long k = 0; k < opt.size; k++) s[k] = k < h ? (unsigned char)head[k] : (unsigned char)pad[(k - h) % (sizeof pad - 1)];
        s[wire_len - 1] = '\n';
        memcpy(r, opt.prefix, opt.plen);
        memcpy(r + opt.plen, s, wire_len);
    }
}

static void usage(const char *why) {
    usage_exit("aiotcp-connrate", why, "[--host IPv4] [--port P] [--loops N] [--size S] "
               "[--duration D] [--sources K] [--prefix P] [--timeout S] [--drain-timeout S] [--sync-start]");
}

static void parse(int argc, char **argv) {
    snprintf(opt.prefix, sizeof opt.prefix, "%s", DEFAULT_PREFIX);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = option_value(argc, argv, &i);
        if (!v) usage("missing value");
        if (!strcmp(a, "--sync-start")) opt.sync_start = 1;
        else if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--loops")) opt.loops = atol(v);
        else if (!strcmp(a, "--size")) opt.size = atol(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--sources")) opt.sources = atol(v);
        else if (!strcmp(a, "--prefix")) { if (strlen(v) >= MAX_PREFIX) usage("prefix too long"); snprintf(opt.prefix, sizeof opt.prefix, "%s", v); }
        else if (!strcmp(a, "--timeout")) opt.timeout = atof(v);
        else if (!strcmp(a, "--drain-timeout")) opt.drain_timeout = atof(v);
        else usage("unknown option");
    }
    opt.plen = strlen(opt.prefix);
    if (opt.loops < 1 || opt.size < 0 || opt.size > MAX_SIZE || opt.duration <= 0 || opt.timeout <= 0)
        usage("--loops >= 1; 0 <= --size <= 65536; --duration, --timeout > 0");
    if (opt.sources < 1 || opt.sources > 254) usage("--sources from 1 to 254");
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &server_addr.sin_addr) != 1) usage("--host must be an IPv4 address");
}

int main(int argc, char **argv) {
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    build_payloads();
    loops = calloc((size_t)opt.loops, sizeof *loops);
    ep = epoll_create1(0);
    fprintf(stderr, "connected %ld\n", opt.loops);
    if (opt.sync_start) {
        char line[64];
        if (!fgets(line, sizeof line, stdin)) return 3; /* the caller went away */
    }
    double cpu0 = cpu_seconds(), cpu1 = 0;
    uint64_t t0 = now_ns(), end_ns = t0 + (uint64_t)(opt.duration * 1e9), window_ns = 0;
    uint64_t timeout_ns = (uint64_t)(opt.timeout * 1e9), next_scan = t0, drain_end = 0;
    fprintf(stderr, "start\n");
    sending = 1;
    for (long i = 0; i < opt.loops; i++) start_cycle(&loops[i]);
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        uint64_t t = now_ns();
        if (sending && t >= end_ns) {
            sending = 0;
            window_ns = t - t0;
            cpu1 = cpu_seconds();
            drain_end = t + (uint64_t)(opt.drain_timeout * 1e9);
            fprintf(stderr, "end\n");
        }
        long open = 0, retrying = 0;
        int scan = t >= next_scan;
        if (scan) next_scan = t + 10000000ull;
        for (long i = 0; i < opt.loops && (scan || !sending); i++) {
            loop_t *l = &loops[i];
            if (l->state == L_RETRY) {
                l->state = L_IDLE;
                if (sending) start_cycle(l);
            } else if ((l->state == L_CONNECTING || l->state == L_READING) && t - l->started_ns > timeout_ns) {
                char d[120];
                snprintf(d, sizeof d, "no whole reply %gs after the connect began (cycle %llu)", opt.timeout,
                         (unsigned long long)l->cycles);
                fail(l, "timeout", d);
                if (sending) start_cycle(l);
            }
            open += l->state == L_CONNECTING || l->state == L_READING;
            retrying += l->state == L_RETRY;
        }
        if (!sending && (open == 0 || t >= drain_end)) break;
        int timeout_ms = retrying ? RETRY_MS : 10;
        if (sending && end_ns > t && (end_ns - t) / 1000000 < (uint64_t)timeout_ms) timeout_ms = (int)((end_ns - t) / 1000000) + 1;
        int n = epoll_wait(ep, evs, MAX_EVENTS, timeout_ms);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    }
    uint64_t unanswered = 0;
    for (long i = 0; i < opt.loops; i++)
        if (loops[i].state == L_CONNECTING || loops[i].state == L_READING) { unanswered++; close(loops[i].fd); }
    if (unanswered) {
        char d[120];
        snprintf(d, sizeof d, "%llu cycles had no whole reply %gs after the run", (unsigned long long)unanswered,
                 opt.drain_timeout);
        for (uint64_t k = 0; k < unanswered; k++) add_error("unanswered", d);
    }
    print_result(opt.loops, opt.loops, (double)window_ns / 1e9, begun, completed, cpu1 - cpu0);
    return 0;
}
