// Copy of ../shared/tools/udpgen.c (the workplace's reference load generator), kept here so that
// make bench also runs where shared/ is not beside the checkout; benchmarks/common.py prefers the original.
// udpgen: request/response load on a UDP question endpoint.
// Keeps W datagrams in flight from one socket; a reply frees a slot. Lost datagrams are re-sent after 200 ms.
// Build: gcc -O2 -o udpgen udpgen.c ; Usage: udpgen -p PORT -d SECS -w WINDOW -q 'QUESTION' [-e EXPECT]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  int port = 0, win = 32, opt; double dur = 5; const char *q = "hello", *expect = NULL;
  while ((opt = getopt(argc, argv, "p:d:w:q:e:")) != -1) {
    if (opt == 'p') port = atoi(optarg); else if (opt == 'd') dur = atof(optarg);
    else if (opt == 'w') win = atoi(optarg); else if (opt == 'q') q = optarg; else if (opt == 'e') expect = optarg;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  connect(fd, (void *)&sa, sizeof sa);
  size_t ql = strlen(q); long sent = 0, got = 0, matched = 0, bytes = 0; int inflight = 0;
  double start = now(), last = start; char buf[65536];
  while (now() - start < dur) {
    while (inflight < win) { if (send(fd, q, ql, 0) > 0) { sent++; inflight++; } else break; }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) <= 0) { inflight = 0; continue; }  // treat as lost, refill window
    ssize_t r;
    while ((r = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT)) > 0) {
      got++; inflight--; bytes += r; buf[r] = 0;
      if (!expect || memmem(buf, r, expect, strlen(expect))) matched++;
      last = now();
    }
  }
  double span = now() - start;
  printf("sent=%ld replies=%ld matched=%ld rate=%.0f/s avg_reply=%.0fB amplification=%.2f\n", sent, got, matched, got / span, got ? (double)bytes / got : 0, got ? ((double)bytes / got) / ql : 0);
  return 0;
}
