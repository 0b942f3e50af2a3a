#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy (helm.sh/helm/v3) for the Helm
# chart test (test/e2e/helm_test.go) and for `helm install` of
# deploy/helm/berth, cached by version like the tools of scripts/test-deps.sh:
#
#   $BERTH_TOOLS_DIR/helm@<version>/helm    the binary (built once)
#   $BERTH_TOOLS_DIR/bin/helm               a symlink to it
#
# BERTH_TOOLS_DIR defaults to ~/.cache/berth-tools. On a rerun with the
# version cached it only refreshes the symlink. It prints the binary's path on
# standard output (progress goes to standard error), so that
#
#   HELM="$(bash scripts/helm.sh)"
#
# works. A cold build compiles a few hundred packages: minutes on 2 cores; it
# runs under `nice`.
set -euo pipefail

HELM_VERSION="v3.22.0"
HELM_PACKAGE="helm.sh/helm/v3/cmd/helm"
# The Kubernetes version helm assumes without a cluster (helm template, helm
# lint): helm's own Makefile derives it from its k8s.io/client-go (v0.37.0 in
# helm v3.22.0 -> 1.37); without these flags a go-installed helm says 1.20
# and refuses charts with a newer kubeVersion.
HELM_K8S_MAJOR="1"
HELM_K8S_MINOR="37"
HELM_LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
	HELM_LDFLAGS+=" -X $pkg.k8sVersionMajor=$HELM_K8S_MAJOR -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
done

TOOLS_DIR="${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}"
BIN_DIR="$TOOLS_DIR/bin"
DIR="$TOOLS_DIR/helm@$HELM_VERSION"
TARGET="$DIR/helm"

log() { echo "helm.sh: $*" >&2; }
die() {
	echo "helm.sh: error: $*" >&2
	exit 1
}

mkdir -p "$BIN_DIR"
if [ ! -x "$TARGET" ]; then
	command -v go >/dev/null 2>&1 || die "go is not on PATH (needed to build helm)"
	log "building helm $HELM_VERSION from the Go module proxy (first run only)"
	tmp="$(mktemp -d "$TOOLS_DIR/.build-helm.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	# Build into a temporary directory and rename at the end, so that an
	# interrupted build never leaves a half-written binary in the cache. The
	# build runs outside any module (cd "$tmp"), so berth's go.mod plays no part.
	if ! (cd "$tmp" && GOBIN="$tmp/gobin" GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
		nice -n 10 go install -trimpath -ldflags "$HELM_LDFLAGS" "$HELM_PACKAGE@$HELM_VERSION" >&2); then
		die "building helm $HELM_VERSION failed"
	fi
	"$tmp/gobin/helm" version --short >/dev/null 2>&1 || die "the freshly built helm does not run"
	rm -rf "$DIR"
	mkdir -p "$tmp/final"
	mv "$tmp/gobin/helm" "$tmp/final/helm"
	mv "$tmp/final" "$DIR"
fi
ln -sfn "$TARGET" "$BIN_DIR/helm"
log "helm $HELM_VERSION: $BIN_DIR/helm"
echo "$TARGET"
