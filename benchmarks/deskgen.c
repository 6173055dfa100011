// deskgen: load on hotline's agent desk, in C with epoll, so that the benchmark measures the server.
// Build: gcc -O2 -o deskgen deskgen.c
//
// Agents log in on the agent port (-P) as ids BASE..BASE+A-1 with one password; callers dial the
// caller port (-p), wait for the greeting (-g) and send the transfer key (-k).
//
//   -m relay : A agents go /ready, A callers are connected to them one to one, then for -d seconds
//              each caller (once it heard -C) sends a line (-q) and waits for its agent's answer (-R, a substring of the
//              caller's view of agent_says); each agent answers every "CALLER" line with one line (-A).
//              Prints "PAIRED N" when the measurement starts, then:
//              pairs=N errors=E rounds=R rate=X/s p50=..ms p99=..ms
//   -m drain : A agents log in and stay on break; C callers join the queue and wait until each has
//              heard its position (-W). Prints "READY waiting=C agents=A" and waits for a line on
//              stdin (the driver reads the server's memory meanwhile); then every agent goes /ready
//              and takes calls as fast as the desk offers them: OFFER -> /accept, CONNECTED -> /end.
//              Before the callers dial it prints "AGENTS A" and waits for a line on stdin too.
//              Prints: served=N seconds=S rate=X/s p50=..ms p99=..ms (ready or end -> next OFFER)
//   -m hold  : A agents log in, go /ready and stay idle; prints "READY agents=A" and holds them until
//              stdin closes.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ 65536
enum { AGENT, CALLER };
enum { A_HELLO, A_LOGIN, A_RETRY, A_READY, A_WORK, C_GREET, C_WAIT, C_TALK, DEAD };

typedef struct {
  int fd, role, state, id;
  double t0, retry_at;
  char *buf;
  size_t len;
} conn_t;

static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static int cmpd(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return x < y ? -1 : x > y; }
static double *lat; static size_t nlat, caplat;
static void record(double v) {
  if (nlat == caplat) { caplat = caplat ? caplat * 2 : 1 << 20; lat = realloc(lat, caplat * sizeof *lat); }
  lat[nlat++] = v;
}

static int ep, errors;
static struct sockaddr_in caller_sa, agent_sa;
static conn_t *conns; static int nconns;

static void sendf(conn_t *c, const char *s) {
  if (write(c->fd, s, strlen(s)) < 0) { errors++; }
}

static conn_t *open_conn(int role, int id) {
  conn_t *c = &conns[nconns];
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) { perror("socket"); exit(1); }
  int one = 1; setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in *sa = role == AGENT ? &agent_sa : &caller_sa;
  if (role == AGENT) {  // each agent from an address of its own, as from its own machine: the agent
    // port holds only 10 connections per address that have not logged in yet
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl((127u << 24) | (2u << 16) | ((unsigned)(id / 200 % 250) << 8) | (id % 200 + 1));
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) { perror("bind"); exit(1); }
  }
  if (connect(c->fd, (struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS) { perror("connect"); exit(1); }
  c->role = role; c->id = id; c->state = role == AGENT ? A_HELLO : C_GREET; c->buf = malloc(BUFSZ);
  struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = nconns};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
  nconns++;
  return c;
}

int main(int argc, char **argv) {
  int port = 0, aport = 0, nagents = 100, ncallers = -1, base = 2001, ramp = 200, relay = 1, hold = 0;
  double dur = 4;
  const char *greet = "", *key = "9", *password = "bench", *reply = "", *waiting = "", *connected = "";
  const char *ask = "q", *answer = "a";
  int opt;
  while ((opt = getopt(argc, argv, "p:P:a:c:b:w:g:k:C:R:W:d:m:r:q:A:")) != -1) {
    switch (opt) {
      case 'p': port = atoi(optarg); break;
      case 'P': aport = atoi(optarg); break;
      case 'a': nagents = atoi(optarg); break;
      case 'c': ncallers = atoi(optarg); break;
      case 'b': base = atoi(optarg); break;
      case 'w': password = optarg; break;
      case 'g': greet = optarg; break;
      case 'k': key = optarg; break;
      case 'q': ask = optarg; break;
      case 'A': answer = optarg; break;
      case 'C': connected = optarg; break;
      case 'R': reply = optarg; break;
      case 'W': waiting = optarg; break;
      case 'd': dur = atof(optarg); break;
      case 'm': relay = strcmp(optarg, "drain") != 0; hold = strcmp(optarg, "hold") == 0; break;
      case 'r': ramp = atoi(optarg); break;
      default: return 2;
    }
  }
  if (ncallers < 0) ncallers = hold ? 0 : nagents;
  if (!port || !aport || (!hold && (!*greet || (relay && (!*reply || !*connected)) || (!relay && !*waiting)))) {
    fprintf(stderr, "need -p -P -g, and -C -R (relay) or -W (drain)\n");
    return 2;
  }
  caller_sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port)};
  agent_sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(aport)};
  inet_pton(AF_INET, "127.0.0.1", &caller_sa.sin_addr);
  inet_pton(AF_INET, "127.0.0.1", &agent_sa.sin_addr);
  ep = epoll_create1(0);
  conns = calloc(nagents + ncallers, sizeof *conns);
  char keyline[64]; snprintf(keyline, sizeof keyline, "%s\r\n", key);
  char askline[512]; snprintf(askline, sizeof askline, "%s\r\n", ask);
  char answerline[512]; snprintf(answerline, sizeof answerline, "%s\r\n", answer);
  int agents_opened = 0, callers_opened = 0, agents_ready = 0, callers_ready = 0, paired = 0, dialing = 0;
  long served = 0, rounds = 0;
  double start = now(), measure_start = 0, end_at = 0;
  struct epoll_event evs[1024];
  char rbuf[BUFSZ], line[256];
  for (;;) {
    for (int k = 0; k < ramp && agents_opened < nagents; k++) open_conn(AGENT, base + agents_opened++);
    if (agents_ready == nagents && !dialing) {
      dialing = 1;
      if (!relay) {
        printf("AGENTS %d\n", nagents);
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) return 1;
      }
    }
    if (dialing)
      for (int k = 0; k < ramp && callers_opened < ncallers; k++) open_conn(CALLER, callers_opened++);
    int n = epoll_wait(ep, evs, 1024, 5);
    double t = now();
    if (agents_ready < nagents)
      for (int i = 0; i < nconns; i++)
        if (conns[i].state == A_RETRY && t >= conns[i].retry_at) {
          char cmd[128]; snprintf(cmd, sizeof cmd, "/login %d %s\r\n", conns[i].id, password);
          sendf(&conns[i], cmd); conns[i].state = A_LOGIN;
        }
    for (int i = 0; i < n; i++) {
      conn_t *c = &conns[evs[i].data.u32];
      if (c->state == DEAD) continue;
      ssize_t r = read(c->fd, rbuf, sizeof rbuf);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        if (!end_at || t < end_at) errors++;
        c->state = DEAD; close(c->fd); continue;
      }
      if (c->len + r > BUFSZ) { size_t keep = 4096; memmove(c->buf, c->buf + c->len - keep, keep); c->len = keep; }
      if ((size_t)r > BUFSZ - c->len) r = BUFSZ - c->len;
      memcpy(c->buf + c->len, rbuf, r); c->len += r;
      if (c->role == CALLER) {  // callers look for substrings anywhere in what they heard
        const char *want = c->state == C_GREET ? greet : c->state == C_WAIT ? (relay ? connected : waiting) : reply;
        char *m = memmem(c->buf, c->len, want, strlen(want));
        if (!m) continue;
        c->len = 0;  // everything up to here is read; a caller never has two replies in flight
        if (c->state == C_GREET) { c->state = C_WAIT; sendf(c, keyline); }
        else if (c->state == C_WAIT) { c->state = C_TALK; callers_ready++; }
        else if (relay && end_at) {
          if (t < end_at) { record(t - c->t0); rounds++; c->t0 = t; sendf(c, askline); }
        }
        continue;
      }
      char *p = c->buf, *nl;  // agents read whole lines
      while ((nl = memchr(p, '\n', c->len - (p - c->buf)))) {
        size_t ll = nl - p; if (ll >= sizeof line) ll = sizeof line - 1;
        memcpy(line, p, ll); line[ll] = 0; p = nl + 1;
        if (c->state == A_HELLO && strncmp(line, "HELLO", 5) == 0) {
          char cmd[128]; snprintf(cmd, sizeof cmd, "/login %d %s\r\n", c->id, password);
          sendf(c, cmd); c->state = A_LOGIN;
        } else if (c->state == A_LOGIN && strncmp(line, "OK login", 8) == 0) {
          if (relay) { sendf(c, "/ready\r\n"); c->state = A_READY; }
          else { c->state = A_WORK; agents_ready++; }
        } else if (c->state == A_LOGIN && strncmp(line, "ERR busy", 8) == 0) {
          c->state = A_RETRY; c->retry_at = t + 0.02;  // the password checks are busy: again soon
        } else if (c->state == A_LOGIN && strncmp(line, "ERR", 3) == 0) {
          fprintf(stderr, "agent %d: %s\n", c->id, line); return 1;
        } else if (c->state == A_READY && strncmp(line, "OK ready", 8) == 0) {
          c->state = A_WORK; agents_ready++;
        } else if (strncmp(line, "OFFER ", 6) == 0) {
          if (!relay && measure_start) record(t - c->t0);
          sendf(c, "/accept\r\n");
        } else if (strncmp(line, "CONNECTED ", 10) == 0) {
          if (relay) paired++;
          else { sendf(c, "/end\r\n"); }
        } else if (strncmp(line, "ENDED ", 6) == 0) {
          if (!relay) { served++; c->t0 = t; }
        } else if (strncmp(line, "CALLER ", 7) == 0) {
          sendf(c, answerline);
        }
      }
      c->len -= p - c->buf; memmove(c->buf, p, c->len);
    }
    if (hold && agents_ready == nagents) {
      printf("READY agents=%d\n", nagents);
      fflush(stdout);
      while (fgets(line, sizeof line, stdin)) {}
      return 0;
    }
    if (!measure_start && agents_ready == nagents && callers_ready == ncallers &&
        (!relay || paired == ncallers)) {
      if (!relay) {
        printf("READY waiting=%d agents=%d in %.2fs (errors %d)\n", ncallers, nagents, now() - start, errors);
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) return 1;
      }
      if (relay) {
        printf("PAIRED %d\n", paired);
        fflush(stdout);
      }
      measure_start = now();
      end_at = measure_start + dur;
      for (int k = 0; k < nconns; k++) {
        conn_t *c = &conns[k];
        c->t0 = measure_start;
        if (relay && c->role == CALLER && c->state == C_TALK) sendf(c, askline);
        if (!relay && c->role == AGENT && c->state == A_WORK) sendf(c, "/ready\r\n");
      }
    }
    if (!measure_start && t - start > 180) {
      fprintf(stderr, "ramp timeout: agents %d/%d callers %d/%d paired %d\n", agents_ready, nagents, callers_ready,
              ncallers, paired);
      return 1;
    }
    if (end_at && (t >= end_at || (!relay && served >= ncallers))) { end_at = t < end_at ? t : end_at; break; }
  }
  double span = end_at - measure_start;
  qsort(lat, nlat, sizeof *lat, cmpd);
  double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)(nlat * 0.99)] : 0;
  if (relay)
    printf("pairs=%d errors=%d rounds=%ld rate=%.0f/s p50=%.3fms p99=%.3fms\n", paired, errors, rounds,
           rounds / span, p50 * 1e3, p99 * 1e3);
  else
    printf("served=%ld seconds=%.3f errors=%d rate=%.0f/s p50=%.3fms p99=%.3fms\n", served, span, errors,
           served / span, p50 * 1e3, p99 * 1e3);
  return 0;
}
