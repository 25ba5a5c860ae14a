// A check that survives NDEBUG and stops the fuzzer with a crash it can minimise.
#pragma once
#include <cstdio>

#define FUZZ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      __builtin_trap();                                                    \
    }                                                                      \
  } while (0)
