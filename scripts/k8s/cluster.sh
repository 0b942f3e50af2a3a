#!/usr/bin/env bash
# cluster.sh up|down|env|forward DIR: a complete single-node Kubernetes for
# berth's end-to-end tests, inside a network namespace of its own.
#
#   up DIR    starts, with all state under DIR and every process inside the
#             network namespace $NETNS: a containerd instance of its own
#             (not Docker's), etcd, kube-apiserver, kube-controller-manager,
#             kube-scheduler, a kubelet, kube-proxy (iptables mode), a pod
#             network (CNI bridge + host-local + portmap) and a local-path
#             volume provisioner (StorageClass berth-local, the default);
#             waits for the node to be Ready and the default ServiceAccount.
#             Running it again on a cluster that is up does nothing; on a
#             half-started one it stops what is left and starts afresh. When
#             it fails it stops what it started (the logs stay in DIR/logs).
#             Exit status 3: a prerequisite (root, a binary) is missing.
#   down DIR  stops everything, removes the network namespace and what the
#             cluster left outside DIR (mounts, network namespaces, kubepods
#             cgroups, kubelet sockets...), then checks that no process,
#             mount, namespace, interface, address or iptables chain of the
#             cluster is left (exit status 1 and a list if one is). Safe to
#             run at any time, also after a failed or partial up, and more
#             than once.
#   env DIR   prints KUBECONFIG=, NODE_NAME=, NODE_IP=, NETNS=,
#             CONTAINERD_SOCKET=, KUBECTL= lines (shell syntax).
#   forward DIR in PORT
#             makes the host's 127.0.0.1:PORT (a registry the tests run)
#             reachable inside the cluster at 127.0.0.1:PORT.
#   forward DIR out PORT [ADDR]
#             makes ADDR inside the cluster (default 127.0.0.1:PORT, e.g. a
#             NodePort) reachable on the host at 127.0.0.1:PORT.
#
# Network isolation: the namespace has a loopback and a dummy interface with
# the node's address ($NODE_IP), the pods' bridge ($POD_SUBNET) and the
# Services' range ($SERVICE_RANGE), all in the benchmarking range
# 198.18.0.0/15 and nowhere else: no veth to the host, no route out, so no
# packet of the cluster's can leave it. The host reaches the cluster only
# through scripts/k8s/nsfwd, which holds a listening socket in one namespace
# and dials in the other (the API server's port, and `forward`).
#
# Needs root and the binaries of scripts/k8s/build.sh. Layout of DIR:
#
#   kubeconfig        cluster-admin kubeconfig (client certificate)
#   certs.d/          containerd's per-registry hosts.toml files: write
#                     certs.d/127.0.0.1:PORT/hosts.toml to pull over plain HTTP
#   logs/             one log per process
#   pod-logs/         the kubelet's pod logs (what `kubectl logs` shows)
#   volumes/          the local-path provisioner's volumes
#   pki/ containerd/ etcd/ kubelet/ cni/ run/   internal
#
# Environment:
#   BERTH_TOOLS_DIR                       where build.sh cached the binaries
#   KUBELET_CREDENTIAL_PROVIDER_CONFIG    passed to the kubelet as
#   KUBELET_CREDENTIAL_PROVIDER_BIN_DIR   --image-credential-provider-config
#                                         and -bin-dir when set
#   BERTH_K8S_OWNER_PID                   if set, a watchdog runs `down` when
#                                         this process exits (a test binary
#                                         killed before its cleanup)
#   BERTH_K8S_WAIT                        seconds `up` waits for another
#                                         cluster on this machine to go away
#                                         (default 600): one at a time, as the
#                                         kubelet has machine-wide paths
#
# The node is called "localhost" so that the API server reaches the kubelet
# (kubectl logs/exec) at localhost:PORT: a kubelet refuses 127.0.0.1 as its
# node IP, and listens on loopback only.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_NAME="localhost"
NETNS="berth-k8s"
NETNS_PATH="/run/netns/$NETNS"
NODE_IF="berth-node"
NODE_IP="198.18.0.2"
CNI_NETWORK="berth-k8s"
CNI_BRIDGE="berthk8s0"
POD_SUBNET="198.18.1.0/24"
SERVICE_RANGE="198.18.2.0/24"
# The first address of SERVICE_RANGE: the kubernetes Service's.
APISERVER_SERVICE_IP="198.18.2.1"
STORAGE_CLASS="berth-local"
PROVISIONER="berth.invalid/local-path"
CNI_BIN_DIR="/usr/lib/cni"
GLOBAL_DIR="/run/berth-k8s"
SANE_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT=180
# Set by cmd_up (pick_port).
ETCD_PORT="" ETCD_PEER_PORT="" APISERVER_PORT="" KUBELET_PORT="" KUBELET_HEALTHZ_PORT=""
PROXY_HEALTHZ_PORT="" PROXY_METRICS_PORT=""

log() { echo "k8s cluster: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# unmet MESSAGE: a prerequisite is missing (exit status 3, which the tests
# turn into a skip, or a failure under CI=true).
unmet() {
	log "error: $*"
	exit 3
}

usage() {
	echo "usage: $0 up|down|env DIR | forward DIR in PORT | forward DIR out PORT [ADDR]" >&2
	exit 2
}

# ---------------------------------------------------------------- helpers

# set_paths DIR defines the paths of a cluster rooted at DIR.
set_paths() {
	DIR="$1"
	PKI="$DIR/pki"
	LOGS="$DIR/logs"
	RUN="$DIR/run"
	CTRD="$DIR/containerd"
	CTRD_SOCK="$CTRD/containerd.sock"
	KUBELET_ROOT="$DIR/kubelet"
	KUBECONFIG_FILE="$DIR/kubeconfig"
	KUBECTL="$K8S_DIR/kubectl"
	VOLUMES="$DIR/volumes"
	NSFWD="$(program_dir nsfwd)/nsfwd"
}

# in_ns CMD... runs CMD in the cluster's network namespace (and only that
# namespace: the kubelet, containerd and the shims share the host's mounts).
in_ns() { nsenter --net="$NETNS_PATH" -- "$@"; }

kubectl_() { in_ns "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=20s "$@"; }

# read_cmdline PID sets CMDLINE to a process's command line (arguments
# joined by spaces), without forking: pids_of reads every process's.
CMDLINE=""
read_cmdline() {
	local -a args
	CMDLINE=""
	mapfile -d '' -t args 2>/dev/null <"/proc/$1/cmdline" || return 1
	CMDLINE="${args[*]}"
}

# pids_of DIR [WORD] prints the processes whose command line mentions DIR/
# (and WORD), except this script's own processes.
pids_of() {
	local d pid cmd
	for d in /proc/[0-9]*; do
		pid="${d#/proc/}"
		read_cmdline "$pid" || continue
		cmd="$CMDLINE"
		case "$cmd" in
		*cluster.sh*) continue ;;
		*"$1/"*) ;;
		*) continue ;;
		esac
		[ -z "${2:-}" ] || case "$cmd" in *"$2"*) ;; *) continue ;; esac
		echo "$pid"
	done
}

# stop_pids SECONDS PID... sends SIGTERM, waits up to SECONDS, then SIGKILL.
stop_pids() {
	local wait="$1" pid i alive
	shift
	[ "$#" -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null || true
	for ((i = 0; i < wait * 10; i++)); do
		alive=0
		for pid in "$@"; do
			if kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
				alive=1
			fi
		done
		[ "$alive" -eq 1 ] || return 0
		sleep 0.1
	done
	kill -KILL "$@" 2>/dev/null || true
	sleep 0.2
}

# pick_port VAR sets VAR to a free TCP port below the kernel's ephemeral
# range (so it cannot collide with ports tests get by binding port 0).
PICKED=" "
pick_port() {
	local used p _
	used=" $(ss -Htan 2>/dev/null | awk '{n=split($4,a,":"); print a[n]}' | tr '\n' ' ')$PICKED"
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		case "$used" in *" $p "*) continue ;; esac
		PICKED+="$p "
		printf -v "$1" '%s' "$p"
		return 0
	done
	die "no free port found"
}

# start_daemon NAME CMD... starts a daemon in the cluster's network namespace
# and a session of its own, with its output in logs/NAME.log, and records its
# pid in run/NAME.pid.
start_daemon() {
	local name="$1"
	shift
	setsid nsenter --net="$NETNS_PATH" -- "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
	echo "$!" >"$RUN/$name.pid"
}

# alive NAME reports whether the daemon NAME of this cluster runs.
alive() {
	local pid
	pid="$(cat "$RUN/$1.pid" 2>/dev/null)" || return 1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	read_cmdline "$pid" || return 1
	case "$CMDLINE" in *"$DIR/"*) return 0 ;; esac
	return 1
}

# wait_for WHAT DAEMON CMD... runs CMD until it succeeds, failing early when
# DAEMON has exited and after START_TIMEOUT seconds.
wait_for() {
	local what="$1" daemon="$2" deadline=$((SECONDS + START_TIMEOUT))
	shift 2
	until "$@" >/dev/null 2>&1; do
		alive "$daemon" || die "$daemon exited while waiting for $what; $LOGS/$daemon.log ends with:
$(tail -n 30 "$LOGS/$daemon.log" 2>/dev/null | cut -c1-300)"
		[ "$SECONDS" -lt "$deadline" ] || die "timed out after ${START_TIMEOUT}s waiting for $what; $LOGS/$daemon.log ends with:
$(tail -n 30 "$LOGS/$daemon.log" 2>/dev/null | cut -c1-300)"
		sleep 0.3
	done
}

# ------------------------------------------------------------- certificates

# cert NAME SUBJECT EXT... makes NAME.key/NAME.crt signed by the cluster CA.
cert() {
	local name="$1" subj="$2" ext=() e
	shift 2
	for e in "$@"; do ext+=(-addext "$e"); done
	openssl req -config "$PKI/openssl.cnf" -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" "${ext[@]}" 2>/dev/null
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days 3650 -copy_extensions copyall \
		-out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr"
}

make_pki() {
	[ -f "$PKI/done" ] && return
	rm -rf "$PKI"
	mkdir -p "$PKI"
	printf '[req]\ndistinguished_name=dn\n[dn]\n' >"$PKI/openssl.cnf"
	openssl req -config "$PKI/openssl.cnf" -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 3650 -subj "/CN=berth-e2e-ca" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
	cert apiserver "/CN=kube-apiserver" \
		"subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:$NODE_IP,IP:$APISERVER_SERVICE_IP" \
		"extendedKeyUsage=serverAuth" "keyUsage=critical,digitalSignature,keyEncipherment"
	cert admin "/O=system:masters/CN=berth-e2e-admin" \
		"extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment"
	cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" \
		"extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment"
	openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
	openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	chmod 600 "$PKI"/*.key
	touch "$PKI/done"
}

# kubeconfig FILE USER writes a kubeconfig for the cert pair pki/USER.
kubeconfig() {
	local file="$1" user="$2"
	cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: berth-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$user.crt")
    client-key-data: $(base64 -w0 "$PKI/$user.key")
contexts:
- name: berth-e2e
  context:
    cluster: berth-e2e
    user: $user
current-context: berth-e2e
EOF
	chmod 600 "$file"
}

# ---------------------------------------------------------------- daemons

start_containerd() {
	mkdir -p "$CTRD" "$DIR/certs.d" "$DIR/cni/net.d" "$DIR/cni/ipam"
	cat >"$DIR/cni/net.d/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$DIR/cni/ipam"
      }
    },
    {
      "type": "portmap",
      "capabilities": {"portMappings": true}
    }
  ]
}
EOF
	cat >"$CTRD/config.toml" <<EOF
version = 2
root = "$CTRD/root"
state = "$CTRD/state"
oom_score = 0
# Plugins that would otherwise write outside DIR or probe for nothing.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # runc cannot start a sandbox that lowers oom_score_adj on these machines.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    # One directory per registry host: certs.d/127.0.0.1:PORT/hosts.toml.
    config_path = "$DIR/certs.d"
EOF
	start_daemon containerd env -i PATH="$SANE_PATH" HOME="$DIR/run/home" \
		containerd --config "$CTRD/config.toml" --log-level warn
	wait_for "containerd's socket" containerd ctr --address "$CTRD_SOCK" version
	ctr --address "$CTRD_SOCK" -n k8s.io images import "$PAUSE_TAR" >>"$LOGS/containerd.log" 2>&1 ||
		die "importing $PAUSE_TAR into containerd failed; see $LOGS/containerd.log"
}

start_etcd() {
	start_daemon etcd "$ETCD_DIR/etcd" \
		--name berth-e2e \
		--data-dir "$DIR/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "berth-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
		--unsafe-no-fsync \
		--log-level warn
}

start_apiserver() {
	start_daemon kube-apiserver "$K8S_DIR/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 0.0.0.0 \
		--advertise-address "$NODE_IP" \
		--secure-port "$APISERVER_PORT" \
		--tls-cert-file "$PKI/apiserver.crt" \
		--tls-private-key-file "$PKI/apiserver.key" \
		--client-ca-file "$PKI/ca.crt" \
		--kubelet-client-certificate "$PKI/admin.crt" \
		--kubelet-client-key "$PKI/admin.key" \
		--service-account-issuer https://kubernetes.default.svc \
		--service-account-key-file "$PKI/sa.pub" \
		--service-account-signing-key-file "$PKI/sa.key" \
		--service-cluster-ip-range "$SERVICE_RANGE" \
		--authorization-mode Node,RBAC \
		--anonymous-auth=false \
		--allow-privileged=true \
		--enable-priority-and-fairness=false \
		--profiling=false \
		--v 1
}

start_kubelet() {
	local home="$DIR/run/home" args=()
	mkdir -p "$KUBELET_ROOT" "$home" "$DIR/pod-logs"
	kubeconfig "$KUBELET_ROOT/kubeconfig" kubelet
	cat >"$KUBELET_ROOT/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
failSwapOn: false
# The sandbox may not lower oom_score_adj (see restrict_oom_score_adj).
oomScoreAdj: 0
# kube-proxy makes the chains it needs.
makeIPTablesUtilChains: false
podLogsDir: $DIR/pod-logs
volumePluginDir: $KUBELET_ROOT/volume-plugins
registerNode: true
rotateCertificates: false
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
EOF
	[ -z "${KUBELET_CREDENTIAL_PROVIDER_CONFIG:-}" ] ||
		args+=(--image-credential-provider-config "$KUBELET_CREDENTIAL_PROVIDER_CONFIG")
	[ -z "${KUBELET_CREDENTIAL_PROVIDER_BIN_DIR:-}" ] ||
		args+=(--image-credential-provider-bin-dir "$KUBELET_CREDENTIAL_PROVIDER_BIN_DIR")
	# HOME and the working directory are an empty directory: the kubelet
	# reads $HOME/.docker/config.json and ./.dockercfg as node-wide
	# credentials, which would let Pods pull without their Secrets.
	(
		cd "$home"
		start_daemon kubelet env -i PATH="$SANE_PATH" HOME="$home" \
			"$K8S_DIR/kubelet" \
			--config "$KUBELET_ROOT/config.yaml" \
			--kubeconfig "$KUBELET_ROOT/kubeconfig" \
			--root-dir "$KUBELET_ROOT" \
			--cert-dir "$KUBELET_ROOT/pki" \
			--hostname-override "$NODE_NAME" \
			--node-ip "$NODE_IP" \
			"${args[@]}" \
			--v 1
	)
}

# component_kubeconfig writes the kubeconfig the control-plane components,
# kube-proxy and the provisioner use (cluster-admin: a test cluster).
component_kubeconfig() { kubeconfig "$RUN/components.kubeconfig" admin; }

start_controller_manager() {
	start_daemon kube-controller-manager "$K8S_DIR/kube-controller-manager" \
		--kubeconfig "$RUN/components.kubeconfig" \
		--secure-port 0 \
		--leader-elect=false \
		--service-account-private-key-file "$PKI/sa.key" \
		--root-ca-file "$PKI/ca.crt" \
		--cluster-signing-cert-file "$PKI/ca.crt" \
		--cluster-signing-key-file "$PKI/ca.key" \
		--service-cluster-ip-range "$SERVICE_RANGE" \
		--cluster-cidr "$POD_SUBNET" \
		--allocate-node-cidrs=false \
		--profiling=false \
		--v 1
}

start_scheduler() {
	start_daemon kube-scheduler "$K8S_DIR/kube-scheduler" \
		--kubeconfig "$RUN/components.kubeconfig" \
		--secure-port 0 \
		--leader-elect=false \
		--profiling=false \
		--v 1
}

start_kube_proxy() {
	mkdir -p "$DIR/kube-proxy"
	cat >"$DIR/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $RUN/components.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_SUBNET
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
iptables:
  # NodePorts answer on 127.0.0.1 too (route_localnet, inside the
  # namespace): the node pulls from 127.0.0.1:NODEPORT, the address the
  # host reaches through nsfwd.
  localhostNodePorts: true
conntrack:
  # nf_conntrack_max is machine-wide: leave it alone.
  maxPerCore: 0
  min: 0
EOF
	start_daemon kube-proxy "$K8S_DIR/kube-proxy" --config "$DIR/kube-proxy/config.yaml" --v 1
}

# start_provisioner runs provisioner.sh, which gives each PersistentVolumeClaim
# of StorageClass $STORAGE_CLASS a hostPath volume under DIR/volumes.
start_provisioner() {
	mkdir -p "$VOLUMES" "$DIR/run/home"
	# HOME is the cluster's: kubectl keeps its discovery cache in
	# $HOME/.kube, which without HOME is ./.kube in the caller's directory.
	start_daemon provisioner env -i PATH="$SANE_PATH" HOME="$DIR/run/home" \
		bash "$K8S_LIB_DIR/provisioner.sh" "$KUBECTL" "$RUN/components.kubeconfig" \
		"$STORAGE_CLASS" "$PROVISIONER" "$VOLUMES/"
}

storage_class() {
	kubectl_ apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $STORAGE_CLASS
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: $PROVISIONER
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
}

# ------------------------------------------------------------------ network

# setup_netns creates the cluster's network namespace: loopback, and a veth
# pair whose both ends stay inside (the kernel has no dummy interfaces). One
# end holds the node's address and a default route into nothing (components
# want one); its peer is down, so a packet sent there is dropped.
setup_netns() {
	if [ -e "$NETNS_PATH" ]; then
		log "removing a stale network namespace $NETNS"
		ip netns delete "$NETNS" 2>/dev/null || true
	fi
	ip netns add "$NETNS"
	in_ns ip link set lo up
	in_ns ip link add "$NODE_IF" type veth peer name "$NODE_IF-peer"
	in_ns ip addr add "$NODE_IP/32" dev "$NODE_IF"
	in_ns ip link set "$NODE_IF" up
	in_ns ip route add default dev "$NODE_IF"
	in_ns sysctl -qw net.ipv4.ip_forward=1
	# Pod-to-Service-to-pod on one bridge needs the bridge's frames to pass
	# through iptables (kube-proxy's DNAT), per namespace.
	in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

# start_forward NAME FORWARD... runs nsfwd on the host with the forwards
# (see nsfwd's usage) and waits until it listens.
start_forward() {
	local name="$1" pid i
	shift
	alive "$name" && return 0
	: >"$LOGS/$name.log"
	setsid "$NSFWD" -netns "$NETNS_PATH" -pidfile "$RUN/$name.pid" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		grep -qx ready "$LOGS/$name.log" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || die "nsfwd $* failed: $(tail -n 3 "$LOGS/$name.log")"
		sleep 0.1
	done
	die "nsfwd $* did not start"
}

# cmd_forward in|out PORT [ADDR]: see the usage at the top.
cmd_forward() {
	local way="$1" port="$2" addr="${3:-}"
	[ -f "$RUN/up" ] || die "no cluster at $DIR"
	[[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got $port"
	case "$way" in
	in)
		[ -z "$addr" ] || die "forward in takes no ADDR"
		start_forward "forward-in-$port" "ns:127.0.0.1:$port=host:127.0.0.1:$port"
		;;
	out) start_forward "forward-out-$port" "host:127.0.0.1:$port=ns:${addr:-127.0.0.1:$port}" ;;
	*) usage ;;
	esac
}

node_ready() {
	[ "$(kubectl_ get node "$NODE_NAME" \
		-o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# default_namespace_objects creates what the controller-manager would: the
# default ServiceAccount and the kube-root-ca.crt ConfigMap.
default_namespace_objects() {
	local ca
	ca="$(sed 's/^/    /' "$PKI/ca.crt")"
	kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: default
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kube-root-ca.crt
  namespace: default
data:
  ca.crt: |
$ca
EOF
}

# ------------------------------------------------------------ one at a time

# A cluster owns machine-wide paths (/var/lib/kubelet/device-plugins,
# /var/log/containers, kubepods cgroups, the CNI bridge): only one runs at a
# time. $GLOBAL_DIR/owner names the DIR of the running one.

# cluster_running DIR reports whether any process of the cluster at DIR runs.
cluster_running() { [ -n "$(pids_of "$1")" ]; }

claim_machine() {
	local deadline=$((SECONDS + ${BERTH_K8S_WAIT:-600})) owner said=0
	mkdir -p "$GLOBAL_DIR"
	while :; do
		exec 8>"$GLOBAL_DIR/lock"
		flock 8
		owner="$(cat "$GLOBAL_DIR/owner" 2>/dev/null || true)"
		if [ -z "$owner" ] || [ "$owner" = "$DIR" ]; then
			break
		fi
		exec 8>&-
		if ! cluster_running "$owner"; then
			# Its down removes it as the owner.
			log "cleaning up after the stale cluster at $owner"
			"$SELF" down "$owner" >&2 || true
			sed -i "\|^$owner\$|d" "$GLOBAL_DIR/owner" 2>/dev/null || true
			continue
		fi
		[ "$SECONDS" -lt "$deadline" ] ||
			die "another cluster is running at $owner (stop it with: $SELF down $owner)"
		[ "$said" -eq 1 ] || log "waiting for the cluster at $owner to stop"
		said=1
		sleep 2
	done
	echo "$DIR" >"$GLOBAL_DIR/owner"
	exec 8>&-
}

release_machine() {
	[ -d "$GLOBAL_DIR" ] || return 0
	exec 8>"$GLOBAL_DIR/lock"
	flock 8
	if [ "$(cat "$GLOBAL_DIR/owner" 2>/dev/null || true)" = "$DIR" ]; then
		rm -f "$GLOBAL_DIR/owner"
	fi
	exec 8>&-
}

# -------------------------------------------------------------------- up

write_env() {
	cat >"$RUN/env" <<EOF
KUBECONFIG=$KUBECONFIG_FILE
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
NETNS=$NETNS
CONTAINERD_SOCKET=$CTRD_SOCK
KUBECTL=$KUBECTL
EOF
}

cmd_up() {
	local start=$SECONDS b
	[ "$(id -u)" -eq 0 ] || unmet "needs root (the kubelet and containerd do)"
	for b in openssl ss containerd ctr runc containerd-shim-runc-v2 setsid flock nsenter ip iptables sysctl; do
		command -v "$b" >/dev/null 2>&1 ||
			unmet "$b not found; install the test dependencies with: bash scripts/test-deps.sh"
	done
	PAUSE_TAR="$(program_dir pause)/pause.tar"
	for b in "$ETCD_DIR/etcd" "${K8S_BINARIES[@]/#/$K8S_DIR/}" "$PAUSE_TAR" "$NSFWD" \
		"$CNI_BIN_DIR/bridge" "$CNI_BIN_DIR/host-local" "$CNI_BIN_DIR/portmap"; do
		[ -e "$b" ] || unmet "$b is missing; build it with: bash scripts/k8s/build.sh"
	done
	mkdir -p "$DIR"

	# Already up: nothing to do.
	if [ -f "$RUN/up" ] && alive containerd && alive etcd && alive kube-apiserver && alive kubelet &&
		alive kube-controller-manager && alive kube-scheduler && alive kube-proxy && alive provisioner &&
		alive apiserver-forward && node_ready; then
		log "already up at $DIR"
		return 0
	fi
	# Anything left of an earlier attempt goes first.
	if [ -d "$RUN" ] || cluster_running "$DIR"; then
		cmd_down >&2
	fi
	claim_machine
	mkdir -p "$LOGS" "$RUN"
	trap 'up_failed' EXIT
	touch "$RUN/up"
	snapshot_globals

	pick_port ETCD_PORT
	pick_port ETCD_PEER_PORT
	pick_port APISERVER_PORT
	pick_port KUBELET_PORT
	pick_port KUBELET_HEALTHZ_PORT
	pick_port PROXY_HEALTHZ_PORT
	pick_port PROXY_METRICS_PORT
	make_pki
	kubeconfig "$KUBECONFIG_FILE" admin
	component_kubeconfig
	write_env

	start_watchdog
	setup_netns
	# etcd and the API server (the slowest to start) start while containerd
	# starts and the pause image is imported.
	start_etcd
	start_apiserver
	start_containerd
	wait_for "etcd" etcd in_ns bash -c "exec 3<>/dev/tcp/127.0.0.1/$ETCD_PORT"
	start_forward apiserver-forward "host:127.0.0.1:$APISERVER_PORT=ns:127.0.0.1:$APISERVER_PORT"
	wait_for "kube-apiserver /readyz" kube-apiserver kubectl_ get --raw /readyz
	start_controller_manager
	start_scheduler
	wait_for "the default namespace's objects" kube-apiserver default_namespace_objects
	wait_for "StorageClass $STORAGE_CLASS" kube-apiserver storage_class
	start_kubelet
	start_kube_proxy
	start_provisioner
	wait_for "node $NODE_NAME to be Ready" kubelet node_ready
	# The admission plugin TaintNodesByCondition gave the node a not-ready
	# taint; the node controller lifts it too, but only after its next sync.
	kubectl_ taint node "$NODE_NAME" node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
	wait_for "the default ServiceAccount" kube-controller-manager kubectl_ get serviceaccount default -n default
	trap - EXIT
	log "up in $((SECONDS - start))s at $DIR (node $NODE_NAME Ready in network namespace $NETNS; KUBECONFIG=$KUBECONFIG_FILE)"
}

up_failed() {
	local rc=$?
	trap - EXIT
	[ "$rc" -ne 0 ] || return 0
	log "up failed; stopping what was started (logs stay in $LOGS)"
	cmd_down >&2 || true
	exit "$rc"
}

# start_watchdog runs `down` when BERTH_K8S_OWNER_PID exits before `down`
# has been run (a test binary killed by its timeout, say).
start_watchdog() {
	local owner="${BERTH_K8S_OWNER_PID:-}"
	[ -n "$owner" ] || return 0
	kill -0 "$owner" 2>/dev/null || die "BERTH_K8S_OWNER_PID=$owner is not running"
	# shellcheck disable=SC2016 # expanded by the watchdog's shell
	setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -f "$2/run/up" ]; do sleep 2; done
		if [ -f "$2/run/up" ]; then echo "owner $1 exited: tearing down"; exec "$3" down "$2"; fi' \
		watchdog "$owner" "$DIR" "$SELF" </dev/null >>"$LOGS/watchdog.log" 2>&1 &
	echo "$!" >"$RUN/watchdog.pid"
}

# snapshot_globals records the machine-wide things that exist before the
# cluster starts, so that `down` removes only what the cluster added.
snapshot_globals() {
	find /run/netns -maxdepth 1 -name 'cni-*' 2>/dev/null | sort >"$RUN/netns.before" || true
	local p
	for p in /var/lib/kubelet /var/lib/kubelet/device-plugins /var/log/containers /run/netns \
		/var/lib/cni /var/lib/cni/results; do
		[ -e "$p" ] && echo "$p"
	done >"$RUN/paths.before" || true
	iptables-save 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p' | sort -u >"$RUN/chains.before" || true
	host_links >"$RUN/links.before"
	nft_tables >"$RUN/nft.before"
}

# nft_tables prints the host's nftables tables, sorted (nothing without nft).
nft_tables() { if command -v nft >/dev/null 2>&1; then nft list tables 2>/dev/null | sort; fi; }

# host_links prints the names of the host's network interfaces, sorted.
host_links() { ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | sort; }

# The teardown: cmd_down, left_behind, cleanup_globals.
# shellcheck source=teardown.sh
source "$(dirname "${BASH_SOURCE[0]}")/teardown.sh"

# -------------------------------------------------------------------- main

main() {
	[ "$#" -ge 2 ] || usage
	[ -n "$2" ] || usage
	local dir cmd="$1"
	dir="$(realpath -m "$2")"
	[ "$dir" != / ] || die "DIR may not be /"
	set_paths "$dir"
	shift 2
	case "$cmd" in
	up | down | env) [ "$#" -eq 0 ] || usage ;;
	forward) [ "$#" -ge 2 ] && [ "$#" -le 3 ] || usage ;;
	esac
	case "$cmd" in
	up) cmd_up ;;
	down) cmd_down ;;
	env)
		[ -f "$RUN/env" ] || die "no cluster at $DIR"
		cat "$RUN/env"
		;;
	forward) cmd_forward "$@" ;;
	*) usage ;;
	esac
}

main "$@"
