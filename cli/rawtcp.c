/* The C loopback limit for `lowcomms bench`: one thread writes whole framed messages
 * (16-byte DLM-style header, h_length little-endian at byte 12) in 64 KiB writes, another
 * reads 256 KiB at a time and walks the headers, carrying a partial message over.
 * Usage: rawtcp SIZE COUNT   Prints: msgs_per_s=R seconds=T */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long size, count;
static int lfd;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *reader(void *unused) {
  (void)unused;
  int fd = accept(lfd, NULL, NULL);
  size_t cap = (256 << 10) + 65536, have = 0;
  unsigned char *buf = malloc(cap);
  long got = 0;
  while (got < count) {
    ssize_t n = read(fd, buf + have, cap - have);
    if (n <= 0) exit(3);
    have += (size_t)n;
    size_t off = 0;
    while (have - off >= 16) {
      size_t len = (size_t)buf[off + 12] | ((size_t)buf[off + 13] << 8);
      if (len < 16) exit(4);
      if (have - off < len) break;
      off += len;
      got++;
    }
    memmove(buf, buf + off, have - off);
    have -= off;
  }
  free(buf);
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  size = atol(argv[1]);
  count = atol(argv[2]);
  if (size < 16 || size > 65535 || count < 1) return 2;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof sa;
  lfd = socket(AF_INET, SOCK_STREAM, 0);
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 1) ||
      getsockname(lfd, (struct sockaddr *)&sa, &sl))
    return 1;
  pthread_t t;
  pthread_create(&t, NULL, reader, NULL);
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) return 1;
  long per = 65536 / size;
  unsigned char *out = calloc((size_t)per, (size_t)size);
  for (long i = 0; i < per; i++) {
    out[i * size + 12] = (unsigned char)(size & 0xff);
    out[i * size + 13] = (unsigned char)(size >> 8);
  }
  double t0 = now();
  for (long sent = 0; sent < count;) {
    long k = count - sent < per ? count - sent : per;
    size_t len = (size_t)(k * size), done = 0;
    while (done < len) {
      ssize_t n = write(fd, out + done, len - done);
      if (n <= 0) return 1;
      done += (size_t)n;
    }
    sent += k;
  }
  pthread_join(t, NULL);
  double dt = now() - t0;
  printf("msgs_per_s=%.0f seconds=%.4f\n", (double)count / dt, dt);
  return 0;
}
