package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/berth-registry/berth/internal/testserver"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes what berth
// exports to /v1/traces and keeps the spans.
type otlpReceiver struct {
	URL string

	mu       sync.Mutex
	requests int
	spans    []*tracepb.Span
	services map[string]bool
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &otlpReceiver{URL: "http://" + ln.Addr().String(), services: map[string]bool{}}
	srv := &http.Server{Handler: http.HandlerFunc(rc.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return rc
}

func (rc *otlpReceiver) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.Error(w, "not an OTLP trace export", http.StatusNotFound)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "want application/x-protobuf, got "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var req collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.add(&req)
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// add keeps the spans of one export.
func (rc *otlpReceiver) add(req *collectorpb.ExportTraceServiceRequest) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	for _, rs := range req.GetResourceSpans() {
		if name, ok := otlpAttr(rs.GetResource().GetAttributes(), "service.name"); ok {
			rc.services[name] = true
		}
		for _, ss := range rs.GetScopeSpans() {
			rc.spans = append(rc.spans, ss.GetSpans()...)
		}
	}
}

// grpcTraceService is the OTLP/gRPC trace service of a receiver.
type grpcTraceService struct {
	collectorpb.UnimplementedTraceServiceServer
	rc *otlpReceiver
}

// Export keeps the spans of one export.
func (g grpcTraceService) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	g.rc.add(req)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// startOTLPGRPCReceiver is an OTLP/gRPC trace receiver (plain text).
func startOTLPGRPCReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &otlpReceiver{URL: "http://" + ln.Addr().String(), services: map[string]bool{}}
	srv := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(srv, grpcTraceService{rc: rc})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return rc
}

// snapshot returns the spans received so far and the number of exports.
func (rc *otlpReceiver) snapshot() ([]*tracepb.Span, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*tracepb.Span(nil), rc.spans...), rc.requests
}

// waitFor polls the received spans until ok accepts them or 20 s pass,
// and returns the last spans seen.
func (rc *otlpReceiver) waitFor(ok func([]*tracepb.Span) bool) []*tracepb.Span {
	deadline := time.Now().Add(20 * time.Second)
	for {
		spans, _ := rc.snapshot()
		if ok(spans) || time.Now().After(deadline) {
			return spans
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func otlpAttr(kvs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			v := kv.GetValue()
			if s, ok := v.GetValue().(*commonpb.AnyValue_StringValue); ok {
				return s.StringValue, true
			}
			if i, ok := v.GetValue().(*commonpb.AnyValue_IntValue); ok {
				return fmt.Sprint(i.IntValue), true
			}
			return v.String(), true
		}
	}
	return "", false
}

// tracedPush is one push sent with W3C trace context: every request
// carries the trace id and a parent span id of its own.
type tracedPush struct {
	traceID                     string // 32 hex
	uploadStart, upload, manput string // parent span ids (16 hex) of the requests
}

func newTracedPush(t *testing.T) *tracedPush {
	return &tracedPush{traceID: randomHex(t, 16), uploadStart: randomHex(t, 8), upload: randomHex(t, 8), manput: randomHex(t, 8)}
}

func (p *tracedPush) header(parent string) reqOpt {
	return reqHeader("traceparent", "00-"+p.traceID+"-"+parent+"-01")
}

// run pushes an image to base/repo:tag: the config monolithically, the
// layer with POST then PUT, then the manifest.
func (p *tracedPush) run(t *testing.T, base, repo, tag string) {
	t.Helper()
	img := newOCIImage(t, testFile{Name: "hello.txt", Data: []byte("traced " + randomHex(t, 8))})
	r := authDo(t, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/?digest="+img.ConfigDigest, img.Config,
		reqHeader("Content-Type", "application/octet-stream"))
	if r.Status != http.StatusCreated {
		t.Fatalf("monolithic config upload: %s", r)
	}
	r = authDo(t, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil, p.header(p.uploadStart))
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST upload: %s", r)
	}
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = base + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	r = authDo(t, http.MethodPut, loc+sep+"digest="+img.LayerDigest, img.Layer,
		p.header(p.upload), reqHeader("Content-Type", "application/octet-stream"))
	if r.Status != http.StatusCreated {
		t.Fatalf("PUT upload: %s", r)
	}
	r = authDo(t, http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, img.Manifest,
		p.header(p.manput), reqHeader("Content-Type", mediaTypeOCIManifest))
	if r.Status != http.StatusCreated {
		t.Fatalf("PUT manifest: %s", r)
	}
}

// spanIndex finds spans by their ids.
type spanIndex []*tracepb.Span

// server returns the server span whose parent is the incoming span parent.
func (ix spanIndex) server(parent string) *tracepb.Span {
	for _, s := range ix {
		if hex.EncodeToString(s.GetParentSpanId()) == parent && s.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
			return s
		}
	}
	return nil
}

// children returns the spans whose parent is s.
func (ix spanIndex) children(s *tracepb.Span) []*tracepb.Span {
	var out []*tracepb.Span
	for _, c := range ix {
		if bytes.Equal(c.GetParentSpanId(), s.GetSpanId()) && bytes.Equal(c.GetTraceId(), s.GetTraceId()) {
			out = append(out, c)
		}
	}
	return out
}

// child returns the child of s with the given name, or nil.
func (ix spanIndex) child(s *tracepb.Span, name string) *tracepb.Span {
	for _, c := range ix.children(s) {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

func spanNames(spans []*tracepb.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.GetName()+"("+strings.TrimPrefix(s.GetKind().String(), "SPAN_KIND_")+")")
	}
	return out
}

// complete reports whether the spans of p's three requests and their
// metadata and blob store children have all arrived.
func (p *tracedPush) complete(spans []*tracepb.Span, storeChild string) bool {
	ix := spanIndex(spans)
	up, man, start := ix.server(p.upload), ix.server(p.manput), ix.server(p.uploadStart)
	return up != nil && man != nil && start != nil &&
		(ix.child(up, "blobstore.CommitUpload") != nil || ix.child(up, "blobstore.PutUpload") != nil) && ix.child(up, "metadata.LinkBlob") != nil &&
		ix.child(man, "metadata.PutManifest") != nil && (storeChild == "" || ix.child(up, storeChild) != nil)
}

// checkServerSpan checks a request's server span: the incoming trace id,
// the incoming span as parent, its name and HTTP attributes.
func checkServerSpan(t *testing.T, s *tracepb.Span, traceID, parent, name, method, status string) {
	t.Helper()
	if s == nil {
		t.Fatalf("no server span with parent %s", parent)
	}
	if got := hex.EncodeToString(s.GetTraceId()); got != traceID {
		t.Errorf("%s: trace id %s, want the incoming %s", name, got, traceID)
	}
	if got := hex.EncodeToString(s.GetParentSpanId()); got != parent {
		t.Errorf("%s: parent span %s, want the incoming %s", name, got, parent)
	}
	if s.GetName() != name {
		t.Errorf("server span named %q, want %q", s.GetName(), name)
	}
	if s.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("%s: kind %v, want SERVER", name, s.GetKind())
	}
	for key, want := range map[string]string{"http.request.method": method, "http.response.status_code": status} {
		if got, _ := otlpAttr(s.GetAttributes(), key); got != want {
			t.Errorf("%s: %s=%q, want %q", name, key, got, want)
		}
	}
	if got, _ := otlpAttr(s.GetAttributes(), "berth.repository"); got == "" {
		t.Errorf("%s: no berth.repository attribute", name)
	}
}

// checkChild checks that parent has a child span of the given name and
// kind (and attributes).
func checkChild(t *testing.T, ix spanIndex, parent *tracepb.Span, name string, kind tracepb.Span_SpanKind, attrs map[string]string) {
	t.Helper()
	c := ix.child(parent, name)
	if c == nil {
		t.Errorf("%s has no child span %s; its children: %v", parent.GetName(), name, spanNames(ix.children(parent)))
		return
	}
	if c.GetKind() != kind {
		t.Errorf("%s: kind %v, want %v", name, c.GetKind(), kind)
	}
	if c.GetEndTimeUnixNano() < c.GetStartTimeUnixNano() || c.GetStartTimeUnixNano() < parent.GetStartTimeUnixNano() ||
		c.GetEndTimeUnixNano() > parent.GetEndTimeUnixNano() {
		t.Errorf("%s does not lie within %s", name, parent.GetName())
	}
	for key, want := range attrs {
		if got, _ := otlpAttr(c.GetAttributes(), key); got != want {
			t.Errorf("%s: %s=%q, want %q", name, key, got, want)
		}
	}
}

// TestTracingPush exports berth's spans to an in-test OTLP/HTTP receiver
// and checks a push's: each request's server span continues the client's
// W3C trace (trace id, parent span), and has child spans for the metadata
// transactions and blob store calls it made.
func TestTracingPush(t *testing.T) {
	rc := startOTLPReceiver(t)
	b := start(t, launch{Args: []string{"--auth=none"}, Env: []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + rc.URL, "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_SERVICE_NAME=",
	}})
	p := newTracedPush(t)
	p.run(t, b.URL, "traced/app", "v1")
	spans := rc.waitFor(func(s []*tracepb.Span) bool { return p.complete(s, "") })
	ix := spanIndex(spans)
	if !p.complete(spans, "") {
		t.Fatalf("the push's spans did not all arrive; got %d spans: %v", len(spans), spanNames(spans))
	}
	up, man, startUp := ix.server(p.upload), ix.server(p.manput), ix.server(p.uploadStart)
	checkServerSpan(t, startUp, p.traceID, p.uploadStart, "POST upload", "POST", "202")
	checkServerSpan(t, up, p.traceID, p.upload, "PUT upload", "PUT", "201")
	checkServerSpan(t, man, p.traceID, p.manput, "PUT manifest", "PUT", "201")
	if got, _ := otlpAttr(man.GetAttributes(), "http.route"); got != "/v2/{name}/manifests/{reference}" {
		t.Errorf("PUT manifest: http.route=%q", got)
	}

	sqlite := map[string]string{"db.system.name": "sqlite"}
	checkChild(t, ix, startUp, "blobstore.CreateUpload", tracepb.Span_SPAN_KIND_INTERNAL, map[string]string{"berth.blobstore": "filesystem"})
	checkChild(t, ix, startUp, "metadata.CreateUpload", tracepb.Span_SPAN_KIND_CLIENT, sqlite)
	checkChild(t, ix, up, "metadata.GetUpload", tracepb.Span_SPAN_KIND_CLIENT, map[string]string{"db.system.name": "sqlite", "db.operation.name": "query"})
	checkChild(t, ix, up, "blobstore.AppendUpload", tracepb.Span_SPAN_KIND_INTERNAL, nil)
	checkChild(t, ix, up, "blobstore.CommitUpload", tracepb.Span_SPAN_KIND_INTERNAL, nil)
	checkChild(t, ix, up, "metadata.LinkBlob", tracepb.Span_SPAN_KIND_CLIENT, map[string]string{"db.system.name": "sqlite", "db.operation.name": "transaction"})
	checkChild(t, ix, man, "metadata.PutManifest", tracepb.Span_SPAN_KIND_CLIENT, sqlite)

	// The config's monolithic upload carried no trace context: a trace of
	// its own, with a root server span. Only server spans are roots:
	// background work (webhook polling, pull flushes) makes none.
	for _, s := range spans {
		if s.GetKind() != tracepb.Span_SPAN_KIND_SERVER && len(s.GetParentSpanId()) == 0 {
			t.Errorf("root span %s (%v): only requests should start traces", s.GetName(), s.GetKind())
		}
		if s.GetKind() == tracepb.Span_SPAN_KIND_SERVER && s.GetName() == "POST upload" && len(s.GetParentSpanId()) == 0 {
			if hex.EncodeToString(s.GetTraceId()) == p.traceID {
				t.Errorf("a request without traceparent joined the client's trace")
			}
		}
	}
	rc.mu.Lock()
	services := rc.services
	rc.mu.Unlock()
	if !services["berth"] {
		t.Errorf("service.name of the exported resources: %v, want berth", services)
	}
	if log := tailFile(b.LogPath, 200); !strings.Contains(log, "tracing on") {
		t.Errorf("the log does not say tracing is on:\n%s", log)
	}
}

// TestTracingGRPC exports over OTLP/gRPC, chosen by
// OTEL_EXPORTER_OTLP_PROTOCOL, and receives the same push's spans.
func TestTracingGRPC(t *testing.T) {
	rc := startOTLPGRPCReceiver(t)
	b := start(t, launch{Args: []string{"--auth=none"}, Env: []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + rc.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_BSP_SCHEDULE_DELAY=100",
	}})
	p := newTracedPush(t)
	p.run(t, b.URL, "traced/grpc", "v1")
	spans := rc.waitFor(func(s []*tracepb.Span) bool { return p.complete(s, "") })
	if !p.complete(spans, "") {
		t.Fatalf("the push's spans did not all arrive over gRPC; got %d spans: %v", len(spans), spanNames(spans))
	}
	checkServerSpan(t, spanIndex(spans).server(p.manput), p.traceID, p.manput, "PUT manifest", "PUT", "201")
}

// TestTracingS3 traces a push to berth on a real S3 server (versitygw):
// the blob store spans have S3 client spans as children, and /metrics
// counts the S3 requests by operation and outcome. The PUT brings the
// empty upload its whole layer, which S3 stores in one step
// (blobstore.PutUpload, no AppendUpload and CommitUpload).
func TestTracingS3(t *testing.T) {
	s3 := testserver.S3(t)
	rc := startOTLPReceiver(t)
	b := start(t, launch{Args: []string{"--auth=none", "--storage", "s3", "--s3-bucket", s3.Bucket, "--s3-endpoint", s3.Endpoint,
		"--s3-region", s3.Region, "--s3-path-style=true"}, Env: []string{
		"AWS_ACCESS_KEY_ID=" + s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3.SecretKey,
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + rc.URL, "OTEL_BSP_SCHEDULE_DELAY=100",
	}})
	p := newTracedPush(t)
	p.run(t, b.URL, "traced/s3", "v1")
	spans := rc.waitFor(func(s []*tracepb.Span) bool { return p.complete(s, "blobstore.PutUpload") })
	if !p.complete(spans, "blobstore.PutUpload") {
		t.Fatalf("the push's spans did not all arrive; got %d spans: %v", len(spans), spanNames(spans))
	}
	ix := spanIndex(spans)
	up := ix.server(p.upload)
	checkServerSpan(t, up, p.traceID, p.upload, "PUT upload", "PUT", "201")
	checkChild(t, ix, up, "blobstore.PutUpload", tracepb.Span_SPAN_KIND_INTERNAL, map[string]string{"berth.blobstore": "s3"})
	var s3Spans []*tracepb.Span
	if c := ix.child(up, "blobstore.PutUpload"); c != nil {
		s3Spans = ix.children(c)
	}
	ops := map[string]bool{}
	for _, s := range s3Spans {
		if !strings.HasPrefix(s.GetName(), "S3.") {
			continue
		}
		ops[s.GetName()] = true
		if s.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("%s: kind %v, want CLIENT", s.GetName(), s.GetKind())
		}
		if got, _ := otlpAttr(s.GetAttributes(), "rpc.method"); "S3."+got != s.GetName() {
			t.Errorf("%s: rpc.method=%q", s.GetName(), got)
		}
		if got, _ := otlpAttr(s.GetAttributes(), "http.response.status_code"); got == "" {
			t.Errorf("%s: no http.response.status_code", s.GetName())
		}
	}
	if !ops["S3.PutObject"] {
		t.Errorf("no S3.PutObject span under the upload's blob store spans; S3 spans: %v", spanNames(s3Spans))
	}

	r := authDo(t, http.MethodGet, b.URL+"/metrics", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r)
	}
	for _, want := range []string{
		`berth_s3_requests_total{operation="PutObject",outcome="ok"}`,
		`berth_s3_requests_total{operation="HeadBucket",outcome="ok"}`,
		`berth_s3_request_duration_seconds_count{operation="PutObject"}`,
	} {
		if v := sampleValue(string(r.Body), want); v < 1 {
			t.Errorf("%s = %v, want at least 1", want, v)
		}
	}
}

// sampleValue returns the value of a sample in Prometheus' text format,
// or -1 when it is missing.
func sampleValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// TestTracingOff checks that tracing is off unless asked for: with
// --tracing=off nothing reaches the endpoint the environment names, and
// without OTEL_* variables berth does not turn it on.
func TestTracingOff(t *testing.T) {
	t.Run("tracing=off", func(t *testing.T) {
		rc := startOTLPReceiver(t)
		b := start(t, launch{Args: []string{"--auth=none", "--tracing=off"}, Env: []string{
			"OTEL_EXPORTER_OTLP_ENDPOINT=" + rc.URL, "OTEL_BSP_SCHEDULE_DELAY=100",
		}})
		newTracedPush(t).run(t, b.URL, "untraced/app", "v1")
		time.Sleep(time.Second) // ten export periods
		b.stop(t)               // a shutdown flushes whatever is queued
		if spans, n := rc.snapshot(); n != 0 || len(spans) != 0 {
			t.Errorf("berth exported %d requests (%d spans) with --tracing=off", n, len(spans))
		}
		if log := tailFile(b.LogPath, 200); strings.Contains(log, "tracing on") {
			t.Errorf("the log says tracing is on:\n%s", log)
		}
	})
	t.Run("no OTEL variables", func(t *testing.T) {
		var env []string
		for _, kv := range os.Environ() { // blank any the test runs with
			if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OTEL_") {
				env = append(env, k+"=")
			}
		}
		b := start(t, launch{Args: []string{"--auth=none"}, Env: env})
		newTracedPush(t).run(t, b.URL, "untraced/app", "v1")
		b.stop(t)
		if log := tailFile(b.LogPath, 200); strings.Contains(log, "tracing on") {
			t.Errorf("tracing is on without OTEL_* variables:\n%s", log)
		}
	})
}
