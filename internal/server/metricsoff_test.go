package server

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/berth-registry/berth/internal/config"
)

// TestMetricsSettingParses checks that metrics is on by default and that
// --metrics=false and BERTH_METRICS=false turn it off.
func TestMetricsSettingParses(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		off  bool
	}{
		{nil, nil, false},
		{[]string{"--metrics=false"}, nil, true},
		{nil, map[string]string{"BERTH_METRICS": "false"}, true},
		{[]string{"--metrics=true"}, map[string]string{"BERTH_METRICS": "false"}, false},
	} {
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		config.RegisterFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(fs, func(k string) string { return c.env[k] })
		if err != nil || cfg.MetricsOff != c.off {
			t.Fatalf("%v %v: MetricsOff = %v (err %v), want %v", c.args, c.env, cfg != nil && cfg.MetricsOff, err, c.off)
		}
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	_ = fs.Parse([]string{"--metrics=maybe"})
	if _, err := config.Load(fs, func(string) string { return "" }); err == nil {
		t.Fatal("--metrics=maybe accepted")
	}
}

// TestMetricsSetting checks the metrics setting: off, GET /metrics is 404
// and requests are not counted; on (the default), it is served and counts.
func TestMetricsSetting(t *testing.T) {
	for _, off := range []bool{true, false} {
		cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Auth: "none", MaxManifestSize: 1 << 20,
			UploadTTL: time.Hour, ShutdownTimeout: time.Second, BodyTimeout: time.Minute, MetricsOff: off}
		ts := serve(t, cfg)
		if r := do(t, "GET", ts.URL+"/v2/", nil, nil); r.status != 200 {
			t.Fatalf("metrics off=%v: GET /v2/: %d", off, r.status)
		}
		r := do(t, "GET", ts.URL+"/metrics", nil, nil)
		if off {
			if r.status != 404 {
				t.Fatalf("metrics off: GET /metrics: %d, want 404", r.status)
			}
			continue
		}
		if r.status != 200 || !strings.Contains(string(r.body), `berth_http_requests_total{code="2xx",method="GET",route="base"} 1`) {
			t.Fatalf("metrics on: GET /metrics: %d, want 200 counting the GET /v2/:\n%s", r.status, r.body)
		}
	}
}
