package kube_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/kube"
	"github.com/berth-registry/berth/internal/server"
	"sigs.k8s.io/yaml"
)

const adminPass = "doctor-admin-pass"

// live is a berth with auth, with team/app:v1 (linux/amd64), team/arm:v1
// (an index with only linux/arm64), pub/app:v1 in a public namespace.
type live struct {
	t    *testing.T
	url  string
	host string
}

func startLive(t *testing.T) *live {
	t.Helper()
	cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Auth: "token", AdminPassword: adminPass, MaxManifestSize: 1 << 20,
		UploadTTL: time.Hour, ShutdownTimeout: time.Second, BodyTimeout: time.Minute, TokenTTL: 5 * time.Minute}
	srv, err := server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Close() })
	l := &live{t: t, url: ts.URL, host: strings.TrimPrefix(ts.URL, "http://")}
	l.admin("POST", "/api/v1/namespaces", `{"name":"team"}`)
	l.admin("POST", "/api/v1/namespaces", `{"name":"pub","public":true}`)
	l.admin("POST", "/api/v1/users", `{"name":"eve","password":"eve-password-1"}`)
	l.pushImage("team/app", "v1", "amd64", false)
	l.pushImage("team/arm", "v1", "arm64", true)
	l.pushImage("pub/app", "v1", "amd64", false)
	return l
}

func (l *live) req(method, path, auth, ctype string, body []byte) (int, []byte) {
	l.t.Helper()
	r, _ := http.NewRequest(method, l.url+path, strings.NewReader(string(body)))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		l.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (l *live) admin(method, path, body string) []byte {
	l.t.Helper()
	st, b := l.req(method, path, "Basic "+base64.StdEncoding.EncodeToString([]byte("admin:"+adminPass)), "application/json", []byte(body))
	if st/100 != 2 {
		l.t.Fatalf("%s %s: %d %s", method, path, st, b)
	}
	return b
}

func (l *live) robot(name, scope string) (string, string) {
	var r struct{ Name, Secret string }
	_ = json.Unmarshal(l.admin("POST", "/api/v1/namespaces/team/robots", `{"name":"`+name+`","scopes":["`+scope+`"],"actions":["pull"]}`), &r)
	return r.Name, r.Secret
}

func digest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func (l *live) pushImage(repo, tag, arch string, asIndex bool) {
	l.t.Helper()
	q := url.Values{"service": {"berth"}, "scope": {"repository:" + repo + ":pull,push"}}
	st, b := l.req("GET", "/token?"+q.Encode(), "Basic "+base64.StdEncoding.EncodeToString([]byte("admin:"+adminPass)), "", nil)
	var tr struct{ Token string }
	if json.Unmarshal(b, &tr) != nil || st != 200 {
		l.t.Fatalf("token: %d %s", st, b)
	}
	bearer := "Bearer " + tr.Token
	put := func(data []byte) string {
		d := digest(data)
		if st, b := l.req("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d, bearer, "application/octet-stream", data); st != 201 {
			l.t.Fatalf("blob: %d %s", st, b)
		}
		return d
	}
	cfg := []byte(`{"architecture":"` + arch + `","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := []byte("layer of " + repo)
	man := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		put(cfg), len(cfg), put(layer), len(layer)))
	ref, body, mt := tag, man, "application/vnd.oci.image.manifest.v1+json"
	if asIndex {
		ref = digest(man)
	}
	if st, b := l.req("PUT", "/v2/"+repo+"/manifests/"+ref, bearer, mt, body); st != 201 {
		l.t.Fatalf("manifest: %d %s", st, b)
	}
	if asIndex {
		idx := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"%s","digest":"%s","size":%d,"platform":{"os":"linux","architecture":"%s"}}]}`, mt, digest(man), len(man), arch))
		if st, b := l.req("PUT", "/v2/"+repo+"/manifests/"+tag, bearer, "application/vnd.oci.image.index.v1+json", idx); st != 201 {
			l.t.Fatalf("index: %d %s", st, b)
		}
	}
}

// fileSecret is a Secret as written in a manifest file.
func fileSecret(name, typ, key, value string) kube.SecretInput {
	return kube.SecretInput{Name: name, Found: true, Type: typ, Data: map[string]string{key: value}, Encoded: true}
}

const dcj = "kubernetes.io/dockerconfigjson"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// configFor is a docker config JSON with one entry.
func configFor(key, user, pass string) string {
	return `{"auths":{"` + key + `":{"auth":"` + b64(user+":"+pass) + `"}}}`
}

func TestDoctor(t *testing.T) {
	l := startLive(t)
	robot, secret := l.robot("ci", "team/*")
	revoked, revokedSecret := l.robot("old", "team/*")
	l.admin("DELETE", "/api/v1/namespaces/team/robots/"+revoked, "")
	narrow, narrowSecret := l.robot("narrow", "team/other")
	good := configFor(l.host, robot, secret)
	img := l.host + "/team/app:v1"
	port := l.host[strings.LastIndex(l.host, ":"):]
	withNS := func(s kube.SecretInput, ns string) kube.SecretInput { s.Namespace = ns; return s }

	cases := []struct {
		name    string
		image   string
		secrets []kube.SecretInput
		want    string   // the failing check, "" when the pull succeeds
		says    []string // phrases its message and fix hold together
	}{
		{"working robot secret", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(good))}, "", nil},
		{"dockercfg type and key", img, []kube.SecretInput{fileSecret("regcred", "kubernetes.io/dockercfg", ".dockercfg", b64(`{"`+l.host+`":{"auth":"`+b64(robot+":"+secret)+`"}}`))}, "", nil},
		{"scheme and /v2/ in the key", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(configFor("http://"+l.host+"/v2/", robot, secret)))}, "", nil},
		{"public namespace, no secret", l.host + "/pub/app:v1", nil, "", nil},
		{"secret missing", img, []kube.SecretInput{{Name: "regcred"}}, "secret", nil},
		{"secret in another namespace", img, []kube.SecretInput{withNS(fileSecret("regcred", dcj, ".dockerconfigjson", b64(good)), "other")}, "secret", nil},
		{"type Opaque", img, []kube.SecretInput{fileSecret("regcred", "Opaque", ".dockerconfigjson", b64(good))}, "type", nil},
		{"dockercfg type holding a docker config file", img, []kube.SecretInput{fileSecret("regcred", "kubernetes.io/dockercfg", ".dockercfg", b64(good))}, "type", []string{
			`secret regcred has the legacy type kubernetes.io/dockercfg but the new content ({"auths": {...}}) in .dockercfg`,
			"type kubernetes.io/dockerconfigjson and the data under key .dockerconfigjson",
			`or drop the "auths" wrapper from .dockercfg`,
		}},
		{"dockercfg type with dockerconfigjson key", img, []kube.SecretInput{fileSecret("regcred", "kubernetes.io/dockercfg", ".dockerconfigjson", b64(good))}, "key", nil},
		{"data key config.json", img, []kube.SecretInput{fileSecret("regcred", dcj, "config.json", b64(good))}, "key", nil},
		{"value not base64", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", "eyJhdXRocyI6e30=\n%%%")}, "encoding", nil},
		{"base64 twice", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(b64(good)))}, "encoding", nil},
		{"stringData holding base64", img, []kube.SecretInput{{Name: "regcred", Found: true, Type: dcj, StringData: map[string]string{".dockerconfigjson": b64(good)}, Encoded: true}}, "encoding", nil},
		{"not JSON", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64("auths: yes"))}, "json", nil},
		{"no auths", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(`{"`+l.host+`":{"auth":"`+b64(robot+":"+secret)+`"}}`))}, "json", nil},
		{"auth not base64", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(`{"auths":{"`+l.host+`":{"auth":"not base64!"}}}`))}, "entry", nil},
		{"auth without colon", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(`{"auths":{"`+l.host+`":{"auth":"`+b64(robot+secret)+`"}}}`))}, "entry", nil},
		{"good secret beside a malformed one", img, []kube.SecretInput{
			fileSecret("regcred", dcj, ".dockerconfigjson", b64(good)),
			fileSecret("broken", dcj, ".dockerconfigjson", b64(`{"auths":{"other.example.com":{"auth":"%%%"}}}`)),
		}, "entry", nil},
		{"credentials in a credential helper", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(`{"auths":{"`+l.host+`":{}},"credsStore":"desktop"}`))}, "helper", nil},
		{"identity token only", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(`{"auths":{"`+l.host+`":{"auth":"`+b64(robot+":")+`","identitytoken":"berth-refresh-x"}}}`))}, "entry", nil},
		{"key without the port", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(configFor("127.0.0.1", robot, secret)))}, "match", nil},
		{"key localhost for 127.0.0.1", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(configFor("localhost"+port, robot, secret)))}, "match", nil},
		{"wildcard with fewer labels", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(configFor("*.0.1"+port, robot, secret)))}, "match", nil},
		{"key path not a prefix", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(configFor(l.host+"/other", robot, secret)))}, "match", nil},
		{"wrong password", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(configFor(l.host, robot, secret+"x")))}, "credentials", nil},
		{"revoked robot", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(configFor(l.host, revoked, revokedSecret)))}, "credentials", nil},
		{"robot outside its scope", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(configFor(l.host, narrow, narrowSecret)))}, "access", nil},
		{"user not a member", img, []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(configFor(l.host, "eve", "eve-password-1")))}, "access", nil},
		{"no secret, private namespace", img, nil, "access", nil},
		{"tag missing", l.host + "/team/app:v2", []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(good))}, "reference", nil},
		{"no linux/amd64 image", l.host + "/team/arm:v1", []kube.SecretInput{fileSecret("regcred", dcj, ".dockerconfigjson", b64(good))}, "platform", nil},
	}
	console := l.console()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			findings, ok := kube.Diagnose(context.Background(), kube.Input{Image: c.image, PodNamespace: "default", Secrets: c.secrets}, &kube.HTTPProber{})
			failed, said := "", ""
			for _, f := range findings {
				if !f.OK && failed == "" {
					failed, said = f.Check, f.Message+" (fix: "+f.Fix+")"
					if f.Fix == "" {
						t.Errorf("finding %q has no fix", f.Message)
					}
				}
			}
			if ok != (c.want == "") || failed != c.want {
				t.Errorf("ok=%v first failing check %q, want %q; findings:\n%s", ok, failed, c.want, dump(findings))
			}
			for _, phrase := range c.says {
				if !strings.Contains(said, phrase) {
					t.Errorf("the first failing finding does not say %q; findings:\n%s", phrase, dump(findings))
				}
			}
			// The console's Doctor page, given the case as a user pastes
			// it, finds what berth doctor finds from the same manifests
			// as files.
			secretsYAML, podYAML := pasted(t, c.image, c.secrets)
			req := kube.Request{Image: c.image}
			for _, text := range []string{secretsYAML, podYAML} {
				if err := req.AddManifests([]byte(text)); err != nil {
					t.Fatalf("the pasted manifests: %v\n%s", err, text)
				}
			}
			in, err := kube.Assemble(req)
			if err != nil {
				t.Fatal(err)
			}
			cliFindings, cliOK := kube.Diagnose(context.Background(), in, &kube.HTTPProber{})
			got, gotOK := console.doctor(secretsYAML, podYAML, c.image)
			if want := rows(cliFindings); strings.Join(got, "\n") != strings.Join(want, "\n") || gotOK != cliOK {
				t.Errorf("the console's findings (ok %v):\n%s\nberth doctor's (ok %v):\n%s", gotOK, strings.Join(got, "\n"), cliOK, strings.Join(want, "\n"))
			}
		})
	}
}

// rows renders findings as the console's table rows are compared.
func rows(fs []kube.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %v %s | %s", f.Check, f.OK, f.Message, f.Fix))
	}
	return out
}

// pasted renders a case's Secrets as the manifests a user pastes into the
// console (the values of data as a file holds them), and, when some
// Secret is not found, a Pod that lists them all, as the way a missing
// Secret comes in.
func pasted(t *testing.T, image string, secrets []kube.SecretInput) (secretsYAML, podYAML string) {
	t.Helper()
	var docs, names []string
	missing := false
	for _, s := range secrets {
		names = append(names, s.Name)
		if !s.Found {
			missing = true
			continue
		}
		meta := map[string]any{"name": s.Name}
		if s.Namespace != "" {
			meta["namespace"] = s.Namespace
		}
		m := map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": s.Type}
		if s.Data != nil {
			m["data"] = s.Data
		}
		if s.StringData != nil {
			m["stringData"] = s.StringData
		}
		b, err := yaml.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	if missing {
		var refs []map[string]string
		for _, n := range names {
			refs = append(refs, map[string]string{"name": n})
		}
		b, err := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "app", "namespace": "default"},
			"spec": map[string]any{"imagePullSecrets": refs, "containers": []map[string]string{{"name": "app", "image": image}}}})
		if err != nil {
			t.Fatal(err)
		}
		podYAML = string(b)
	}
	return strings.Join(docs, "---\n"), podYAML
}

// consoleClient signs in to the live server's console once and submits
// the Doctor form.
type consoleClient struct {
	t      *testing.T
	base   string
	client *http.Client
}

var (
	csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	rowRE  = regexp.MustCompile(`<tr data-check="([^"]+)" data-ok="(true|false)"><td>[^<]*</td><td>.*?</td><td>(.*?)</td><td>(.*?)</td></tr>`)
)

func (l *live) console() *consoleClient {
	l.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &consoleClient{t: l.t, base: l.url, client: &http.Client{Jar: jar}}
	tok := c.token("/login")
	c.post("/login", url.Values{"csrf": {tok}, "user": {"admin"}, "password": {adminPass}})
	return c
}

func (c *consoleClient) token(path string) string {
	c.t.Helper()
	res, err := c.client.Get(c.base + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	m := csrfRE.FindSubmatch(b)
	if m == nil {
		c.t.Fatalf("no CSRF token on %s: %s", path, b)
	}
	return string(m[1])
}

func (c *consoleClient) post(path string, form url.Values) string {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.base)
	res, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		c.t.Fatalf("POST %s: %d %s", path, res.StatusCode, b)
	}
	return string(b)
}

// doctor submits the Doctor form and returns the findings' rows and
// whether the page says the pull would succeed.
func (c *consoleClient) doctor(secrets, pod, image string) ([]string, bool) {
	c.t.Helper()
	body := c.post("/doctor", url.Values{"csrf": {c.token("/doctor")}, "secrets": {secrets}, "pod": {pod}, "image": {image}})
	var out []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1]+" "+m[2]+" "+html.UnescapeString(m[3])+" | "+html.UnescapeString(m[4]))
	}
	return out, strings.Contains(body, "would succeed")
}

func dump(fs []kube.Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "  %v %s: %s (fix: %s)\n", f.OK, f.Check, f.Message, f.Fix)
	}
	return b.String()
}
