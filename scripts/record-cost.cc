// The CPU cost of record protection alone (native/lowcomms/session_crypto.h), without
// sockets or threads: seals and opens records of a given size for about a second per mode
// and prints ns per record and GB/s for each. Used for docs/performance.md ("auth").
//   g++ -std=c++20 -O2 -Inative -o build/record-cost scripts/record-cost.cc
//       native/lowcomms/session_crypto.cc (one line), then: build/record-cost 16384 4072 64
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "lowcomms/session_crypto.h"

using namespace lowcomms;

int main(int argc, char** argv) {
  if (const char* why = record::unavailable_reason()) {
    std::fprintf(stderr, "%s\n", why);
    return 1;
  }
  uint8_t key[record::kKeyLen] = {1, 2, 3};
  for (int a = 1; a < argc; a++) {
    const size_t len = size_t(std::atol(argv[a]));
    std::vector<uint8_t> plain(len, 0x42), rec(len + record::kOverhead), out(len + 1);
    for (auto mode : {record::Mode::kEncrypt, record::Mode::kIntegrity}) {
      auto sealer = record::Cipher::make(mode, key, true);
      auto opener = record::Cipher::make(mode, key, false);
      iovec iov{plain.data(), len};
      size_t n = 0;
      double seal_ns = 0, open_ns = 0;
      const auto start = std::chrono::steady_clock::now();
      while (std::chrono::steady_clock::now() - start < std::chrono::seconds(1)) {
        for (int i = 0; i < 256; i++, n++) {
          const auto t0 = std::chrono::steady_clock::now();
          if (!sealer->seal(&iov, 1, len, rec.data())) return 2;
          const auto t1 = std::chrono::steady_clock::now();
          if (!opener->open(rec.data(), len, out.data())) return 3;
          const auto t2 = std::chrono::steady_clock::now();
          seal_ns += std::chrono::duration<double, std::nano>(t1 - t0).count();
          open_ns += std::chrono::duration<double, std::nano>(t2 - t1).count();
        }
      }
      std::printf("%-9s %6zu B: seal %7.0f ns (%.2f GB/s), open %7.0f ns (%.2f GB/s), %zu records\n",
                  mode == record::Mode::kEncrypt ? "encrypt" : "integrity", len, seal_ns / double(n),
                  double(len) * double(n) / seal_ns, open_ns / double(n), double(len) * double(n) / open_ns, n);
    }
  }
  return 0;
}
