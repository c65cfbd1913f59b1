/* The load engine's and the connection-rate client's results: clocks, latency histogram,
 * error counts and samples, the JSON report.
 *
 * Included by loadgen.c and connrate.c (each one translation unit; the build hashes every
 * file here).
 */
#ifndef AIOTCP_RESULTS_H
#define AIOTCP_RESULTS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* The reply prefix both programs expect by default: "已收到: " in UTF-8. */
#define DEFAULT_PREFIX "\xe5\xb7\xb2\xe6\x94\xb6\xe5\x88\xb0: "

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Options are "--name value" pairs and the bare flag --sync-start: the value of argv[*i]
 * (stepping *i past it), "" for --sync-start, or NULL when the value is missing. */
static const char *option_value(int argc, char **argv, int *i) {
    if (!strcmp(argv[*i], "--sync-start")) return "";
    return *i + 1 < argc ? argv[++*i] : NULL;
}

/* Say why the command line is refused, and how it goes; exit 2. */
static void usage_exit(const char *program, const char *why, const char *synopsis) {
    fprintf(stderr, "%s: %s\nusage: %s %s\n", program, why, program, synopsis);
    exit(2);
}

/* This process's CPU time so far (user + system), for the result's cpu_seconds. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Error descriptions kept (counts are always complete). */
#define MAX_SAMPLES 5
#define MAX_KINDS 16
/* Histogram: 2^SUB_BITS linear sub-buckets per power of two of nanoseconds (< 0.8 % error). */
#define SUB_BITS 7
#define SUB (1u << SUB_BITS)
#define MAGS 42 /* up to 2^42 ns, over an hour */
#define NBUCKETS (SUB + (MAGS - SUB_BITS) * SUB)

static uint64_t hist[NBUCKETS], max_ns;
static char kinds[MAX_KINDS][48];
static uint64_t kind_count[MAX_KINDS];
static int nkinds;
static char samples[MAX_SAMPLES][600];
static int nsamples;

static void hist_add(uint64_t v, uint64_t n) {
    unsigned idx;
    if (v > max_ns) max_ns = v;
    if (v < SUB) {
        idx = (unsigned)v;
    } else {
        unsigned e = 63u - (unsigned)__builtin_clzll(v);
        if (e >= MAGS) { e = MAGS - 1; v = (2ull << e) - 1; }
        idx = SUB + (e - SUB_BITS) * SUB + (unsigned)((v >> (e - SUB_BITS)) - SUB);
    }
    hist[idx] += n;
}

static uint64_t bucket_mid(unsigned idx) {
    if (idx < SUB) return idx;
    unsigned e = (idx - SUB) / SUB + SUB_BITS, sub = (idx - SUB) % SUB;
    uint64_t width = 1ull << (e - SUB_BITS);
    return ((uint64_t)(SUB + sub) << (e - SUB_BITS)) + width / 2;
}

/* Append bytes to dst as a Python-like repr body (printable ASCII kept, the rest \xNN). */
static size_t repr(char *dst, size_t cap, const unsigned char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char ch = s[i];
        if (ch == '\n') o += (size_t)snprintf(dst + o, cap - o, "\\n");
        else if (ch == '\r') o += (size_t)snprintf(dst + o, cap - o, "\\r");
        else if (ch == '\\' || ch == '\'') o += (size_t)snprintf(dst + o, cap - o, "\\%c", ch);
        else if (ch >= 32 && ch < 127) dst[o++] = (char)ch;
        else o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", ch);
    }
    dst[o] = 0;
    return o;
}

static void add_error(const char *kind, const char *detail) {
    int k;
    for (k = 0; k < nkinds && strcmp(kinds[k], kind) != 0; k++) {}
    if (k == nkinds) {
        if (nkinds == MAX_KINDS) k = MAX_KINDS - 1; /* lump the rare rest into the last kind */
        else snprintf(kinds[nkinds++], sizeof kinds[0], "%s", kind);
    }
    kind_count[k]++;
    if (nsamples < MAX_SAMPLES) snprintf(samples[nsamples++], sizeof samples[0], "%s: %s", kind, detail);
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 32) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

/* Print the run's result as one JSON object on stdout. */
static void print_result(long conns_n, long connected, double window, uint64_t sent, uint64_t acked, double cpu) {
    printf("{\"engine\": \"c\", \"connections\": %ld, \"connected\": %ld, \"duration\": %.6f, "
           "\"messages_sent\": %llu, \"messages_acked\": %llu, \"cpu_seconds\": %.6f, \"errors\": {",
           conns_n, connected, window, (unsigned long long)sent, (unsigned long long)acked, cpu);
    for (int k = 0; k < nkinds; k++) { printf(k ? ", " : ""); json_str(kinds[k]); printf(": %llu", (unsigned long long)kind_count[k]); }
    printf("}, \"error_samples\": [");
    for (int k = 0; k < nsamples; k++) { printf(k ? ", " : ""); json_str(samples[k]); }
    printf("], \"max_ns\": %llu, \"latency_ns\": [", (unsigned long long)max_ns);
    int first = 1;
    for (unsigned b = 0; b < NBUCKETS; b++)
        if (hist[b]) { printf("%s[%llu, %llu]", first ? "" : ", ", (unsigned long long)bucket_mid(b), (unsigned long long)hist[b]); first = 0; }
    printf("]}\n");
}

#endif
