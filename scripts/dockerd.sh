#!/usr/bin/env bash
# Starts a Docker Engine for the end-to-end tests if none answers yet.
#
# The daemon runs without iptables rules and without the default bridge
# (this machine has no outside network, and containers are run with
# --network none), in the background, logging to $BERTH_DOCKERD_LOG
# (default /tmp/berth-dockerd.log). Idempotent: when `docker info` already
# answers it does nothing. Needs root and the docker.io package
# (bash scripts/test-deps.sh installs it).
set -euo pipefail

log="${BERTH_DOCKERD_LOG:-/tmp/berth-dockerd.log}"
timeout_s="${BERTH_DOCKERD_TIMEOUT:-60}"

# Prefer Debian's client, which matches Debian's daemon; any docker on PATH
# negotiates the API version, so it works too.
docker_cli() {
	if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi
}

if docker_cli info >/dev/null 2>&1; then
	echo "dockerd.sh: Docker Engine already running"
	exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
	echo "dockerd.sh: dockerd not found; run: bash scripts/test-deps.sh" >&2
	exit 1
fi

# A daemon we (or someone) started may still be coming up: only start a new
# one when no dockerd process exists.
if ! pgrep -x dockerd >/dev/null 2>&1; then
	echo "dockerd.sh: starting dockerd (log: $log)"
	# A stale pid file from a killed daemon makes dockerd refuse to start.
	if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
		rm -f /var/run/docker.pid
	fi
	nohup dockerd --iptables=false --bridge=none >>"$log" 2>&1 </dev/null &
	disown || true
fi

deadline=$((SECONDS + timeout_s))
until docker_cli info >/dev/null 2>&1; do
	if [ "$SECONDS" -ge "$deadline" ]; then
		echo "dockerd.sh: Docker Engine did not answer within ${timeout_s}s; last log lines:" >&2
		tail -n 30 "$log" >&2 || true
		exit 1
	fi
	sleep 0.5
done
echo "dockerd.sh: Docker Engine ready ($(docker_cli version --format '{{.Server.Version}}' 2>/dev/null || echo unknown))"
