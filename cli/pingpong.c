/* The C round-trip floor for `lowcomms bench`: two processes on TCP loopback (NODELAY),
 * blocking read/write. The parent sends one framed message (16-byte DLM-style header,
 * h_length little-endian at byte 12), the forked child reads it whole and writes it
 * back, the parent reads it whole: one round trip. No epoll, no threads, no batching.
 * Usage: pingpong SIZE COUNT   Prints: rtt_us p50=A p99=B p999=C count=N */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Moves exactly len bytes: reads them, or (out) writes them; 0 on EOF or error. */
static int full(int fd, unsigned char *p, size_t len, int out) {
  while (len) {
    ssize_t n = out ? write(fd, p, len) : read(fd, p, len);
    if (n <= 0) return 0;
    p += n;
    len -= (size_t)n;
  }
  return 1;
}

/* One whole frame: the header first, then the rest its length says. */
static int read_frame(int fd, unsigned char *buf, size_t cap) {
  if (!full(fd, buf, 16, 0)) return 0;
  size_t len = (size_t)(buf[12] | (buf[13] << 8));
  if (len < 16 || len > cap) return 0;
  return full(fd, buf + 16, len - 16, 0);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: pingpong SIZE COUNT\n"); return 2; }
  int size = atoi(argv[1]);
  long count = atol(argv[2]);
  if (size < 16 || size > 65535 || count < 1) { fprintf(stderr, "SIZE 16..65535, COUNT >= 1\n"); return 2; }

  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 1) ||
      getsockname(lfd, (struct sockaddr *)&sa, &sl)) { perror("listen"); return 1; }
  unsigned char *buf = calloc(1, 65536);
  if (!buf) return 1;

  pid_t child = fork();
  if (child < 0) { perror("fork"); return 1; }
  if (child == 0) {
    /* The echo side: every whole frame goes straight back, until the peer closes. */
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) _exit(1);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (read_frame(fd, buf, 65536)) {
      size_t len = (size_t)(buf[12] | (buf[13] << 8));
      if (!full(fd, buf, len, 1)) break;
    }
    _exit(0);
  }
  close(lfd);

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) { perror("connect"); return 1; }
  buf[12] = (unsigned char)(size & 0xff);
  buf[13] = (unsigned char)(size >> 8);
  unsigned char *back = malloc(65536);
  double *rtt = malloc(sizeof(double) * (size_t)count);
  if (!back || !rtt) return 1;
  for (long i = 0; i < count; i++) {
    double t0 = now_us();
    if (!full(fd, buf, (size_t)size, 1) || !read_frame(fd, back, 65536)) {
      fprintf(stderr, "pingpong: connection lost after %ld round trips\n", i);
      return 1;
    }
    rtt[i] = now_us() - t0;
  }
  close(fd);
  waitpid(child, NULL, 0);
  qsort(rtt, (size_t)count, sizeof(double), cmp);
#define PCT(p) rtt[(size_t)((count * (p)) / 1000) < (size_t)count ? (size_t)((count * (p)) / 1000) : (size_t)count - 1]
  printf("rtt_us p50=%.1f p99=%.1f p999=%.1f count=%ld\n", PCT(500), PCT(990), PCT(999), count);
  return 0;
}
