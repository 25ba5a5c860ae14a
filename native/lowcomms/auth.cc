#include "lowcomms/auth.h"

#include <sys/random.h>

namespace lowcomms::auth {

bool make_nonce(uint8_t* out) {
  size_t got = 0;
  while (got < kNonceLen) {
    const ssize_t r = ::getrandom(out + got, kNonceLen - got, 0);
    if (r <= 0) return false;
    got += size_t(r);
  }
  return true;
}

}  // namespace lowcomms::auth
