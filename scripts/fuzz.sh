#!/usr/bin/env bash
# Builds the libFuzzer targets (native/fuzz/) with clang, ASan and UBSan, and runs each
# for SECONDS (default 60) from the seed corpus in test/fuzz-corpus/. Fails on any crash.
#   scripts/fuzz.sh [SECONDS] [stream|writequeue|auth|record ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(stream writequeue auth record)
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
mkdir -p build-fuzz
deps=(native/dlm/decode.cc native/midcomms/midcomms_node.cc native/midcomms/midcomms_tx.cc native/midcomms/send_queue.cc native/lowcomms/writequeue.cc native/lowcomms/auth.cc native/lowcomms/session_crypto.cc)
for t in "${targets[@]}"; do
  bin=build-fuzz/fuzz_$t
  clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Inative -o "$bin" "native/fuzz/fuzz_$t.cc" "${deps[@]}"
  work=build-fuzz/corpus-$t
  mkdir -p "$work"
  echo "== fuzz_$t: ${seconds}s from test/fuzz-corpus/$t"
  # New inputs go to the scratch corpus; the committed seeds stay as they are.
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix=build-fuzz/ \
    "$work" "test/fuzz-corpus/$t" 2>&1 | grep -E "^(#|stat::number_of_executed_units|stat::peak_rss|Done|==|SUMMARY|check failed)" | tail -6
done
