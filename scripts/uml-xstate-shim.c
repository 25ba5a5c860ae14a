// LD_PRELOADed into linux.uml by uml-run.sh. Debian's UML 6.1 writes a guest process's
// FPU state back with PTRACE_SETREGSET(NT_X86_XSTATE) from a fixed 4 KiB-ish buffer;
// a host kernel whose XSAVE area is larger (CPUs with AMX tiles: 11 KiB) refuses any
// other size with EFAULT, and the guest panics at its first process ("ptrace set fp
// regs failed, errno = 14"). Here such a write is widened to the host's full size: the
// rest is read back from the process first, so nothing but UML's part changes.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

long ptrace(enum __ptrace_request req, ...) {
  va_list ap;
  va_start(ap, req);
  pid_t pid = va_arg(ap, pid_t);
  void *addr = va_arg(ap, void *);
  void *data = va_arg(ap, void *);
  va_end(ap);
  static ptrace_fn real;
  if (!real) real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
  if (req == PTRACE_SETREGSET && (long)addr == NT_X86_XSTATE && data) {
    static __thread unsigned char full[1 << 16] __attribute__((aligned(64)));
    struct iovec *iov = data;
    struct iovec whole = {full, sizeof full};
    if (real(PTRACE_GETREGSET, pid, addr, &whole) == 0 && whole.iov_len > iov->iov_len) {
      memcpy(full, iov->iov_base, iov->iov_len);
      return real(PTRACE_SETREGSET, pid, addr, &whole);
    }
  }
  return real(req, pid, addr, data);
}
