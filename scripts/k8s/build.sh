#!/usr/bin/env bash
# Builds what scripts/k8s/cluster.sh runs, from the Go module proxy, cached by
# version in $BERTH_TOOLS_DIR (default ~/.cache/berth-tools):
#
#   k8s-<version>/   kube-apiserver, kube-controller-manager, kube-scheduler,
#                    kube-proxy, kubelet, kubectl
#   etcd-<version>/  etcd
#   pause-<hash>/    pause.tar: the sandbox image, a docker-archive tarball
#                    for `ctr -n k8s.io images import`
#   nsfwd-<hash>/    nsfwd: forwards TCP between the host and the cluster's
#                    network namespace (scripts/k8s/nsfwd)
#
# and links the binaries into $BERTH_TOOLS_DIR/bin. It also makes sure the
# Debian packages cluster.sh needs (containerd, runc, CNI plugins) are there.
#
# `go install` refuses k8s.io/kubernetes and etcd's server (their go.mod files
# have replace directives), so each is built inside a throwaway module that
# requires it; for Kubernetes that module replaces each staging module
# (k8s.io/api, k8s.io/client-go...) by its published v0.X.Y version.
#
# A cold build (empty Go build and module caches) took 6 minutes on 2 idle
# cores, 5 of them for the Kubernetes binaries, and can take 20 on busy ones;
# it runs under `nice` so the machine stays responsive.
# Reruns take seconds. Build output goes to $BERTH_TOOLS_DIR/k8s-build.log;
# the script prints a one-line summary.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_PACKAGES=(containerd runc containernetworking-plugins iptables iproute2)
LOG="$TOOLS_DIR/k8s-build.log"

die() {
	echo "k8s build: error: $*" >&2
	echo "k8s build: see $LOG" >&2
	exit 1
}

# note appends a time-stamped line to the log.
note() { echo "[$(date -u +%FT%TZ)] $*" >>"$LOG"; }

# gobuild runs the go command niced, with settings for a throwaway module.
gobuild() {
	GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 \
		nice -n 10 go "$@" >>"$LOG" 2>&1
}

pkg_installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

install_apt_packages() {
	local missing=() p
	for p in "${APT_PACKAGES[@]}"; do
		pkg_installed "$p" || missing+=("$p")
	done
	[ "${#missing[@]}" -eq 0 ] && return
	[ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root"
	note "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1; then
		apt-get update >>"$LOG" 2>&1
		apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1 ||
			die "apt-get install ${missing[*]} failed"
	fi
	summary+=("apt: ${missing[*]}")
}

# build_etcd builds etcd (the main package at the root of etcd's server
# module) into $ETCD_DIR.
build_etcd() {
	if [ -x "$ETCD_DIR/etcd" ]; then
		summary+=("etcd $ETCD_VERSION cached")
		return
	fi
	local start=$SECONDS tmp
	note "building etcd $ETCD_VERSION"
	tmp="$(mktemp -d "$TOOLS_DIR/.build-etcd.XXXXXX")"
	(
		cd "$tmp"
		gobuild mod init berth.invalid/etcd-build
		gobuild get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
		gobuild build -trimpath -ldflags "-s -w" -o "$tmp/out/etcd" go.etcd.io/etcd/server/v3
	) || {
		rm -rf "$tmp"
		die "building etcd $ETCD_VERSION failed"
	}
	rm -rf "$ETCD_DIR"
	mv "$tmp/out" "$ETCD_DIR"
	rm -rf "$tmp"
	summary+=("etcd $ETCD_VERSION built in $((SECONDS - start))s")
}

# k8s_gomod writes the throwaway module's go.mod: k8s.io/kubernetes at
# $K8S_VERSION, with every staging module it replaces by a local directory
# replaced instead by the published version (v1.X.Y -> v0.X.Y).
k8s_gomod() {
	local staging_version="v0.${K8S_VERSION#v1.}" upstream mods m
	upstream="$(GOWORK=off GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
	[ -f "$upstream" ] || die "cannot download k8s.io/kubernetes@$K8S_VERSION's go.mod"
	mods="$(sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*$|\1|p' "$upstream")"
	[ -n "$mods" ] || die "no staging modules found in $upstream"
	{
		echo "module berth.invalid/k8s-build"
		echo
		# The same Go version and GODEBUG defaults as Kubernetes's own build.
		sed -n 's/^go \(.*\)$/go \1/p; s/^godebug \(.*\)$/godebug \1/p' "$upstream"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo "replace ("
		for m in $mods; do
			echo "	$m => $m $staging_version"
		done
		echo ")"
	} >go.mod
	note "go.mod with $(echo "$mods" | wc -w) staging replacements"
}

# build_k8s builds whichever of kube-apiserver, kubelet and kubectl are not
# cached yet, in one go build (they share most of their packages).
build_k8s() {
	local todo=() pkgs=() b
	for b in "${K8S_BINARIES[@]}"; do
		[ -x "$K8S_DIR/$b" ] || todo+=("$b")
	done
	if [ "${#todo[@]}" -eq 0 ]; then
		summary+=("k8s $K8S_VERSION cached")
		return
	fi
	local start=$SECONDS tmp info date
	note "building ${todo[*]} $K8S_VERSION"
	for b in "${todo[@]}"; do
		pkgs+=("k8s.io/kubernetes/cmd/$b")
	done
	tmp="$(mktemp -d "$TOOLS_DIR/.build-k8s.XXXXXX")"
	(
		cd "$tmp"
		k8s_gomod
		gobuild get "k8s.io/kubernetes@$K8S_VERSION"
		# Version stamps as in Kubernetes's own build (hack/lib/version.sh):
		# without them the binaries call themselves v0.0.0-master.
		info="$(GOWORK=off go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
			sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$/\1/p')"
		date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")"
		local minor="${K8S_VERSION#v1.}" ldflags="-s -w" p
		minor="${minor%%.*}"
		for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
			ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=${date:-1970-01-01T00:00:00Z}"
		done
		mkdir -p out
		gobuild build -trimpath -ldflags "$ldflags" -o out/ "${pkgs[@]}"
	) || {
		rm -rf "$tmp"
		die "building ${todo[*]} $K8S_VERSION failed"
	}
	mkdir -p "$K8S_DIR"
	for b in "${todo[@]}"; do
		mv "$tmp/out/$b" "$K8S_DIR/$b"
	done
	rm -rf "$tmp"
	summary+=("${todo[*]} $K8S_VERSION built in $((SECONDS - start))s")
}

# build_program NAME FILE [PACKAGE] builds the Go program scripts/k8s/NAME
# into program_dir NAME, unless FILE is there already; PACKAGE, a function,
# is then given the build directory holding the binary NAME, to make FILE.
build_program() {
	local name="$1" file="$2" package="${3:-}" dir tmp
	dir="$(program_dir "$name")"
	if [ -e "$dir/$file" ]; then
		summary+=("$name cached")
		return
	fi
	note "building $name into $dir"
	tmp="$(mktemp -d "$TOOLS_DIR/.build-$name.XXXXXX")"
	(
		cd "$K8S_LIB_DIR/$name"
		GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
			go build -trimpath -ldflags "-s -w" -o "$tmp/$name" . >>"$LOG" 2>&1
		[ -z "$package" ] || "$package" "$tmp" >>"$LOG" 2>&1
	) || {
		rm -rf "$tmp"
		die "building $name failed"
	}
	rm -rf "$dir"
	mv "$tmp" "$dir"
	summary+=("$name built")
}

# package_pause makes the sandbox image tarball DIR/pause.tar of DIR/pause.
package_pause() { "$K8S_LIB_DIR/pause/image.sh" "$1/pause" "$PAUSE_IMAGE" "$1/pause.tar"; }

main() {
	local start=$SECONDS summary=() b
	mkdir -p "$BIN_DIR"
	command -v go >/dev/null 2>&1 || die "go is not on PATH"
	# One build at a time: a second run waits for the first, then finds
	# everything cached.
	exec 9>"$TOOLS_DIR/.k8s-build.lock"
	flock 9
	note "=== scripts/k8s/build.sh: k8s $K8S_VERSION, etcd $ETCD_VERSION"
	install_apt_packages
	build_program pause pause.tar package_pause
	build_program nsfwd nsfwd
	build_etcd
	build_k8s
	ln -sfn "$ETCD_DIR/etcd" "$BIN_DIR/etcd"
	for b in "${K8S_BINARIES[@]}"; do
		ln -sfn "$K8S_DIR/$b" "$BIN_DIR/$b"
	done
	note "done in $((SECONDS - start))s"
	local line="" part
	for part in "${summary[@]}"; do
		line+="${line:+, }$part"
	done
	echo "k8s build: $line; total $((SECONDS - start))s (log: $LOG)"
}

main "$@"
