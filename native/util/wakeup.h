// An eventfd that a thread's epoll watches, so that other threads (and close())
// can wake it without a pipe or a signal. Writes coalesce in the counter.
#pragma once
#include <sys/eventfd.h>
#include <cerrno>
#include <cstdint>
#include <system_error>
#include "util/unique_fd.h"

namespace lowcomms {

// Opened by open() and closed by close(), so that a stopped engine holds no fd; a
// signal() while closed does nothing.
class Wakeup {
 public:
  void open() {
    fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!fd_) throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  void close() { fd_.reset(); }
  int fd() const { return fd_.get(); }
  void signal() const {
    if (!fd_) return;
    uint64_t one = 1;
    // EAGAIN only when the counter is saturated: the reader is already due to wake.
    [[maybe_unused]] ssize_t n = ::write(fd_.get(), &one, sizeof one);
  }
  void drain() const {
    if (!fd_) return;
    uint64_t v;
    [[maybe_unused]] ssize_t n = ::read(fd_.get(), &v, sizeof v);
  }

 private:
  UniqueFd fd_;
};

}  // namespace lowcomms
