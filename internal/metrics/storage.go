package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-registry/berth/internal/metadata"
)

// Storage exports what each namespace holds, its quota and its open
// upload sessions from a snapshot that the server refreshes in the
// background (Set): a scrape reads memory, never the database or storage.
type Storage struct {
	mu    sync.RWMutex
	stats []metadata.NamespaceStat

	bytes, blobs, manifests, quota, uploads, uploadLimit *prometheus.Desc
	limit                                                float64
}

// NewStorage returns the collector; uploadLimit is max_upload_sessions.
func NewStorage(uploadLimit int) *Storage {
	ns := []string{"namespace"}
	return &Storage{
		bytes:       prometheus.NewDesc("berth_namespace_bytes", "Bytes a namespace holds as its quota counts them: each blob once, plus its manifests.", ns, nil),
		blobs:       prometheus.NewDesc("berth_namespace_blobs", "Distinct blobs a namespace's repositories hold.", ns, nil),
		manifests:   prometheus.NewDesc("berth_namespace_manifests", "Manifests in a namespace's repositories.", ns, nil),
		quota:       prometheus.NewDesc("berth_namespace_quota_bytes", "A namespace's quota in bytes (only namespaces that have one).", ns, nil),
		uploads:     prometheus.NewDesc("berth_upload_sessions", "Open upload sessions of a namespace.", ns, nil),
		uploadLimit: prometheus.NewDesc("berth_upload_sessions_limit", "Open upload sessions allowed per namespace (max_upload_sessions).", nil, nil),
		limit:       float64(uploadLimit),
	}
}

// Set replaces the snapshot.
func (s *Storage) Set(stats []metadata.NamespaceStat) {
	s.mu.Lock()
	s.stats = stats
	s.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (s *Storage) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.bytes, s.blobs, s.manifests, s.quota, s.uploads, s.uploadLimit} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Storage) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(s.uploadLimit, prometheus.GaugeValue, s.limit)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, st := range s.stats {
		ch <- prometheus.MustNewConstMetric(s.bytes, prometheus.GaugeValue, float64(st.BlobBytes+st.ManifestBytes), st.Namespace)
		ch <- prometheus.MustNewConstMetric(s.blobs, prometheus.GaugeValue, float64(st.Blobs), st.Namespace)
		ch <- prometheus.MustNewConstMetric(s.manifests, prometheus.GaugeValue, float64(st.Manifests), st.Namespace)
		ch <- prometheus.MustNewConstMetric(s.uploads, prometheus.GaugeValue, float64(st.Uploads), st.Namespace)
		if st.Quota > 0 {
			ch <- prometheus.MustNewConstMetric(s.quota, prometheus.GaugeValue, float64(st.Quota), st.Namespace)
		}
	}
}
