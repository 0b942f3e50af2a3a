package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/mirror"
)

// Mirrors returns the collectors of the pull-through mirrors' counts.
func Mirrors(t *mirror.Totals) []prometheus.Collector {
	const fetches = "Requests to mirror upstreams for content since the process started, by kind (a tag re-check is a HEAD)."
	return []prometheus.Collector{
		counter("berth_mirror_upstream_requests_total", fetches, prometheus.Labels{"kind": "manifest"}, t.ManifestFetches.Load),
		counter("berth_mirror_upstream_requests_total", fetches, prometheus.Labels{"kind": "blob"}, t.BlobFetches.Load),
		counter("berth_mirror_upstream_requests_total", fetches, prometheus.Labels{"kind": "tag_check"}, t.TagChecks.Load),
		counter("berth_mirror_upstream_bytes_total", "Blob bytes downloaded from mirror upstreams since the process started.", nil, t.BlobBytes.Load),
		counter("berth_mirror_stale_total", "Tags served from a mirror's cache, stale, because the upstream failed.", nil, t.Stale.Load),
		counter("berth_mirror_upstream_faults_total", "Upstream downloads refused (wrong digest, truncated, failed mid-way); nothing was kept.", nil, t.Faults.Load),
		counter("berth_mirror_shared_pulls_total", "Blob pulls that joined a download of the same blob in progress instead of starting one.", nil, t.Shared.Load),
	}
}
