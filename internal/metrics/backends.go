package metrics

import (
	"database/sql"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// backendBuckets are the latency buckets of metadata transactions and S3
// requests: from a fraction of a millisecond (SQLite reads the page cache)
// to the tens of seconds of a slow multipart copy.
var backendBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// S3 counts and times the requests of the S3 blob store; Observe is its
// blobstore.S3Observer.
type S3 struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewS3 returns the S3 request metrics.
func NewS3() *S3 {
	return &S3{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_s3_requests_total",
			Help: "Requests sent to S3 (each attempt), by operation (PutObject, HeadObject...) and outcome (ok, not_found, precondition_failed, client_error, throttled, server_error, network_error, canceled).",
		}, []string{"operation", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_s3_request_duration_seconds",
			Help:    "Time from sending an S3 request to its answer, by operation.",
			Buckets: backendBuckets,
		}, []string{"operation"}),
	}
}

// Observe records one S3 request. Operations are the S3 client's
// operation names, a bounded set.
func (m *S3) Observe(operation, outcome string, elapsed time.Duration) {
	m.requests.WithLabelValues(operation, outcome).Inc()
	m.duration.WithLabelValues(operation).Observe(elapsed.Seconds())
}

// Collectors returns the collectors to register.
func (m *S3) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration}
}

// MetadataTx times the metadata store's write transactions and counts
// their retries; it is a metadata.TxObserver.
type MetadataTx struct {
	duration *prometheus.HistogramVec
	retries  prometheus.Counter
}

// NewMetadataTx returns the metadata transaction metrics.
func NewMetadataTx() *MetadataTx {
	m := &MetadataTx{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_metadata_transaction_duration_seconds",
			Help:    "Time a metadata write transaction took, group commit wait and retries included, by outcome (committed, rolled_back).",
			Buckets: backendBuckets,
		}, []string{"outcome"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_metadata_transaction_retries_total",
			Help: "Metadata write transactions run again after a serialization failure or deadlock (PostgreSQL).",
		}),
	}
	for _, outcome := range []string{"committed", "rolled_back"} { // exported from the start, at 0
		m.duration.WithLabelValues(outcome)
	}
	return m
}

// TxDone records a finished transaction.
func (m *MetadataTx) TxDone(outcome string, elapsed time.Duration) {
	m.duration.WithLabelValues(outcome).Observe(elapsed.Seconds())
}

// TxRetried counts a retry.
func (m *MetadataTx) TxRetried() { m.retries.Inc() }

// Collectors returns the collectors to register.
func (m *MetadataTx) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.duration, m.retries}
}

// DBPools returns collectors of database connection pools' statistics
// (go_sql_* with the label db_name), one per named pool.
func DBPools(pools map[string]*sql.DB) []prometheus.Collector {
	names := make([]string, 0, len(pools))
	for name := range pools {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]prometheus.Collector, 0, len(names))
	for _, name := range names {
		out = append(out, collectors.NewDBStatsCollector(pools[name], name))
	}
	return out
}

// MetadataCache returns collectors of a replica's metadata read cache
// (PostgreSQL): its answers by result, its invalidations, and whether it
// answers (its notification connection is up); stats reads the counters.
func MetadataCache(stats func() (hits, misses, invalidations uint64, on bool)) []prometheus.Collector {
	counter := func(name, help string, labels prometheus.Labels, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v()) })
	}
	const reqName, reqHelp = "berth_metadata_cache_requests_total", "Manifest and blob-link reads asked of the metadata read cache, by result (hit: answered from memory; miss: asked the database)."
	return []prometheus.Collector{
		counter(reqName, reqHelp, prometheus.Labels{"result": "hit"}, func() uint64 { h, _, _, _ := stats(); return h }),
		counter(reqName, reqHelp, prometheus.Labels{"result": "miss"}, func() uint64 { _, m, _, _ := stats(); return m }),
		counter("berth_metadata_cache_invalidations_total", "Invalidations applied to the metadata read cache: notifications of other replicas' and this one's writes, and this replica's own writes.", nil,
			func() uint64 { _, _, i, _ := stats(); return i }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "berth_metadata_cache_up", Help: "1 when the metadata read cache answers (its notification connection is up), 0 when it is off or reconnecting."},
			func() float64 {
				if _, _, _, on := stats(); on {
					return 1
				}
				return 0
			}),
	}
}
