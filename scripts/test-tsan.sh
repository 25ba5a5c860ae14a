#!/usr/bin/env bash
# Builds the addon with ThreadSanitizer into build-tsan/ (build/ is left alone) and runs
# a test command against it, then checks the reports:
#   scripts/test-tsan.sh [node --import tsx --test FILES...]
# Node itself is not built with TSan, so libtsan is LD_PRELOADed into every node process
# of the run and each writes its reports to a log file (exitcode=0: the test results
# stay the tests' own). scripts/tsan-check.mjs then fails the run for every report where
# our code made an access or owns the memory, and lists the rest, races of node/V8/libuv
# on their own memory that TSan cannot judge (see tsan-check.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
npx cmake-js build -D -O build-tsan --CDLOWCOMMS_TSAN=ON >/dev/null
addon=$(ls build-tsan/Debug/lowcomms.node)
tsan=$(gcc -print-file-name=libtsan.so)
[[ -f $tsan ]] || { echo "test-tsan: no libtsan.so (install g++)" >&2; exit 1; }
symbolizer=$(command -v llvm-symbolizer || command -v llvm-symbolizer-14 || true)
[[ -n $symbolizer ]] || { echo "test-tsan: no llvm-symbolizer (scripts/setup-system.sh installs llvm-14)" >&2; exit 1; }
[[ $# -gt 0 ]] || set -- node --import tsx --test --test-concurrency=1 test/api.test.ts test/contract.test.ts test/net/transport.test.ts
logs=$(mktemp -d "${TMPDIR:-/tmp}/lowcomms-tsan.XXXXXX")
chmod 1777 "$logs"  # a test may run a child as nobody (contract-native.test.ts); it logs here too
trap 'rm -rf "$logs"' EXIT
export LOWCOMMS_ADDON_PATH=$PWD/$addon LOWCOMMS_TEST_TRANSPORTS=${LOWCOMMS_TEST_TRANSPORTS:-tcp}
export LOWCOMMS_TEST_MESSAGES=${LOWCOMMS_TEST_MESSAGES:-5000} LOWCOMMS_TEST_KILLS=${LOWCOMMS_TEST_KILLS:-20}
# history_size=4: the earlier access of a race is found further back (default 2).
export TSAN_OPTIONS="log_path=$logs/tsan exitcode=0 halt_on_error=0 report_signal_unsafe=0 history_size=4 external_symbolizer_path=$symbolizer ${TSAN_OPTIONS:-}"
echo "test-tsan: $addon with $tsan"
status=0
LD_PRELOAD=$tsan "$@" || status=$?
node scripts/tsan-check.mjs "$logs" "$PWD/$addon" "$symbolizer" || status=$((status ? status : 1))
exit $status
