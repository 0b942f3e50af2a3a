// Package metrics exports berth's Prometheus metrics: HTTP requests by
// route kind, the registry operations they carry out (pushes, pulls,
// mounts, deletions and their bytes), garbage collection, and the Go
// runtime and process. It knows nothing of the registry's rules; the server
// tells it how to classify a request.
package metrics

import (
	"maps"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berth-registry/berth/internal/httprec"
)

// Route kinds a request is counted under (the label "route"): bounded, never
// a repository name or digest.
const (
	RouteBase      = "base"
	RouteCatalog   = "catalog"
	RouteTags      = "tags"
	RouteManifest  = "manifest"
	RouteBlob      = "blob"
	RouteUpload    = "upload"
	RouteReferrers = "referrers"
	RouteToken     = "token"
	RouteAdmin     = "admin"
	RouteHealth    = "health"
	RouteMetrics   = "metrics"
	RouteConsole   = "console"
	RouteOther     = "other"
)

// Metrics holds berth's collectors in a registry of their own.
type Metrics struct {
	reg *prometheus.Registry

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	received *prometheus.CounterVec
	sent     *prometheus.CounterVec
	// inFlight counts the requests being served (a gauge function reads
	// it: one atomic add per request, not a float compare-and-swap loop).
	inFlight atomic.Int64

	operations *prometheus.CounterVec
	blobBytes  *prometheus.CounterVec
	// blobIn and blobOut are blobBytes' two series.
	blobIn, blobOut prometheus.Counter

	// cache holds the series of each route kind, method and status class
	// seen (bounded: every label is), as a map that is replaced, never
	// changed, so that requests read it without a lock; mu serialises the
	// replacements.
	cache atomic.Pointer[map[childKey]*children]
	mu    sync.Mutex
}

// New returns the metrics of one berth process, with the Go runtime and
// process collectors and a build-info gauge labelled with version.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_requests_total",
			Help: "HTTP requests answered, by route kind, method and status class (2xx, 4xx...).",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_http_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, by route kind and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_request_bytes_total",
			Help: "Bytes of request bodies read, by route kind.",
		}, []string{"route"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_response_bytes_total",
			Help: "Bytes of response bodies written, by route kind.",
		}, []string{"route"}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_registry_operations_total",
			Help: "Registry operations that succeeded: manifest_push, manifest_pull, manifest_delete, blob_upload, blob_mount, blob_pull, blob_delete.",
		}, []string{"operation"}),
		blobBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_registry_blob_bytes_total",
			Help: "Blob bytes received by uploads (direction=in) and sent by blob pulls (direction=out).",
		}, []string{"direction"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "berth_build_info",
		Help:        "Always 1; its labels say which berth runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion()},
	})
	build.Set(1)
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "berth_http_requests_in_flight",
		Help: "Requests being served now.",
	}, func() float64 { return float64(m.inFlight.Load()) })
	m.cache.Store(&map[childKey]*children{})
	reg.MustRegister(m.requests, m.duration, m.received, m.sent, inFlight, m.operations, m.blobBytes, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.blobIn, m.blobOut = m.blobBytes.WithLabelValues("in"), m.blobBytes.WithLabelValues("out")
	return m
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}

// Register adds collectors of other packages (garbage collection, stores).
func (m *Metrics) Register(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Classified is how the server describes a request: its route kind, the
// registry operation it carries out when it succeeds, and whether its body
// (blob bytes in) or its answer (blob bytes out) is blob content.
type Classified struct {
	Route string
	// Operation is counted when the answer's status is SuccessStatus (or
	// any 2xx when that is 0); "" counts none.
	Operation     string
	SuccessStatus int
	// BlobBytes is "in" (an upload's body), "out" (a blob's content) or "".
	BlobBytes string
}

func (c Classified) succeeded(status int) bool {
	if c.SuccessStatus != 0 {
		return status == c.SuccessStatus
	}
	return status/100 == 2
}

// childKey names the series of one route kind, method and status class.
type childKey struct {
	route, method, operation string
	class                    int
}

// children are the series of one childKey, looked up once and kept, so
// that a request costs no label hashing or label slices.
type children struct {
	requests, received, sent prometheus.Counter
	duration                 prometheus.Observer
	// operation counts the registry operation (nil for none).
	operation prometheus.Counter
}

// classes are the status class labels by status/100.
var classes = [...]string{"0xx", "1xx", "2xx", "3xx", "4xx", "5xx"}

func (m *Metrics) children(route, method, operation string, class int) *children {
	k := childKey{route, method, operation, class}
	if ch := (*m.cache.Load())[k]; ch != nil {
		return ch
	}
	label := strconv.Itoa(class) + "xx"
	if class >= 0 && class < len(classes) {
		label = classes[class]
	}
	ch := &children{requests: m.requests.WithLabelValues(route, method, label), duration: m.duration.WithLabelValues(route, method),
		received: m.received.WithLabelValues(route), sent: m.sent.WithLabelValues(route)}
	if operation != "" {
		ch.operation = m.operations.WithLabelValues(operation)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.cache.Load()
	if found := old[k]; found != nil {
		return found
	}
	next := make(map[childKey]*children, len(old)+1)
	maps.Copy(next, old)
	next[k] = ch
	m.cache.Store(&next)
	return ch
}

// Middleware counts and times every request that next serves; classify,
// called once next has answered, names its route kind and operation.
func (m *Metrics) Middleware(classify func(*http.Request) Classified, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Add(1)
		var body *countingBody // only requests with a body pay for counting it
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		cw := httprec.Of(w)
		defer func() {
			m.inFlight.Add(-1)
			c := classify(r)
			status := cw.Answered()
			ch := m.children(c.Route, httprec.Method(r.Method), c.Operation, status/100)
			ch.requests.Inc()
			ch.duration.Observe(time.Since(start).Seconds())
			var received int64
			if body != nil {
				received = body.n
				ch.received.Add(float64(received))
			}
			ch.sent.Add(float64(cw.Bytes))
			if !c.succeeded(status) {
				return
			}
			if ch.operation != nil {
				ch.operation.Inc()
			}
			switch c.BlobBytes {
			case "in":
				m.blobIn.Add(float64(received))
			case "out":
				m.blobOut.Add(float64(cw.Bytes))
			}
		}()
		next.ServeHTTP(cw, r)
	})
}
