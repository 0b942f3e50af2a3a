#!/usr/bin/env bash
# provisioner.sh KUBECTL KUBECONFIG CLASS PROVISIONER VOLUMES/: the test
# cluster's volume provisioner (cluster.sh runs it), for a single node.
#
# Every second it gives each PersistentVolumeClaim of StorageClass CLASS that
# has no volume a hostPath PersistentVolume pre-bound to it (claimRef): a
# directory VOLUMES/pvc-<uid>, mode 0777 so that Pods running as any user
# can write (hostPath volumes get no fsGroup). The PersistentVolume
# controller then binds the two. A Released volume of its own (its claim
# deleted; reclaim policy Delete) loses its directory and is deleted.
# kubectl's errors go to its log (cluster.sh: DIR/logs/provisioner.log).
set -uo pipefail

KUBECTL="$1" KUBECONFIG_FILE="$2" CLASS="$3" PROVISIONER="$4" VOLUMES="${5%/}"

k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=20s "$@"; }
log() { echo "[$(date -u +%FT%TZ)] $*"; }

provision() {
	local ns="$1" name="$2" uid="$3" size="$4" mode="$5" pv="pvc-$3"
	local dir="$VOLUMES/$pv"
	mkdir -p "$dir" && chmod 0777 "$dir" || return 1
	k apply -f - >/dev/null <<PV || return 1
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $pv
  annotations:
    pv.kubernetes.io/provisioned-by: $PROVISIONER
spec:
  capacity:
    storage: $size
  accessModes: [$mode]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: $CLASS
  claimRef:
    namespace: $ns
    name: $name
    uid: $uid
  hostPath:
    path: $dir
    type: Directory
PV
	log "provisioned $pv for $ns/$name ($size, $mode) at $dir"
}

reclaim() {
	local pv="$1" path="$2"
	case "$path" in "$VOLUMES"/pvc-*) rm -rf -- "$path" ;; esac
	k delete pv "$pv" --wait=false >/dev/null && log "deleted $pv and $path"
}

while :; do
	k get pvc -A -o jsonpath="{range .items[?(@.spec.storageClassName==\"$CLASS\")]}{.metadata.namespace}{\" \"}{.metadata.name}{\" \"}{.metadata.uid}{\" \"}{.spec.resources.requests.storage}{\" \"}{.spec.accessModes[0]}{\" \"}{.spec.volumeName}{\"\\n\"}{end}" |
		while read -r ns name uid size mode volume; do
			[ -z "$volume" ] || continue
			k get pv "pvc-$uid" >/dev/null 2>&1 && continue
			provision "$ns" "$name" "$uid" "$size" "${mode:-ReadWriteOnce}" || log "provisioning $ns/$name failed"
		done
	k get pv -o jsonpath="{range .items[?(@.status.phase==\"Released\")]}{.metadata.name}{\" \"}{.metadata.annotations.pv\\.kubernetes\\.io/provisioned-by}{\" \"}{.spec.hostPath.path}{\"\\n\"}{end}" |
		while read -r pv by path; do
			[ "$by" = "$PROVISIONER" ] && reclaim "$pv" "$path"
		done
	sleep 1
done
