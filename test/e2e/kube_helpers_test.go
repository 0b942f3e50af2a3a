package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/openapi/openapitest"
	"sigs.k8s.io/yaml"
)

// This file is the harness of the kube_*_test.go tests: the berth CLI's
// Kubernetes commands (secret create, doctor, credential-provider) run as
// an operator runs them, and what they print read back by the code the
// ecosystem reads it with: the Kubernetes API types, go-containerregistry's
// port of the kubelet's keyring (pkg/authn/kubernetes), kubectl, and
// containerd's CRI plugin through crictl.

// berthKube runs the berth CLI with stdin and extra environment variables
// (later ones win), with an empty berth configuration directory and home,
// and none of the caller's BERTH_REGISTRY, BERTH_USERNAME, BERTH_PASSWORD
// or BERTH_CA_CERT.
func berthKube(t *testing.T, env []string, stdin string, args ...string) cmdResult {
	t.Helper()
	home := t.TempDir()
	base := []string{
		"HOME=" + home,
		"BERTH_CONFIG_DIR=" + filepath.Join(home, "berth"),
		"DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
		"KUBECONFIG=" + filepath.Join(home, "no-kubeconfig"),
		"BERTH_REGISTRY=", "BERTH_USERNAME=", "BERTH_PASSWORD=", "BERTH_CA_CERT=",
	}
	return execStdin(t, append(base, env...), stdin, berthBin, args...)
}

// adminEnv is the environment that points the berth CLI at b as admin.
func (b *authBerth) adminEnv() []string {
	return []string{"BERTH_REGISTRY=" + b.URL, "BERTH_USERNAME=admin", "BERTH_PASSWORD=" + b.AdminPassword}
}

// kubeDockerConfig is the payload of a kubernetes.io/dockerconfigjson
// Secret (a docker config file).
type kubeDockerConfig struct {
	Auths       map[string]kubeAuthEntry `json:"auths"`
	CredsStore  string                   `json:"credsStore,omitempty"`
	CredHelpers map[string]string        `json:"credHelpers,omitempty"`
}

// kubeAuthEntry is one entry of a docker config's auths.
type kubeAuthEntry struct {
	Auth          string `json:"auth,omitempty"`
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	Email         string `json:"email,omitempty"`
}

// pullSecret is a Secret printed by `berth secret create`, as the file
// an operator would save and the object the API server would store.
type pullSecret struct {
	// Path is the file the manifest was written to.
	Path string
	// Raw is the manifest as printed.
	Raw []byte
	// Secret is the manifest decoded into the Kubernetes API type.
	Secret corev1.Secret
	// Config is the decoded .dockerconfigjson.
	Config kubeDockerConfig
}

// base64Line is one unbroken standard-base64 string.
var base64Line = regexp.MustCompile(`^[A-Za-z0-9+/]+={0,2}$`)

// makePullSecret runs `berth secret create NAME ARGS...` (with env and
// stdin) and decodes what it prints; the output format is json when args
// hold "-o json", else yaml. The manifest is saved under the test's temp
// dir. It fails the test unless the command succeeds and prints a
// well-formed pull Secret (see decodePullSecret).
func makePullSecret(t *testing.T, env []string, stdin string, args ...string) (*pullSecret, cmdResult) {
	t.Helper()
	r := berthKube(t, env, stdin, append([]string{"secret", "create"}, args...)...)
	mustSucceed(t, "berth secret create "+strings.Join(args, " "), r)
	format := "yaml"
	for i, a := range args {
		if (a == "-o" || a == "--output") && i+1 < len(args) {
			format = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--output="); ok {
			format = v
		} else if v, ok := strings.CutPrefix(a, "-o="); ok {
			format = v
		}
	}
	ps := decodePullSecret(t, "berth secret create "+strings.Join(args, " "), []byte(r.Stdout), format)
	ps.Path = filepath.Join(t.TempDir(), "regcred."+format)
	writeFile(t, ps.Path, ps.Raw)
	return ps, r
}

// decodePullSecret decodes a printed pull Secret with the Kubernetes API
// types (strictly: no unknown fields) and checks what the kubelet needs:
// kind Secret of v1, type kubernetes.io/dockerconfigjson, one data key
// .dockerconfigjson whose value in the manifest is a single unbroken
// base64 string, holding a docker config with auths and no credential
// helper (the kubelet cannot run one).
func decodePullSecret(t *testing.T, what string, raw []byte, format string) *pullSecret {
	t.Helper()
	ps := &pullSecret{Raw: raw}
	// The value as it stands in the manifest.
	var generic struct {
		Data map[string]any `json:"data"`
	}
	switch format {
	case "json":
		if !json.Valid(raw) {
			t.Fatalf("%s -o json printed no JSON:\n%s", what, truncate(string(raw), 2000))
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ps.Secret); err != nil {
			t.Fatalf("%s: decoding the JSON into a core/v1 Secret: %v\n%s", what, err, truncate(string(raw), 2000))
		}
		mustUnmarshal(t, what, raw, &generic)
	case "yaml":
		if json.Valid(bytes.TrimSpace(raw)) {
			t.Errorf("%s printed JSON, want YAML:\n%s", what, truncate(string(raw), 2000))
		}
		if err := yaml.UnmarshalStrict(raw, &ps.Secret); err != nil {
			t.Fatalf("%s: decoding the YAML into a core/v1 Secret: %v\n%s", what, err, truncate(string(raw), 2000))
		}
		if err := yaml.Unmarshal(raw, &generic); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown format %q", format)
	}
	s := &ps.Secret
	if s.Kind != "Secret" || s.APIVersion != "v1" {
		t.Errorf("%s: kind %q apiVersion %q, want Secret v1", what, s.Kind, s.APIVersion)
	}
	if s.Type != corev1.SecretTypeDockerConfigJson {
		t.Errorf("%s: type %q, want %q", what, s.Type, corev1.SecretTypeDockerConfigJson)
	}
	if len(s.StringData) != 0 {
		t.Errorf("%s: has stringData %v, want only data", what, s.StringData)
	}
	if len(s.Data) != 1 {
		t.Errorf("%s: data keys %v, want only %s", what, keysOf(s.Data), corev1.DockerConfigJsonKey)
	}
	payload, ok := s.Data[corev1.DockerConfigJsonKey]
	if !ok {
		t.Fatalf("%s: no data key %s (has %v):\n%s", what, corev1.DockerConfigJsonKey, keysOf(s.Data), raw)
	}
	text, isString := generic.Data[corev1.DockerConfigJsonKey].(string)
	switch {
	case !isString:
		t.Errorf("%s: data[%s] is a %T in the manifest, want a string", what, corev1.DockerConfigJsonKey, generic.Data[corev1.DockerConfigJsonKey])
	case !base64Line.MatchString(text):
		t.Errorf("%s: data[%s] is not one unbroken base64 string: %q", what, corev1.DockerConfigJsonKey, truncate(text, 200))
	case base64.StdEncoding.EncodeToString(payload) != text:
		t.Errorf("%s: data[%s] does not decode to the Secret's value", what, corev1.DockerConfigJsonKey)
	}
	if format == "yaml" && isString && !bytes.Contains(raw, []byte("\n  "+corev1.DockerConfigJsonKey+": "+text+"\n")) {
		t.Errorf("%s: the YAML does not hold data[%s] on one line:\n%s", what, corev1.DockerConfigJsonKey, raw)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ps.Config); err != nil {
		t.Fatalf("%s: .dockerconfigjson is not a docker config: %v\n%s", what, err, truncate(string(payload), 1000))
	}
	if len(ps.Config.Auths) == 0 {
		t.Errorf("%s: .dockerconfigjson has no auths: %s", what, payload)
	}
	if ps.Config.CredsStore != "" || len(ps.Config.CredHelpers) > 0 {
		t.Errorf("%s: .dockerconfigjson names a credential helper, which the kubelet cannot run: %s", what, payload)
	}
	if !t.Failed() {
		t.Logf("%s: Secret %s/%s, type %s, auths %v", what, s.Namespace, s.Name, s.Type, keysOf(ps.Config.Auths))
	}
	return ps
}

// keysOf returns a map's keys (for messages).
func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// checkEntry checks that the Secret's auths entry key carries user and
// password both ways the kubelet reads them: auth (base64 of
// user:password, which wins) and the username and password fields.
func (ps *pullSecret) checkEntry(t *testing.T, key, user, password string) {
	t.Helper()
	e, ok := ps.Config.Auths[key]
	if !ok {
		t.Errorf("the Secret has no auths entry %q (has %v)", key, keysOf(ps.Config.Auths))
		return
	}
	raw, err := base64.StdEncoding.DecodeString(e.Auth)
	if err != nil {
		t.Errorf("auths[%q].auth is not base64: %q", key, e.Auth)
	}
	if got, want := string(raw), user+":"+password; got != want {
		t.Errorf("auths[%q].auth decodes to %q, want %q", key, got, want)
	}
	if e.Username != user || e.Password != password {
		t.Errorf("auths[%q] has username %q password %q, want %q %q", key, e.Username, e.Password, user, password)
	}
	if e.IdentityToken != "" {
		t.Errorf("auths[%q] has an identity token, which the kubelet cannot use", key)
	}
}

// kubeletAuth resolves, with go-containerregistry's port of the kubelet's
// keyring (pkg/authn/kubernetes, the kubelet's matching rules on
// imagePullSecrets), the credentials the kubelet would hand the container
// runtime for repo: the CRI AuthConfig. It fails the test when no entry
// matches (the kubelet would then pull anonymously).
func kubeletAuth(t *testing.T, secrets []corev1.Secret, repo string) (authn.Keychain, *authn.AuthConfig) {
	t.Helper()
	ctx := context.Background()
	kc, err := kubernetes.NewFromPullSecrets(ctx, secrets)
	if err != nil {
		t.Fatalf("kubernetes.NewFromPullSecrets: %v", err)
	}
	r, err := name.NewRepository(repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	a, err := authn.Resolve(ctx, kc, r)
	if err != nil {
		t.Fatalf("resolving credentials for %s: %v", repo, err)
	}
	if a == authn.Anonymous {
		t.Fatalf("no entry of the Secret matches %s: the kubelet would pull anonymously", repo)
	}
	cfg, err := authn.Authorization(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Username == "" || cfg.Password == "" {
		t.Fatalf("the keychain resolved %s to username %q and a password of %d bytes", repo, cfg.Username, len(cfg.Password))
	}
	return kc, cfg
}

// remoteOpts are go-containerregistry options with a bounded context.
func remoteOpts(t *testing.T, kc authn.Keychain) []remote.Option {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
}

// pullWithKeychain pulls ref (plain HTTP) with go-containerregistry and
// the keychain and checks that it gets img: manifest digest, config
// digest and layer bytes.
func pullWithKeychain(t *testing.T, kc authn.Keychain, ref string, img *ociImage) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r, remoteOpts(t, kc)...)
	if err != nil {
		t.Fatalf("remote.Image(%s) with the Secret's keychain: %v", ref, err)
	}
	if d, err := got.Digest(); err != nil || d.String() != img.ManifestDigest {
		t.Errorf("remote.Image(%s): manifest digest %v (err %v), pushed %s", ref, d, err, img.ManifestDigest)
	}
	if d, err := got.ConfigName(); err != nil || d.String() != img.ConfigDigest {
		t.Errorf("remote.Image(%s): config digest %v (err %v), pushed %s", ref, d, err, img.ConfigDigest)
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("remote.Image(%s): %d layers (err %v), want 1", ref, len(layers), err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatalf("remote.Image(%s): layer: %v", ref, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(data, img.Layer) {
		t.Errorf("remote.Image(%s): layer of %d bytes (err %v), want the %d pushed bytes", ref, len(data), err, len(img.Layer))
	}
}

// registryRefusal returns the HTTP status of a go-containerregistry error
// when the registry refused the request (401 or 403), else 0.
func registryRefusal(err error) int {
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return te.StatusCode
	}
	return 0
}

// kubectlTool returns the kubectl that scripts/test-deps.sh builds into
// the tools directory (the cluster's version), else one on PATH; when
// neither exists the test fails under CI=true and is skipped otherwise.
func kubectlTool(t *testing.T) string {
	t.Helper()
	p := filepath.Join(toolsBinDir(), "kubectl")
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return p
	}
	return needTool(t, "kubectl")
}

// fakeKubeAPI serves what `kubectl create --dry-run=client` asks a cluster
// for: legacy discovery of core/v1 Secrets and the real core/v1 OpenAPI v3
// document (client-go's copy), which, like any current API server, offers
// server-side field validation. It returns a kubeconfig for it. kubectl
// cannot map a manifest to a resource without discovery, not even for a
// client-side dry run.
func fakeKubeAPI(t *testing.T) string {
	t.Helper()
	paths, err := openapitest.NewEmbeddedFileClient().Paths()
	if err != nil {
		t.Fatal(err)
	}
	gv, ok := paths["api/v1"]
	if !ok {
		t.Fatal("client-go's openapitest has no api/v1 document")
	}
	coreV1, err := gv.Schema("application/json")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method != http.MethodGet:
			// A client-side dry run must send nothing.
			w.WriteHeader(http.StatusMethodNotAllowed)
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the fake API server only serves discovery","code":405}`)
		case r.URL.Path == "/api":
			fmt.Fprintf(w, `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":%q}]}`, r.Host)
		case r.URL.Path == "/apis":
			fmt.Fprint(w, `{"kind":"APIGroupList","apiVersion":"v1","groups":[]}`)
		case r.URL.Path == "/api/v1":
			fmt.Fprint(w, `{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"secrets","singularName":"secret","namespaced":true,"kind":"Secret","verbs":["create","delete","deletecollection","get","list","patch","update","watch"]}]}`)
		case r.URL.Path == "/openapi/v3":
			fmt.Fprint(w, `{"paths":{"api/v1":{"serverRelativeURL":"/openapi/v3/api/v1?hash=berth-e2e"}}}`)
		case r.URL.Path == "/openapi/v3/api/v1":
			_, _ = w.Write(coreV1)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
		}
	}))
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, s := range seen {
			if !strings.HasPrefix(s, "GET ") {
				t.Errorf("kubectl sent %s to the API server during a client-side dry run", s)
			}
		}
	})
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	writeFile(t, kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: %s
users:
- name: nobody
  user: {}
contexts:
- name: fake
  context:
    cluster: fake
    user: nobody
    namespace: default
current-context: fake
`, srv.URL)))
	return kubeconfig
}

// kubectlDryRun runs `kubectl create --dry-run=client -f` on a Secret
// manifest and checks that kubectl reads back the same Secret.
func kubectlDryRun(t *testing.T, kubectl, kubeconfig string, ps *pullSecret) {
	t.Helper()
	env := append(isolatedHome(t), "KUBECONFIG="+kubeconfig)
	r := execIn(t, "", env, kubectl, "create", "--dry-run=client", "--validate=strict", "-f", ps.Path, "-o", "json")
	out := mustSucceed(t, "kubectl create --dry-run=client -f "+filepath.Base(ps.Path), r)
	var got corev1.Secret
	mustUnmarshal(t, "kubectl's dry-run output", []byte(out), &got)
	if got.Kind != "Secret" || got.Name != ps.Secret.Name || got.Namespace != ps.Secret.Namespace || got.Type != ps.Secret.Type {
		t.Errorf("kubectl read %s %s/%s of type %s, want Secret %s/%s of type %s",
			got.Kind, got.Namespace, got.Name, got.Type, ps.Secret.Namespace, ps.Secret.Name, ps.Secret.Type)
	}
	if !bytes.Equal(got.Data[corev1.DockerConfigJsonKey], ps.Secret.Data[corev1.DockerConfigJsonKey]) {
		t.Errorf("kubectl read a different .dockerconfigjson:\n%s\nwant:\n%s", got.Data[corev1.DockerConfigJsonKey], ps.Secret.Data[corev1.DockerConfigJsonKey])
	}
}

// criClient runs crictl against a containerd started by startContainerd,
// with an empty home (no credentials but those given with --creds).
type criClient struct {
	t      *testing.T
	crictl string
	config string
}

// newCRIClient writes a crictl configuration for ctrd's socket and waits
// until containerd's CRI image service answers.
func newCRIClient(t *testing.T, crictl string, ctrd *ctrdInstance) *criClient {
	t.Helper()
	c := &criClient{t: t, crictl: crictl, config: filepath.Join(t.TempDir(), "crictl.yaml")}
	writeFile(t, c.config, []byte(fmt.Sprintf("runtime-endpoint: unix://%[1]s\nimage-endpoint: unix://%[1]s\ntimeout: 60\n", ctrd.Socket)))
	for deadline := time.Now().Add(startTimeout); ; {
		r := c.run("images")
		if r.Err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd's CRI image service does not answer: %v\n%s", r.Err, r.combined())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return c
}

// run runs crictl with args.
func (c *criClient) run(args ...string) cmdResult {
	c.t.Helper()
	return execIn(c.t, "", isolatedHome(c.t), c.crictl, append([]string{"--config", c.config}, args...)...)
}

// imageID returns the id (config digest) of the image containerd holds
// under ref, or "" when it holds none.
func (c *criClient) imageID(ref string) string {
	c.t.Helper()
	out := mustSucceed(c.t, "crictl images", c.run("images", "-o", "json"))
	var list struct {
		Images []struct {
			ID       string   `json:"id"`
			RepoTags []string `json:"repoTags"`
		} `json:"images"`
	}
	mustUnmarshal(c.t, "crictl images", []byte(out), &list)
	for _, im := range list.Images {
		for _, tag := range im.RepoTags {
			if tag == ref {
				return im.ID
			}
		}
	}
	return ""
}

// exitCode is a command's exit status (-1 when it did not exit).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
