#!/usr/bin/env bash
# Installs everything berth's tests need on a Debian 12 machine (run as root).
#
#   - Debian packages: docker.io (Docker Engine for the docker e2e test),
#     busybox-static (a static /bin/busybox to put into FROM scratch images),
#     skopeo, docker-registry (CNCF Distribution 2.8, the peer used by the
#     benchmarks; its system service is left stopped: we start it ourselves),
#     containerd (the auth e2e tests run their own containerd instance,
#     with its own root, state and socket, next to Docker's), and
#     postgresql (tests start their own servers with initdb and pg_ctl as
#     the postgres user on loopback ports; the package's own cluster is
#     stopped and kept from starting at boot), and
#     prometheus (the metrics test runs its own server scraping berth; the
#     package's service is stopped), and chromium with fonts-dejavu-core
#     (the console's browser tests drive it headless through chromedp), and
#     slapd with ldap-utils (OpenLDAP: the LDAP sign-in tests run their own
#     slapd with its own cn=config in a temporary directory on loopback
#     ports, and fill it with ldapadd and ldapmodify; the package's own
#     server, which its postinst starts on port 389 with a dc=nodomain
#     database, is stopped and kept from starting at boot).
#   - Go tools built from the Go module proxy, each cached by version in
#     $BERTH_TOOLS_DIR (default ~/.cache/berth-tools, outside the clone) and
#     symlinked into $BERTH_TOOLS_DIR/bin:
#       crane        github.com/google/go-containerregistry/cmd/crane
#       oras         oras.land/oras/cmd/oras
#       conformance  the OCI distribution-spec conformance suite
#       crictl       sigs.k8s.io/cri-tools/cmd/crictl (CRI client: pulls
#                    through containerd's CRI plugin as the kubelet does)
#       helm         helm.sh/helm/v3 (scripts/helm.sh), for the chart test
#       versitygw    github.com/versity/versitygw/cmd/versitygw (an S3
#                    server over a POSIX directory, for the S3 blob store
#                    tests; needs a file system with extended attributes)
#       minio        github.com/minio/minio (a second S3 server for the
#                    S3 tests; about 7 CPU-minutes to build the first time)
#       hydra        github.com/ory/hydra/v2 (the OpenID Connect provider
#                    of the single sign-on tests; cgo, for its SQLite)
#
# Idempotent and fast on a rerun (seconds): apt-get runs only when a package
# is missing, and a Go tool is built only when its version is not cached.
set -euo pipefail

CRANE_VERSION="v0.22.1"
ORAS_VERSION="v1.3.6"
CONFORMANCE_MODULE="github.com/opencontainers/distribution-spec/conformance"
CONFORMANCE_VERSION="v0.0.0-20260831232431-97274622c111"
CRICTL_VERSION="v1.37.0"
VERSITYGW_VERSION="v1.8.0"
# MinIO, a second S3 implementation for the S3 tests (an unmodified binary
# run as a separate server; it is AGPL, its packages are never imported).
# Its module has no release tags: a pseudo-version pins a commit.
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
# Ory Hydra, the OpenID Connect provider of the single sign-on tests.
HYDRA_VERSION="v2.3.0"

APT_PACKAGES=(docker.io busybox-static skopeo docker-registry containerd postgresql prometheus chromium fonts-dejavu-core slapd ldap-utils)

TOOLS_DIR="${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}"
BIN_DIR="$TOOLS_DIR/bin"

log() { echo "test-deps: $*"; }
die() {
	echo "test-deps: error: $*" >&2
	exit 1
}

# pkg_installed reports whether a Debian package is fully installed.
pkg_installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

install_apt_packages() {
	local missing=() p
	for p in "${APT_PACKAGES[@]}"; do
		pkg_installed "$p" || missing+=("$p")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		log "apt packages already installed: ${APT_PACKAGES[*]}"
		return
	fi
	[ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root"
	log "installing apt packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# A fresh machine may have no package lists yet: update and retry once.
	if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
		log "apt-get install failed; running apt-get update and retrying"
		apt-get update
		apt-get install -y --no-install-recommends "${missing[@]}"
	fi
	for p in "${missing[@]}"; do
		pkg_installed "$p" || die "package $p is still not installed"
	done
}

# stop_service NAME PIDFILE makes sure a package's own service is neither
# running nor started at boot: the tests and benchmarks start their own
# instances (Distribution for the benchmarks, Prometheus for the metrics
# test, slapd for the LDAP tests) with their own configuration and ports.
stop_service() {
	local name=$1 pidfile=$2 i
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		if systemctl is-enabled --quiet "$name" 2>/dev/null ||
			systemctl is-active --quiet "$name" 2>/dev/null; then
			log "stopping and disabling the $name systemd service"
			systemctl disable --now "$name" >/dev/null 2>&1 || true
		fi
	elif [ -x "/etc/init.d/$name" ]; then
		if "/etc/init.d/$name" status >/dev/null 2>&1; then
			log "stopping the $name init service"
			"/etc/init.d/$name" stop || true
		fi
		if command -v update-rc.d >/dev/null 2>&1 && ls /etc/rc[2-5].d/S*"$name" >/dev/null 2>&1; then
			update-rc.d "$name" disable >/dev/null 2>&1 || true
		fi
	fi
	# An init script's stop does not wait for the process to exit.
	for i in $(seq 50); do
		[ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null || return 0
		sleep 0.2
	done
	die "the $name service is still running (pid $(cat "$pidfile"))"
}

# go_tool NAME VERSION BUILD_FUNCTION builds a Go tool into
# $TOOLS_DIR/NAME@VERSION/NAME unless it is already there, then points
# $BIN_DIR/NAME at it.
go_tool() {
	local name="$1" version="$2" build="$3"
	local dir="$TOOLS_DIR/$name@$version"
	local target="$dir/$name"
	if [ ! -x "$target" ]; then
		command -v go >/dev/null 2>&1 || die "go is not on PATH (needed to build $name)"
		log "building $name $version (first run only)"
		local tmp
		tmp="$(mktemp -d "$TOOLS_DIR/.build-$name.XXXXXX")"
		# Build into a temporary directory and rename at the end, so an
		# interrupted build never leaves a half-written binary in the cache.
		if ! (cd "$tmp" && "$build" "$tmp/out" "$version"); then
			rm -rf "$tmp"
			die "building $name $version failed"
		fi
		rm -rf "$dir"
		mkdir -p "$dir"
		mv "$tmp/out" "$target"
		rm -rf "$tmp"
	fi
	ln -sfn "$target" "$BIN_DIR/$name"
	log "$name $version: $BIN_DIR/$name"
}

# build_go_install OUT VERSION PACKAGE builds PACKAGE@VERSION to OUT.
build_go_install() {
	local out="$1" version="$2" pkg="$3"
	GOBIN="$(dirname "$out")/gobin" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
		go install -trimpath "$pkg@$version"
	mv "$(dirname "$out")/gobin/$(basename "$pkg")" "$out"
}

build_crane() { build_go_install "$1" "$2" github.com/google/go-containerregistry/cmd/crane; }
build_oras() { build_go_install "$1" "$2" oras.land/oras/cmd/oras; }
build_crictl() { build_go_install "$1" "$2" sigs.k8s.io/cri-tools/cmd/crictl; }
build_versitygw() { build_go_install "$1" "$2" github.com/versity/versitygw/cmd/versitygw; }
build_minio() { build_go_install "$1" "$2" github.com/minio/minio; }

# build_hydra builds Ory Hydra (the OIDC provider of the single sign-on
# tests) inside a throwaway module. Hydra's go.mod replaces gobuffalo/pop
# by Ory's fork, and a dependency's replace directives are ignored, so the
# throwaway module copies that replace from Hydra's own go.mod. Its
# in-memory database is SQLite (mattn/go-sqlite3): cgo and the sqlite tag.
build_hydra() {
	local out="$1" version="$2" gomod pop
	mkdir -p mod
	(
		cd mod
		export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=1
		go mod init berth.invalid/hydra-build >/dev/null 2>&1
		gomod="$(go mod download -json "github.com/ory/hydra/v2@$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
		pop="$(sed -n 's|^[[:space:]]*\(replace[[:space:]]*\)\{0,1\}github.com/gobuffalo/pop/v6 => \(github.com/ory/pop/v6\) \(v[^[:space:]]*\)$|\2@\3|p' "$gomod")"
		[ -n "$pop" ] || { echo "no gobuffalo/pop replace in $gomod" >&2; exit 1; }
		go get -tool "github.com/ory/hydra/v2@$version"
		go mod edit -replace "github.com/gobuffalo/pop/v6=$pop"
		go mod tidy
		nice -n 10 go build -trimpath -buildvcs=false -tags sqlite,sqlite_omit_load_extension -o "$out" github.com/ory/hydra/v2
	)
}

# build_conformance builds the conformance suite, a main package at the root
# of its module, inside a throwaway module that requires it. The version is
# injected as main.Version, which the suite prints as its commit.
build_conformance() {
	local out="$1" version="$2"
	mkdir -p mod
	(
		cd mod
		export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0
		go mod init berth.invalid/conformance-build >/dev/null 2>&1
		go get "$CONFORMANCE_MODULE@$version"
		go build -trimpath -buildvcs=false \
			-ldflags "-X main.Version=$version" \
			-o "$out" "$CONFORMANCE_MODULE"
	)
}

# stop_postgresql_service stops the cluster the Debian package creates and
# starts: tests run their own PostgreSQL servers.
stop_postgresql_service() {
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		if systemctl is-enabled --quiet postgresql 2>/dev/null || systemctl is-active --quiet postgresql 2>/dev/null; then
			log "stopping and disabling the postgresql systemd service"
			systemctl disable --now postgresql >/dev/null 2>&1 || true
		fi
	elif command -v pg_lsclusters >/dev/null 2>&1; then
		local ver name
		while read -r ver name _ status _; do
			if [ "$status" = "online" ]; then
				log "stopping the packaged PostgreSQL cluster $ver/$name"
				pg_ctlcluster "$ver" "$name" stop || true
			fi
		done < <(pg_lsclusters -h 2>/dev/null)
	fi
}

main() {
	local start=$SECONDS
	install_apt_packages
	stop_service docker-registry /var/run/docker-registry.pid
	stop_service prometheus /run/prometheus/prometheus.pid
	# slapd's postinst starts the system server (unless a policy-rc.d
	# forbids it, as in Docker images) listening on ldap:/// (port 389 of
	# every address): stop it and disable it at boot (Debian 12's slapd
	# has only an init script, which systemd wraps in a generated unit:
	# systemctl disable then runs update-rc.d). The pid file is its
	# cn=config's olcPidFile, /var/run/slapd/slapd.pid.
	stop_service slapd /run/slapd/slapd.pid
	stop_postgresql_service
	mkdir -p "$BIN_DIR"
	go_tool crane "$CRANE_VERSION" build_crane
	go_tool oras "$ORAS_VERSION" build_oras
	go_tool conformance "$CONFORMANCE_VERSION" build_conformance
	go_tool crictl "$CRICTL_VERSION" build_crictl
	go_tool versitygw "$VERSITYGW_VERSION" build_versitygw
	go_tool minio "$MINIO_VERSION" build_minio
	go_tool hydra "$HYDRA_VERSION" build_hydra
	bash "$(dirname "${BASH_SOURCE[0]}")/helm.sh" >/dev/null # helm v3.22.0 for the Helm chart test (prints its path; progress on stderr)
	bash "$(dirname "${BASH_SOURCE[0]}")/k8s/build.sh" # etcd, kube-apiserver, kubelet, kubectl, pause image
	log "done in $((SECONDS - start))s; add $BIN_DIR to PATH (the Makefile's test target does)"
}

main "$@"
