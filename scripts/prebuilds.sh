#!/usr/bin/env bash
# Builds the release prebuilds that `npm pack` ships, one per platform:
#   prebuilds/linux-x64/node.napi.glibc.node     (native g++)
#   prebuilds/linux-arm64/node.napi.glibc.node   (Debian's g++-aarch64-linux-gnu)
# N-API 8 binaries: one file serves every Node version from 20 on. node-gyp-build
# picks the file by platform-arch and libc at load time. Offline: cmake-js takes the
# headers from node-api-headers and node-addon-api.
#
# usage: scripts/prebuilds.sh [x64|arm64|all]     (default all; `npm run prebuilds`)
set -euo pipefail
cd "$(dirname "$0")/.."
prog=${0##*/}

case ${1:-all} in
all) archs=(x64 arm64) ;;
x64 | arm64) archs=("$1") ;;
-h | --help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
*) echo "$prog: unknown architecture '$1' (x64, arm64 or all)" >&2; exit 2 ;;
esac

# The ELF machine of a file (bytes 18-19, little-endian): 62 = x86-64, 183 = aarch64.
elf_machine() { od -An -tu2 -j18 -N2 "$1" | tr -d ' '; }

for arch in "${archs[@]}"; do
	out=build-prebuild-$arch
	args=(build --out "$out")
	case $arch in
	x64) strip=strip want=62 ;;
	arm64)
		strip=aarch64-linux-gnu-strip want=183
		if ! command -v aarch64-linux-gnu-g++ >/dev/null; then
			echo "$prog: no aarch64-linux-gnu-g++: run scripts/setup-system.sh (g++-aarch64-linux-gnu)" >&2
			exit 1
		fi
		args+=(--arch arm64 --CDCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake")
		;;
	esac
	echo "$prog: building linux-$arch into $out/"
	mkdir -p "$out"
	node_modules/.bin/cmake-js "${args[@]}" >"$out/prebuild.log" 2>&1 || {
		tail -n 40 "$out.log" >&2
		echo "$prog: linux-$arch build failed (full log: $out/prebuild.log)" >&2
		exit 1
	}
	dest=prebuilds/linux-$arch/node.napi.glibc.node
	mkdir -p "${dest%/*}"
	"$strip" --strip-all -o "$dest.tmp" "$out/Release/lowcomms.node"
	got=$(elf_machine "$dest.tmp")
	if [[ $got != "$want" ]]; then
		rm -f "$dest.tmp"
		echo "$prog: $out/Release/lowcomms.node is ELF machine $got, expected $want for $arch" >&2
		exit 1
	fi
	mv "$dest.tmp" "$dest"
	echo "$prog: $dest ($(stat -c %s "$dest") bytes)"
done
