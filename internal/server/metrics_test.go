package server

import (
	"bytes"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/berth-registry/berth/internal/config"
)

// scrape reads /metrics and returns each sample's value by its name and
// labels in Prometheus' notation: name{a="x",b="y"}.
func scrape(t *testing.T, base string, hdr map[string]string) map[string]float64 {
	t.Helper()
	r := do(t, "GET", base+"/metrics", hdr, nil)
	if r.status != 200 {
		t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = value(f.GetType(), m)
		}
	}
	return out
}

func value(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// TestMetricsCountRegistryTraffic pushes and pulls through the HTTP API and
// checks what /metrics says: operations, blob bytes, requests by route and
// status class, garbage collection, and no repository or digest in a label.
func TestMetricsCountRegistryTraffic(t *testing.T) {
	ts, _ := testServer(t)
	u := ts.URL
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := bytes.Repeat([]byte("L"), 3000)
	expect(t, "monolithic config", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(cfg), nil, cfg), 201, "")
	start := do(t, "POST", u+"/v2/team/app/blobs/uploads/", nil, nil)
	loc := u + start.header.Get("Location")
	expect(t, "first chunk", doChunked(t, "PATCH", loc, nil, layer[:1000]), 202, "")
	expect(t, "last chunk", do(t, "PUT", loc+"?digest="+digestOf(layer), nil, layer[1000:]), 201, "")
	mf := imageManifest(cfg, "m", layer)
	expect(t, "manifest push", do(t, "PUT", u+"/v2/team/app/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, mf), 201, "")
	expect(t, "manifest pull", do(t, "GET", u+"/v2/team/app/manifests/v1", nil, nil), 200, "")
	expect(t, "blob pull", do(t, "GET", u+"/v2/team/app/blobs/"+digestOf(layer), nil, nil), 200, "")
	expect(t, "mount", do(t, "POST", u+"/v2/team/other/blobs/uploads/?mount="+digestOf(layer)+"&from=team/app", nil, nil), 201, "")
	expect(t, "unknown manifest", do(t, "GET", u+"/v2/team/app/manifests/nope", nil, nil), 404, "MANIFEST_UNKNOWN")
	if r := do(t, "POST", u+"/api/v1/gc", nil, nil); r.status != 200 {
		t.Fatalf("gc: %d %s", r.status, r.body)
	}

	m := scrape(t, u, nil)
	for key, want := range map[string]float64{
		`berth_registry_operations_total{operation="blob_upload"}`:            2,
		`berth_registry_operations_total{operation="blob_mount"}`:             1,
		`berth_registry_operations_total{operation="manifest_push"}`:          1,
		`berth_registry_operations_total{operation="manifest_pull"}`:          1,
		`berth_registry_operations_total{operation="blob_pull"}`:              1,
		`berth_registry_blob_bytes_total{direction="in"}`:                     float64(len(cfg) + len(layer)),
		`berth_registry_blob_bytes_total{direction="out"}`:                    float64(len(layer)),
		`berth_http_requests_total{code="2xx",method="PUT",route="manifest"}`: 1,
		`berth_http_requests_total{code="4xx",method="GET",route="manifest"}`: 1,
		`berth_http_requests_total{code="2xx",method="PATCH",route="upload"}`: 1,
		`berth_http_request_duration_seconds{method="GET",route="manifest"}`:  2,
		`berth_http_request_bytes_total{route="manifest"}`:                    float64(len(mf)),
		`berth_gc_runs_total`:           1,
		`berth_http_requests_in_flight`: 1, // the scrape itself
	} {
		if got, ok := m[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if m[`berth_http_response_bytes_total{route="blob"}`] != float64(len(layer)) {
		t.Errorf("blob response bytes = %v, want %d", m[`berth_http_response_bytes_total{route="blob"}`], len(layer))
	}
	var build bool
	for key := range m {
		if strings.HasPrefix(key, "berth_build_info{") {
			build = true
		}
		if strings.Contains(key, "team/") || strings.Contains(key, "sha256:") {
			t.Errorf("a repository or digest in a label: %s", key)
		}
	}
	if !build || m["go_goroutines"] == 0 || m["process_open_fds"] == 0 {
		t.Error("build info, Go runtime or process metrics missing")
	}
}

// TestMetricsNeedAnAdmin: with auth on, /metrics on the main listener
// needs an admin's credentials unless metrics_public is set.
func TestMetricsNeedAnAdmin(t *testing.T) {
	ts, _ := authServer(t)
	if r := do(t, "GET", ts.URL+"/metrics", nil, nil); r.status != 401 {
		t.Fatalf("anonymous scrape: %d, want 401", r.status)
	}
	if r := do(t, "GET", ts.URL+"/metrics", map[string]string{"Authorization": basic("alice", "alice-pass-1")}, nil); r.status != 403 {
		t.Fatalf("a user's scrape: %d, want 403", r.status)
	}
	m := scrape(t, ts.URL, adminHdr())
	if m[`berth_http_requests_total{code="2xx",method="POST",route="admin"}`] != 4 || m[`berth_http_requests_total{code="2xx",method="PUT",route="admin"}`] != 2 ||
		m[`berth_http_requests_total{code="4xx",method="GET",route="metrics"}`] != 2 {
		t.Fatalf("admin scrape: the setup's 4 POSTs and 2 PUTs and the 2 refused scrapes are not counted: %v %v %v", m[`berth_http_requests_total{code="2xx",method="POST",route="admin"}`],
			m[`berth_http_requests_total{code="2xx",method="PUT",route="admin"}`], m[`berth_http_requests_total{code="4xx",method="GET",route="metrics"}`])
	}
	pub, _ := authServer(t, func(c *config.Config) { c.MetricsPublic = true })
	getToken(t, pub.URL, "alice", "wrong-pass")
	getToken(t, pub.URL, "", "", "repository:team/app:pull")
	tokenFor(t, pub.URL, "alice", "alice-pass-1", "repository:team/app:pull", "repository:other/x:pull")
	m = scrape(t, pub.URL, nil)
	for key, want := range map[string]float64{
		`berth_auth_logins_total{outcome="ok"}`:     7, // the setup's 6 admin calls and alice's token
		`berth_auth_logins_total{outcome="failed"}`: 1,
		`berth_auth_tokens_issued_total`:            2,
		`berth_auth_scopes_denied_total`:            2, // team/app for the anonymous, other/x for alice
	} {
		if m[key] != want {
			t.Errorf("%s = %v, want %v", key, m[key], want)
		}
	}
}
