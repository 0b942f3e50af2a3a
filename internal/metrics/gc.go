package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/gc"
)

// counter exports a running total of another package, read at scrape time
// (no query, no storage scan).
func counter(name, help string, labels prometheus.Labels, v func() int64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
		func() float64 { return float64(v()) })
}

// GC returns collectors of garbage collection's running totals.
func GC(t *gc.Totals) []prometheus.Collector {
	const removed = "What garbage collection removed since the process started: retention's tags, manifests, blob links, blobs."
	return []prometheus.Collector{
		counter("berth_gc_runs_total", "Garbage collections run (not dry runs) since the process started.", nil, t.Runs.Load),
		counter("berth_gc_failures_total", "Garbage collections (not dry runs) that failed since the process started (the log says why).", nil, t.Failures.Load),
		counter("berth_gc_freed_bytes_total", "Bytes of blob content garbage collection deleted since the process started.", nil, t.Bytes.Load),
		counter("berth_gc_removed_total", removed, prometheus.Labels{"what": "tags"}, t.Tags.Load),
		counter("berth_gc_removed_total", removed, prometheus.Labels{"what": "manifests"}, t.Manifests.Load),
		counter("berth_gc_removed_total", removed, prometheus.Labels{"what": "blob_links"}, t.BlobLinks.Load),
		counter("berth_gc_removed_total", removed, prometheus.Labels{"what": "blobs"}, t.Blobs.Load),
	}
}
