// udp_mix: like ../shared/tools/udpgen.c (W datagrams in flight from one socket, a reply frees a slot,
// lost ones refilled after 200 ms) but cycling through many distinct questions, one per line of a file.
// Build: gcc -O2 -o udp_mix udp_mix.c ; Usage: udp_mix -p PORT -d SECS -w WINDOW -f QUESTIONS_FILE
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  int port = 0, win = 32, opt; double dur = 5; const char *file = NULL;
  while ((opt = getopt(argc, argv, "p:d:w:f:")) != -1) {
    if (opt == 'p') port = atoi(optarg); else if (opt == 'd') dur = atof(optarg);
    else if (opt == 'w') win = atoi(optarg); else if (opt == 'f') file = optarg;
  }
  FILE *f = fopen(file, "r"); if (!f) { perror("questions"); return 2; }
  char **qs = NULL; size_t n = 0, cap = 0; char line[2048];
  while (fgets(line, sizeof line, f)) {
    size_t l = strcspn(line, "\n"); line[l] = 0; if (!l) continue;
    if (n == cap) { cap = cap ? cap * 2 : 1024; qs = realloc(qs, cap * sizeof *qs); }
    qs[n++] = strdup(line);
  }
  fclose(f);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  connect(fd, (void *)&sa, sizeof sa);
  long sent = 0, got = 0; int inflight = 0; size_t next = 0;
  double start = now(); char buf[65536];
  while (now() - start < dur) {
    while (inflight < win) { const char *q = qs[next++ % n]; if (send(fd, q, strlen(q), 0) > 0) { sent++; inflight++; } else break; }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) <= 0) { inflight = 0; continue; }
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) { got++; inflight--; }
  }
  double span = now() - start;
  printf("sent=%ld replies=%ld rate=%.0f/s distinct=%zu\n", sent, got, got / span, n);
  return 0;
}
