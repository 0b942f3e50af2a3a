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

# program_dir NAME prints the cache directory of the build of scripts/k8s/NAME
# (pause: the sandbox image tarball; nsfwd: the forwarder between the host
# and the cluster's network namespace). Its name carries a hash of every file
# of the program, packaging included, so a change to any builds it anew.
program_dir() {
	local sum
	sum="$(find "$K8S_LIB_DIR/$1" -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-12)"
	echo "$TOOLS_DIR/$1-$sum"
}
