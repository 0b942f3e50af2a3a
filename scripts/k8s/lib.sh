# shellcheck shell=bash disable=SC2034
# Shared settings of scripts/k8s/build.sh and scripts/k8s/cluster.sh: the
# versions of the Kubernetes pieces and where build.sh caches them. Sourced,
# not run.

K8S_VERSION="v1.34.4"
ETCD_VERSION="v3.6.16"
# PAUSE_IMAGE is the name the pause image is imported under; containerd's
# sandbox_image points at it. It never leaves the machine: nothing pulls it.
PAUSE_IMAGE="localhost/berth-pause:1"

K8S_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="${BERTH_TOOLS_DIR:-$HOME/.cache/berth-tools}"
BIN_DIR="$TOOLS_DIR/bin"
K8S_DIR="$TOOLS_DIR/k8s-$K8S_VERSION"
ETCD_DIR="$TOOLS_DIR/etcd-$ETCD_VERSION"
K8S_BINARIES=(kube-apiserver kubelet kubectl kube-scheduler kube-controller-manager kube-proxy)

# pause_dir prints the cache directory of the pause image tarball. Its name
# carries a hash of the program's source and of the packaging code, so a
# change to either builds a new image.
pause_dir() {
	local sum
	sum="$(cat "$K8S_LIB_DIR/pause/main.go" "$K8S_LIB_DIR/pause/go.mod" "$K8S_LIB_DIR/pause/image.sh" |
		sha256sum | cut -c1-12)"
	echo "$TOOLS_DIR/pause-$sum"
}

# nsfwd_dir prints the cache directory of the nsfwd binary (the forwarder
# between the host and the cluster's network namespace), named by a hash of
# its source.
nsfwd_dir() {
	local sum
	sum="$(cat "$K8S_LIB_DIR"/nsfwd/*.go "$K8S_LIB_DIR/nsfwd/go.mod" | sha256sum | cut -c1-12)"
	echo "$TOOLS_DIR/nsfwd-$sum"
}
