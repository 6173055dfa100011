// Copy of ../shared/tools/loadgen.c (the workplace's reference load generator), kept here so that
// make bench also runs where shared/ is not beside the checkout; benchmarks/common.py prefers the original.
// loadgen: scripted request/response load on a line-oriented TCP server.
// Each connection waits for the greeting, then loops over the steps:
// send a line, wait until the reply contains the step's expected substring.
// Build: gcc -O2 -o loadgen loadgen.c
// Usage: loadgen -p PORT -c CONNS -d SECS -g GREETING_SUBSTR -s 'SEND=>EXPECT' [-s ...]
//        [-H HOLD_SECS] [-r RAMP_PER_TICK] [-a 127.0.0.1]
// With -H the connections are held open after the greeting (no steps) for HOLD_SECS.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXSTEPS 32
#define BUFSZ 65536

typedef struct { char *send; size_t send_len; char *expect; size_t expect_len; } step_t;
typedef struct {
  int fd, state;  // 0 connecting, 1 greeting, 2 in step, 3 done/closed
  int step;
  double t0;
  char *buf; size_t len;
} conn_t;

static step_t steps[MAXSTEPS]; static int nsteps;
static char *greet = ""; static size_t greet_len;
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }

static char *unescape(const char *s, size_t *out_len) {
  char *o = malloc(strlen(s) + 1); size_t n = 0;
  for (; *s; s++) {
    if (*s == '\\' && s[1]) { s++; o[n++] = *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s; }
    else o[n++] = *s;
  }
  o[n] = 0; *out_len = n; return o;
}

static int cmpd(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }

static double *lat; static size_t nlat, caplat;
static void record(double v) {
  if (nlat == caplat) { caplat = caplat ? caplat * 2 : 1 << 20; lat = realloc(lat, caplat * sizeof *lat); }
  lat[nlat++] = v;
}

int main(int argc, char **argv) {
  int port = 0, nconns = 1, ramp = 200; double dur = 5, hold = -1; const char *addr = "127.0.0.1";
  int opt;
  while ((opt = getopt(argc, argv, "p:c:d:g:s:H:r:a:")) != -1) {
    switch (opt) {
      case 'p': port = atoi(optarg); break;
      case 'c': nconns = atoi(optarg); break;
      case 'd': dur = atof(optarg); break;
      case 'g': greet = unescape(optarg, &greet_len); break;
      case 'H': hold = atof(optarg); break;
      case 'r': ramp = atoi(optarg); break;
      case 'a': addr = optarg; break;
      case 's': {
        char *sep = strstr(optarg, "=>");
        if (!sep || nsteps == MAXSTEPS) { fprintf(stderr, "bad step %s\n", optarg); return 2; }
        *sep = 0;
        steps[nsteps].send = unescape(optarg, &steps[nsteps].send_len);
        steps[nsteps].expect = unescape(sep + 2, &steps[nsteps].expect_len);
        nsteps++; break;
      }
      default: return 2;
    }
  }
  if (!port || (!nsteps && hold < 0)) { fprintf(stderr, "need -p and -s or -H\n"); return 2; }
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, addr, &sa.sin_addr);
  int ep = epoll_create1(0);
  conn_t *cs = calloc(nconns, sizeof *cs);
  int opened = 0, ready = 0, errors = 0, closed = 0;
  long done_steps = 0;
  double start = now(), measure_start = 0, end_at = 0;
  struct epoll_event evs[1024];
  char rbuf[BUFSZ];
  for (;;) {
    // ramp up connections
    for (int k = 0; k < ramp && opened < nconns; k++) {
      conn_t *c = &cs[opened];
      c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (c->fd < 0) { perror("socket"); return 1; }
      int one = 1; setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      c->buf = malloc(BUFSZ);
      if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) { errors++; c->state = 3; closed++; opened++; continue; }
      c->state = greet_len ? 1 : 2; c->step = 0; c->t0 = now();
      struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = opened};
      epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
      if (!greet_len && nsteps) { if (write(c->fd, steps[0].send, steps[0].send_len) < 0) errors++; }
      opened++;
    }
    int n = epoll_wait(ep, evs, 1024, 5);
    double t = now();
    for (int i = 0; i < n; i++) {
      conn_t *c = &cs[evs[i].data.u32];
      if (c->state == 3) continue;
      ssize_t r = read(c->fd, rbuf, sizeof rbuf);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        errors++; c->state = 3; closed++; close(c->fd); continue;
      }
      if (c->len + r > BUFSZ) { size_t keep = 4096; memmove(c->buf, c->buf + c->len - keep, keep); c->len = keep; }
      if ((size_t)r > BUFSZ - c->len) r = BUFSZ - c->len;
      memcpy(c->buf + c->len, rbuf, r); c->len += r;
      for (;;) {
        const char *want = c->state == 1 ? greet : steps[c->step].expect;
        size_t wl = c->state == 1 ? greet_len : steps[c->step].expect_len;
        char *m = memmem(c->buf, c->len, want, wl);
        if (!m) break;
        size_t consumed = (m - c->buf) + wl;
        memmove(c->buf, c->buf + consumed, c->len - consumed); c->len -= consumed;
        if (c->state == 1) {
          c->state = 2; ready++;
          break;  // every connection waits at the barrier until all are greeted
        } else {
          if (measure_start && t < end_at) { record(t - c->t0); done_steps++; }
          c->step = (c->step + 1) % nsteps;
        }
        if (hold >= 0) break;
        if (end_at && t >= end_at) break;
        c->t0 = t;
        if (write(c->fd, steps[c->step].send, steps[c->step].send_len) < 0) { errors++; break; }
      }
    }
    if (!measure_start && opened == nconns && (ready + closed >= nconns || !greet_len)) {
      measure_start = now();
      if (hold < 0 && greet_len)  // release the barrier: every greeted connection sends its first step
        for (int k = 0; k < nconns; k++)
          if (cs[k].state == 2) { cs[k].t0 = now(); if (write(cs[k].fd, steps[0].send, steps[0].send_len) < 0) errors++; }
      if (hold >= 0) {
        printf("READY %d of %d connections greeted in %.2fs (errors %d)\n", ready, nconns, measure_start - start, errors);
        fflush(stdout);
        end_at = measure_start + hold;
      } else end_at = measure_start + dur;
    }
    if (!measure_start && t - start > 120) { fprintf(stderr, "ramp timeout: %d ready of %d\n", ready, nconns); return 1; }
    if (end_at && t >= end_at) break;
  }
  if (hold >= 0) { printf("HELD %d\n", ready); return 0; }
  double span = end_at - measure_start;
  qsort(lat, nlat, sizeof *lat, cmpd);
  double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)(nlat * 0.99)] : 0, mx = nlat ? lat[nlat - 1] : 0;
  printf("conns=%d ready=%d errors=%d steps=%ld rate=%.0f/s p50=%.3fms p99=%.3fms max=%.3fms\n",
         nconns, ready, errors, done_steps, done_steps / span, p50 * 1e3, p99 * 1e3, mx * 1e3);
  return 0;
}
