#!/usr/bin/env bash
# Runs a test command on arm64 under qemu user-mode emulation, against the linux-arm64
# prebuild as a user's arm64 host would load it:
#   scripts/test-arm64.sh ARM64_NODE [NODE_ARGS...]
#   scripts/test-arm64.sh            (a smoke test: load the addon, make an engine, probe SCTP)
# 1. cross-builds prebuilds/linux-arm64 (scripts/prebuilds.sh arm64);
# 2. registers qemu-aarch64 with binfmt_misc (as root) so that every arm64 process the
#    tests start (node's test runner, peer processes) runs under qemu too;
# 3. checks that node-gyp-build, run by the arm64 Node, resolves prebuilds/linux-arm64;
# 4. runs the command with PREBUILDS_ONLY=1: the x64 build/ is never looked at.
set -euo pipefail
cd "$(dirname "$0")/.."
prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }

sysroot=/usr/aarch64-linux-gnu # Debian's libc6-arm64-cross and libstdc++6-arm64-cross
qemu=/usr/bin/qemu-aarch64-static
[[ -x $qemu && -e $sysroot/lib/ld-linux-aarch64.so.1 ]] ||
	die "needs qemu-user-static and the arm64 cross libraries: run scripts/setup-system.sh"

node=${1:-$(bash scripts/node-versions.sh path "$(bash scripts/node-versions.sh arm64-major)" arm64)}
[[ $# -gt 0 ]] && shift

bash scripts/prebuilds.sh arm64

# binfmt_misc: mount it if the machine has not, then register qemu for aarch64 ELF
# executables (F: qemu is opened now, so the entry works in any mount namespace).
bf=/proc/sys/fs/binfmt_misc
if [[ ! -e $bf/register ]]; then
	mount -t binfmt_misc binfmt_misc "$bf" 2>/dev/null || die "binfmt_misc is not mounted at $bf and mounting it failed (need root)"
fi
if [[ ! -e $bf/qemu-aarch64 ]]; then
	magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
	mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
	echo ":qemu-aarch64:M::$magic:$mask:$qemu:F" >"$bf/register" 2>/dev/null ||
		die "could not register qemu-aarch64 with binfmt_misc (need root)"
	echo "$prog: registered $qemu for aarch64 executables with binfmt_misc"
fi
grep -qx enabled "$bf/qemu-aarch64" || die "binfmt_misc entry qemu-aarch64 is disabled"

export QEMU_LD_PREFIX=$sysroot PREBUILDS_ONLY=1
# tsx compiles the TypeScript tests with esbuild: the arm64 binary of the same version.
ESBUILD_BINARY_PATH=$(bash scripts/node-versions.sh esbuild-arm64)
export ESBUILD_BINARY_PATH

arch=$("$node" -p process.arch) || die "$node does not run (binfmt/qemu)"
[[ $arch == arm64 ]] || die "$node reports arch '$arch', not arm64"
want=$PWD/prebuilds/linux-arm64/node.napi.glibc.node
got=$("$node" -p 'require("node-gyp-build").path(".")')
[[ $got == "$want" ]] || die "node-gyp-build on arm64 resolved '$got', not $want"
echo "$prog: $("$node" --version) arm64 under $($qemu --version | head -n 1); node-gyp-build picks ${want#"$PWD"/}"

export PATH=${node%/*}:$PATH # a test's child `node` is the arm64 one too
if [[ $# -eq 0 ]]; then
	exec "$node" --import tsx -e 'import("./binding/index.ts").then((m) => { const n = (m.loadBinding ? m : m.default).loadBinding(); if (typeof n.Engine !== "function") throw new Error("no Engine"); console.log("addon loaded; sctpAvailable(4):", n.sctpAvailable(4)); })'
fi
exec "$node" "$@"
