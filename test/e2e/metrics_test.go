package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

// prometheusServer is a real Prometheus (Debian's package) scraping one
// target every second, on loopback.
type prometheusServer struct {
	URL string
}

// startPrometheus runs prometheus scraping target's /metrics, with the
// given rule files, until the test ends.
func startPrometheus(t *testing.T, target string, ruleFiles ...string) *prometheusServer {
	t.Helper()
	bin := needTool(t, "prometheus")
	dir := t.TempDir()
	port, err := testserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: ['%s']\n", target)
	if len(ruleFiles) > 0 {
		cfg += "rule_files:\n"
		for _, f := range ruleFiles {
			abs, err := filepath.Abs(f)
			if err != nil {
				t.Fatal(err)
			}
			cfg += fmt.Sprintf("  - '%s'\n", abs)
		}
	}
	writeFile(t, filepath.Join(dir, "prometheus.yml"), []byte(cfg))
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", tailFile(logf.Name(), 30))
		}
	})
	p := &prometheusServer{URL: "http://" + listen}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r, err := http.Get(p.URL + "/-/ready"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s:\n%s", tailFile(logf.Name(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p
}

// query evaluates a PromQL expression now and returns the sum of the
// resulting vector's values, and whether it had any sample.
func (p *prometheusServer) query(t *testing.T, expr string) (float64, bool) {
	t.Helper()
	r, err := http.Get(p.URL + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	defer r.Body.Close()
	var res struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&res); err != nil || res.Status != "success" {
		t.Fatalf("query %s: %d %s %v", expr, r.StatusCode, res.Error, err)
	}
	sum := 0.0
	for _, s := range res.Data.Result {
		v, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			t.Fatalf("query %s: value %v", expr, s.Value[1])
		}
		sum += v
	}
	return sum, len(res.Data.Result) > 0
}

// waitFor polls expr until it is at least want, and returns the value.
func (p *prometheusServer) waitFor(t *testing.T, expr string, want float64) float64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, _ := p.query(t, expr)
		if v >= want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 30s, want at least %v", expr, v, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestMetricsWithPrometheus runs a real Prometheus scraping berth's
// metrics_addr, pushes and pulls an image with Docker Engine, and checks
// through Prometheus' HTTP API that the push, pull, request and byte
// counters rose by exactly what the image's blobs and manifest account for.
func TestMetricsWithPrometheus(t *testing.T) {
	skipIfShort(t)
	docker := needDocker(t)
	needStaticBusybox(t)
	port, err := testserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", port)
	s := start(t, launch{Args: []string{"--auth=none", "--metrics-addr=" + metricsAddr}}).server
	rules := filepath.Join("..", "..", "deploy", "helm", "berth", "files", "berth-alerts.yaml")
	t.Logf("promtool: %s", strings.TrimSpace(run(t, needTool(t, "promtool"), "check", "rules", rules)))
	prom := startPrometheus(t, metricsAddr, rules)
	prom.waitFor(t, `up{job="berth"}`, 1)
	prom.waitFor(t, `berth_build_info`, 1)
	// Samples of counters that have not been incremented yet do not exist:
	// before the push, the registry operations are all absent.
	if v, ok := prom.query(t, `berth_registry_operations_total`); ok && v != 0 {
		t.Fatalf("registry operations before any push: %v", v)
	}

	ctxDir := t.TempDir()
	busybox, err := os.ReadFile(staticBusybox)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(ctxDir, "busybox"), busybox)
	writeFile(t, filepath.Join(ctxDir, "data.txt"), []byte(randomHex(t, 64)))
	writeFile(t, filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY busybox /bin/busybox\nCOPY data.txt /data.txt\nENTRYPOINT [\"/bin/busybox\"]\n"))
	ref := s.Addr + "/metrics/app:v1"
	t.Cleanup(func() { execIn(t, "", nil, docker, "rmi", "-f", ref) })
	run(t, docker, "build", "-q", "-t", ref, ctxDir)
	run(t, docker, "push", ref)

	pushes := prom.waitFor(t, `berth_registry_operations_total{operation="manifest_push"}`, 1)
	uploads := prom.waitFor(t, `berth_registry_operations_total{operation="blob_upload"}`, 3)
	bytesIn := prom.waitFor(t, `berth_registry_blob_bytes_total{direction="in"}`, 1)

	run(t, docker, "rmi", ref)
	run(t, docker, "pull", ref)
	pulls := prom.waitFor(t, `berth_registry_operations_total{operation="blob_pull"}`, 3)

	// What docker pushed: the manifest's config and layers.
	body, _ := fetchManifest(t, s, "metrics/app", "v1")
	var man manifest
	mustUnmarshal(t, "manifest", body, &man)
	want := man.Config.Size
	for _, l := range man.Layers {
		want += l.Size
	}
	bytesOut := prom.waitFor(t, `berth_registry_blob_bytes_total{direction="out"}`, float64(want))
	manifestPulls := prom.waitFor(t, `berth_registry_operations_total{operation="manifest_pull"}`, 2) // docker's and fetchManifest's
	puts := prom.waitFor(t, `berth_http_requests_total{route="manifest",method="PUT",code="2xx"}`, 1)
	t.Logf("after docker push and pull of %d blobs (%d bytes): manifest pushes %v, blob uploads %v, bytes in %v, blob pulls %v, bytes out %v, manifest GETs %v",
		len(man.Layers)+1, want, pushes, uploads, bytesIn, pulls, bytesOut, manifestPulls)
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"manifest pushes", pushes, 1},
		{"blob uploads (config and layers)", uploads, float64(len(man.Layers) + 1)},
		{"blob bytes received", bytesIn, float64(want)},
		{"blob pulls", pulls, float64(len(man.Layers) + 1)},
		{"blob bytes sent", bytesOut, float64(want)},
		{"manifest PUTs answered 2xx", puts, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: Prometheus says %v, want %v", c.what, c.got, c.want)
		}
	}
	// The latency histogram and the request counter agree.
	count, _ := prom.query(t, `sum(berth_http_request_duration_seconds_count{route="manifest"})`)
	reqs, _ := prom.query(t, `sum(berth_http_requests_total{route="manifest"})`)
	if count != reqs || count < 3 {
		t.Errorf("manifest requests: histogram count %v, counter %v", count, reqs)
	}
	if v, _ := prom.query(t, `sum(berth_http_requests_total{code="5xx"})`); v != 0 {
		t.Errorf("5xx answers: %v", v)
	}
	// Every expression docs/operations.md offers evaluates without error
	// (query fails the test on an error).
	exprs := docExpressions(t, filepath.Join("..", "..", "docs", "operations.md"))
	if len(exprs) < 5 {
		t.Fatalf("found %d PromQL expressions in docs/operations.md", len(exprs))
	}
	for _, e := range exprs {
		prom.query(t, e)
	}
	prom.rulesHealthy(t, 10)
	// So does every panel of the shipped Grafana dashboard ($job as all
	// jobs), and those on traffic have data by now.
	withData := 0
	for _, e := range dashboardExpressions(t, filepath.Join("..", "..", "deploy", "grafana", "berth-dashboard.json")) {
		if _, ok := prom.query(t, e); ok {
			withData++
		}
	}
	t.Logf("dashboard: every expression evaluated, %d with data", withData)
	if withData < 8 {
		t.Errorf("%d dashboard expressions have data after a push and a pull, want at least 8", withData)
	}
	r, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	text, err := io.ReadAll(r.Body)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("GET /metrics on metrics_addr: %d %v", r.StatusCode, err)
	}
	if strings.Contains(string(text), "metrics/app") || strings.Contains(string(text), "sha256:") {
		t.Error("a repository name or digest appears in the metrics")
	}
}

// docExpressions returns the PromQL expressions of a document's promql
// code blocks (one a line; # comments skipped).
func docExpressions(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "```promql"):
			in = true
		case strings.HasPrefix(line, "```"):
			in = false
		case in && strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#"):
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// rulesHealthy waits until Prometheus has evaluated at least n alerting
// rules, and fails the test if any evaluation failed.
func (p *prometheusServer) rulesHealthy(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := http.Get(p.URL + "/api/v1/rules")
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name           string `json:"name"`
						Health         string `json:"health"`
						LastError      string `json:"lastError"`
						LastEvaluation string `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		err = json.NewDecoder(r.Body).Decode(&res)
		r.Body.Close()
		if err != nil {
			t.Fatalf("GET /api/v1/rules: %v", err)
		}
		evaluated := 0
		for _, g := range res.Data.Groups {
			for _, rule := range g.Rules {
				if rule.Health == "err" || rule.LastError != "" {
					t.Fatalf("rule %s fails: %s", rule.Name, rule.LastError)
				}
				if rule.Health == "ok" && !strings.HasPrefix(rule.LastEvaluation, "0001-") {
					evaluated++
				}
			}
		}
		if evaluated >= n {
			t.Logf("%d alerting rules evaluated without error", evaluated)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d rules evaluated after 30s", evaluated, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// dashboardExpressions returns the PromQL expressions of a Grafana
// dashboard's panels, with its $job variable standing for every job.
func dashboardExpressions(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, strings.ReplaceAll(tg.Expr, "$job", ".*"))
		}
	}
	if len(out) < 10 {
		t.Fatalf("%s has %d expressions", path, len(out))
	}
	return out
}
