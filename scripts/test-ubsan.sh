#!/usr/bin/env bash
# Builds the addon with UndefinedBehaviorSanitizer only into build-ubsan/ and runs a test
# command against it, inside user-mode-linux when this kernel has no SCTP:
#   scripts/test-ubsan.sh node --import tsx --test FILES...
# ASan cannot run in the guest (its shadow memory does not fit UML's address space), so
# this is how the SCTP-only native paths get a sanitizer. UBSan needs no preload: the
# addon pulls its runtime in.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -gt 0 ]] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
npx cmake-js build -D -O build-ubsan --CDLOWCOMMS_UBSAN=ON >/dev/null
addon=$(ls build-ubsan/Debug/lowcomms.node)
export LOWCOMMS_ADDON_PATH=$PWD/$addon
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
echo "test-ubsan: $addon"
if bash scripts/has-sctp.sh >/dev/null 2>&1; then
  exec "$@"
fi
exec bash scripts/uml-run.sh --timeout 1500 --env UBSAN_OPTIONS -- "$@"
