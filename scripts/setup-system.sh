#!/usr/bin/env bash
# Install the Debian packages lowcomms needs: the native build toolchain and the
# user-mode-linux test harness (scripts/uml-run.sh). Idempotent: when every
# package is already installed it says so and does nothing else.
#
# usage: scripts/setup-system.sh [--check]
#   --check   only report missing packages (exit 1 if any), install nothing
set -euo pipefail

prog=${0##*/}
packages=(
	# build of the addon
	cmake g++ make python3
	# scripts/uml-run.sh: the UML kernel and its modules, modprobe/depmod,
	# ip (lo, netns, veth), setpriv/mount, tail/mktemp; test/uml also uses tc
	# (iproute2), dmesg and mount (util-linux) and cc (g++) for test/helpers/dlmdev.c
	user-mode-linux kmod iproute2 util-linux coreutils
	# scripts/fuzz.sh: libFuzzer with ASan/UBSan; fuzz_record loads OpenSSL's libcrypto.so.3
	# at run time (the addon uses the copy inside Node and needs nothing)
	clang libclang-rt-14-dev libssl3
	# scripts/test-tsan.sh: llvm-symbolizer names our frames in ThreadSanitizer reports
	llvm-14
	# scripts/prebuilds.sh arm64: the linux-arm64 prebuild, cross-compiled; and
	# scripts/test-arm64.sh: the arm64 Node and the tests under qemu user emulation,
	# with the arm64 C and C++ runtime libraries (/usr/aarch64-linux-gnu)
	g++-aarch64-linux-gnu qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross
	# test/corosync: corosync 3 itself (three instances in network namespaces) and the
	# client libraries the addon opens at run time for membership (dlopen, no headers needed)
	corosync libcpg4 libcmap4 libquorum5
)

check_only=0
case ${1:-} in
'') ;;
--check) check_only=1 ;;
-h | --help)
	sed -n '2,8s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*)
	echo "$prog: unknown argument '$1' (try --help)" >&2
	exit 2
	;;
esac

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
	cat >&2 <<EOF
$prog: this is not a Debian-like system (no dpkg-query/apt-get).
$prog: install these by hand: ${packages[*]}
$prog: (user-mode-linux is Debian's packaging of the UML kernel, /usr/bin/linux.uml,
$prog:  with its modules under /usr/lib/uml/modules/<version>.)
EOF
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	[[ $status == ii* ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
	echo "$prog: all ${#packages[@]} packages present: ${packages[*]}"
	exit 0
fi
echo "$prog: missing packages: ${missing[*]}"
if ((check_only)); then
	exit 1
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		as_root=(sudo)
		echo "$prog: not root; using sudo"
	else
		echo "$prog: must run as root to install packages, and sudo is not available." >&2
		echo "$prog: run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
		exit 1
	fi
fi

apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
echo "+ apt-get update"
"${apt[@]}" update
echo "+ apt-get install -y --no-install-recommends ${missing[*]}"
if ! "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; then
	echo "$prog: apt-get install failed (is user-mode-linux packaged for $(dpkg --print-architecture)?)" >&2
	exit 1
fi

if command -v linux.uml >/dev/null 2>&1; then
	echo "$prog: linux.uml $(linux.uml --version </dev/null 2>/dev/null | head -n 1) installed"
fi
echo "$prog: done"
