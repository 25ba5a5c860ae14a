#!/usr/bin/env bash
# Checks the package a release publishes: `npm pack` into a temporary directory, then
#  - the tarball holds prebuilds/linux-x64 and prebuilds/linux-arm64 (ELF x86-64 and
#    aarch64; scripts/prebuilds.sh makes them);
#  - unpacked (no build/ directory, as a user gets it), node-gyp-build picks the x64
#    prebuild under this Node and loads it, and picks and loads the arm64 one under the
#    arm64 Node in qemu (binfmt set up by scripts/test-arm64.sh).
# usage: scripts/check-pack.sh [--build]   (--build: run scripts/prebuilds.sh all first)
set -euo pipefail
cd "$(dirname "$0")/.."
prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }

[[ ${1:-} == --build ]] && bash scripts/prebuilds.sh all
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lowcomms-pack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

tgz=$(npm pack --silent --pack-destination "$tmp" | tail -n 1)
[[ -f $tmp/$tgz ]] || die "npm pack made no tarball"
tar -xzf "$tmp/$tgz" -C "$tmp"
pkg=$tmp/package
echo "$prog: $tgz, $(stat -c %s "$tmp/$tgz") bytes, $(tar -tzf "$tmp/$tgz" | wc -l) files"

elf_machine() { od -An -tu2 -j18 -N2 "$1" | tr -d ' '; }
for pair in x64:62 arm64:183; do
	arch=${pair%:*} want=${pair#*:}
	f=$pkg/prebuilds/linux-$arch/node.napi.glibc.node
	[[ -f $f ]] || die "the tarball has no prebuilds/linux-$arch/node.napi.glibc.node (run npm run prebuilds)"
	[[ $(elf_machine "$f") == "$want" ]] || die "prebuilds/linux-$arch is not an $arch binary"
done
[[ ! -e $pkg/build ]] || die "the tarball holds build/ (node-gyp-build would prefer it)"

# Load the prebuild of each arch from the unpacked package; print what was picked.
probe='const load = require(process.argv[1]); const dir = process.argv[2];
const file = load.path(dir); const b = require(file);
if (typeof b.Engine !== "function") throw new Error("no Engine in " + file);
console.log(process.arch + " " + process.version + ": " + require("path").relative(dir, file));'
gyp=$PWD/node_modules/node-gyp-build
out=$(node -e "$probe" "$gyp" "$pkg")
[[ $out == *": prebuilds/linux-x64/node.napi.glibc.node" ]] || die "x64: $out"
echo "$prog: $out"
node64=$(bash scripts/node-versions.sh path "$(bash scripts/node-versions.sh arm64-major)" arm64)
out=$(QEMU_LD_PREFIX=/usr/aarch64-linux-gnu "$node64" -e "$probe" "$gyp" "$pkg") ||
	die "the arm64 Node could not load the arm64 prebuild (is qemu registered? scripts/test-arm64.sh does it)"
[[ $out == *": prebuilds/linux-arm64/node.napi.glibc.node" ]] || die "arm64: $out"
echo "$prog: $out"
echo "$prog: ok"
