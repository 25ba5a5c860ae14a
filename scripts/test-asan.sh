#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/
# (build/ is left alone) and runs a test command against it:
#   scripts/test-asan.sh [node --import tsx --test FILES...]
# Default: the unit tests and the TCP transport suites. LeakSanitizer is on; its
# suppressions (scripts/lsan.supp) cover Node/V8 allocations kept until exit only.
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js build -D -O build-asan --CDLOWCOMMS_SANITIZE=ON >/dev/null
addon=$(ls build-asan/Debug/lowcomms.node)
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
[[ $# -gt 0 ]] || set -- node --import tsx --test --test-concurrency=1 test/api.test.ts test/wire.test.ts test/hostile.test.ts test/net/transport.test.ts test/net/faults.test.ts
export LOWCOMMS_ADDON_PATH=$addon LOWCOMMS_TEST_TRANSPORTS=${LOWCOMMS_TEST_TRANSPORTS:-tcp}
export LOWCOMMS_TEST_MESSAGES=${LOWCOMMS_TEST_MESSAGES:-20000} LOWCOMMS_TEST_KILLS=${LOWCOMMS_TEST_KILLS:-50}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=66}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
echo "test-asan: $addon with $asan"
LD_PRELOAD="$asan $ubsan" "$@"
