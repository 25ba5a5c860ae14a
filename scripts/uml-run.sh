#!/usr/bin/env bash
# Run a command inside a user-mode-linux (UML) guest that has real kernel SCTP.
#
# The guest boots Debian's linux.uml with the host's root filesystem (hostfs),
# loads the SCTP, veth and dummy modules, brings up loopback and runs COMMAND in
# the current directory with a filtered copy of the environment. The command's
# stdout and stderr are streamed back to ours; its exit status becomes ours.
# See scripts/README.md for the details.
set -euo pipefail

readonly EXIT_TIMEOUT=124 EXIT_HARNESS=125
readonly DEFAULT_MODULES=(hmac cryptomgr sctp veth dummy)
readonly MIN_SOCKBUF_MAX=16777216 # net.core.{r,w}mem_max inside the guest (16 MiB)
prog=${0##*/}

usage() {
	cat <<EOF
usage: $prog [options] -- COMMAND [ARGS...]

Runs COMMAND inside a user-mode-linux guest (kernel with SCTP, veth, netns) that
sees the host filesystem, in the same directory. Exit status is COMMAND's.

options:
  --mem SIZE          guest memory, e.g. 1536M or 2G (default 2G)
  --timeout SECONDS   kill the guest this many seconds after launch (boot
                      included), exit 124 (default 1800; 0 = no limit)
  --module NAME       load this kernel module too (repeatable); always loaded:
                      ${DEFAULT_MODULES[*]}
  --sysctl KEY=VALUE  set a sysctl in the guest after the modules are loaded,
                      e.g. net.sctp.rto_min=100 (repeatable)
  --env NAME[=VALUE]  pass NAME (with its host value, or VALUE) into the guest
                      (repeatable); passed anyway: PATH HOME TERM LANG LC_*
                      USER LOGNAME TZ CI CI_* LOWCOMMS_* NODE_* npm_*
  --console           copy the guest's kernel console to stderr (debugging)
  -h, --help          this text

exit status: COMMAND's own, or 124 on timeout, or 125 when the harness failed
(bad usage, no linux.uml, boot/module/init failure, guest died mid-command).
environment: LOWCOMMS_UML_KERNEL (path of linux.uml), LOWCOMMS_UML_MODULES
(its modules directory, default /usr/lib/uml/modules/<version>),
LOWCOMMS_UML_MEMDIR (where the guest RAM file goes, default /dev/shm).
EOF
}

die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit "$EXIT_HARNESS"
}

note() {
	printf '%s: %s\n' "$prog" "$*" >&2
}

mem=2G
timeout_s=1800
console=0
modules=("${DEFAULT_MODULES[@]}")
sysctls=()
extra_env=()

need_arg() {
	[[ $# -ge 2 ]] || die "option $1 needs an argument (see --help)"
}

while [[ $# -gt 0 ]]; do
	case $1 in
	--mem)
		need_arg "$@"
		mem=$2
		shift 2
		;;
	--mem=*)
		mem=${1#*=}
		shift
		;;
	--timeout)
		need_arg "$@"
		timeout_s=$2
		shift 2
		;;
	--timeout=*)
		timeout_s=${1#*=}
		shift
		;;
	--module)
		need_arg "$@"
		modules+=("$2")
		shift 2
		;;
	--sysctl)
		need_arg "$@"
		sysctls+=("$2")
		shift 2
		;;
	--env)
		need_arg "$@"
		extra_env+=("$2")
		shift 2
		;;
	--console)
		console=1
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	--)
		shift
		break
		;;
	*)
		printf '%s: error: unexpected argument %q (the command goes after --)\n' "$prog" "$1" >&2
		usage >&2
		exit "$EXIT_HARNESS"
		;;
	esac
done

[[ $# -gt 0 ]] || {
	usage >&2
	die "no command given"
}
[[ $mem =~ ^[1-9][0-9]*[KMG]?$ ]] || die "--mem: expected a size like 2G or 1536M, got '$mem'"
[[ $timeout_s =~ ^[0-9]+$ ]] || die "--timeout: expected whole seconds, got '$timeout_s'"
for m in "${modules[@]}"; do
	[[ $m =~ ^[A-Za-z0-9_-]+$ ]] || die "--module: bad module name '$m'"
done
for s in "${sysctls[@]}"; do
	[[ $s =~ ^[A-Za-z0-9_.-]+=.*$ ]] || die "--sysctl: expected KEY=VALUE, got '$s'"
done

# Inside a guest already (nested UML does not work): the kernel here is the one
# we would boot, so just run the command.
if [[ ${LOWCOMMS_UML:-} == 1 ]]; then
	note "already inside a user-mode-linux guest; running the command directly"
	exec "$@"
fi

# --- locate the kernel and its modules ---------------------------------------
kernel=${LOWCOMMS_UML_KERNEL:-}
if [[ -z $kernel ]]; then
	kernel=$(command -v linux.uml || true)
	[[ -n $kernel ]] || kernel=/usr/bin/linux.uml
fi
[[ -x $kernel ]] || die "user-mode-linux kernel not found ($kernel); install it with scripts/setup-system.sh (Debian package user-mode-linux)"
kver=$("$kernel" --version </dev/null 2>/dev/null | head -n 1) || true
[[ $kver =~ ^[0-9][A-Za-z0-9._+-]*$ ]] || die "cannot get the version of $kernel (got '$kver')"
modsrc=${LOWCOMMS_UML_MODULES:-/usr/lib/uml/modules/$kver}
[[ -d $modsrc/kernel ]] || die "modules of UML kernel $kver not found in $modsrc (package user-mode-linux incomplete?)"
for t in setpriv tail mktemp; do
	command -v "$t" >/dev/null || die "'$t' not found (packages util-linux, coreutils)"
done

# --- the XSAVE shim (uml-xstate-shim.c): UML 6.1 cannot boot on hosts with AMX ------
# Built once per source version into a cache; without a C compiler the guest boots
# without it, which works on every CPU without a large XSAVE area.
xstate_shim=''
shim_src=$(dirname -- "${BASH_SOURCE[0]}")/uml-xstate-shim.c
if [[ -f $shim_src ]] && command -v cc >/dev/null; then
	shim_dir=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/lowcomms
	shim_so=$shim_dir/uml-xstate-shim-$(cksum <"$shim_src" | cut -d' ' -f1).so
	if [[ ! -f $shim_so ]]; then
		mkdir -p "$shim_dir" 2>/dev/null || true
		cc -O2 -shared -fPIC -o "$shim_so.$$" "$shim_src" -ldl 2>/dev/null && mv -f "$shim_so.$$" "$shim_so" ||
			note "could not build $shim_src; booting without it"
	fi
	[[ -f $shim_so ]] && xstate_shim=$shim_so
fi

# --- where the guest's memory lives ------------------------------------------------
# linux.uml backs guest RAM with a file in $TMPDIR; it must be tmpfs-fast and have
# room for all of it, or the guest dies with SIGBUS when it runs out.
case $mem in
*K) mem_bytes=$((${mem%K} * 1024)) ;;
*M) mem_bytes=$((${mem%M} * 1024 * 1024)) ;;
*G) mem_bytes=$((${mem%G} * 1024 * 1024 * 1024)) ;;
*) mem_bytes=$mem ;;
esac
((mem_bytes >= 128 * 1024 * 1024)) || die "--mem $mem is too small (128M at least; node wants 1G or more)"
free_bytes() {
	local a b
	read -r a b < <(stat -f -c '%a %S' -- "$1" 2>/dev/null) || {
		echo 0
		return
	}
	echo $((a * b))
}
memdir=''
if [[ -n ${LOWCOMMS_UML_MEMDIR:-} ]]; then
	memdir=$LOWCOMMS_UML_MEMDIR
	[[ -d $memdir && -w $memdir ]] || die "LOWCOMMS_UML_MEMDIR=$memdir is not a writable directory"
else
	for d in /dev/shm "${TMPDIR:-/tmp}" /tmp /var/tmp; do
		[[ -d $d && -w $d ]] || continue
		if (($(free_bytes "$d") >= mem_bytes)); then
			memdir=$d
			break
		fi
	done
	[[ -n $memdir ]] || die "no room for $mem of guest memory in /dev/shm, ${TMPDIR:-/tmp} or /var/tmp; use a smaller --mem or set LOWCOMMS_UML_MEMDIR"
fi

# --- per-run directory ---------------------------------------------------------
run=''
uml_pid=''
watchdog_pid=''
tail_pids=()
cleanup_done=0

kill_guest() {
	[[ -n $uml_pid ]] || return 0
	# linux.uml makes itself a session leader; its helper processes share its
	# process group, and SIGTERM makes it shut them down cleanly.
	kill -TERM -- "-$uml_pid" 2>/dev/null || kill -TERM "$uml_pid" 2>/dev/null || true
	local i
	for ((i = 0; i < 50; i++)); do
		kill -0 -- "-$uml_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$uml_pid" 2>/dev/null || true
	wait "$uml_pid" 2>/dev/null || true
	uml_pid=''
}

# shellcheck disable=SC2317  # called from traps
cleanup() {
	((cleanup_done)) && return 0
	cleanup_done=1
	kill_guest
	if [[ -n $watchdog_pid ]]; then
		kill "$watchdog_pid" 2>/dev/null || true
		wait "$watchdog_pid" 2>/dev/null || true
	fi
	local p
	for p in "${tail_pids[@]}"; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [[ -n $run && -d $run ]]; then
		rm -rf -- "$run"
	fi
}

# shellcheck disable=SC2317  # called from traps
on_signal() {
	local sig=$1 code=$2
	trap - INT TERM HUP
	note "caught SIG$sig, stopping the guest"
	cleanup
	exit "$code"
}

trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

# Remove run directories left by runs that were SIGKILLed: ours, made in this
# PID namespace, by a process that is gone.
pidns=$(readlink /proc/self/ns/pid 2>/dev/null || echo unknown)
for d in "${TMPDIR:-/tmp}"/lowcomms-uml.*; do
	[[ -d $d && -O $d && -f $d/owner ]] || continue
	read -r opid ons <"$d/owner" || continue
	if [[ $opid =~ ^[0-9]+$ && $ons == "$pidns" && ! -d /proc/$opid ]]; then rm -rf -- "$d"; fi
done
run=$(mktemp -d "${TMPDIR:-/tmp}/lowcomms-uml.XXXXXXXX") || die "cannot create a temporary directory"
printf '%s %s\n' "$$" "$pidns" >"$run/owner"
[[ $run != *[[:space:]]* ]] || die "temporary directory path contains spaces: $run (set TMPDIR)"

# --- module tree for modprobe -d ------------------------------------------------
# Debian ships modules.dep with the UML modules: a symlink is all modprobe needs.
# Without it, build an indexed tree once (kernel/ symlinked, depmod output real)
# and cache it, keyed by version and a hash of the module files.
prepare_cached_modules() {
	local cache_root key dest tmp f
	command -v depmod >/dev/null || die "depmod not found (package kmod)"
	key=$(find -L "$modsrc/kernel" -name '*.ko*' -printf '%P %s %T@\n' | LC_ALL=C sort | md5sum)
	key=${key:0:16}
	cache_root=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/lowcomms-uml/$kver
	dest=$cache_root/$key
	if [[ -f $dest/ready ]]; then
		printf '%s\n' "$dest"
		return 0
	fi
	mkdir -p "$cache_root" || die "cannot create $cache_root"
	tmp=$(mktemp -d "$cache_root/.build.XXXXXXXX") || die "cannot create a directory in $cache_root"
	mkdir -p "$tmp/lib/modules/$kver"
	ln -s "$modsrc/kernel" "$tmp/lib/modules/$kver/kernel"
	for f in modules.order modules.builtin modules.builtin.modinfo; do
		if [[ -f $modsrc/$f ]]; then cp "$modsrc/$f" "$tmp/lib/modules/$kver/"; fi
	done
	note "indexing UML kernel modules into $dest (once)"
	if ! depmod -b "$tmp" "$kver" >"$run/depmod.log" 2>&1; then
		cat "$run/depmod.log" >&2
		rm -rf -- "$tmp"
		die "depmod failed for $modsrc"
	fi
	: >"$tmp/ready"
	# rename(2) is atomic; if another run won the race, use its copy.
	if ! mv -T -- "$tmp" "$dest" 2>/dev/null; then
		rm -rf -- "$tmp"
		[[ -f $dest/ready ]] || die "cannot install the module index into $dest"
	fi
	printf '%s\n' "$dest"
}

if [[ -f $modsrc/modules.dep.bin || -f $modsrc/modules.dep ]]; then
	modroot=$run/modroot
	mkdir -p "$modroot/lib/modules"
	ln -s "$modsrc" "$modroot/lib/modules/$kver"
else
	modroot=$(prepare_cached_modules)
fi

# --- what the guest runs ---------------------------------------------------------
passes_filter() {
	case $1 in
	PATH | HOME | TERM | LANG | LANGUAGE | LC_* | USER | LOGNAME | TZ | CI | CI_* | LOWCOMMS_* | NODE_* | npm_*) return 0 ;;
	*) return 1 ;;
	esac
}

env_list=()
while IFS= read -r name; do
	[[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
	[[ $name == LOWCOMMS_UML ]] && continue
	if passes_filter "$name"; then env_list+=("$name=${!name}"); fi
done < <(compgen -e)
for e in "${extra_env[@]}"; do
	name=${e%%=*}
	[[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--env: bad variable name '$name'"
	if [[ $e == *=* ]]; then
		env_list+=("$e")
	elif [[ -v $name ]]; then
		env_list+=("$name=${!name}")
	fi
done
env_list+=("LOWCOMMS_UML=1")

nofile=$(ulimit -n)
[[ $nofile =~ ^[0-9]+$ ]] || nofile=65536

write_array() { # name values...
	local n=$1
	shift
	printf '%s=(' "$n"
	if [[ $# -gt 0 ]]; then printf ' %q' "$@"; fi
	printf ' )\n'
}

{
	printf 'cwd=%q\n' "$PWD"
	printf 'kver=%q\n' "$kver"
	printf 'modroot=%q\n' "$modroot"
	printf 'sockbuf_max=%q\n' "$MIN_SOCKBUF_MAX"
	printf 'nofile=%q\n' "$nofile"
	write_array modules "${modules[@]}"
	write_array sysctls "${sysctls[@]}"
	write_array envs "${env_list[@]}"
	write_array cmd "$@"
} >"$run/vars"

# The guest's PID 1. Runs with the kernel's console on stdout/stderr (our
# console.log); the command's output goes to stdout/stderr files in $run that we
# stream back; progress and the exit status go to $run/status.
cat >"$run/init" <<'INIT'
#!/bin/bash
# shellcheck disable=SC2154  # variables come from $run/vars
run=${0%/*}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
umask 022
exec 3>>"$run/status" 5>>"$run/stdout" 6>>"$run/stderr" </dev/null
say() { echo "uml-init: $*"; }
off() {
	sync
	[[ -e /proc/sysrq-trigger ]] || mount -n -t proc proc /proc
	echo o >/proc/sysrq-trigger && sleep 30
	exit 1 # no power-off: the kernel panics and linux.uml exits
}
fail() {
	printf 'fail %s\n' "$*" >&3
	say "FAILED: $*"
	off
}
# A reboot restarts linux.uml with the same init: never run the command twice.
if [[ -s $run/status ]]; then
	printf 'fail the guest rebooted\n' >&3
	off
fi
printf 'init\n' >&3
# shellcheck source=/dev/null
. "$run/vars" || { printf 'fail cannot read %s/vars\n' "$run" >&3; exit 1; }
mount -n -t proc proc /proc || fail "mount /proc"
mount -n -t sysfs sysfs /sys || fail "mount /sys"
if [[ ${#modules[@]} -gt 0 ]]; then
	modprobe -a -d "$modroot" -S "$kver" "${modules[@]}" || fail "modprobe ${modules[*]}"
fi
printf 'modules\n' >&3
ip link set lo up || fail "ip link set lo up"
mount -n -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run || fail "mount /run"
mkdir -p /dev/shm /dev/pts || fail "mkdir /dev/shm /dev/pts"
mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm || fail "mount /dev/shm"
mount -n -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts || fail "mount /dev/pts"
[[ -e /dev/fd ]] || ln -s /proc/self/fd /dev/fd
[[ -e /dev/stdin ]] || ln -s /proc/self/fd/0 /dev/stdin
[[ -e /dev/stdout ]] || ln -s /proc/self/fd/1 /dev/stdout
[[ -e /dev/stderr ]] || ln -s /proc/self/fd/2 /dev/stderr
echo lowcomms-uml >/proc/sys/kernel/hostname
for k in rmem_max wmem_max; do
	cur=$(</proc/sys/net/core/$k)
	if ((cur < sockbuf_max)); then echo "$sockbuf_max" >"/proc/sys/net/core/$k" || fail "sysctl net.core.$k"; fi
done
for kv in "${sysctls[@]}"; do
	key=${kv%%=*}
	echo "${kv#*=}" >"/proc/sys/${key//.//}" || fail "sysctl $kv"
done
ulimit -n "$nofile" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
cd -- "$cwd" || fail "cd $cwd (is it hidden by a guest mount: /proc /sys /dev /run?)"
read -r up _ </proc/uptime
say "ready after ${up}s of guest uptime; running: ${cmd[*]}"
printf 'run %s\n' "$up" >&3
(
	# shellcheck disable=SC2046
	unset $(compgen -e) 2>/dev/null
	# shellcheck disable=SC2163  # kv is NAME=VALUE
	for kv in "${envs[@]}"; do export "$kv"; done
	if ! type -- "${cmd[0]}" >/dev/null 2>&1; then
		echo "uml-run.sh (in the guest): ${cmd[0]}: command not found" >&2
		exit 127
	fi
	exec "${cmd[@]}"
) >&5 2>&6 3>&- 5>&- 6>&-
rc=$?
printf 'exit %d\n' "$rc" >&3
say "command exited with status $rc"
off
INIT
chmod 0755 "$run/init"
: >"$run/status"
: >"$run/stdout"
: >"$run/stderr"
: >"$run/console.log"

# --- boot ----------------------------------------------------------------------------
kargs=(
	"mem=$mem"
	root=/dev/root rootfstype=hostfs rootflags=/ rw
	"init=$run/init"
	quiet loglevel=4
	con=null 'con0=fd:0,fd:1' ssl=null
	umid=lowcomms "uml_dir=$run/uml"
)
# setpriv --pdeathsig: if this script is SIGKILLed, linux.uml gets SIGTERM and
# shuts down with its helpers. set -m gives it its own process group at once.
set -m
TMPDIR=$memdir LD_PRELOAD=$xstate_shim setpriv --pdeathsig TERM -- "$kernel" "${kargs[@]}" </dev/null >>"$run/console.log" 2>&1 &
uml_pid=$!
set +m

# Stream the command's output while the guest runs; tail --pid does a last read
# after linux.uml exits, so nothing written before the power-off is lost.
tail -q -c +1 -s 0.2 --pid="$uml_pid" -f "$run/stdout" &
tail_pids+=($!)
tail -q -c +1 -s 0.2 --pid="$uml_pid" -f "$run/stderr" >&2 &
tail_pids+=($!)
if ((console)); then
	tail -q -c +1 -s 0.2 --pid="$uml_pid" -f "$run/console.log" >&2 &
	tail_pids+=($!)
fi

if ((timeout_s > 0)); then
	sleep "$timeout_s" &
	watchdog_pid=$!
fi

timed_out=0
if [[ -n $watchdog_pid ]]; then
	finished=''
	wait -n -p finished "$uml_pid" "$watchdog_pid" 2>/dev/null || true
	if [[ $finished == "$watchdog_pid" ]]; then
		timed_out=1
		watchdog_pid=''
		kill_guest
	else
		kill "$watchdog_pid" 2>/dev/null || true
		wait "$watchdog_pid" 2>/dev/null || true
		watchdog_pid=''
	fi
fi
if [[ -n $uml_pid ]]; then wait "$uml_pid" 2>/dev/null || true; fi
uml_pid=''

# Let the streams drain: each tail stops after its final read, within ~0.2 s of
# linux.uml's exit. Do not hang on one that does not.
for ((i = 0; i < 200; i++)); do
	alive=0
	for p in "${tail_pids[@]}"; do
		if kill -0 "$p" 2>/dev/null; then alive=1; fi
	done
	((alive)) || break
	sleep 0.05
done
for p in "${tail_pids[@]}"; do
	kill "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
done
tail_pids=()

console_tail() {
	printf '%s: ---- last lines of the guest console ----\n' "$prog" >&2
	tail -n "${1:-40}" "$run/console.log" >&2 || true
	printf '%s: ---- end of guest console ----\n' "$prog" >&2
}

last=$(tail -n 1 "$run/status" 2>/dev/null || true)
if ((timed_out)); then
	note "TIMEOUT: the command did not finish within ${timeout_s}s; guest killed"
	console_tail 20
	exit "$EXIT_TIMEOUT"
fi
if [[ $last =~ ^exit\ ([0-9]+)$ ]]; then
	exit "${BASH_REMATCH[1]}"
fi
{
	printf '\n%s: ************************************************************\n' "$prog"
	if [[ $last == fail* ]]; then
		printf '%s: HARNESS FAILURE in the guest init: %s\n' "$prog" "${last#fail }"
	elif [[ $last == run* ]]; then
		printf '%s: HARNESS FAILURE: the guest died while the command was running (no exit status)\n' "$prog"
	else
		printf '%s: HARNESS FAILURE: the guest did not run the command (last stage: %s)\n' "$prog" "${last:-none; kernel did not start init}"
	fi
	printf '%s: kernel %s, modules %s, mem %s in %s\n' "$prog" "$kernel" "$modsrc" "$mem" "$memdir"
	if grep -q 'ptrace set fp regs failed' "$run/console.log" 2>/dev/null; then
		printf '%s: this CPU has a larger XSAVE area than UML 6.1 handles; the shim %s\n' "$prog" "${shim_src:-scripts/uml-xstate-shim.c}"
		printf '%s: fixes that (it needs a C compiler: %s)\n' "$prog" "${xstate_shim:-not built}"
	fi
	printf '%s: ************************************************************\n' "$prog"
} >&2
console_tail 40
exit "$EXIT_HARNESS"
