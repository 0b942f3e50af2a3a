package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/gc"
)

// GC returns collectors of garbage collection's running totals, read at
// scrape time (no query, no storage scan).
func GC(t *gc.Totals) []prometheus.Collector {
	removed := func(what string, v func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "berth_gc_removed_total",
			Help:        "What garbage collection removed since the process started: retention's tags, manifests, blob links, blobs.",
			ConstLabels: prometheus.Labels{"what": what},
		}, func() float64 { return float64(v()) })
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "berth_gc_runs_total",
			Help: "Garbage collections run (not dry runs) since the process started.",
		}, func() float64 { return float64(t.Runs.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "berth_gc_freed_bytes_total",
			Help: "Bytes of blob content garbage collection deleted since the process started.",
		}, func() float64 { return float64(t.Bytes.Load()) }),
		removed("tags", t.Tags.Load),
		removed("manifests", t.Manifests.Load),
		removed("blob_links", t.BlobLinks.Load),
		removed("blobs", t.Blobs.Load),
	}
}
