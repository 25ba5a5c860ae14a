// The bench's c-pingpong-epoll and c-pingpong-rxthread baselines: what a receive thread
// (the design's, lowcomms' own) costs a round trip with no JS and no lowcomms code at all.
// Two processes ping-pong SIZE-byte messages over TCP loopback, in one of two shapes:
//   direct (c-pingpong-epoll): one thread per process sleeps in epoll_wait on the socket,
//           reads the message and writes the reply (what node:net's event loop does);
//   hop (c-pingpong-rxthread): a receive thread sleeps in epoll_wait on the socket, reads
//           the message and hands it over through an eventfd to the main thread, which
//           sleeps in epoll_wait on that eventfd and writes the reply on the socket itself
//           (as lowcomms' direct write does: no send-thread hop).
// hop - direct is what the receive thread adds to a round trip; node:net's p50 plus that
// is where a design with that thread lands from JS if its JS side costs what node:net's
// does (cli/report.ts, floor/net).
// The two shapes alternate ROUNDS times (default 1) so that both see the same machine.
//   cc -O2 -pthread -o /tmp/rxthread cli/rxthread.c && /tmp/rxthread 64 5000 3
// Prints one line per run: "<direct|hop> p50 <us> p99 <us>".
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kMaxSize = 4096 };

static size_t size;
static long count;

static void die(const char* what) {
  perror(what);
  exit(1);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

// Blocks in epoll_wait until fd is readable (the sleep both shapes share).
static void wait_readable(int ep) {
  struct epoll_event ev;
  for (;;) {
    const int n = epoll_wait(ep, &ev, 1, 10000);
    if (n == 1) return;
    if (n == 0) {
      fprintf(stderr, "rxthread: no message for 10 s\n");
      exit(1);
    }
  }
}

static int epoll_on(int fd) {
  const int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll");
  return ep;
}

// Reads one whole message from a non-blocking socket, sleeping on `ep` between reads.
// False when the peer closed (the run is over).
static int read_msg(int fd, int ep, uint8_t* buf) {
  size_t got = 0;
  while (got < size) {
    const ssize_t n = recv(fd, buf + got, size - got, MSG_DONTWAIT);
    if (n > 0) {
      got += (size_t)n;
    } else if (n == 0) {
      return 0;
    } else {
      wait_readable(ep);
    }
  }
  return 1;
}

static void write_msg(int fd, const uint8_t* buf) {
  size_t put = 0;
  while (put < size) {
    const ssize_t n = send(fd, buf + put, size - put, MSG_NOSIGNAL);
    if (n <= 0) die("send");
    put += (size_t)n;
  }
}

// The hop shape's receive thread and its hand-off slot.
struct Hop {
  int fd, sock_ep, efd, efd_ep;
  pthread_t thread;
  uint8_t msg[kMaxSize];
};

static void* receive_thread(void* arg) {
  struct Hop* h = arg;
  while (read_msg(h->fd, h->sock_ep, h->msg)) {
    const uint64_t one = 1;
    if (write(h->efd, &one, sizeof one) != sizeof one) die("eventfd write");
  }
  return NULL;
}

// The main thread's "handler gets the message": direct reads the socket; hop waits for
// the receive thread's eventfd.
static void next_msg(int hop, struct Hop* h, uint8_t* buf) {
  if (!hop) {
    if (!read_msg(h->fd, h->sock_ep, buf)) die("peer closed early");
    return;
  }
  uint64_t v;
  while (read(h->efd, &v, sizeof v) != sizeof v) wait_readable(h->efd_ep);
  memcpy(buf, h->msg, size);
}

static void start(struct Hop* h, int fd, int hop) {
  h->fd = fd;
  h->sock_ep = epoll_on(fd);
  if (!hop) return;
  h->efd = eventfd(0, EFD_NONBLOCK);
  if (h->efd < 0) die("eventfd");
  h->efd_ep = epoll_on(h->efd);
  if (pthread_create(&h->thread, NULL, receive_thread, h) != 0) die("pthread_create");
}

static void echo(int fd, int hop) {
  static struct Hop h;
  start(&h, fd, hop);
  uint8_t buf[kMaxSize];
  for (long i = 0; i < count; i++) {
    next_msg(hop, &h, buf);
    write_msg(fd, buf);
  }
  exit(0);
}

static void run(int hop) {
  int sv[2];
  const int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (l < 0 || bind(l, (struct sockaddr*)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
      getsockname(l, (struct sockaddr*)&a, &al) != 0)
    die("listen");
  sv[0] = socket(AF_INET, SOCK_STREAM, 0);
  if (sv[0] < 0 || connect(sv[0], (struct sockaddr*)&a, sizeof a) != 0) die("connect");
  sv[1] = accept(l, NULL, NULL);
  if (sv[1] < 0) die("accept");
  close(l);
  const int one = 1;
  for (int i = 0; i < 2; i++) setsockopt(sv[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(sv[0]);
    echo(sv[1], hop);
  }
  close(sv[1]);
  static struct Hop h;
  memset(&h, 0, sizeof h);
  start(&h, sv[0], hop);
  double* rtt = malloc(sizeof(double) * count);
  uint8_t buf[kMaxSize];
  memset(buf, 0x5a, sizeof buf);
  if (!rtt) die("malloc");
  for (long i = 0; i < count; i++) {
    const double t0 = now_us();
    write_msg(sv[0], buf);
    next_msg(hop, &h, buf);
    rtt[i] = now_us() - t0;
  }
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) die("echo process");
  // The echo side has closed: the receive thread reads the end of the stream and returns.
  if (hop) {
    pthread_join(h.thread, NULL);
    close(h.efd);
    close(h.efd_ep);
  }
  close(h.sock_ep);
  close(sv[0]);
  qsort(rtt, count, sizeof(double), cmp);
  printf("%s p50 %.1f p99 %.1f\n", hop ? "hop" : "direct", rtt[count / 2], rtt[count * 99 / 100]);
  fflush(stdout);
  free(rtt);
}

int main(int argc, char** argv) {
  size = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
  count = argc > 2 ? atol(argv[2]) : 5000;
  const long rounds = argc > 3 ? atol(argv[3]) : 1;
  if (size < 1 || size > kMaxSize || count < 100 || count > 10000000 || rounds < 1 || rounds > 100) {
    fprintf(stderr, "usage: rxthread [size 1..4096] [count 100..1e7] [rounds 1..100]\n");
    return 2;
  }
  for (long r = 0; r < rounds; r++) {
    run(0);
    run(1);
  }
  return 0;
}
