# shellcheck shell=bash
# The teardown half of scripts/k8s/cluster.sh (`down`): stopping what the
# cluster runs, removing what it left outside DIR, and checking that nothing
# is left. Sourced by cluster.sh, not run.

# unmount_under PATH unmounts every mount at or below PATH, deepest first.
unmount_under() {
	local m
	awk -v p="$1" '{ m = $5; gsub(/\\040/, " ", m); if (m == p || index(m, p "/") == 1) print m }' \
		/proc/self/mountinfo | sort -r | while IFS= read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
}

# kill_kubepods kills what runs in the kubepods cgroups and removes them.
kill_kubepods() {
	local ctl dirs d i p
	for i in 1 2 3; do
		for ctl in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
			[ -d "$ctl" ] || continue
			find "$ctl" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do
				kill -KILL "$p" 2>/dev/null || true
			done
		done
		sleep 0.2
		for ctl in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
			[ -d "$ctl" ] || continue
			dirs="$(find "$ctl" -depth -type d 2>/dev/null)"
			for d in $dirs; do rmdir "$d" 2>/dev/null || true; done
		done
		compgen -G "/sys/fs/cgroup/*/kubepods" >/dev/null || [ -d /sys/fs/cgroup/kubepods ] || return 0
	done
}

cmd_down() {
	local start=$SECONDS pids p
	[ "$(id -u)" -eq 0 ] || die "needs root"
	rm -f "$RUN/up"
	# The watchdog, unless this is the watchdog.
	p="$(cat "$RUN/watchdog.pid" 2>/dev/null || true)"
	if [ -n "$p" ] && [ "$p" != "$$" ]; then kill "$p" 2>/dev/null || true; fi

	# The kubelet first, so that it restarts nothing; then the Pods, through
	# the CRI so that their network is torn down properly (with a long
	# timeout: crictl's 2 s default can leak a network namespace).
	# shellcheck disable=SC2046
	stop_pids 10 $(pids_of "$DIR" "$K8S_DIR/kubelet")
	if [ -S "$CTRD_SOCK" ] && [ -n "$(pids_of "$DIR" "containerd --config")" ]; then
		local crictl
		crictl="$(command -v crictl || echo "$BIN_DIR/crictl")"
		if [ -x "$crictl" ]; then
			"$crictl" --runtime-endpoint "unix://$CTRD_SOCK" --image-endpoint "unix://$CTRD_SOCK" \
				--timeout 60s rmp --all --force >/dev/null 2>&1 || true
		fi
	fi
	# containerd and its shims (these name the socket under DIR), then what
	# still runs in the Pods' cgroups.
	# shellcheck disable=SC2046
	stop_pids 10 $(pids_of "$DIR" "containerd --config")
	# shellcheck disable=SC2046
	stop_pids 5 $(pids_of "$DIR" containerd-shim)
	kill_kubepods
	# The API server's other clients, so that it has no watches to drain.
	local c
	for c in kube-controller-manager kube-scheduler kube-proxy provisioner.sh nsfwd; do
		# shellcheck disable=SC2046
		stop_pids 10 $(pids_of "$DIR" "$c")
	done
	# shellcheck disable=SC2046
	stop_pids 15 $(pids_of "$DIR" kube-apiserver)
	# shellcheck disable=SC2046
	stop_pids 10 $(pids_of "$DIR" etcd)
	# Anything else still naming DIR.
	pids="$(pids_of "$DIR")"
	# shellcheck disable=SC2086
	[ -z "$pids" ] || stop_pids 5 $pids

	unmount_under "$DIR"
	cleanup_globals
	if [ -e "$NETNS_PATH" ]; then
		ip netns delete "$NETNS" 2>/dev/null || { umount -l "$NETNS_PATH" 2>/dev/null; rm -f "$NETNS_PATH"; }
	fi
	release_machine
	left_behind || return 1
	log "down in $((SECONDS - start))s at $DIR"
}

# left_behind reports (and fails on) anything of the cluster's that is still
# there after down: processes, mounts under DIR, network namespaces, host
# interfaces, addresses and routes in 198.18.0.0/15, iptables chains,
# nftables tables, kubepods cgroups.
left_behind() {
	local found=() p c
	p="$(pids_of "$DIR")"
	[ -z "$p" ] || found+=("processes: $(echo "$p" | tr '\n' ' ')")
	p="$(awk -v p="$DIR" '{ m = $5; gsub(/\\040/, " ", m); if (m == p || index(m, p "/") == 1) print m }' /proc/self/mountinfo)"
	[ -z "$p" ] || found+=("mounts: $(echo "$p" | tr '\n' ' ')")
	[ ! -e "$NETNS_PATH" ] || found+=("network namespace $NETNS")
	if [ -f "$RUN/netns.before" ]; then
		for p in /run/netns/cni-*; do
			[ -e "$p" ] || continue
			grep -qxF "$p" "$RUN/netns.before" || found+=("network namespace $p")
		done
	fi
	if [ -f "$RUN/links.before" ]; then
		p="$(host_links | comm -13 "$RUN/links.before" -)"
		[ -z "$p" ] || found+=("host interfaces: $(echo "$p" | tr '\n' ' ')")
	fi
	p="$( (ip -o -4 addr show; ip -4 route show) 2>/dev/null | grep -E '(^| )198\.1[89]\.' || true)"
	[ -z "$p" ] || found+=("host addresses or routes in 198.18.0.0/15: $p")
	if command -v iptables-save >/dev/null 2>&1; then
		for c in $(iptables-save 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p' | sort -u); do
			grep -qxF "$c" "$RUN/chains.before" 2>/dev/null || found+=("iptables chain $c")
		done
	fi
	if [ -f "$RUN/nft.before" ]; then
		p="$(nft_tables | comm -13 "$RUN/nft.before" -)"
		[ -z "$p" ] || found+=("nftables tables: $(echo "$p" | tr '\n' ' ')")
	fi
	for p in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
		[ -d "$p" ] && found+=("cgroup $p")
	done
	[ "${#found[@]}" -eq 0 ] && return 0
	log "error: left behind after down:"
	for p in "${found[@]}"; do log "  $p"; done
	return 1
}

# cleanup_globals removes what the cluster left outside DIR.
cleanup_globals() {
	local ns f
	# Network namespaces created since up (by this cluster: one at a time).
	for ns in /run/netns/cni-*; do
		[ -e "$ns" ] || continue
		grep -qxF "$ns" "$RUN/netns.before" 2>/dev/null && continue
		[ -f "$RUN/netns.before" ] || continue
		umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
		rm -f "$ns"
	done
	ip link delete "$CNI_BRIDGE" >/dev/null 2>&1 || true
	# libcni's cached results: <network>-<sandbox id>-<interface>, for our
	# network and for containerd's built-in "cni-loopback".
	rm -f /var/lib/cni/results/"$CNI_NETWORK"-* 2>/dev/null || true
	for f in "$CTRD"/root/io.containerd.grpc.v1.cri/sandboxes/*; do
		[ -d "$f" ] || continue
		rm -f /var/lib/cni/results/*-"$(basename "$f")"-* 2>/dev/null || true
	done
	# The kubelet's logs symlinks into DIR/pod-logs and its device-plugin
	# socket and checkpoint, which do not follow --root-dir.
	for f in /var/log/containers/*; do
		[ -L "$f" ] || continue
		case "$(readlink "$f")" in "$DIR/"*) rm -f "$f" ;; esac
	done
	rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
	for f in /var/log/containers /var/lib/kubelet/device-plugins /var/lib/kubelet /run/netns \
		/var/lib/cni/results /var/lib/cni; do
		grep -qxF "$f" "$RUN/paths.before" 2>/dev/null || rmdir "$f" 2>/dev/null || true
	done
	# Shim sockets (containerd 1.6 puts them in /run/containerd/s whatever
	# its state directory; Docker's containerd shares it): the stale ones
	# this cluster's shims left, i.e. newer than the cluster and with no
	# process listening.
	if [ -d /run/containerd/s ] && [ -f "$RUN/netns.before" ]; then
		local listening
		listening="$(ss -Hxl 2>/dev/null | awk '{print $5}')"
		find /run/containerd/s -maxdepth 1 -type s -newer "$RUN/netns.before" 2>/dev/null | while IFS= read -r f; do
			grep -qxF "$f" <<<"$listening" || rm -f "$f"
		done
	fi
	# iptables chains a kubelet creates (KUBE-FIREWALL...) if told to (it is
	# not: makeIPTablesUtilChains is false).
	if [ -f "$RUN/chains.before" ] && command -v iptables-save >/dev/null 2>&1; then
		local t c b ipt
		for ipt in iptables ip6tables; do
			command -v "$ipt" >/dev/null 2>&1 || continue
			for t in mangle nat filter; do
				for c in $("$ipt-save" -t "$t" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
					grep -qxF "$c" "$RUN/chains.before" && continue
					for b in INPUT OUTPUT FORWARD PREROUTING POSTROUTING; do
						while "$ipt" -t "$t" -D "$b" -j "$c" 2>/dev/null; do :; done
					done
					"$ipt" -t "$t" -F "$c" 2>/dev/null || true
					"$ipt" -t "$t" -X "$c" 2>/dev/null || true
				done
			done
		done
	fi
}
