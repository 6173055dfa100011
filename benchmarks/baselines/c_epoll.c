// Baseline: the two-screen menu in C on one epoll thread, the machine's limit (benchmark only).
// It says exactly the bytes of baselines/menu2.py. No Python at all: what is left of its cost per
// step is the kernel's (read, write, epoll), which every design pays alike.
// Build: gcc -O2 -o c_epoll c_epoll.c      Usage: c_epoll PORT
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char MAIN[] = "主菜单:查询请按 1\r\n";
static const char SUB[] = "子菜单:返回请按 0\r\n";
static const char INVALID[] = "输入有误,请重新输入。\r\n";

#define LINE_MAX_BYTES 1024
typedef struct { int fd, state; size_t len; char buf[LINE_MAX_BYTES]; } conn_t;

static size_t put(char *out, size_t n, const char *s, size_t len) { memcpy(out + n, s, len); return n + len; }

// Answer every complete line in c->buf into out; keep the unfinished tail.
static size_t answer(conn_t *c, char *out) {
  size_t n = 0; char *p = c->buf, *end = c->buf + c->len, *nl;
  while ((nl = memchr(p, '\n', end - p)) != NULL) {
    char *s = p, *e = nl;
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
    char key = e - s == 1 ? *s : 0;
    if (c->state == 0 && key == '1') { c->state = 1; n = put(out, n, SUB, sizeof SUB - 1); }
    else if (c->state == 1 && key == '0') { c->state = 0; n = put(out, n, MAIN, sizeof MAIN - 1); }
    else {
      n = put(out, n, INVALID, sizeof INVALID - 1);
      n = c->state ? put(out, n, SUB, sizeof SUB - 1) : put(out, n, MAIN, sizeof MAIN - 1);
    }
    p = nl + 1;
  }
  c->len = end - p;
  memmove(c->buf, p, c->len);
  if (c->len == LINE_MAX_BYTES) c->len = 0;  // a line longer than the buffer is dropped
  return n;
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
  signal(SIGPIPE, SIG_IGN);
  int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 4096)) { perror("listen"); return 1; }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, events[1024];
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  static char out[4 * LINE_MAX_BYTES * 64];
  for (;;) {
    int ready = epoll_wait(ep, events, 1024, -1);
    for (int i = 0; i < ready; i++) {
      conn_t *c = events[i].data.ptr;
      if (c == NULL) {  // the listener: accept everyone waiting, greet them
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn_t *nc = calloc(1, sizeof *nc);
          nc->fd = fd;
          struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
          if (write(fd, MAIN, sizeof MAIN - 1) < 0) {}
        }
        continue;
      }
      int fd = c->fd;
      ssize_t got = read(fd, c->buf + c->len, LINE_MAX_BYTES - c->len);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got <= 0) { close(fd); free(c); continue; }
      c->len += got;
      size_t n = answer(c, out);
      if (n && write(fd, out, n) < 0 && errno != EAGAIN) { close(fd); free(c); }
    }
  }
}
