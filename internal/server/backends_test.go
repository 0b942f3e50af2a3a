package server

import (
	"bytes"
	"testing"
)

// TestBackendMetrics pushes through the HTTP API and checks the backend
// metrics: metadata transactions by outcome, their retries, and the
// connection pools of the embedded database; no S3 series without S3.
func TestBackendMetrics(t *testing.T) {
	ts, _ := testServer(t)
	u := ts.URL
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := bytes.Repeat([]byte("B"), 100)
	expect(t, "config", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(cfg), nil, cfg), 201, "")
	expect(t, "layer", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(layer), nil, layer), 201, "")
	mf := imageManifest(cfg, "m", layer)
	expect(t, "manifest push", do(t, "PUT", u+"/v2/team/app/manifests/v1", map[string]string{"Content-Type": ociManifest}, mf), 201, "")
	expect(t, "manifest of a missing blob", do(t, "PUT", u+"/v2/team/app/manifests/v2", map[string]string{"Content-Type": ociManifest},
		imageManifest(cfg, "n", []byte("missing"))), 400, "MANIFEST_BLOB_UNKNOWN")

	m := scrape(t, u, nil)
	if n := m[`berth_metadata_transaction_duration_seconds{outcome="committed"}`]; n < 3 {
		t.Errorf("committed metadata transactions: %v, want at least 3 (two blobs, a manifest)", n)
	}
	if n := m[`berth_metadata_transaction_duration_seconds{outcome="rolled_back"}`]; n < 1 {
		t.Errorf("rolled back metadata transactions: %v, want at least 1 (the refused manifest)", n)
	}
	if n, ok := m[`berth_metadata_transaction_retries_total`]; !ok || n != 0 {
		t.Errorf("berth_metadata_transaction_retries_total = %v (present %v), want 0 on SQLite", n, ok)
	}
	for _, pool := range []string{"metadata_write", "metadata_read"} {
		if n := m[`go_sql_max_open_connections{db_name="`+pool+`"}`]; n < 1 {
			t.Errorf("go_sql_max_open_connections of %s = %v", pool, n)
		}
		if _, ok := m[`go_sql_wait_count_total{db_name="`+pool+`"}`]; !ok {
			t.Errorf("no go_sql_wait_count_total for %s", pool)
		}
	}
	for k := range m {
		if len(k) > 9 && k[:9] == "berth_s3_" {
			t.Errorf("S3 series %s without S3", k)
		}
	}
}
