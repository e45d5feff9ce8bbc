/* The bench's load generator in C: replays pre-encoded bytes over several connections, so
 * that the client never is the bottleneck of a receiver row (bench/cloadgen.py builds it and
 * writes the payload file; bench/harness.py runs it).
 *
 *   cloadgen load --mode framed|native --payloads FILE --port P [--connections N]
 *                 [--warmup S] [--window S] [--repeats N] [--peer-pid PID] [--cafile CA]
 *   cloadgen serve-framed [--port P]
 *
 * load: one request in flight per connection, on 127.0.0.1, optionally over TLS (OpenSSL,
 *   trusting --cafile, checking the server's certificate for 127.0.0.1).
 *   - native: HTTP/1.1 keep-alive POSTs of the gzip ndjson bodies (the headers of
 *     bench/loadgen.py); an answer is parsed whole (status line, headers, Content-Length or
 *     chunked body); a 2xx answer counts the batch's events, any other status is tallied.
 *   - framed: each payload is a whole Lumberjack v2 window (`2W n`, one `2C` frame of `2J`
 *     frames numbered 1..n, as Beats write them); its events count once the `2A` ACK naming
 *     its last seq arrives (partial ACKs and keep-alives `2A 0` are read and ignored).
 *   Prints one line `RESULT {json}`: the windows (warm-up excluded) with events, wall time,
 *   this process's CPU (CLOCK_PROCESS_CPUTIME_ID), the CPU of --peer-pid and all its
 *   descendants (summed over /proc, so a `twistd --workers N` parent counts with its
 *   workers; each thread's schedstat, in nanoseconds), the CPU all cores spent busy; the totals, refused answers by status, errors by
 *   kind, and the digest of the payloads (sha256 of their bytes, first 16 hex digits, as
 *   bench/workload.py's digest()).
 * serve-framed: a cheap Lumberjack receiver for the sender rows: inflates `C` frames, counts
 *   `J` frames, ACKs the last seq of each window; prints `READY port`, and `COUNT n` on
 *   SIGTERM. No JSON decoding: it only has to keep up with a Python sender.
 *
 * Payload file: "CLGPAY01", u32 count, then per payload u32 events, u32 length, bytes
 * (big-endian).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_CONN 256
#define MAX_MARKS 1024
#define MAX_TALLY 32

static void die(const char *what) {
    fprintf(stderr, "cloadgen: %s\n", what);
    exit(2);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double self_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

/* --- CPU of a process tree, and of the machine --------------------------------------------- */

static long ticks_per_s;

/* CPU seconds of a live process's threads, from /proc/PID/task/TID/schedstat (nanoseconds:
 * /proc/PID/stat counts in clock ticks of 10 ms, too coarse for a receiver that got 20 ms of
 * a window on a busy machine); -1 if unreadable. */
static double tasks_cpu(int pid) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        char file[300];
        snprintf(file, sizeof file, "/proc/%d/task/%s/schedstat", pid, e->d_name);
        int fd = open(file, O_RDONLY);
        if (fd < 0) continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0) continue;
        buf[len] = 0;
        total += strtoull(buf, NULL, 10) / 1e9;
    }
    closedir(d);
    return total;
}

/* CPU seconds of every live process under root (root included), their threads' time
 * (tasks_cpu, else utime+stime) plus what they reaped (cutime+cstime): a worker's CPU is its
 * own while it lives, its parent's once reaped. -1: no root. */
static double tree_cpu(int root) {
    enum { MAXP = 65536 };
    static int pids[MAXP], ppids[MAXP];
    static double cpu[MAXP], reaped[MAXP];
    static char in_tree[MAXP];
    int n = 0, found = 0;
    DIR *d = opendir("/proc");
    if (!d) return -1;
    struct dirent *e;
    char path[300], buf[1024];
    while ((e = readdir(d)) && n < MAXP) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0) continue;
        buf[len] = 0;
        char *p = strrchr(buf, ')');
        if (!p) continue;
        /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
         * utime stime cutime cstime */
        char state;
        int ppid;
        unsigned long long f[15];
        if (sscanf(p + 2, "%c %d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                   &state, &ppid, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8],
                   &f[9], &f[10], &f[11], &f[12]) != 15)
            continue;
        pids[n] = atoi(e->d_name);
        ppids[n] = ppid;
        cpu[n] = (double)(f[9] + f[10]) / ticks_per_s;
        reaped[n] = (double)(f[11] + f[12]) / ticks_per_s;
        in_tree[n] = pids[n] == root;
        found |= in_tree[n];
        n++;
    }
    closedir(d);
    if (!found) return -1;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < n; i++) {
            if (in_tree[i]) continue;
            for (int j = 0; j < n; j++) {
                if (in_tree[j] && pids[j] == ppids[i]) {
                    in_tree[i] = 1;
                    changed = 1;
                    break;
                }
            }
        }
    }
    double total = 0;
    for (int i = 0; i < n; i++) {
        if (!in_tree[i]) continue;
        double precise = tasks_cpu(pids[i]);
        total += reaped[i] + (precise >= 0 ? precise : cpu[i]);
    }
    return total;
}

static double system_busy(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {0};
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                     &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (got != 8) return -1;
    /* user nice system idle iowait irq softirq steal: busy = all but idle and iowait */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / ticks_per_s;
}

/* --- tallies ----------------------------------------------------------------------------- */

typedef struct {
    char key[32];
    long count;
} tally_t;

static tally_t refused[MAX_TALLY], errors[MAX_TALLY];

static void tally(tally_t *t, const char *key) {
    for (int i = 0; i < MAX_TALLY; i++) {
        if (!t[i].key[0]) snprintf(t[i].key, sizeof t[i].key, "%s", key);
        if (!strcmp(t[i].key, key)) {
            t[i].count++;
            return;
        }
    }
}

static void print_tally(const char *name, tally_t *t) {
    printf("\"%s\":{", name);
    for (int i = 0; i < MAX_TALLY && t[i].key[0]; i++)
        printf("%s\"%s\":%ld", i ? "," : "", t[i].key, t[i].count);
    printf("}");
}

/* --- payloads ---------------------------------------------------------------------------- */

typedef struct {
    unsigned char *wire; /* the bytes sent: the HTTP request (head + body) or the window */
    size_t len;
    uint32_t events;
} payload_t;

static payload_t *payloads;
static uint32_t npayloads;
static char digest_hex[17];

static void load_payloads(const char *path, int native, int port) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open the payload file");
    unsigned char head[12];
    if (fread(head, 1, 12, f) != 12 || memcmp(head, "CLGPAY01", 8)) die("not a payload file");
    npayloads = be32(head + 8);
    if (!npayloads) die("no payloads");
    payloads = calloc(npayloads, sizeof *payloads);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    for (uint32_t i = 0; i < npayloads; i++) {
        unsigned char h[8];
        if (fread(h, 1, 8, f) != 8) die("payload file cut short");
        uint32_t events = be32(h), len = be32(h + 4);
        unsigned char *body = malloc(len);
        if (fread(body, 1, len, f) != len) die("payload file cut short");
        EVP_DigestUpdate(md, body, len);
        payloads[i].events = events;
        if (native) {
            char hdr[512];
            int n = snprintf(hdr, sizeof hdr,
                             "POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                             "Content-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\n"
                             "Accept: */*\r\nContent-Length: %u\r\n\r\n",
                             port, len);
            payloads[i].wire = malloc(n + len);
            memcpy(payloads[i].wire, hdr, n);
            memcpy(payloads[i].wire + n, body, len);
            payloads[i].len = n + len;
            free(body);
        } else {
            payloads[i].wire = body;
            payloads[i].len = len;
        }
    }
    fclose(f);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen;
    EVP_DigestFinal_ex(md, out, &outlen);
    EVP_MD_CTX_free(md);
    for (int i = 0; i < 8; i++) sprintf(digest_hex + 2 * i, "%02x", out[i]);
}

/* --- connections ------------------------------------------------------------------------- */

enum { CLOSED, CONNECTING, HANDSHAKE, ACTIVE };

typedef struct {
    int fd, state, busy, index;
    SSL *ssl;
    size_t next;      /* payload index of the next request */
    payload_t *cur;   /* in flight */
    size_t out_off;   /* bytes of cur->wire written */
    int write_blocked, read_wants_write;
    unsigned char *in;
    size_t in_len, in_cap;
    double reconnect_at;
} conn_t;

static conn_t conns[MAX_CONN];
static int nconn = 4, native_mode, port;
static SSL_CTX *tls;
static long acked_events, requests, polls, connects;
static int sending = 1;

static void conn_close(conn_t *c, const char *why) {
    if (why) tally(errors, why);
    if (c->ssl) SSL_free(c->ssl);
    if (c->fd >= 0) close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
    c->state = CLOSED;
    c->busy = 0;
    c->in_len = 0;
    c->write_blocked = c->read_wants_write = 0;
    c->reconnect_at = now() + 0.01;
}

static const char *errno_name(int e) {
    switch (e) {
    case ECONNRESET: return "ECONNRESET";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EPIPE: return "EPIPE";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: return "socket_error";
    }
}

static void conn_write(conn_t *c);

static void start_request(conn_t *c) {
    if (!sending || c->state != ACTIVE || c->busy) return;
    c->cur = &payloads[c->next % npayloads];
    c->next += nconn;
    c->out_off = 0;
    c->busy = 1;
    conn_write(c);
}

static void conn_open(conn_t *c) {
    connects++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->state = CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS)
        conn_close(c, errno_name(errno));
}

static void tls_failed(conn_t *c, int err) {
    unsigned long e = ERR_get_error();
    if (e) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        fprintf(stderr, "cloadgen: TLS: %s\n", buf);
        ERR_clear_error();
    }
    conn_close(c, err == SSL_ERROR_ZERO_RETURN ? "EOF" : err == SSL_ERROR_SYSCALL ? "ECONNRESET"
                                                                                   : "tls_error");
}

static void handshake(conn_t *c) {
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->state = ACTIVE;
        c->write_blocked = 0;
        start_request(c);
        return;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ) c->write_blocked = 0;
    else if (err == SSL_ERROR_WANT_WRITE) c->write_blocked = 1;
    else tls_failed(c, err);
}

static void connected(conn_t *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        conn_close(c, errno_name(err));
        return;
    }
    if (tls) {
        c->ssl = SSL_new(tls);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_connect_state(c->ssl);
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), "127.0.0.1");
        c->state = HANDSHAKE;
        handshake(c);
    } else {
        c->state = ACTIVE;
        start_request(c);
    }
}

static void conn_write(conn_t *c) {
    c->write_blocked = 0;
    while (c->busy && c->out_off < c->cur->len) {
        size_t left = c->cur->len - c->out_off;
        const unsigned char *p = c->cur->wire + c->out_off;
        if (c->ssl) {
            int n = SSL_write(c->ssl, p, left > (1 << 30) ? (1 << 30) : (int)left);
            if (n > 0) {
                c->out_off += n;
                continue;
            }
            int err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_WRITE) c->write_blocked = 1;
            else if (err != SSL_ERROR_WANT_READ) tls_failed(c, err);
            return;
        }
        ssize_t n = send(c->fd, p, left, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) c->write_blocked = 1;
        else if (n < 0 && errno == EINTR) continue;
        else conn_close(c, errno_name(errno));
        return;
    }
}

/* The request is answered: count it, and send the next one on this connection. */
static void answered(conn_t *c, int ok, int status) {
    if (ok) {
        acked_events += c->cur->events;
        requests++;
    } else if (status) {
        char key[16];
        snprintf(key, sizeof key, "%d", status);
        tally(refused, key);
    }
    c->busy = 0;
    start_request(c);
}

static void consume(conn_t *c, size_t n) {
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* framed: `2A seq` frames; the one naming the window's last seq (= its count) completes it. */
static void framed_input(conn_t *c) {
    while (c->state == ACTIVE && c->in_len >= 6) {
        if (c->in[0] != '2' || c->in[1] != 'A') {
            conn_close(c, "bad_ack");
            return;
        }
        uint32_t seq = be32(c->in + 2);
        consume(c, 6);
        if (c->busy && seq == c->cur->events && c->out_off == c->cur->len) answered(c, 1, 0);
    }
}

/* Finds "\r\n" in [p, end); NULL if none. */
static const unsigned char *crlf(const unsigned char *p, const unsigned char *end) {
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n') return p;
    return NULL;
}

/* native: one whole HTTP/1.1 answer (1xx skipped), then the next request. Returns when
 * more bytes are needed. */
static void native_input(conn_t *c) {
    while (c->state == ACTIVE && c->in_len) {
        const unsigned char *buf = c->in, *end = c->in + c->in_len;
        const unsigned char *head_end = memmem(buf, c->in_len, "\r\n\r\n", 4);
        if (!head_end) {
            if (c->in_len > 65536) conn_close(c, "bad_response");
            return;
        }
        if (c->in_len < 12 || memcmp(buf, "HTTP/1.", 7)) {
            conn_close(c, "bad_response");
            return;
        }
        int status = atoi((const char *)buf + 9);
        long length = -1;
        int chunked = 0, close_after = 0;
        const unsigned char *line = crlf(buf, end) + 2;
        while (line < head_end + 2) {
            const unsigned char *eol = crlf(line, end);
            size_t n = eol - line;
            if (n > 15 && !strncasecmp((const char *)line, "content-length:", 15))
                length = strtol((const char *)line + 15, NULL, 10);
            else if (n > 18 && !strncasecmp((const char *)line, "transfer-encoding:", 18))
                chunked = memmem(line, n, "chunked", 7) != NULL;
            else if (n > 11 && !strncasecmp((const char *)line, "connection:", 11))
                close_after = memmem(line, n, "close", 5) != NULL;
            line = eol + 2;
        }
        const unsigned char *body = head_end + 4, *p = body;
        if (chunked) {
            for (;;) {
                const unsigned char *eol = crlf(p, end);
                if (!eol) return;
                long size = strtol((const char *)p, NULL, 16);
                p = eol + 2;
                if (size == 0) {
                    for (;;) { /* trailers, then an empty line */
                        const unsigned char *t = crlf(p, end);
                        if (!t) return;
                        int empty = t == p;
                        p = t + 2;
                        if (empty) break;
                    }
                    break;
                }
                if (end - p < size + 2) return;
                p += size + 2;
            }
        } else if (length >= 0) {
            if (end - body < length) return;
            p = body + length;
        } else if (status >= 200 && status != 204 && status != 304) {
            conn_close(c, "unframed_response"); /* body until close: not what an input sends */
            return;
        }
        consume(c, p - buf);
        if (status >= 100 && status < 200) continue;
        if (!c->busy) {
            conn_close(c, "unexpected_response");
            return;
        }
        if (c->out_off < c->cur->len) { /* answered before the whole body was sent */
            char key[16];
            snprintf(key, sizeof key, "%d", status);
            tally(refused, key);
            conn_close(c, NULL);
            return;
        }
        answered(c, status >= 200 && status < 300, status);
        if (close_after) {
            conn_close(c, NULL);
            return;
        }
    }
}

static void conn_read(conn_t *c) {
    c->read_wants_write = 0;
    for (;;) {
        if (c->in_cap - c->in_len < 16384) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 65536;
            c->in = realloc(c->in, c->in_cap);
        }
        ssize_t n;
        if (c->ssl) {
            n = SSL_read(c->ssl, c->in + c->in_len, (int)(c->in_cap - c->in_len));
            if (n <= 0) {
                int err = SSL_get_error(c->ssl, (int)n);
                if (err == SSL_ERROR_WANT_READ) break;
                if (err == SSL_ERROR_WANT_WRITE) {
                    c->read_wants_write = 1;
                    break;
                }
                tls_failed(c, err);
                return;
            }
        } else {
            n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                conn_close(c, n == 0 ? "EOF" : errno_name(errno));
                return;
            }
        }
        c->in_len += n;
        if (native_mode) native_input(c);
        else framed_input(c);
        if (c->state != ACTIVE) return;
    }
}

static void conn_event(conn_t *c, short revents) {
    if (c->state == CONNECTING) {
        if (revents & (POLLOUT | POLLERR | POLLHUP)) connected(c);
        return;
    }
    if (c->state == HANDSHAKE) {
        handshake(c);
        return;
    }
    if (c->state != ACTIVE) return;
    if (revents & (POLLIN | POLLERR | POLLHUP) || c->read_wants_write) conn_read(c);
    if (c->state == ACTIVE && c->busy && c->out_off < c->cur->len) conn_write(c);
}

/* --- the load run ------------------------------------------------------------------------ */

typedef struct {
    double t, self, peer, sys;
    long events;
} mark_t;

static mark_t marks[MAX_MARKS];
static int nmarks;
static int peer_pid;

static void mark(void) {
    if (nmarks >= MAX_MARKS) return;
    mark_t *m = &marks[nmarks++];
    m->t = now();
    m->events = acked_events;
    m->self = self_cpu();
    m->peer = peer_pid ? tree_cpu(peer_pid) : -1;
    m->sys = system_busy();
}

static void share(const char *name, double a, double b, double seconds) {
    if (a < 0 || b < 0 || seconds <= 0) printf(",\"%s\":null", name);
    else printf(",\"%s\":%.3f", name, (b - a) / seconds);
}

static void loop_until(double deadline) {
    struct pollfd pfd[MAX_CONN];
    for (;;) {
        double t = now();
        if (t >= deadline) return;
        int any_closed = 0, busy = 0;
        for (int i = 0; i < nconn; i++) {
            conn_t *c = &conns[i];
            if (c->state == CLOSED) {
                if (sending && t >= c->reconnect_at) conn_open(c);
                else any_closed = sending;
            }
            busy |= c->busy;
            pfd[i].fd = c->fd;
            pfd[i].events = 0;
            if (c->state == CONNECTING) pfd[i].events = POLLOUT;
            else if (c->state != CLOSED) {
                pfd[i].events = POLLIN;
                if (c->write_blocked || c->read_wants_write) pfd[i].events |= POLLOUT;
            }
        }
        if (!sending && !busy) return;
        double wait = deadline - t;
        if (any_closed && wait > 0.01) wait = 0.01;
        int r = poll(pfd, nconn, (int)(wait * 1000) + 1);
        polls++;
        if (r < 0 && errno != EINTR) die("poll");
        for (int i = 0; r > 0 && i < nconn; i++)
            if (pfd[i].revents && pfd[i].fd >= 0) conn_event(&conns[i], pfd[i].revents);
    }
}

static int run_load(int argc, char **argv) {
    const char *mode = NULL, *path = NULL, *cafile = NULL;
    double warmup = 1, window = 3;
    int repeats = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--mode")) mode = v;
        else if (!strcmp(k, "--payloads")) path = v;
        else if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--connections") || !strcmp(k, "--in-flight")) nconn = atoi(v);
        else if (!strcmp(k, "--warmup")) warmup = atof(v);
        else if (!strcmp(k, "--window")) window = atof(v);
        else if (!strcmp(k, "--repeats")) repeats = atoi(v);
        else if (!strcmp(k, "--peer-pid")) peer_pid = atoi(v);
        else if (!strcmp(k, "--cafile")) cafile = v;
        else die("unknown option (see the comment at the top of bench/cloadgen.c)");
    }
    if (!mode || !path || !port) die("load needs --mode, --payloads and --port");
    if (strcmp(mode, "native") && strcmp(mode, "framed")) die("--mode is native or framed");
    if (nconn < 1 || nconn > MAX_CONN) die("--connections out of range");
    if (repeats < 1 || repeats > MAX_MARKS - 2) die("--repeats out of range");
    native_mode = !strcmp(mode, "native");
    load_payloads(path, native_mode, port);
    signal(SIGPIPE, SIG_IGN);
    if (cafile) {
        tls = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(tls, TLS1_2_VERSION);
        if (SSL_CTX_load_verify_locations(tls, cafile, NULL) != 1) die("cannot load --cafile");
        SSL_CTX_set_verify(tls, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_mode(tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    for (int i = 0; i < nconn; i++) {
        conns[i].fd = -1;
        conns[i].state = CLOSED;
        conns[i].next = i;
    }
    mark();
    double at = marks[0].t + warmup;
    loop_until(at);
    mark();
    for (int w = 0; w < repeats; w++) {
        at += window;
        loop_until(at);
        mark();
    }
    sending = 0; /* let the answers in flight arrive (counted in the totals only) */
    loop_until(now() + 5);
    printf("RESULT {\"windows\":[");
    for (int i = 1; i + 1 < nmarks; i++) {
        mark_t *a = &marks[i], *b = &marks[i + 1];
        double s = b->t - a->t;
        printf("%s{\"seconds\":%.3f,\"events\":%ld,\"events_per_s\":%.1f", i > 1 ? "," : "", s,
               b->events - a->events, s > 0 ? (b->events - a->events) / s : 0.0);
        share("self_cpu", a->self, b->self, s);
        share("peer_cpu", a->peer, b->peer, s);
        share("system_cpu", a->sys, b->sys, s);
        printf("}");
    }
    printf("],\"acked_total\":%ld,\"requests\":%ld,", acked_events, requests);
    print_tally("refused", refused);
    printf(",");
    print_tally("errors", errors);
    printf(",\"digest\":\"%s\",\"info\":{\"client\":\"bench/cloadgen.c (%s)\",\"mode\":\"%s\","
           "\"connections\":%d,\"tls\":%s,\"polls\":%ld,\"connects\":%ld}}\n",
           digest_hex, OpenSSL_version(OPENSSL_VERSION), mode, nconn, tls ? "true" : "false", polls,
           connects);
    fflush(stdout);
    return 0;
}

/* --- serve-framed: a cheap ACKing receiver ------------------------------------------------ */

static volatile sig_atomic_t stopping;

static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

typedef struct {
    int fd;
    unsigned char *in;
    size_t in_len, in_cap;
    uint32_t window, seen, last_seq;
    unsigned char *inflated;
    size_t inflated_cap;
} peer_t;

static long served_events;

/* Walks frames in [p, p+len); returns bytes used (a partial frame stays), -1 on error.
 * ACKs are written to fd as windows complete. */
static long walk_frames(peer_t *s, const unsigned char *p, size_t len, int nested);

static int ack(peer_t *s) {
    unsigned char a[6] = {'2', 'A'};
    put_be32(a + 2, s->last_seq);
    s->window = s->seen = 0;
    return send(s->fd, a, 6, MSG_NOSIGNAL) == 6 ? 0 : -1;
}

static long inflate_frame(peer_t *s, const unsigned char *p, size_t len) {
    z_stream z = {0};
    if (inflateInit(&z) != Z_OK) return -1;
    size_t out = 0;
    z.next_in = (unsigned char *)p;
    z.avail_in = len;
    int r;
    do {
        if (s->inflated_cap - out < 65536) {
            s->inflated_cap = s->inflated_cap ? s->inflated_cap * 2 : 1 << 20;
            s->inflated = realloc(s->inflated, s->inflated_cap);
        }
        z.next_out = s->inflated + out;
        z.avail_out = s->inflated_cap - out;
        r = inflate(&z, Z_NO_FLUSH);
        out = s->inflated_cap - z.avail_out;
    } while (r == Z_OK);
    inflateEnd(&z);
    if (r != Z_STREAM_END) return -1;
    return walk_frames(s, s->inflated, out, 1) == (long)out ? 0 : -1;
}

static long walk_frames(peer_t *s, const unsigned char *p, size_t len, int nested) {
    size_t off = 0;
    while (len - off >= 6) {
        const unsigned char *f = p + off;
        if (f[0] != '2') return -1;
        if (f[1] == 'W') {
            s->window = be32(f + 2);
            s->seen = 0;
            off += 6;
            if (s->window == 0) {
                s->last_seq = 0;
                if (ack(s)) return -1;
            }
        } else if (f[1] == 'J' || f[1] == 'C') {
            size_t hdr = f[1] == 'J' ? 10 : 6;
            if (len - off < hdr) break;
            uint32_t n = be32(f + hdr - 4);
            if (len - off < hdr + n) break;
            if (f[1] == 'J') {
                s->last_seq = be32(f + 2);
                s->seen++;
                served_events++;
                if (s->seen == s->window && ack(s)) return -1;
            } else if (nested || inflate_frame(s, f + hdr, n)) {
                return -1;
            }
            off += hdr + n;
        } else {
            return -1;
        }
    }
    return off;
}

static int run_serve(int argc, char **argv) {
    int want_port = 0;
    for (int i = 2; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], "--port")) want_port = atoi(argv[i + 1]);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(want_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 128)) die("cannot listen");
    getsockname(lfd, (struct sockaddr *)&a, &alen);
    printf("READY %d\n", ntohs(a.sin_port));
    fflush(stdout);
    peer_t peers[MAX_CONN];
    struct pollfd pfd[MAX_CONN + 1];
    int npeers = 0;
    while (!stopping) {
        pfd[0].fd = lfd;
        pfd[0].events = POLLIN;
        for (int i = 0; i < npeers; i++) {
            pfd[i + 1].fd = peers[i].fd;
            pfd[i + 1].events = POLLIN;
        }
        if (poll(pfd, npeers + 1, 200) < 0) continue;
        for (int i = npeers - 1; i >= 0; i--) {
            if (!pfd[i + 1].revents) continue;
            peer_t *s = &peers[i];
            if (s->in_cap - s->in_len < 65536) {
                s->in_cap = s->in_cap * 2 + 65536;
                s->in = realloc(s->in, s->in_cap);
            }
            ssize_t n = recv(s->fd, s->in + s->in_len, s->in_cap - s->in_len, 0);
            long used = n > 0 ? (s->in_len += n, walk_frames(s, s->in, s->in_len, 0)) : -1;
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (used < 0) {
                close(s->fd);
                free(s->in);
                free(s->inflated);
                peers[i] = peers[--npeers];
                continue;
            }
            memmove(s->in, s->in + used, s->in_len - used);
            s->in_len -= used;
        }
        if (pfd[0].revents & POLLIN && npeers < MAX_CONN) {
            int fd = accept(lfd, NULL, NULL);
            if (fd >= 0) {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                peers[npeers++] = (peer_t){.fd = fd};
            }
        }
    }
    printf("COUNT %ld\n", served_events);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    ticks_per_s = sysconf(_SC_CLK_TCK);
    if (argc >= 2 && !strcmp(argv[1], "load")) return run_load(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "serve-framed")) return run_serve(argc, argv);
    die("usage: cloadgen load ... | cloadgen serve-framed [--port P] (see bench/cloadgen.c)");
    return 2;
}
