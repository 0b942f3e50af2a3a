package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestHelmChartMetrics: with metrics enabled the chart sets berth's
// metrics_addr, exposes the port on the container and the Service, and
// renders a ServiceMonitor scraping it and a PrometheusRule carrying
// exactly the rules of files/berth-alerts.yaml (which the Prometheus e2e
// test checks with promtool and evaluates); a ServiceMonitor without the
// port is refused.
func TestHelmChartMetrics(t *testing.T) {
	helm := needHelm(t)
	chart := chartDir(t)
	sec := newChartSecrets(t)
	off := helmTemplate(t, helm, sec.args()...)
	if _, ok := off.Monitoring["ServiceMonitor"]; ok {
		t.Error("a ServiceMonitor rendered by default")
	}
	if settings, _ := off.settings(t); settings["metrics_addr"] != "" {
		t.Errorf("metrics_addr %q by default", settings["metrics_addr"])
	}

	r := helmTemplate(t, helm, append(sec.args(), "--set", "metrics.enabled=true", "--set", "metrics.port=9191",
		"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=prom",
		"--set", "metrics.prometheusRule.enabled=true")...)
	if settings, _ := r.settings(t); settings["metrics_addr"] != ":9191" {
		t.Errorf("berth.yaml metrics_addr = %q, want :9191", settings["metrics_addr"])
	}
	c := r.container(t)
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" && p.ContainerPort == 9191 }) {
		t.Errorf("container ports %+v lack metrics 9191", c.Ports)
	}
	var svcLabels map[string]string
	for _, s := range r.Services {
		svcLabels = s.Labels
		if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
			return p.Name == "metrics" && p.Port == 9191 && p.TargetPort.StrVal == "metrics"
		}) {
			t.Errorf("service ports %+v lack metrics 9191", s.Spec.Ports)
		}
	}

	var sm struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port, Path, Interval string
			} `json:"endpoints"`
		} `json:"spec"`
	}
	remarshal(t, r.Monitoring["ServiceMonitor"], &sm)
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Metadata.Labels["release"] != "prom" {
		t.Errorf("ServiceMonitor = %+v", sm)
	}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svcLabels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, the Service has %q", k, v, svcLabels[k])
		}
	}

	var rule struct {
		Spec any `json:"spec"`
	}
	remarshal(t, r.Monitoring["PrometheusRule"], &rule)
	data, err := os.ReadFile(filepath.Join(chart, "files", "berth-alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want any
	if err := yaml.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(rule.Spec)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) {
		t.Errorf("PrometheusRule spec differs from files/berth-alerts.yaml:\n%s\nwant\n%s", got, wantJSON)
	}

	helmTemplateFails(t, helm, "metrics.serviceMonitor.enabled needs metrics.enabled", "--set", "metrics.serviceMonitor.enabled=true")
}

// remarshal converts a decoded document into a typed view of it.
func remarshal(t *testing.T, from, to any) {
	t.Helper()
	b, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		t.Fatal(err)
	}
}
