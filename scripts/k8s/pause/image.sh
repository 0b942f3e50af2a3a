#!/usr/bin/env bash
# image.sh BINARY NAME OUT packages BINARY as /pause in a one-layer image
# named NAME with Entrypoint ["/pause"], written to OUT as a docker-archive
# tarball (manifest.json, config, layer), which `ctr images import` accepts.
# The output depends only on the binary: timestamps and owners are fixed.
set -euo pipefail

bin="$1" name="$2" out="$3"
arch="$(go env GOARCH)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/rootfs" "$work/archive"
install -m 0755 "$bin" "$work/rootfs/pause"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu \
	-C "$work/rootfs" -cf "$work/layer.tar" pause
layer_sum="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"

# The config's JSON has no insignificant whitespace, so its digest is stable.
config="{\"architecture\":\"$arch\",\"os\":\"linux\",\"created\":\"1970-01-01T00:00:00Z\",\"config\":{\"Entrypoint\":[\"/pause\"],\"WorkingDir\":\"/\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_sum\"]},\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"scripts/k8s/pause\"}]}"
printf '%s' "$config" >"$work/config.json"
config_sum="$(sha256sum "$work/config.json" | cut -d' ' -f1)"

mkdir -p "$work/archive/$layer_sum"
mv "$work/layer.tar" "$work/archive/$layer_sum/layer.tar"
mv "$work/config.json" "$work/archive/$config_sum.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
	"$config_sum" "$name" "$layer_sum" >"$work/archive/manifest.json"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu \
	-C "$work/archive" -cf "$out" manifest.json "$config_sum.json" "$layer_sum"
