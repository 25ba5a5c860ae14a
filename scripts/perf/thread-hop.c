// The cost of one in-process thread hop as lowcomms makes it: a thread blocked in
// epoll_wait on an eventfd, woken by another thread's eventfd write (the send thread's
// kick, and what uv_async_send does to the JS thread). Two threads bounce a token N
// times; one round trip is two hops. Prints the p50 and p99 round trip in microseconds.
//   cc -O2 -pthread -o /tmp/thread-hop scripts/perf/thread-hop.c && /tmp/thread-hop 20000
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int efd[2], ep[2];
static long rounds;

static void wait_on(int i) {
  struct epoll_event ev;
  while (epoll_wait(ep[i], &ev, 1, -1) != 1) {
  }
  uint64_t v;
  if (read(efd[i], &v, sizeof v) != sizeof v) exit(1);
}

static void kick(int i) {
  uint64_t one = 1;
  if (write(efd[i], &one, sizeof one) != sizeof one) exit(1);
}

static void* echo(void* arg) {
  (void)arg;
  for (long r = 0; r < rounds; r++) {
    wait_on(1);
    kick(0);
  }
  return NULL;
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

int main(int argc, char** argv) {
  rounds = argc > 1 ? atol(argv[1]) : 20000;
  if (rounds < 1 || rounds > 10000000) return 2;
  for (int i = 0; i < 2; i++) {
    efd[i] = eventfd(0, EFD_NONBLOCK);
    ep[i] = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    if (efd[i] < 0 || ep[i] < 0 || epoll_ctl(ep[i], EPOLL_CTL_ADD, efd[i], &ev) != 0) return 1;
  }
  double* rtt = malloc(sizeof(double) * rounds);
  if (!rtt) return 1;
  pthread_t t;
  pthread_create(&t, NULL, echo, NULL);
  for (long r = 0; r < rounds; r++) {
    const double t0 = now_us();
    kick(1);
    wait_on(0);
    rtt[r] = now_us() - t0;
  }
  pthread_join(t, NULL);
  qsort(rtt, rounds, sizeof(double), cmp);
  printf("thread-hop round trip (2 hops): p50 %.1f us, p99 %.1f us, %ld rounds\n", rtt[rounds / 2],
         rtt[rounds * 99 / 100], rounds);
  free(rtt);
  return 0;
}
