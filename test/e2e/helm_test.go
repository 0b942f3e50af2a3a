package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/token"
)

// The Helm chart in deploy/helm/berth, checked with the helm CLI (built by
// scripts/helm.sh): helm lint --strict on each value set, helm template
// parsed into Kubernetes API types, and the refusals of invalid values.

// chartDir returns the absolute path of the chart.
func chartDir(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "deploy", "helm", "berth"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// needHelm returns the helm binary, or skips (fails under CI=true).
func needHelm(t *testing.T) string {
	t.Helper()
	skipIfShort(t)
	p := findTool("helm")
	if p == "" {
		msg := fmt.Sprintf("helm not found on PATH or in %s; build it with: bash scripts/helm.sh", toolsBinDir())
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// chartSecrets are secret values the tests pass to the chart; none may
// show up outside a Secret.
type chartSecrets struct {
	AdminPassword string
	PostgresDSN   string
	S3AccessKey   string
	S3SecretKey   string
	// OldKeyPEM (key-0001.pem, PKCS#8) and NewKeyPEM (key-0002.pem,
	// SEC 1, which sorts last and must sign).
	OldKey, NewKey       *ecdsa.PrivateKey
	OldKeyPEM, NewKeyPEM string
	OldKeyFile           string
	NewKeyFile           string
}

func newChartSecrets(t *testing.T) *chartSecrets {
	t.Helper()
	s := &chartSecrets{
		AdminPassword: "adm-" + randomHex(t, 12),
		PostgresDSN:   "postgres://berth:pg-" + randomHex(t, 12) + "@db.example:5432/berth?sslmode=require",
		S3AccessKey:   "AKIA" + strings.ToUpper(randomHex(t, 8)),
		S3SecretKey:   "s3s-" + randomHex(t, 16),
	}
	var err error
	if s.OldKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if s.NewKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(s.OldKey)
	if err != nil {
		t.Fatal(err)
	}
	s.OldKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	der, err = x509.MarshalECPrivateKey(s.NewKey)
	if err != nil {
		t.Fatal(err)
	}
	s.NewKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	dir := t.TempDir()
	s.OldKeyFile = filepath.Join(dir, "old.pem")
	s.NewKeyFile = filepath.Join(dir, "new.pem")
	writeFile(t, s.OldKeyFile, []byte(s.OldKeyPEM))
	writeFile(t, s.NewKeyFile, []byte(s.NewKeyPEM))
	return s
}

// args are the helm flags that pass every secret with --set / --set-file.
func (s *chartSecrets) args() []string {
	return []string{
		"--set", "auth.adminPassword=" + s.AdminPassword,
		"--set-file", `auth.signingKeys.key-0001\.pem=` + s.OldKeyFile,
		"--set-file", `auth.signingKeys.key-0002\.pem=` + s.NewKeyFile,
	}
}

// storageArgs passes the PostgreSQL DSN and S3 keys.
func (s *chartSecrets) storageArgs() []string {
	return []string{
		"--set", "postgres.dsn=" + s.PostgresDSN,
		"--set", "s3.accessKeyId=" + s.S3AccessKey,
		"--set", "s3.secretAccessKey=" + s.S3SecretKey,
	}
}

// values lists the secret strings (the keys without their PEM armour:
// the base64 body lines are what must not leak).
func (s *chartSecrets) values() map[string]string {
	m := map[string]string{
		"admin password": s.AdminPassword,
		"postgres DSN":   s.PostgresDSN,
		"S3 access key":  s.S3AccessKey,
		"S3 secret key":  s.S3SecretKey,
	}
	for name, p := range map[string]string{"signing key 1": s.OldKeyPEM, "signing key 2": s.NewKeyPEM} {
		body := strings.Split(strings.TrimSpace(p), "\n")
		m[name] = body[1] // the first line of base64 key material
	}
	return m
}

// helmRendered is the output of helm template, parsed.
type helmRendered struct {
	Raw             string
	Docs            []helmDoc
	Deployment      *appsv1.Deployment
	ConfigMaps      map[string]*corev1.ConfigMap
	Secrets         map[string]*corev1.Secret
	Services        map[string]*corev1.Service
	PVCs            map[string]*corev1.PersistentVolumeClaim
	ServiceAccounts map[string]*corev1.ServiceAccount
	Ingresses       map[string]*networkingv1.Ingress
	PDBs            map[string]*policyv1.PodDisruptionBudget
	HPAs            map[string]*autoscalingv2.HorizontalPodAutoscaler
	// Monitoring holds the Prometheus Operator's objects (ServiceMonitor,
	// PrometheusRule) by kind, as plain maps.
	Monitoring map[string]map[string]any
}

type helmDoc struct {
	Kind, Name, Source, Text string
}

var (
	helmDocSeparator = regexp.MustCompile(`(?m)^---\s*$`)
	helmSourceLine   = regexp.MustCompile(`(?m)^# Source: (\S+)`)
)

// helmTemplate runs helm template on the chart and parses every document
// strictly (an unknown field is an error) into its API type.
func helmTemplate(t *testing.T, helm string, args ...string) *helmRendered {
	t.Helper()
	full := append([]string{"template", "berth", chartDir(t), "--namespace", "registry"}, args...)
	out := run(t, helm, full...)
	r := &helmRendered{
		Raw:             out,
		ConfigMaps:      map[string]*corev1.ConfigMap{},
		Secrets:         map[string]*corev1.Secret{},
		Services:        map[string]*corev1.Service{},
		PVCs:            map[string]*corev1.PersistentVolumeClaim{},
		ServiceAccounts: map[string]*corev1.ServiceAccount{},
		Ingresses:       map[string]*networkingv1.Ingress{},
		PDBs:            map[string]*policyv1.PodDisruptionBudget{},
		HPAs:            map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		Monitoring:      map[string]map[string]any{},
	}
	for _, text := range helmDocSeparator.Split(out, -1) {
		if strings.TrimSpace(helmStripComments(text)) == "" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(text), &head); err != nil {
			t.Fatalf("helm template printed a document that is not YAML: %v\n%s", err, text)
		}
		doc := helmDoc{Kind: head.Kind, Name: head.Metadata.Name, Text: text}
		if m := helmSourceLine.FindStringSubmatch(text); m != nil {
			doc.Source = m[1]
		}
		if head.Metadata.Name == "" {
			t.Errorf("%s %s has no metadata.name", doc.Source, head.Kind)
		}
		var obj any
		switch head.Kind {
		case "Deployment":
			if r.Deployment != nil {
				t.Fatalf("two Deployments rendered")
			}
			r.Deployment = &appsv1.Deployment{}
			obj = r.Deployment
		case "ConfigMap":
			o := &corev1.ConfigMap{}
			r.ConfigMaps[doc.Name], obj = o, o
		case "Secret":
			o := &corev1.Secret{}
			r.Secrets[doc.Name], obj = o, o
		case "Service":
			o := &corev1.Service{}
			r.Services[doc.Name], obj = o, o
		case "PersistentVolumeClaim":
			o := &corev1.PersistentVolumeClaim{}
			r.PVCs[doc.Name], obj = o, o
		case "ServiceAccount":
			o := &corev1.ServiceAccount{}
			r.ServiceAccounts[doc.Name], obj = o, o
		case "Ingress":
			o := &networkingv1.Ingress{}
			r.Ingresses[doc.Name], obj = o, o
		case "PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			r.PDBs[doc.Name], obj = o, o
		case "HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			r.HPAs[doc.Name], obj = o, o
		case "ServiceMonitor", "PrometheusRule":
			o := map[string]any{}
			r.Monitoring[head.Kind], obj = o, &o
		default:
			t.Fatalf("%s: unexpected kind %q (apiVersion %s)", doc.Source, head.Kind, head.APIVersion)
		}
		if err := yaml.UnmarshalStrict([]byte(text), obj); err != nil {
			t.Fatalf("%s: %s %s does not parse as %T: %v\n%s", doc.Source, head.Kind, doc.Name, obj, err, text)
		}
		r.Docs = append(r.Docs, doc)
	}
	if r.Deployment == nil {
		t.Fatalf("helm template rendered no Deployment:\n%s", truncate(out, 4000))
	}
	return r
}

func helmStripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// helmTemplateFails runs helm template with values that must be refused
// and checks that the error says want.
func helmTemplateFails(t *testing.T, helm, want string, args ...string) {
	t.Helper()
	full := append([]string{"template", "berth", chartDir(t)}, args...)
	r := execIn(t, "", nil, helm, full...)
	if r.Err == nil {
		t.Errorf("helm template %s succeeded, but must fail with %q", strings.Join(args, " "), want)
		return
	}
	if !strings.Contains(r.combined(), want) {
		t.Errorf("helm template %s failed without saying %q:\n%s", strings.Join(args, " "), want, truncate(r.combined(), 2000))
	}
}

// container returns the berth container of the Deployment.
func (r *helmRendered) container(t *testing.T) *corev1.Container {
	t.Helper()
	cs := r.Deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(cs))
	}
	return &cs[0]
}

// volume returns the pod volume named name.
func (r *helmRendered) volume(t *testing.T, name string) *corev1.Volume {
	t.Helper()
	for i, v := range r.Deployment.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return &r.Deployment.Spec.Template.Spec.Volumes[i]
		}
	}
	t.Fatalf("the Deployment has no volume %q", name)
	return nil
}

// mountAt returns the volume mounted at dir, or nil.
func (r *helmRendered) mountAt(t *testing.T, dir string) (*corev1.VolumeMount, *corev1.Volume) {
	t.Helper()
	c := r.container(t)
	for i, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == path.Clean(dir) {
			return &c.VolumeMounts[i], r.volume(t, m.Name)
		}
	}
	return nil, nil
}

// settings finds the berth configuration the container reads: the file
// named by --config, a key of a ConfigMap volume. It returns its
// settings and raw text.
func (r *helmRendered) settings(t *testing.T) (map[string]string, string) {
	t.Helper()
	c := r.container(t)
	var file string
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			file = c.Args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--config="); ok {
			file = v
		}
	}
	if file == "" {
		t.Fatalf("the container's args %q do not pass --config", c.Args)
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("the container's args %q do not start with serve", c.Args)
	}
	m, v := r.mountAt(t, path.Dir(file))
	if m == nil || v.ConfigMap == nil {
		t.Fatalf("--config %s: no ConfigMap volume is mounted at %s", file, path.Dir(file))
	}
	cm, ok := r.ConfigMaps[v.ConfigMap.Name]
	if !ok {
		t.Fatalf("--config %s: the ConfigMap %s mounted there is not rendered", file, v.ConfigMap.Name)
	}
	text, ok := cm.Data[path.Base(file)]
	if !ok {
		t.Fatalf("--config %s: ConfigMap %s has no key %s (keys %v)", file, cm.Name, path.Base(file), keysOf(cm.Data))
	}
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(text), &raw); err != nil {
		t.Fatalf("ConfigMap %s: %s is not YAML: %v\n%s", cm.Name, path.Base(file), err, text)
	}
	out := map[string]string{}
	for k, v := range raw {
		switch v.(type) {
		case map[string]any, []any:
			t.Errorf("%s: %s is not a single value", path.Base(file), k)
		}
		out[k] = fmt.Sprint(v)
	}
	return out, text
}

// checkChartSettings checks that berth knows every key of its
// configuration file (config.Options), and then that berth's own loader
// accepts the file with the container's BERTH_* environment (values from
// Secrets the chart does not render stand in as "from-secret").
func checkChartSettings(t *testing.T, r *helmRendered) {
	t.Helper()
	settings, text := r.settings(t)
	known := map[string]bool{}
	for _, o := range config.Options {
		known[o.Key] = true
	}
	var unknown []string
	for k := range settings {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("berth.yaml uses settings berth does not know (not in internal/config's Options): %s", strings.Join(unknown, ", "))
		return
	}
	file := filepath.Join(t.TempDir(), "berth.yaml")
	writeFile(t, file, []byte(text))
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	env := map[string]string{"BERTH_CONFIG": file}
	for _, e := range r.container(t).Env {
		if !strings.HasPrefix(e.Name, "BERTH_") {
			continue
		}
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			env[e.Name] = "from-secret"
			if s, ok := r.Secrets[e.ValueFrom.SecretKeyRef.Name]; ok {
				env[e.Name] = string(s.Data[e.ValueFrom.SecretKeyRef.Key])
			}
		}
	}
	getenv := func(k string) string { return env[k] }
	if _, err := config.Load(fs, getenv); err != nil {
		t.Errorf("berth refuses the chart's berth.yaml: %v\n%s", err, text)
	}
}

// checkChartDeployment checks what every mode shares: probes, security
// context, the ConfigMap passed with --config, rolling checksums and the
// grace period.
func checkChartDeployment(t *testing.T, r *helmRendered, settings map[string]string) {
	t.Helper()
	pod := r.Deployment.Spec.Template.Spec
	c := r.container(t)

	// The container port is the one berth listens on.
	addr := settings["addr"]
	if addr != ":5000" {
		t.Errorf("berth.yaml addr = %q, want :5000", addr)
	}
	var port *corev1.ContainerPort
	for i, p := range c.Ports {
		if p.ContainerPort == 5000 {
			port = &c.Ports[i]
		}
	}
	if port == nil {
		t.Fatalf("the container does not declare port 5000: %+v", c.Ports)
	}
	probe := func(what string, p *corev1.Probe, wantPath string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: %+v, want an HTTP GET of %s", what, p, wantPath)
			return
		}
		if p.HTTPGet.Path != wantPath {
			t.Errorf("%s probe path %q, want %s", what, p.HTTPGet.Path, wantPath)
		}
		if pt := p.HTTPGet.Port; !(pt.IntValue() == 5000 || (pt.StrVal != "" && pt.StrVal == port.Name)) {
			t.Errorf("%s probe port %s is not the container port (5000, %q)", what, pt.String(), port.Name)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")
	if c.StartupProbe != nil {
		probe("startup", c.StartupProbe, "/healthz")
	}

	// Non-root, read-only root filesystem, no capabilities.
	sc, psc := c.SecurityContext, pod.SecurityContext
	if sc == nil {
		t.Fatal("the container has no securityContext")
	}
	nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
	if !nonRoot {
		t.Error("neither the container nor the pod sets runAsNonRoot: true")
	}
	uid := int64(-1)
	if psc != nil && psc.RunAsUser != nil {
		uid = *psc.RunAsUser
	}
	if sc.RunAsUser != nil {
		uid = *sc.RunAsUser
	}
	if uid != 65532 {
		t.Errorf("runAsUser = %d, want 65532 (the image's user)", uid)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the container's root filesystem is not read-only")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the container allows privilege escalation")
	}
	if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities %+v, want drop [ALL] and nothing added", sc.Capabilities)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", c.Resources)
	}

	// A writable /data (and /tmp), since the root filesystem is not.
	if m, _ := r.mountAt(t, "/data"); m == nil || m.ReadOnly {
		t.Error("nothing writable is mounted at /data")
	}
	if settings["data_dir"] != "/data" {
		t.Errorf("berth.yaml data_dir = %q, want /data", settings["data_dir"])
	}

	// Changes of the ConfigMap or the Secrets roll the pods.
	for _, a := range []string{"checksum/config", "checksum/secret"} {
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(r.Deployment.Spec.Template.Annotations[a]) {
			t.Errorf("pod annotation %s = %q, want a sha256", a, r.Deployment.Spec.Template.Annotations[a])
		}
	}

	// Kubernetes waits longer than berth serves on (5 s by default) and
	// drains.
	d, err := time.ParseDuration(settings["shutdown_timeout"])
	delay, derr := time.ParseDuration(settings["shutdown_delay"])
	if err != nil || derr != nil {
		t.Errorf("berth.yaml shutdown_timeout %q, shutdown_delay %q: %v %v", settings["shutdown_timeout"], settings["shutdown_delay"], err, derr)
	} else if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= d+delay {
		t.Errorf("terminationGracePeriodSeconds %v does not exceed shutdown_delay %s + shutdown_timeout %s", g, delay, d)
	} else if delay <= 0 {
		t.Errorf("shutdown_delay %s: the chart must keep berth serving while the Service drops it", delay)
	}

	// The selector, the Service and the pod labels agree.
	sel := r.Deployment.Spec.Selector.MatchLabels
	for k, v := range sel {
		if r.Deployment.Spec.Template.Labels[k] != v {
			t.Errorf("the pod template lacks the selector label %s=%s", k, v)
		}
	}
	if len(r.Services) != 1 {
		t.Fatalf("%d Services rendered, want 1", len(r.Services))
	}
	for _, svc := range r.Services {
		if fmt.Sprint(svc.Spec.Selector) != fmt.Sprint(sel) {
			t.Errorf("Service %s selects %v, the Deployment %v", svc.Name, svc.Spec.Selector, sel)
		}
		if len(svc.Spec.Ports) != 1 || (svc.Spec.Ports[0].TargetPort.StrVal != port.Name && svc.Spec.Ports[0].TargetPort.IntValue() != 5000) {
			t.Errorf("Service %s ports %+v do not target the container port", svc.Name, svc.Spec.Ports)
		}
	}
	if sa := pod.ServiceAccountName; sa != "" && sa != "default" {
		if _, ok := r.ServiceAccounts[sa]; !ok {
			t.Errorf("the pod runs as ServiceAccount %s, which is not rendered", sa)
		}
	}
}

// secretRef resolves an env variable of the container to a Secret key:
// it fails when the variable is missing or not from a Secret. It returns
// the Secret's name, the key and, when the chart renders that Secret, the
// value.
func (r *helmRendered) secretRef(t *testing.T, env string) (name, key, value string, inChart bool) {
	t.Helper()
	for _, e := range r.container(t).Env {
		if e.Name != env {
			continue
		}
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("env %s is not taken from a Secret (value %q, valueFrom %+v)", env, e.Value, e.ValueFrom)
			return "", "", "", false
		}
		ref := e.ValueFrom.SecretKeyRef
		s, ok := r.Secrets[ref.Name]
		if !ok {
			return ref.Name, ref.Key, "", false
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			t.Errorf("env %s: Secret %s has no key %s", env, ref.Name, ref.Key)
		}
		return ref.Name, ref.Key, string(v), true
	}
	t.Errorf("the container has no env %s", env)
	return "", "", "", false
}

// hasEnv reports whether the container sets env.
func (r *helmRendered) hasEnv(t *testing.T, env string) bool {
	for _, e := range r.container(t).Env {
		if e.Name == env {
			return true
		}
	}
	return false
}

// checkSecretValue checks that env comes from a rendered Secret holding want.
func (r *helmRendered) checkSecretValue(t *testing.T, env, want string) {
	t.Helper()
	name, key, got, ok := r.secretRef(t, env)
	if name == "" {
		return
	}
	if !ok {
		t.Errorf("env %s refers to Secret %s, which the chart does not render", env, name)
		return
	}
	if got != want {
		t.Errorf("env %s: Secret %s key %s holds %q, want the value passed to the chart", env, name, key, truncate(got, 40))
	}
}

// checkChartNoLeak checks that no secret value appears anywhere but in a
// Secret: not in a ConfigMap, not in a plain env value, not in any other
// rendered document.
func checkChartNoLeak(t *testing.T, r *helmRendered, secrets map[string]string) {
	t.Helper()
	for what, v := range secrets {
		for _, cm := range r.ConfigMaps {
			for k, data := range cm.Data {
				if strings.Contains(data, v) {
					t.Errorf("the %s is in ConfigMap %s key %s", what, cm.Name, k)
				}
			}
		}
		for _, e := range r.container(t).Env {
			if e.Value != "" && strings.Contains(e.Value, v) {
				t.Errorf("the %s is the plain value of env %s", what, e.Name)
			}
		}
		for _, d := range r.Docs {
			if d.Kind != "Secret" && strings.Contains(d.Text, v) {
				t.Errorf("the %s is in %s %s (%s)", what, d.Kind, d.Name, d.Source)
			}
		}
	}
	for _, e := range r.container(t).Env {
		if (strings.Contains(e.Name, "PASSWORD") || strings.Contains(e.Name, "DSN") || strings.Contains(e.Name, "SECRET")) &&
			(e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			t.Errorf("env %s looks secret but is not taken from a Secret", e.Name)
		}
	}
}

// checkChartSigningKeys checks that a Secret volume is mounted read-only at
// keys_dir. When the chart renders that Secret it writes the mounted files
// to a directory and loads them as berth does, returning the kid that
// signs; it returns "" for a Secret the chart does not render.
func checkChartSigningKeys(t *testing.T, r *helmRendered, settings map[string]string) (files map[string]string, signingKID string) {
	t.Helper()
	dir := settings["keys_dir"]
	if dir == "" {
		t.Fatal("berth.yaml sets no keys_dir: the replicas would each make their own keys under data_dir")
	}
	m, v := r.mountAt(t, dir)
	if m == nil || v.Secret == nil {
		t.Fatalf("no Secret volume is mounted at keys_dir %s", dir)
	}
	if !m.ReadOnly {
		t.Errorf("the signing keys at %s are mounted writable", dir)
	}
	s, ok := r.Secrets[v.Secret.SecretName]
	if !ok {
		return nil, ""
	}
	files = map[string]string{}
	if len(v.Secret.Items) == 0 {
		for k, data := range s.Data {
			files[k] = string(data)
		}
	}
	for _, it := range v.Secret.Items {
		data, ok := s.Data[it.Key]
		if !ok {
			t.Errorf("keys volume item %s: Secret %s has no such key", it.Key, s.Name)
		}
		files[it.Path] = string(data)
	}
	if len(files) == 0 {
		t.Fatalf("the keys volume of Secret %s holds no file", s.Name)
	}
	keyDir := t.TempDir()
	for name, data := range files {
		if !strings.HasSuffix(name, ".pem") {
			t.Errorf("keys_dir holds %s, which is not a key file (*.pem)", name)
		}
		writeFile(t, filepath.Join(keyDir, name), []byte(data))
	}
	keys, err := token.LoadKeys(keyDir)
	if err != nil {
		t.Fatalf("berth cannot load the signing keys of Secret %s: %v", s.Name, err)
	}
	if entries, _ := os.ReadDir(keyDir); len(entries) != len(files) {
		t.Errorf("berth made a key of its own beside the %d mounted ones", len(files))
	}
	tok, err := keys.Sign(&token.Claims{})
	if err != nil {
		t.Fatal(err)
	}
	head, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	mustUnmarshal(t, "token header", head, &h)
	return files, h.Kid
}

func TestHelmChart(t *testing.T) {
	helm := needHelm(t)
	chart := chartDir(t)
	sec := newChartSecrets(t)

	s3Args := append(append([]string{
		"--set", "mode=s3-postgres",
		"--set", "replicaCount=3",
		"--set", "s3.bucket=berth-e2e",
		"--set", "s3.region=us-east-1",
		"--set", "s3.endpoint=https://s3.example.com",
		"--set", "s3.pathStyle=true",
		"--set", "podDisruptionBudget.enabled=true",
	}, sec.args()...), sec.storageArgs()...)

	t.Run("lint", func(t *testing.T) {
		for _, set := range [][]string{
			nil,
			{"-f", filepath.Join(chart, "values-embedded.yaml")},
			{"-f", filepath.Join(chart, "values-s3-postgres.yaml")},
			append([]string{"-f", filepath.Join(chart, "values-s3-postgres.yaml"), "--set", "autoscaling.enabled=true"}, sec.storageArgs()...),
		} {
			out := run(t, helm, append([]string{"lint", "--strict", chart}, set...)...)
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Errorf("helm lint --strict %s:\n%s", strings.Join(set, " "), out)
			}
		}
	})

	t.Run("example values", func(t *testing.T) {
		for _, f := range []string{"values.yaml", "values-embedded.yaml", "values-s3-postgres.yaml"} {
			r := helmTemplate(t, helm, append([]string{"-f", filepath.Join(chart, f)}, sec.args()...)...)
			settings, _ := r.settings(t)
			checkChartSettings(t, r)
			checkChartDeployment(t, r, settings)
			checkChartNoLeak(t, r, sec.values())
		}
	})

	t.Run("embedded", func(t *testing.T) {
		r := helmTemplate(t, helm, sec.args()...)
		settings, _ := r.settings(t)
		checkChartSettings(t, r)
		checkChartDeployment(t, r, settings)
		checkChartNoLeak(t, r, sec.values())
		d := r.Deployment
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("embedded mode: replicas %v, want 1", d.Spec.Replicas)
		}
		if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("embedded mode: strategy %q, want Recreate", d.Spec.Strategy.Type)
		}
		_, v := r.mountAt(t, "/data")
		if v == nil || v.PersistentVolumeClaim == nil {
			t.Fatalf("embedded mode: /data is not a PersistentVolumeClaim: %+v", v)
		}
		pvc, ok := r.PVCs[v.PersistentVolumeClaim.ClaimName]
		if !ok {
			t.Errorf("embedded mode: the claim %s is not rendered", v.PersistentVolumeClaim.ClaimName)
		} else if pvc.Spec.Resources.Requests.Storage().IsZero() {
			t.Errorf("PVC %s requests no storage", pvc.Name)
		}
		if settings["storage"] != "filesystem" || settings["metadata"] != "sqlite" {
			t.Errorf("embedded mode: storage %q, metadata %q; want filesystem and sqlite", settings["storage"], settings["metadata"])
		}
		if len(r.HPAs)+len(r.PDBs)+len(r.Ingresses) != 0 {
			t.Errorf("embedded mode renders %d HPAs, %d PDBs, %d Ingresses by default; want none", len(r.HPAs), len(r.PDBs), len(r.Ingresses))
		}
		if r.hasEnv(t, "BERTH_POSTGRES_DSN") || r.hasEnv(t, "AWS_ACCESS_KEY_ID") {
			t.Error("embedded mode passes PostgreSQL or S3 credentials")
		}

		r.checkSecretValue(t, "BERTH_ADMIN_PASSWORD", sec.AdminPassword)
		files, kid := checkChartSigningKeys(t, r, settings)
		if files["key-0001.pem"] != sec.OldKeyPEM || files["key-0002.pem"] != sec.NewKeyPEM || len(files) != 2 {
			t.Errorf("keys_dir holds %v, want key-0001.pem and key-0002.pem as passed", keysOf(files))
		}
		if want := token.KeyID(&sec.NewKey.PublicKey); kid != want {
			t.Errorf("the key that signs is %s, want %s (key-0002.pem, the name that sorts last)", kid, want)
		}

		// Rotation's last step drops the old key with null (docs/deploy.md).
		keysFile := filepath.Join(t.TempDir(), "keys.json")
		writeFile(t, keysFile, mustJSON(t, map[string]any{"auth": map[string]any{"signingKeys": map[string]string{
			"key-0001.pem": sec.OldKeyPEM, "key-0002.pem": sec.NewKeyPEM,
		}}}))
		r = helmTemplate(t, helm, "-f", keysFile, "--set", `auth.signingKeys.key-0001\.pem=null`)
		settings, _ = r.settings(t)
		if files, _ := checkChartSigningKeys(t, r, settings); len(files) != 1 || files["key-0002.pem"] != sec.NewKeyPEM {
			t.Errorf("after dropping key-0001.pem with null, keys_dir holds %v, want key-0002.pem alone", keysOf(files))
		}

		// An existing claim replaces the chart's.
		r = helmTemplate(t, helm, "--set", "persistence.existingClaim=registry-data")
		if _, v := r.mountAt(t, "/data"); v == nil || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "registry-data" {
			t.Errorf("persistence.existingClaim: /data is %+v, want the claim registry-data", v)
		}
		if len(r.PVCs) != 0 {
			t.Errorf("persistence.existingClaim: the chart still renders PVCs %v", keysOf(r.PVCs))
		}
	})

	t.Run("generated secrets", func(t *testing.T) {
		// Nothing given: the chart generates the admin password and an
		// ECDSA P-256 key that berth can load.
		r := helmTemplate(t, helm)
		settings, _ := r.settings(t)
		_, _, pass, ok := r.secretRef(t, "BERTH_ADMIN_PASSWORD")
		if !ok || len(pass) < 16 {
			t.Errorf("generated admin password: %d characters (rendered %v), want at least 16", len(pass), ok)
		}
		files, kid := checkChartSigningKeys(t, r, settings)
		if len(files) != 1 || kid == "" {
			t.Errorf("generated signing keys: %v (kid %q), want one key berth loads", keysOf(files), kid)
		}
		for name, data := range files {
			if blk, _ := pem.Decode([]byte(data)); blk == nil || blk.Type != "EC PRIVATE KEY" {
				t.Errorf("generated key %s is not a PEM EC PRIVATE KEY", name)
			}
		}
		checkChartNoLeak(t, r, map[string]string{"generated admin password": pass})
	})

	t.Run("s3-postgres", func(t *testing.T) {
		r := helmTemplate(t, helm, append(s3Args, "--set", "ingress.enabled=true", "--set", "ingress.host=registry.e2e.example")...)
		settings, _ := r.settings(t)
		checkChartSettings(t, r)
		checkChartDeployment(t, r, settings)
		checkChartNoLeak(t, r, sec.values())
		d := r.Deployment
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
			t.Errorf("s3-postgres mode: replicas %v, want 3 (replicaCount)", d.Spec.Replicas)
		}
		if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
			t.Error("s3-postgres mode: strategy Recreate, want a rolling update")
		}
		for k, want := range map[string]string{
			"storage": "s3", "metadata": "postgres", "s3_bucket": "berth-e2e", "s3_region": "us-east-1",
			"s3_endpoint": "https://s3.example.com", "s3_path_style": "true",
			"external_url": "https://registry.e2e.example",
		} {
			if settings[k] != want {
				t.Errorf("s3-postgres mode: berth.yaml %s = %q, want %q", k, settings[k], want)
			}
		}
		if _, err := config.ParseProxies(settings["trusted_proxies"]); settings["trusted_proxies"] == "" || err != nil {
			t.Errorf("with an Ingress, trusted_proxies = %q (%v), want the ingress controller's addresses", settings["trusted_proxies"], err)
		}
		if _, v := r.mountAt(t, "/data"); v == nil || v.EmptyDir == nil {
			t.Errorf("s3-postgres mode: /data is %+v, want an emptyDir", v)
		}
		if len(r.PVCs) != 0 {
			t.Errorf("s3-postgres mode renders PVCs %v", keysOf(r.PVCs))
		}
		r.checkSecretValue(t, "BERTH_ADMIN_PASSWORD", sec.AdminPassword)
		r.checkSecretValue(t, "BERTH_POSTGRES_DSN", sec.PostgresDSN)
		r.checkSecretValue(t, "AWS_ACCESS_KEY_ID", sec.S3AccessKey)
		r.checkSecretValue(t, "AWS_SECRET_ACCESS_KEY", sec.S3SecretKey)
		if _, kid := checkChartSigningKeys(t, r, settings); kid != token.KeyID(&sec.NewKey.PublicKey) {
			t.Errorf("s3-postgres mode: the key that signs is %s, want key-0002.pem's", kid)
		}

		sel := d.Spec.Selector.MatchLabels
		if len(r.PDBs) != 1 {
			t.Errorf("podDisruptionBudget.enabled: %d PDBs rendered, want 1", len(r.PDBs))
		}
		for _, pdb := range r.PDBs {
			if pdb.Spec.Selector == nil || fmt.Sprint(pdb.Spec.Selector.MatchLabels) != fmt.Sprint(sel) {
				t.Errorf("PDB %s selects %+v, the Deployment %v", pdb.Name, pdb.Spec.Selector, sel)
			}
			if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
				t.Errorf("PDB %s sets neither minAvailable nor maxUnavailable", pdb.Name)
			}
		}
		if len(r.HPAs) != 0 {
			t.Errorf("autoscaling disabled, but %d HPAs rendered", len(r.HPAs))
		}
		if len(r.Ingresses) != 1 {
			t.Fatalf("ingress.enabled: %d Ingresses rendered, want 1", len(r.Ingresses))
		}
		for _, ing := range r.Ingresses {
			if len(ing.Spec.TLS) != 1 || len(ing.Spec.TLS[0].Hosts) != 1 || ing.Spec.TLS[0].Hosts[0] != "registry.e2e.example" {
				t.Errorf("Ingress TLS %+v, want registry.e2e.example", ing.Spec.TLS)
			}
			if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != "registry.e2e.example" || ing.Spec.Rules[0].HTTP == nil ||
				len(ing.Spec.Rules[0].HTTP.Paths) != 1 {
				t.Fatalf("Ingress rules %+v", ing.Spec.Rules)
			}
			b := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service
			if _, ok := r.Services[b.Name]; !ok {
				t.Errorf("the Ingress sends to Service %s, which is not rendered", b.Name)
			}
			if ing.Annotations["nginx.ingress.kubernetes.io/proxy-body-size"] != "0" {
				t.Errorf("the Ingress does not lift the body size limit: %v", ing.Annotations)
			}
		}

		// With an HPA the Deployment leaves replicas to it.
		r = helmTemplate(t, helm, append(s3Args, "--set", "autoscaling.enabled=true", "--set", "autoscaling.minReplicas=2", "--set", "autoscaling.maxReplicas=7")...)
		if r.Deployment.Spec.Replicas != nil {
			t.Errorf("with autoscaling the Deployment still sets replicas %d", *r.Deployment.Spec.Replicas)
		}
		if len(r.HPAs) != 1 {
			t.Fatalf("autoscaling.enabled: %d HPAs rendered, want 1", len(r.HPAs))
		}
		for _, hpa := range r.HPAs {
			ref := hpa.Spec.ScaleTargetRef
			if ref.Kind != "Deployment" || ref.Name != r.Deployment.Name {
				t.Errorf("HPA %s scales %s %s, want Deployment %s", hpa.Name, ref.Kind, ref.Name, r.Deployment.Name)
			}
			if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 7 || len(hpa.Spec.Metrics) == 0 {
				t.Errorf("HPA %s: min %v max %d metrics %d, want 2, 7 and a metric", hpa.Name, hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, len(hpa.Spec.Metrics))
			}
		}
	})

	t.Run("existing secrets", func(t *testing.T) {
		r := helmTemplate(t, helm,
			"--set", "mode=s3-postgres", "--set", "s3.bucket=b",
			"--set", "auth.existingSecret=my-admin", "--set", "auth.existingSecretKey=password",
			"--set", "auth.signingKeysExistingSecret=my-keys",
			"--set", "postgres.existingSecret=my-pg", "--set", "postgres.existingSecretKey=uri",
			"--set", "s3.existingSecret=my-s3")
		if len(r.Secrets) != 0 {
			t.Errorf("with existing Secrets for everything the chart still renders Secrets %v", keysOf(r.Secrets))
		}
		for env, want := range map[string]string{
			"BERTH_ADMIN_PASSWORD":  "my-admin/password",
			"BERTH_POSTGRES_DSN":    "my-pg/uri",
			"AWS_ACCESS_KEY_ID":     "my-s3/AWS_ACCESS_KEY_ID",
			"AWS_SECRET_ACCESS_KEY": "my-s3/AWS_SECRET_ACCESS_KEY",
		} {
			if name, key, _, _ := r.secretRef(t, env); name+"/"+key != want {
				t.Errorf("env %s from %s/%s, want %s", env, name, key, want)
			}
		}
		settings, _ := r.settings(t)
		checkChartSigningKeys(t, r, settings)
		if _, v := r.mountAt(t, settings["keys_dir"]); v.Secret.SecretName != "my-keys" || len(v.Secret.Items) != 0 {
			t.Errorf("keys_dir mounts %+v, want all of Secret my-keys", v.Secret)
		}

		// No static S3 keys: the AWS SDK's default chain (IRSA).
		r = helmTemplate(t, helm, "--set", "mode=s3-postgres", "--set", "s3.bucket=b", "--set", "postgres.dsn="+sec.PostgresDSN)
		if r.hasEnv(t, "AWS_ACCESS_KEY_ID") || r.hasEnv(t, "AWS_SECRET_ACCESS_KEY") {
			t.Error("without S3 keys the pod still gets AWS_* variables")
		}
		r.checkSecretValue(t, "BERTH_POSTGRES_DSN", sec.PostgresDSN)
	})

	t.Run("refused values", func(t *testing.T) {
		const oneReplica = "mode embedded runs exactly 1 replica"
		helmTemplateFails(t, helm, oneReplica, "--set", "replicaCount=2")
		helmTemplateFails(t, helm, "autoscaling.enabled needs mode s3-postgres", "--set", "autoscaling.enabled=true")
		helmTemplateFails(t, helm, oneReplica, "-f", filepath.Join(chart, "values-embedded.yaml"), "--set", "replicaCount=3")
		helmTemplateFails(t, helm, "podDisruptionBudget.enabled needs mode s3-postgres", "--set", "podDisruptionBudget.enabled=true")
		helmTemplateFails(t, helm, `mode must be "embedded" or "s3-postgres"`, "--set", "mode=s3")
		helmTemplateFails(t, helm, `auth.mode must be "token" or "none"`, "--set", "auth.mode=basic")
		helmTemplateFails(t, helm, "mode s3-postgres needs s3.bucket", "--set", "mode=s3-postgres", "--set", "postgres.dsn=x")
		helmTemplateFails(t, helm, "mode s3-postgres needs postgres.dsn", "--set", "mode=s3-postgres", "--set", "s3.bucket=b")
		helmTemplateFails(t, helm, "set both s3.accessKeyId and s3.secretAccessKey",
			"--set", "mode=s3-postgres", "--set", "s3.bucket=b", "--set", "postgres.dsn=x", "--set", "s3.accessKeyId=a")
		helmTemplateFails(t, helm, "must exceed shutdownDelaySeconds + shutdownTimeoutSeconds", "--set", "terminationGracePeriodSeconds=34")
		helmTemplateFails(t, helm, "shutdownDelaySeconds must not be negative", "--set", "shutdownDelaySeconds=-1")
		helmTemplateFails(t, helm, "must be a file name ending in .pem", "--set", "auth.signingKeys.key=x")
		helmTemplateFails(t, helm, "config.admin_password is a secret", "--set", "config.admin_password="+sec.AdminPassword)
		helmTemplateFails(t, helm, "config.postgres_dsn is a secret", "--set", "config.postgres_dsn=x")
		helmTemplateFails(t, helm, "config.no_such_setting is not a berth setting", "--set", "config.no_such_setting=1")
	})

	// Every berth setting is either written by the chart or may be set
	// through config; a setting added to berth but not to the chart's
	// lists (templates/_helpers.tpl) fails here.
	t.Run("settings", func(t *testing.T) {
		managed := map[string]string{
			"addr": "is set by the chart", "data_dir": "is set by the chart", "keys_dir": "is set by the chart",
			"auth": "is set by the chart", "tls_cert": "is set by the chart", "tls_key": "is set by the chart",
			"shutdown_timeout": "is set by the chart", "shutdown_delay": "is set by the chart", "storage": "is set by the chart", "metadata": "is set by the chart",
			"s3_bucket": "is set by the chart", "s3_prefix": "is set by the chart", "s3_region": "is set by the chart",
			"s3_endpoint": "is set by the chart", "s3_path_style": "is set by the chart", "s3_redirect": "is set by the chart",
			"admin_password": "is a secret", "postgres_dsn": "is a secret", "ldap_bind_password": "is a secret", "oidc_client_secret": "is a secret",
		}
		user := map[string]string{}
		for _, o := range config.Options {
			if why, ok := managed[o.Key]; ok {
				helmTemplateFails(t, helm, "config."+o.Key+" "+why, "--set-string", "config."+o.Key+"="+o.Default)
				continue
			}
			user[o.Key] = o.Default
		}
		valuesFile := filepath.Join(t.TempDir(), "values.yaml")
		b, err := json.Marshal(map[string]any{"config": user})
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, valuesFile, b)
		r := helmTemplate(t, helm, "-f", valuesFile)
		settings, _ := r.settings(t)
		for k, v := range user {
			if settings[k] != v {
				t.Errorf("config.%s=%q: berth.yaml has %q", k, v, settings[k])
			}
		}
		checkChartSettings(t, r)
	})
}
