/* aiotcp's compiled load engine: one thread, epoll, every reply verified byte for byte.
 *
 * Closed loop (default): each connection keeps --in-flight messages outstanding; a read
 * that completes n replies sends n new messages in one write. Open loop (--rate R): message
 * m of the run is due at t0 + m/R and goes to connection m % N (at most --in-flight
 * outstanding per connection); its latency is measured from that scheduled time, so a
 * stalled server is charged for the messages the client could not send (wrk2's correction).
 *
 * Message i of a connection is the (i % distinct)-th of a fixed set of equal-size payloads,
 * so the whole send stream and the whole correct reply stream are known in advance: checking
 * a read is one memcmp against a cyclic buffer (strict), or, for servers that reply per
 * read rather than per line (loose), deleting every prefix and comparing the rest with the
 * send stream.
 *
 * Protocol with the caller: progress lines on stderr ("connected N", "start", "progress
 * <seconds> <acked>", "end"); with --sync-start it waits for a line on stdin between
 * "connected" and "start". The result is one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netdb.h>
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
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "results.h"

/* Connects in progress at once: a burst past the server's backlog only causes SYN retries. */
#define CONNECT_CONCURRENCY 256
/* Events per epoll_wait: enough that a busy loop makes few calls. */
#define MAX_EVENTS 1024
/* One read takes at most this much: far above what 16 in flight x 1 KiB replies produce. */
#define READ_BUF (256 * 1024)
/* Longest reply prefix accepted (a prefix is a short label). */
#define MAX_PREFIX 1024
/* Seconds between progress lines. */
#define PROGRESS_NS 250000000ull

enum { C_IDLE, C_CONNECTING, C_READY, C_CLOSED };

typedef struct {
    int fd, state, want_out, dirty;
    uint64_t sent, acked, rx, due, started_ns;
    size_t tx_off, tx_pending, carry_len;
    unsigned ring_head, ring_len; /* closed loop: (time, count) per write */
    unsigned char carry[MAX_PREFIX];
} conn_t;

static struct {
    const char *host, *port_s, *framing, *verify;
    char prefix[MAX_PREFIX];
    size_t plen;
    long conns, in_flight, size;
    double duration, rate, connect_timeout, drain_timeout;
    uint64_t count;
    int sync_start;
} opt = {"127.0.0.1", "8888", "line", "strict", "", 0, 10, 1, 64, 5.0, 0.0, 10.0, 3.0, 0, 0};

static conn_t *conns;
static uint64_t *ring_t;
static uint32_t *ring_n;
static unsigned char *send2, *reply2, rbuf[READ_BUF], cbuf[READ_BUF + MAX_PREFIX];
static size_t send_len, reply_len, wire_len, reply_frame_len;
static long distinct;
static int ep, loose, sending;
static uint64_t total_sent, total_acked, t0_ns;

static void conn_fail(conn_t *c, const char *kind, const char *detail) {
    add_error(kind, detail);
    total_sent -= c->sent - c->acked; /* never wait for replies that cannot come */
    c->sent = c->acked;
    c->state = C_CLOSED;
    close(c->fd);
}

static void set_events(conn_t *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush(conn_t *c) {
    while (c->tx_pending) {
        ssize_t w = write(c->fd, send2 + c->tx_off, c->tx_pending);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            char d[96];
            snprintf(d, sizeof d, "write failed: %s", strerror(errno));
            conn_fail(c, "closed", d);
            return;
        }
        c->tx_off = (c->tx_off + (size_t)w) % send_len;
        c->tx_pending -= (size_t)w;
    }
    if (c->tx_pending && !c->want_out) { c->want_out = 1; set_events(c, EPOLLIN | EPOLLOUT); }
    else if (!c->tx_pending && c->want_out) { c->want_out = 0; set_events(c, EPOLLIN); }
}

/* Queue n more messages (written together, stamped t) and write what the socket takes. */
static void send_msgs(conn_t *c, uint64_t n, uint64_t t) {
    if (opt.count && total_sent + n > opt.count) n = opt.count - total_sent;
    if (!n) return;
    if (opt.rate <= 0) {
        unsigned slot = (c->ring_head + c->ring_len++) % (unsigned)opt.in_flight;
        size_t base = (size_t)(c - conns) * (size_t)opt.in_flight;
        ring_t[base + slot] = t;
        ring_n[base + slot] = (uint32_t)n;
    }
    c->tx_pending += n * wire_len;
    c->sent += n;
    total_sent += n;
    flush(c);
}

static void open_loop_send(conn_t *c, uint64_t t) {
    uint64_t room = (uint64_t)opt.in_flight - (c->sent - c->acked);
    uint64_t n = c->due - c->sent < room ? c->due - c->sent : room;
    if (n && c->state == C_READY) send_msgs(c, n, t);
}

static void describe_mismatch(conn_t *c, const unsigned char *data, size_t n, size_t bad,
                              const unsigned char *cycle2, size_t cycle_len, size_t off, size_t unit) {
    char got[200], want[200], detail[600], kind[48] = "verify";
    size_t from = bad > 20 ? bad - 20 : 0, to = bad + 40 < n ? bad + 40 : n;
    repr(got, sizeof got, data + from, to - from);
    repr(want, sizeof want, cycle2 + (off + from) % cycle_len, 60);
    int o = snprintf(detail, sizeof detail, "reply mismatch near message %llu: got %sb'%s', expected b'%s'",
                     (unsigned long long)((c->rx + bad) / unit), loose ? "(prefixes removed) " : "", got, want);
    const unsigned char *err = memmem(data, n, "ERR ", 4);
    if (err) {
        size_t k = 4;
        while (err + k < data + n && err[k] != ' ' && err[k] != '\n' && k < 40) k++;
        snprintf(kind, sizeof kind, "ERR %.*s", (int)(k - 4), err + 4);
        const unsigned char *nl = memchr(err, '\n', (size_t)(data + n - err));
        size_t elen = nl ? (size_t)(nl - err) : (size_t)(data + n - err);
        char said[120];
        repr(said, sizeof said, err, elen < 80 ? elen : 80);
        snprintf(detail + o, sizeof detail - (size_t)o, " server said %s", said);
    }
    conn_fail(c, kind, detail);
}

/* Compare data with the cyclic stream from offset rx; return the first bad index or -1. */
static long check_cyclic(const unsigned char *data, size_t n, const unsigned char *cycle2, size_t cycle_len,
                         uint64_t rx) {
    size_t pos = 0, off = rx % cycle_len;
    while (pos < n) {
        size_t take = n - pos < cycle_len ? n - pos : cycle_len;
        if (memcmp(data + pos, cycle2 + off, take) != 0) {
            for (size_t i = 0; i < take; i++)
                if (data[pos + i] != cycle2[off + i]) return (long)(pos + i);
        }
        pos += take;
        off = (off + take) % cycle_len;
    }
    return -1;
}

/* Loose mode: drop every prefix (carrying a partial one to the next read) into cbuf. */
static size_t strip_prefixes(conn_t *c, const unsigned char *data, size_t n) {
    static unsigned char work[READ_BUF + MAX_PREFIX];
    size_t len = c->carry_len, out = 0, i = 0;
    memcpy(work, c->carry, len);
    memcpy(work + len, data, n);
    len += n;
    c->carry_len = 0;
    while (i < len) {
        if (opt.plen && work[i] == (unsigned char)opt.prefix[0]) {
            size_t avail = len - i;
            if (avail >= opt.plen && memcmp(work + i, opt.prefix, opt.plen) == 0) { i += opt.plen; continue; }
            if (avail < opt.plen && memcmp(work + i, opt.prefix, avail) == 0) {
                memcpy(c->carry, work + i, avail);
                c->carry_len = avail;
                break;
            }
        }
        cbuf[out++] = work[i++];
    }
    return out;
}

static void on_readable(conn_t *c) {
    ssize_t n = read(c->fd, rbuf, READ_BUF);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        char d[120];
        if (n == 0) snprintf(d, sizeof d, "server closed the connection with %llu messages unanswered",
                             (unsigned long long)(c->sent - c->acked));
        else snprintf(d, sizeof d, "connection lost: %s", strerror(errno));
        if (c->sent > c->acked || sending) conn_fail(c, "closed", d);
        else { c->state = C_CLOSED; close(c->fd); }
        return;
    }
    const unsigned char *data = rbuf;
    size_t len = (size_t)n;
    const unsigned char *cycle2 = reply2;
    size_t cycle_len = reply_len, unit = reply_frame_len;
    if (loose) {
        len = strip_prefixes(c, rbuf, len);
        data = cbuf;
        cycle2 = send2;
        cycle_len = send_len;
        unit = wire_len;
    }
    long bad = check_cyclic(data, len, cycle2, cycle_len, c->rx);
    if (bad >= 0) {
        describe_mismatch(c, data, len, (size_t)bad, cycle2, cycle_len, c->rx % cycle_len, unit);
        return;
    }
    uint64_t done = (c->rx + len) / unit - c->rx / unit;
    c->rx += len;
    if (!done) return;
    uint64_t t = now_ns();
    if (opt.rate > 0) {
        for (uint64_t k = c->acked; k < c->acked + done; k++) {
            uint64_t sched = (uint64_t)((double)(k * (uint64_t)opt.conns + (uint64_t)(c - conns)) * 1e9 / opt.rate);
            uint64_t due_at = t0_ns + sched;
            hist_add(t > due_at ? t - due_at : 0, 1);
        }
    } else {
        uint64_t left = done;
        size_t base = (size_t)(c - conns) * (size_t)opt.in_flight;
        while (left && c->ring_len) {
            unsigned h = c->ring_head;
            uint64_t take = left < ring_n[base + h] ? left : ring_n[base + h];
            hist_add(t - ring_t[base + h], take);
            left -= take;
            ring_n[base + h] -= (uint32_t)take;
            if (!ring_n[base + h]) { c->ring_head = (h + 1) % (unsigned)opt.in_flight; c->ring_len--; }
        }
    }
    c->acked += done;
    total_acked += done;
    if (sending) {
        if (opt.rate > 0) open_loop_send(c, t);
        else send_msgs(c, done, t);
    }
}

static void start_connect(conn_t *c, const struct addrinfo *ai) {
    c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, ai->ai_protocol);
    if (c->fd < 0) { char d[96]; snprintf(d, sizeof d, "socket: %s", strerror(errno)); add_error("connect", d); c->state = C_CLOSED; return; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->started_ns = now_ns();
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        char d[96];
        snprintf(d, sizeof d, "connect: %s", strerror(errno));
        add_error("connect", d);
        close(c->fd);
        c->state = C_CLOSED;
        return;
    }
    c->state = C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static long connect_all(void) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(opt.host, opt.port_s, &hints, &ai);
    if (rc) { fprintf(stderr, "aiotcp-loadgen: cannot resolve %s: %s\n", opt.host, gai_strerror(rc)); exit(2); }
    long next = 0, busy = 0, ready = 0;
    struct epoll_event evs[MAX_EVENTS];
    while (next < opt.conns || busy) {
        while (next < opt.conns && busy < CONNECT_CONCURRENCY) {
            start_connect(&conns[next++], ai);
            if (conns[next - 1].state == C_CONNECTING) busy++;
        }
        int n = epoll_wait(ep, evs, MAX_EVENTS, 50);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            busy--;
            if (err) {
                char d[96]; snprintf(d, sizeof d, "connect: %s", strerror(err));
                add_error("connect", d); close(c->fd); c->state = C_CLOSED;
            } else { c->state = C_READY; ready++; set_events(c, EPOLLIN); }
        }
        uint64_t t = now_ns();
        for (long i = 0; i < next; i++) {
            conn_t *c = &conns[i];
            if (c->state == C_CONNECTING && t - c->started_ns > (uint64_t)(opt.connect_timeout * 1e9)) {
                add_error("connect", "timed out"); close(c->fd); c->state = C_CLOSED; busy--;
            }
        }
    }
    freeaddrinfo(ai);
    return ready;
}

static void build_streams(void) {
    static const char pad[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    int line = strcmp(opt.framing, "line") == 0, length = strcmp(opt.framing, "length") == 0;
    size_t hdr = length ? 4 : 0, trail = line ? 1 : 0;
    wire_len = hdr + (size_t)opt.size + trail;
    reply_frame_len = hdr + opt.plen + (size_t)opt.size + trail;
    send_len = wire_len * (size_t)distinct;
    reply_len = reply_frame_len * (size_t)distinct;
    send2 = malloc(2 * send_len);
    reply2 = malloc(2 * reply_len);
    char *msg = malloc((size_t)opt.size + 64);
    for (long i = 0; i < distinct; i++) {
        int h = snprintf(msg, 64, "%ld-", i);
        for (long k = h; k < opt.size; k++) msg[k] = pad[(k - h) % (sizeof pad - 1)];
        unsigned char *s = send2 + (size_t)i * wire_len, *r = reply2 + (size_t)i * reply_frame_len;
        uint32_t ls = (uint32_t)opt.size, lr = (uint32_t)(opt.plen + (size_t)opt.size);
        if (length) {
            s[0] = ls >> 24; s[1] = ls >> 16; s[2] = ls >> 8; s[3] = (unsigned char)ls;
            r[0] = lr >> 24; r[1] = lr >> 16; r[2] = lr >> 8; r[3] = (unsigned char)lr;
        }
        memcpy(s + hdr, msg, (size_t)opt.size);
        memcpy(r + hdr, opt.prefix, opt.plen);
        memcpy(r + hdr + opt.plen, msg, (size_t)opt.size);
        if (line) { s[wire_len - 1] = '\n'; r[reply_frame_len - 1] = '\n'; }
    }
    memcpy(send2 + send_len, send2, send_len);
    memcpy(reply2 + reply_len, reply2, reply_len);
    free(msg);
}


static void usage(const char *why) {
    usage_exit("aiotcp-loadgen", why, "[--host H] [--port P] [--connections N] "
               "[--in-flight F] [--size S] [--duration D] [--count C] [--rate R] [--framing line|length|raw] "
               "[--verify strict|loose] [--prefix P] [--connect-timeout S] [--drain-timeout S] [--sync-start]");
}

static void parse(int argc, char **argv) {
    snprintf(opt.prefix, sizeof opt.prefix, "%s", DEFAULT_PREFIX);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = option_value(argc, argv, &i);
        if (!v) usage("missing value");
        if (!strcmp(a, "--sync-start")) opt.sync_start = 1;
        else if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port_s = v;
        else if (!strcmp(a, "--connections")) opt.conns = atol(v);
        else if (!strcmp(a, "--in-flight")) opt.in_flight = atol(v);
        else if (!strcmp(a, "--size")) opt.size = atol(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--count")) opt.count = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--rate")) opt.rate = atof(v);
        else if (!strcmp(a, "--framing")) opt.framing = v;
        else if (!strcmp(a, "--verify")) opt.verify = v;
        else if (!strcmp(a, "--prefix")) { if (strlen(v) >= MAX_PREFIX) usage("prefix too long"); snprintf(opt.prefix, sizeof opt.prefix, "%s", v); }
        else if (!strcmp(a, "--connect-timeout")) opt.connect_timeout = atof(v);
        else if (!strcmp(a, "--drain-timeout")) opt.drain_timeout = atof(v);
        else usage("unknown option");
    }
    opt.plen = strlen(opt.prefix);
    if (opt.conns < 1 || opt.in_flight < 1 || opt.size < 0 || opt.duration < 0 || opt.rate < 0)
        usage("--connections, --in-flight >= 1; --size, --duration, --rate >= 0");
    if (strcmp(opt.framing, "line") && strcmp(opt.framing, "length") && strcmp(opt.framing, "raw")) usage("bad --framing");
    if (strcmp(opt.verify, "strict") && strcmp(opt.verify, "loose")) usage("bad --verify");
    if (!strcmp(opt.framing, "raw") && opt.size < 1) usage("raw framing needs --size >= 1");
    if (!opt.duration && !opt.count) usage("give --duration or --count");
    loose = !strcmp(opt.verify, "loose");
    distinct = opt.in_flight > 256 ? opt.in_flight : 256;
}

int main(int argc, char **argv) {
    parse(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    build_streams();
    conns = calloc((size_t)opt.conns, sizeof *conns);
    ring_t = calloc((size_t)opt.conns * (size_t)opt.in_flight, sizeof *ring_t);
    ring_n = calloc((size_t)opt.conns * (size_t)opt.in_flight, sizeof *ring_n);
    ep = epoll_create1(0);
    long connected = connect_all();
    fprintf(stderr, "connected %ld\n", connected);
    if (opt.sync_start) {
        char line[64];
        if (!fgets(line, sizeof line, stdin)) return 3; /* the caller went away */
    }
    int tfd = -1;
    if (opt.rate > 0) {
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    }
    double cpu0 = cpu_seconds();
    t0_ns = now_ns();
    fprintf(stderr, "start\n");
    sending = 1;
    if (opt.rate <= 0)
        for (long i = 0; i < opt.conns; i++)
            if (conns[i].state == C_READY) send_msgs(&conns[i], (uint64_t)opt.in_flight, t0_ns);
    uint64_t end_ns = t0_ns + (uint64_t)(opt.duration * 1e9), next_progress = t0_ns + PROGRESS_NS;
    uint64_t window_ns = 0, acked_in_window = 0, g_next = 0, last_ack = 0, last_change = t0_ns;
    double cpu1 = 0;
    conn_t **dirty = calloc((size_t)opt.conns, sizeof *dirty);
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        uint64_t t = now_ns();
        if (total_acked != last_ack) { last_ack = total_acked; last_change = t; }
        if (sending) {
            int over = (opt.duration > 0 && t >= end_ns) || (opt.count && total_acked >= opt.count) ||
                       (opt.count && t - last_change > (uint64_t)(opt.drain_timeout * 1e9));
            if (over) {
                sending = 0;
                window_ns = t - t0_ns;
                acked_in_window = total_acked;
                cpu1 = cpu_seconds();
                fprintf(stderr, "end\n");
                last_change = t;
            } else if (opt.rate > 0) {
                uint64_t due = (uint64_t)((double)(t - t0_ns) * opt.rate / 1e9) + 1;
                if (opt.count && due > opt.count) due = opt.count;
                long nd = 0;
                for (; g_next < due; g_next++) {
                    conn_t *c = &conns[g_next % (uint64_t)opt.conns];
                    if (c->state != C_READY) continue;
                    c->due++;
                    if (!c->dirty) { c->dirty = 1; dirty[nd++] = c; }
                }
                for (long i = 0; i < nd; i++) { dirty[i]->dirty = 0; open_loop_send(dirty[i], t); }
                uint64_t at = t0_ns + (uint64_t)((double)g_next * 1e9 / opt.rate);
                struct itimerspec its = {.it_value = {(time_t)(at / 1000000000ull), (long)(at % 1000000000ull)}};
                timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            }
            if (t >= next_progress) {
                fprintf(stderr, "progress %.3f %llu\n", (double)(t - t0_ns) / 1e9, (unsigned long long)total_acked);
                next_progress += PROGRESS_NS;
            }
        }
        if (!sending && (total_acked >= total_sent || t - last_change > (uint64_t)(opt.drain_timeout * 1e9))) break;
        int timeout_ms = 50;
        if (sending && opt.duration > 0 && end_ns > t && (end_ns - t) / 1000000 < 50) timeout_ms = (int)((end_ns - t) / 1000000) + 1;
        int n = epoll_wait(ep, evs, MAX_EVENTS, timeout_ms);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) { uint64_t x; if (read(tfd, &x, sizeof x) < 0) {} continue; }
            if (c->state != C_READY) continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
            if (c->state == C_READY && (evs[i].events & EPOLLOUT)) flush(c);
        }
    }
    uint64_t unanswered = 0;
    for (long i = 0; i < opt.conns; i++)
        if (conns[i].state == C_READY) unanswered += conns[i].sent - conns[i].acked;
    if (unanswered) {
        char d[120];
        snprintf(d, sizeof d, "%llu messages had no reply %gs after the run", (unsigned long long)unanswered, opt.drain_timeout);
        add_error("unanswered", d);
        kind_count[nkinds - 1] = unanswered;
    }
    print_result(opt.conns, connected, (double)window_ns / 1e9, total_sent, acked_in_window, cpu1 - cpu0);
    return 0;
}
