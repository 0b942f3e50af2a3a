package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/kube"
)

// consoleClient is a browser-like client of the console: it keeps its
// cookies, sends Origin on POSTs and does not follow redirects.
type consoleClient struct {
	t       *testing.T
	base    string
	cookies map[string]*http.Cookie
	// client is the HTTP client (nil: a plain one); it must not follow
	// redirects.
	client *http.Client
}

func newConsoleClient(t *testing.T, base string) *consoleClient {
	return &consoleClient{t: t, base: base, cookies: map[string]*http.Cookie{}}
}

type page struct {
	status int
	header http.Header
	body   string
}

func (c *consoleClient) do(method, path string, form url.Values, hdr map[string]string) page {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", c.base)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	for _, ck := range c.cookies {
		req.AddCookie(ck)
	}
	cl := c.client
	if cl == nil {
		cl = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	res, err := cl.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, ck := range res.Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck
		}
	}
	return page{status: res.StatusCode, header: res.Header, body: string(b)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of a page's first form.
func csrf(t *testing.T, p page) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no CSRF token in the page: %s", p.body)
	}
	return m[1]
}

// signIn signs in through the login form and returns the answer to the
// form's POST.
func (c *consoleClient) signIn(user, pass string) page {
	c.t.Helper()
	login := c.do("GET", "/login", nil, nil)
	if login.status != 200 {
		c.t.Fatalf("GET /login: %d", login.status)
	}
	return c.do("POST", "/login", url.Values{"csrf": {csrf(c.t, login)}, "user": {user}, "password": {pass}}, nil)
}

// TestConsoleSignInAndWhatReadersSee: a reader signs in with the password
// of docker login, gets a session cookie with the flags a session cookie
// needs, sees the repositories of their namespace and not the others',
// and an untrusted image label is shown as text.
func TestConsoleSignInAndWhatReadersSee(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	admin := tokenFor(t, u, "admin", adminPass, "repository:team/app:push,pull", "repository:other/secret:push,pull")
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{"Labels":{"evil":"<script>alert(1)</script><img src=x onerror=alert(2)>"}}}`)
	layer := []byte("layer bytes")
	for _, repo := range []string{"team/app", "other/secret"} {
		for _, b := range [][]byte{cfg, layer} {
			expect(t, "blob", do(t, "POST", u+"/v2/"+repo+"/blobs/uploads/?digest="+digestOf(b), bearer(admin), b), 201, "")
		}
		expect(t, "manifest", do(t, "PUT", u+"/v2/"+repo+"/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Authorization": "Bearer " + admin}, imageManifest(cfg, "n", layer)), 201, "")
	}

	anon := newConsoleClient(t, u)
	home := anon.do("GET", "/", nil, nil)
	if home.status != 200 || strings.Contains(home.body, "team/app") || strings.Contains(home.body, "other/secret") {
		t.Fatalf("anonymous home: %d, private repositories shown: %s", home.status, home.body)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy", "X-Content-Type-Options"} {
		if home.header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if csp := home.header.Get("Content-Security-Policy"); strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if css := anon.do("GET", "/static/console.css", nil, nil); css.status != 200 || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") || css.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("style sheet: %d %q", css.status, css.header.Get("Content-Type"))
	}
	if dir := anon.do("GET", "/static/", nil, nil); dir.status != 404 {
		t.Errorf("a listing of /static/: %d", dir.status)
	}

	alice := newConsoleClient(t, u)
	r := alice.signIn("alice", "wrong-password")
	if r.status != 401 || alice.cookies["berth_session"] != nil {
		t.Fatalf("wrong password: %d, cookie %v", r.status, alice.cookies["berth_session"])
	}
	r = alice.signIn("alice", "alice-pass-1")
	ck := alice.cookies["berth_session"]
	if r.status != 303 || ck == nil {
		t.Fatalf("sign in: %d %s", r.status, r.body)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure {
		t.Errorf("session cookie flags: HttpOnly %v SameSite %v Path %q Secure %v (plain HTTP: not Secure)", ck.HttpOnly, ck.SameSite, ck.Path, ck.Secure)
	}
	home = alice.do("GET", "/", nil, nil)
	if !strings.Contains(home.body, `team/app`) || strings.Contains(home.body, "other/secret") || !strings.Contains(home.body, "alice") {
		t.Fatalf("alice's home: %s", home.body)
	}
	if p := alice.do("GET", "/repo?name=other/secret", nil, nil); p.status != 404 {
		t.Errorf("another namespace's repository: %d", p.status)
	}
	repo := alice.do("GET", "/repo?name=team/app", nil, nil)
	if repo.status != 200 || !strings.Contains(repo.body, ">v1<") {
		t.Fatalf("repository page: %d %s", repo.status, repo.body)
	}
	img := alice.do("GET", "/image?name=team/app&ref=v1", nil, nil)
	if img.status != 200 || !strings.Contains(img.body, digestOf(layer)) || !strings.Contains(img.body, "linux/amd64") {
		t.Fatalf("image page: %d %s", img.status, img.body)
	}
	// Where is this digest? The layer and the manifest are in team/app and
	// in other/secret; alice sees team/app only.
	for _, d := range []string{digestOf(layer), digestOf(imageManifest(cfg, "n", layer))} {
		found := alice.do("GET", "/?q="+d, nil, nil)
		if found.status != 200 || !strings.Contains(found.body, ">team/app</a>") || strings.Contains(found.body, "other/secret") {
			t.Errorf("where is %s: %d %s", d, found.status, found.body)
		}
	}
	if found := alice.do("GET", "/?q="+digestOf(imageManifest(cfg, "n", layer)), nil, nil); !strings.Contains(found.body, "As a manifest") {
		t.Errorf("the manifest digest is not found as a manifest: %s", found.body)
	}
	// A public namespace is shown to anonymous visitors.
	if r := do(t, "PATCH", u+"/api/v1/namespaces/other", map[string]string{"Authorization": basic("admin", adminPass)}, []byte(`{"public":true}`)); r.status/100 != 2 {
		t.Fatalf("make other public: %d %s", r.status, r.body)
	}
	if p := anon.do("GET", "/", nil, nil); !strings.Contains(p.body, ">other/secret</a>") || strings.Contains(p.body, "team/app") {
		t.Errorf("anonymous home with other public: %s", p.body)
	}
	if strings.Contains(img.body, "<script>alert") || strings.Contains(img.body, "<img src=x") ||
		!strings.Contains(img.body, "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;") {
		t.Errorf("the label is not escaped: %s", img.body)
	}
}

// TestConsoleForms: state-changing forms need this console's origin and
// the right token (403 and no change otherwise), signing out ends the
// session on the server, a password change ends it too, and robots cannot
// sign in.
func TestConsoleForms(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL

	// Sign-in without the token, with a wrong one, from another origin.
	c := newConsoleClient(t, u)
	login := c.do("GET", "/login", nil, nil)
	tok := csrf(t, login)
	for what, try := range map[string]struct {
		form url.Values
		hdr  map[string]string
	}{
		"no token":       {url.Values{"user": {"alice"}, "password": {"alice-pass-1"}}, nil},
		"wrong token":    {url.Values{"csrf": {tok + "x"}, "user": {"alice"}, "password": {"alice-pass-1"}}, nil},
		"another origin": {url.Values{"csrf": {tok}, "user": {"alice"}, "password": {"alice-pass-1"}}, map[string]string{"Origin": "http://evil.example"}},
		"no origin":      {url.Values{"csrf": {tok}, "user": {"alice"}, "password": {"alice-pass-1"}}, map[string]string{"Origin": ""}},
		"cross-site":     {url.Values{"csrf": {tok}, "user": {"alice"}, "password": {"alice-pass-1"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		if r := c.do("POST", "/login", try.form, try.hdr); r.status != 403 || c.cookies["berth_session"] != nil {
			t.Errorf("sign-in with %s: %d, session %v", what, r.status, c.cookies["berth_session"] != nil)
		}
	}

	// A signed-in session: sign-out needs the session's token.
	if r := c.signIn("alice", "alice-pass-1"); r.status != 303 {
		t.Fatalf("sign in: %d %s", r.status, r.body)
	}
	old := *c.cookies["berth_session"]
	home := c.do("GET", "/", nil, nil)
	if r := c.do("POST", "/logout", url.Values{"csrf": {"forged"}}, nil); r.status != 403 {
		t.Errorf("sign-out with a forged token: %d", r.status)
	}
	if !strings.Contains(c.do("GET", "/", nil, nil).body, ">alice<") {
		t.Fatal("a refused sign-out ended the session")
	}
	if r := c.do("POST", "/logout", url.Values{"csrf": {csrf(t, home)}}, nil); r.status != 303 || c.cookies["berth_session"] != nil {
		t.Fatalf("sign-out: %d, cookie kept %v", r.status, c.cookies["berth_session"] != nil)
	}
	// The old cookie is worth nothing now: the session is gone on the server.
	c.cookies["berth_session"] = &old
	if strings.Contains(c.do("GET", "/", nil, nil).body, ">alice<") {
		t.Error("the session survived sign-out")
	}

	// A password change ends the sessions started before it.
	c = newConsoleClient(t, u)
	if r := c.signIn("bob", "bob-pass-1"); r.status != 303 {
		t.Fatalf("bob signs in: %d", r.status)
	}
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	if r := do(t, "PUT", u+"/api/v1/users/bob/password", admin, []byte(`{"password":"bob-pass-2"}`)); r.status/100 != 2 {
		t.Fatalf("set bob's password: %d %s", r.status, r.body)
	}
	if strings.Contains(c.do("GET", "/", nil, nil).body, ">bob<") {
		t.Error("bob's session survived his password change")
	}

	// Robots cannot sign in, even with the right secret.
	r := do(t, "POST", u+"/api/v1/namespaces/team/robots", admin, []byte(`{"name":"ci","scopes":["team/*"],"actions":["pull"]}`))
	var robot struct{ Name, Secret string }
	if err := json.Unmarshal(r.body, &robot); err != nil || robot.Secret == "" {
		t.Fatalf("create robot: %d %s", r.status, r.body)
	}
	c = newConsoleClient(t, u)
	if r := c.signIn(robot.Name, robot.Secret); r.status != 403 || c.cookies["berth_session"] != nil || !strings.Contains(r.body, "Robot") {
		t.Errorf("robot sign-in: %d %s", r.status, r.body)
	}
}

// TestConsoleDeletesTags: a maintainer deletes a tag after a confirmation
// page and the API no longer has it; a reader sees no delete control, and
// a reader's forged delete (with their own session's token) gets 403 and
// deletes nothing.
func TestConsoleDeletesTags(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	if r := do(t, "PUT", u+"/api/v1/namespaces/team/members/bob", admin, []byte(`{"role":"maintainer"}`)); r.status/100 != 2 {
		t.Fatalf("make bob a maintainer: %d %s", r.status, r.body)
	}
	push := tokenFor(t, u, "admin", adminPass, "repository:team/app:push,pull")
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	expect(t, "config", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(cfg), bearer(push), cfg), 201, "")
	for _, tag := range []string{"v1", "v2"} {
		expect(t, "manifest "+tag, do(t, "PUT", u+"/v2/team/app/manifests/"+tag, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Authorization": "Bearer " + push}, imageManifest(cfg, "n")), 201, "")
	}
	pull := tokenFor(t, u, "admin", adminPass, "repository:team/app:pull")
	status := func(tag string) int { return do(t, "GET", u+"/v2/team/app/manifests/"+tag, bearer(pull), nil).status }

	alice := newConsoleClient(t, u) // a reader
	if r := alice.signIn("alice", "alice-pass-1"); r.status != 303 {
		t.Fatalf("alice signs in: %d", r.status)
	}
	repo := alice.do("GET", "/repo?name=team/app", nil, nil)
	if repo.status != 200 || strings.Contains(repo.body, "/tag/delete") {
		t.Errorf("a reader's repository page offers deletion: %d", repo.status)
	}
	if r := alice.do("GET", "/tag/delete?name=team/app&tag=v1", nil, nil); r.status != 403 {
		t.Errorf("a reader's confirmation page: %d", r.status)
	}
	if r := alice.do("POST", "/tag/delete", url.Values{"csrf": {csrf(t, repo)}, "name": {"team/app"}, "tag": {"v1"}}, nil); r.status != 403 {
		t.Errorf("a reader's forged delete: %d", r.status)
	}
	if s := status("v1"); s != 200 {
		t.Fatalf("v1 after the reader's attempt: %d", s)
	}

	bob := newConsoleClient(t, u)
	if r := bob.signIn("bob", "bob-pass-1"); r.status != 303 {
		t.Fatalf("bob signs in: %d", r.status)
	}
	repo = bob.do("GET", "/repo?name=team/app", nil, nil)
	if !strings.Contains(repo.body, `/tag/delete?name=team%2fapp&amp;tag=v1`) {
		t.Fatalf("a maintainer's repository page has no delete link: %s", repo.body)
	}
	confirm := bob.do("GET", "/tag/delete?name=team/app&tag=v1", nil, nil)
	if confirm.status != 200 || !strings.Contains(confirm.body, "confirm-delete") {
		t.Fatalf("confirmation page: %d %s", confirm.status, confirm.body)
	}
	if r := bob.do("POST", "/tag/delete", url.Values{"name": {"team/app"}, "tag": {"v1"}}, nil); r.status != 403 || status("v1") != 200 {
		t.Errorf("a delete without the token: %d, v1 now %d", r.status, status("v1"))
	}
	r := bob.do("POST", "/tag/delete", url.Values{"csrf": {csrf(t, confirm)}, "name": {"team/app"}, "tag": {"v1"}}, nil)
	if r.status != 303 || !strings.HasPrefix(r.header.Get("Location"), "/repo?") {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if s := status("v1"); s != 404 {
		t.Errorf("v1 after the delete: %d, want 404", s)
	}
	if s := status("v2"); s != 200 {
		t.Errorf("v2 after deleting v1: %d, want 200", s)
	}
	if page := bob.do("GET", r.header.Get("Location"), nil, nil); !strings.Contains(page.body, "The tag was deleted.") || strings.Contains(page.body, ">v1<") {
		t.Errorf("the repository page after the delete: %s", page.body)
	}

	// The manifest itself, from its image page: gone with its tag v2.
	dgst := digestOf(imageManifest(cfg, "n"))
	img := bob.do("GET", "/image?name=team/app&ref=v2", nil, nil)
	if !strings.Contains(img.body, `id="delete-manifest"`) {
		t.Fatalf("no manifest delete link for a maintainer: %s", img.body)
	}
	if strings.Contains(alice.do("GET", "/image?name=team/app&ref=v2", nil, nil).body, "delete-manifest") {
		t.Error("a reader is offered to delete the manifest")
	}
	confirm = bob.do("GET", "/tag/delete?name=team/app&tag="+dgst, nil, nil)
	if confirm.status != 200 || !strings.Contains(confirm.body, "Delete a manifest") {
		t.Fatalf("manifest confirmation: %d %s", confirm.status, confirm.body)
	}
	if r := bob.do("POST", "/tag/delete", url.Values{"csrf": {csrf(t, confirm)}, "name": {"team/app"}, "tag": {dgst}}, nil); r.status != 303 {
		t.Fatalf("delete the manifest: %d %s", r.status, r.body)
	}
	if s := do(t, "GET", u+"/v2/team/app/manifests/"+dgst, bearer(pull), nil).status; s != 404 || status("v2") != 404 {
		t.Errorf("after deleting the manifest: by digest %d, v2 %d; want 404 and 404", s, status("v2"))
	}
}

// TestConsolePullSecret: an owner makes a pull-only robot and its Secret
// from a repository's page; the Secret's credentials pull that repository
// and push nothing; a reader may not make one.
func TestConsolePullSecret(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	push := tokenFor(t, u, "admin", adminPass, "repository:team/app:push,pull")
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	expect(t, "config", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(cfg), bearer(push), cfg), 201, "")
	expect(t, "manifest", do(t, "PUT", u+"/v2/team/app/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Authorization": "Bearer " + push}, imageManifest(cfg, "n")), 201, "")

	alice := newConsoleClient(t, u) // a reader
	alice.signIn("alice", "alice-pass-1")
	if p := alice.do("GET", "/repo?name=team/app", nil, nil); strings.Contains(p.body, "pull-from-kubernetes") {
		t.Error("a reader is offered a pull secret")
	}
	if p := alice.do("GET", "/pull-secret?name=team/app", nil, nil); p.status != 403 {
		t.Errorf("a reader's pull secret form: %d", p.status)
	}

	admin := newConsoleClient(t, u)
	if r := admin.signIn("admin", adminPass); r.status != 303 {
		t.Fatalf("admin signs in: %d", r.status)
	}
	if p := admin.do("GET", "/repo?name=team/app", nil, nil); !strings.Contains(p.body, "pull-from-kubernetes") {
		t.Fatalf("no pull secret link for the admin: %s", p.body)
	}
	form := admin.do("GET", "/pull-secret?name=team/app", nil, nil)
	if form.status != 200 {
		t.Fatalf("form: %d %s", form.status, form.body)
	}
	vals := url.Values{"csrf": {csrf(t, form)}, "name": {"team/app"}, "robot": {"k8s"}, "expires": {"7d"}, "namespace": {"apps"}, "secret": {"regcred"}}
	if r := admin.do("POST", "/pull-secret", url.Values{"name": {"team/app"}, "robot": {"forged"}, "expires": {"7d"}, "namespace": {"apps"}, "secret": {"regcred"}}, nil); r.status != 403 {
		t.Errorf("a pull secret without the token: %d", r.status)
	}
	made := admin.do("POST", "/pull-secret", vals, nil)
	if made.status != 201 {
		t.Fatalf("make the pull secret: %d %s", made.status, made.body)
	}
	m := regexp.MustCompile(`\.dockerconfigjson: ([A-Za-z0-9+/=]+)`).FindStringSubmatch(made.body)
	if m == nil || !strings.Contains(made.body, "kind: Secret") || !strings.Contains(made.body, "type: kubernetes.io/dockerconfigjson") ||
		!strings.Contains(made.body, "namespace: apps") || !strings.Contains(made.body, "name: regcred") {
		t.Fatalf("no Secret YAML on the page: %s", made.body)
	}
	raw, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	var dc struct {
		Auths map[string]struct{ Username, Password, Auth string }
	}
	if err := json.Unmarshal(raw, &dc); err != nil {
		t.Fatalf(".dockerconfigjson %s: %v", raw, err)
	}
	host := strings.TrimPrefix(u, "http://")
	entry, ok := dc.Auths[host]
	if !ok || entry.Username != "team+k8s" || entry.Password == "" {
		t.Fatalf("auths %+v, want an entry for %s of team+k8s", dc.Auths, host)
	}
	if !strings.Contains(made.body, entry.Password) {
		t.Error("the robot's password is not shown")
	}
	// The Secret's credentials pull team/app, and may not push.
	tok := tokenFor(t, u, entry.Username, entry.Password, "repository:team/app:pull,push")
	if r := do(t, "GET", u+"/v2/team/app/manifests/v1", bearer(tok), nil); r.status != 200 {
		t.Errorf("pull with the Secret's credentials: %d", r.status)
	}
	if r := do(t, "POST", u+"/v2/team/app/blobs/uploads/", bearer(tok), nil); r.status != 401 && r.status != 403 {
		t.Errorf("push with the Secret's credentials: %d, want refused", r.status)
	}
	// The same robot name again: a message, not a second robot.
	again := admin.do("POST", "/pull-secret", vals, nil)
	if again.status != 400 || !strings.Contains(again.body, "exists already") {
		t.Errorf("the same robot again: %d", again.status)
	}
}

// TestConsoleDoctorMatchesCLI: for the same pasted Secrets, Pod and image,
// the Doctor page gives exactly the findings berth doctor computes from
// files (kube.ParseManifests, kube.Assemble, kube.Diagnose with its HTTP
// probe), over cases of each kind of fault.
func TestConsoleDoctorMatchesCLI(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	host := strings.TrimPrefix(u, "http://")
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	push := tokenFor(t, u, "admin", adminPass, "repository:team/app:push,pull")
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	expect(t, "config", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(cfg), bearer(push), cfg), 201, "")
	expect(t, "manifest", do(t, "PUT", u+"/v2/team/app/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Authorization": "Bearer " + push}, imageManifest(cfg, "n")), 201, "")
	r := do(t, "POST", u+"/api/v1/namespaces/team/robots", admin, []byte(`{"name":"ci","scopes":["team/*"],"actions":["pull"]}`))
	var robot struct{ Name, Secret string }
	if err := json.Unmarshal(r.body, &robot); err != nil || robot.Secret == "" {
		t.Fatalf("robot: %d %s", r.status, r.body)
	}
	b64 := base64.StdEncoding.EncodeToString
	conf := func(key, user, pass string) string {
		return `{"auths":{"` + key + `":{"auth":"` + b64([]byte(user+":"+pass)) + `"}}}`
	}
	secret := func(name, typ, key, config string) string {
		return "apiVersion: v1\nkind: Secret\nmetadata:\n  name: " + name + "\ntype: " + typ + "\ndata:\n  " + key + ": " + b64([]byte(config)) + "\n"
	}
	pod := func(image, secretName string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  imagePullSecrets:\n  - name: " + secretName + "\n  containers:\n  - name: app\n    image: " + image + "\n"
	}
	good := conf(host, robot.Name, robot.Secret)
	img := host + "/team/app:v1"
	cases := []struct{ name, secrets, pod, image string }{
		{"working robot secret", secret("regcred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", good), "", img},
		{"through a Pod", secret("regcred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", good), pod(img, "regcred"), ""},
		{"Pod lists another Secret", secret("regcred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", good), pod(img, "regcred2"), ""},
		{"type Opaque", secret("regcred", "Opaque", ".dockerconfigjson", good), "", img},
		{"legacy type, new content", secret("regcred", "kubernetes.io/dockercfg", ".dockercfg", good), "", img},
		{"key without the port", secret("regcred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", conf("127.0.0.1", robot.Name, robot.Secret)), "", img},
		{"wrong password", secret("regcred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", conf(host, robot.Name, robot.Secret+"x")), "", img},
		{"tag missing", secret("regcred", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", good), "", host + "/team/app:v9"},
		{"no secret, private namespace", "", "", img},
	}
	c := newConsoleClient(t, u)
	if r := c.signIn("alice", "alice-pass-1"); r.status != 303 {
		t.Fatalf("sign in: %d", r.status)
	}
	row := regexp.MustCompile(`<tr data-check="([^"]+)" data-ok="(true|false)"><td>[^<]*</td><td>.*?</td><td>(.*?)</td><td>(.*?)</td></tr>`)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// berth doctor's way, from files.
			req := kube.Request{Image: tc.image}
			for _, text := range []string{tc.secrets, tc.pod} {
				if err := req.AddManifests([]byte(text)); err != nil {
					t.Fatal(err)
				}
			}
			in, err := kube.Assemble(req)
			if err != nil {
				t.Fatal(err)
			}
			want, wantOK := kube.Diagnose(context.Background(), in, &kube.HTTPProber{})
			// The console's.
			form := c.do("GET", "/doctor", nil, nil)
			res := c.do("POST", "/doctor", url.Values{"csrf": {csrf(t, form)}, "secrets": {tc.secrets}, "pod": {tc.pod}, "image": {tc.image}}, nil)
			if res.status != 200 {
				t.Fatalf("POST /doctor: %d %s", res.status, res.body)
			}
			var got []string
			for _, m := range row.FindAllStringSubmatch(res.body, -1) {
				got = append(got, m[1]+" "+m[2]+" "+html.UnescapeString(m[3])+" | "+html.UnescapeString(m[4]))
			}
			var wantRows []string
			for _, f := range want {
				wantRows = append(wantRows, f.Check+" "+strconv.FormatBool(f.OK)+" "+f.Message+" | "+f.Fix)
			}
			if strings.Join(got, "\n") != strings.Join(wantRows, "\n") {
				t.Errorf("console findings:\n%s\nberth doctor's:\n%s", strings.Join(got, "\n"), strings.Join(wantRows, "\n"))
			}
			verdict := "would succeed"
			if !wantOK {
				verdict = "would fail"
			}
			if !strings.Contains(res.body, verdict) {
				t.Errorf("the page's verdict is not %q", verdict)
			}
		})
	}
	// Another registry's image is not probed from the server.
	form := c.do("GET", "/doctor", nil, nil)
	res := c.do("POST", "/doctor", url.Values{"csrf": {csrf(t, form)}, "secrets": {cases[0].secrets}, "image": {"registry.example.com/team/app:v1"}}, nil)
	if res.status != 200 || !strings.Contains(res.body, "checks images of this registry") {
		t.Errorf("another registry's image: %d %s", res.status, res.body)
	}
}

// TestConsoleCookiesUnderTLS: served over TLS, the session cookie (and
// the sign-in form's) are Secure as well as HttpOnly.
func TestConsoleCookiesUnderTLS(t *testing.T) {
	cfg := authConfig(t)
	srv, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Close() })
	cl := ts.Client()
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &consoleClient{t: t, base: ts.URL, cookies: map[string]*http.Cookie{}, client: cl}
	login := c.do("GET", "/login", nil, nil)
	if lc := c.cookies["berth_login"]; lc == nil || !lc.Secure || !lc.HttpOnly {
		t.Errorf("sign-in form cookie over TLS: %+v", lc)
	}
	r := c.do("POST", "/login", url.Values{"csrf": {csrf(t, login)}, "user": {"admin"}, "password": {adminPass}}, nil)
	ck := c.cookies["berth_session"]
	if r.status != 303 || ck == nil {
		t.Fatalf("sign in over TLS: %d %s", r.status, r.body)
	}
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("session cookie over TLS: Secure %v HttpOnly %v SameSite %v", ck.Secure, ck.HttpOnly, ck.SameSite)
	}
	if !strings.Contains(c.do("GET", "/", nil, nil).body, ">admin<") {
		t.Error("not signed in over TLS")
	}
}

// TestConsoleAdministration: an administrator adds and deletes users and
// reads the audit log; a reader sees no administration link, gets 403 on
// its pages, and a forged admin POST with the reader's own session and
// token gets 403 and changes nothing.
func TestConsoleAdministration(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	adminAPI := map[string]string{"Authorization": basic("admin", adminPass)}
	users := func() string { return string(do(t, "GET", u+"/api/v1/users", adminAPI, nil).body) }

	alice := newConsoleClient(t, u)
	alice.signIn("alice", "alice-pass-1")
	home := alice.do("GET", "/", nil, nil)
	if strings.Contains(home.body, "admin-link") || strings.Contains(home.body, "/admin/") {
		t.Error("a reader is shown the administration link")
	}
	for _, p := range []string{"/admin/users", "/admin/audit"} {
		if r := alice.do("GET", p, nil, nil); r.status != 403 {
			t.Errorf("a reader's GET %s: %d", p, r.status)
		}
	}
	if r := alice.do("POST", "/admin/users", url.Values{"csrf": {csrf(t, home)}, "op": {"create"}, "user": {"mallory"}, "password": {"mallory-pass-1"}, "admin": {"on"}}, nil); r.status != 403 {
		t.Errorf("a reader's forged user creation: %d", r.status)
	}
	if r := alice.do("POST", "/admin/users", url.Values{"csrf": {csrf(t, home)}, "op": {"delete"}, "user": {"bob"}}, nil); r.status != 403 {
		t.Errorf("a reader's forged user deletion: %d", r.status)
	}
	if list := users(); strings.Contains(list, "mallory") || !strings.Contains(list, `"bob"`) {
		t.Fatalf("the reader's forged posts changed the users: %s", list)
	}

	admin := newConsoleClient(t, u)
	admin.signIn("admin", adminPass)
	usersPage := admin.do("GET", "/admin/users", nil, nil)
	if usersPage.status != 200 || !strings.Contains(usersPage.body, "<td>alice</td>") || !strings.Contains(usersPage.body, "<td>bob</td>") {
		t.Fatalf("users page: %d %s", usersPage.status, usersPage.body)
	}
	if r := admin.do("POST", "/admin/users", url.Values{"op": {"create"}, "user": {"carol"}, "password": {"carol-pass-1"}}, nil); r.status != 403 {
		t.Errorf("user creation without the token: %d", r.status)
	}
	if r := admin.do("POST", "/admin/users", url.Values{"csrf": {csrf(t, usersPage)}, "op": {"create"}, "user": {"carol"}, "password": {"carol-pass-1"}}, nil); r.status != 303 {
		t.Fatalf("create carol: %d %s", r.status, r.body)
	}
	carol := newConsoleClient(t, u)
	if r := carol.signIn("carol", "carol-pass-1"); r.status != 303 {
		t.Errorf("carol signs in: %d", r.status)
	}
	gen := admin.do("POST", "/admin/users", url.Values{"csrf": {csrf(t, usersPage)}, "op": {"create"}, "user": {"dave"}}, nil)
	m := regexp.MustCompile(`id="generated-password">([^<]+)<`).FindStringSubmatch(gen.body)
	if gen.status != 201 || m == nil {
		t.Fatalf("create dave with a generated password: %d %s", gen.status, gen.body)
	}
	if r := newConsoleClient(t, u).signIn("dave", html.UnescapeString(m[1])); r.status != 303 {
		t.Errorf("dave signs in with the generated password: %d", r.status)
	}
	if r := admin.do("POST", "/admin/users", url.Values{"csrf": {csrf(t, usersPage)}, "op": {"delete"}, "user": {"carol"}}, nil); r.status != 303 {
		t.Fatalf("delete carol: %d %s", r.status, r.body)
	}
	if strings.Contains(users(), `"carol"`) {
		t.Error("carol still exists")
	}
	if strings.Contains(carol.do("GET", "/", nil, nil).body, ">carol<") {
		t.Error("a deleted user's session survived")
	}

	// The audit log, filtered.
	// (Entries reach the database in batches: wait for this one.)
	var log page
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if log = admin.do("GET", "/admin/audit?action=user+deleted", nil, nil); strings.Contains(log.body, "<td>user deleted</td>") {
			break
		}
	}
	if log.status != 200 || !strings.Contains(log.body, "<td>user deleted</td>") || strings.Contains(log.body, "<td>login</td>") {
		t.Errorf("audit log filtered by action: %d %s", log.status, log.body)
	}
	if r := admin.do("GET", "/admin/audit?since=yesterday-ish", nil, nil); r.status != 400 {
		t.Errorf("a bad since: %d", r.status)
	}
}

// TestConsoleNamespaces: an administrator adds a namespace, makes alice
// its owner and sets a quota; alice, as owner, sees it, adds a member and
// revokes a robot; as a mere reader of team she is refused (403) when she
// forges a member change there, and nothing changes.
func TestConsoleNamespaces(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	adminAPI := map[string]string{"Authorization": basic("admin", adminPass)}
	members := func(ns string) string {
		return string(do(t, "GET", u+"/api/v1/namespaces/"+ns+"/members", adminAPI, nil).body)
	}

	admin := newConsoleClient(t, u)
	admin.signIn("admin", adminPass)
	list := admin.do("GET", "/namespaces", nil, nil)
	if !strings.Contains(list.body, ">team</a>") || !strings.Contains(list.body, ">other</a>") {
		t.Fatalf("namespaces page: %s", list.body)
	}
	if r := admin.do("POST", "/namespaces", url.Values{"csrf": {csrf(t, list)}, "op": {"create"}, "namespace": {"ops"}}, nil); r.status != 303 {
		t.Fatalf("create ops: %d %s", r.status, r.body)
	}
	ops := admin.do("GET", "/namespace?name=ops", nil, nil)
	for _, f := range []url.Values{
		{"op": {"member-set"}, "user": {"alice"}, "role": {"owner"}},
		{"op": {"quota"}, "quota": {"10"}},
	} {
		f.Set("csrf", csrf(t, ops))
		f.Set("namespace", "ops")
		if r := admin.do("POST", "/namespace", f, nil); r.status != 303 {
			t.Fatalf("%v: %d %s", f, r.status, r.body)
		}
	}
	if !strings.Contains(members("ops"), `"alice"`) {
		t.Fatalf("alice is not a member of ops: %s", members("ops"))
	}
	if p := admin.do("GET", "/namespace?name=ops", nil, nil); !strings.Contains(p.body, "of a 10.0 MiB quota") {
		t.Errorf("quota not shown: %s", p.body)
	}
	r := do(t, "POST", u+"/api/v1/namespaces/ops/robots", adminAPI, []byte(`{"name":"ci","scopes":["ops/*"],"actions":["pull"]}`))
	if r.status != 201 {
		t.Fatalf("robot: %d %s", r.status, r.body)
	}

	alice := newConsoleClient(t, u)
	alice.signIn("alice", "alice-pass-1")
	mine := alice.do("GET", "/namespaces", nil, nil)
	if !strings.Contains(mine.body, ">ops</a>") || !strings.Contains(mine.body, ">team</a>") || strings.Contains(mine.body, ">other</a>") {
		t.Errorf("alice's namespaces: %s", mine.body)
	}
	opsPage := alice.do("GET", "/namespace?name=ops", nil, nil)
	if !strings.Contains(html.UnescapeString(opsPage.body), "ops+ci") {
		t.Fatalf("the owner does not see the robot: %s", opsPage.body)
	}
	tok := csrf(t, opsPage)
	if r := alice.do("POST", "/namespace", url.Values{"csrf": {tok}, "namespace": {"ops"}, "op": {"member-set"}, "user": {"bob"}, "role": {"reader"}}, nil); r.status != 303 {
		t.Errorf("the owner adds bob: %d %s", r.status, r.body)
	}
	if r := alice.do("POST", "/namespace", url.Values{"csrf": {tok}, "namespace": {"ops"}, "op": {"robot-revoke"}, "robot": {"ops+ci"}}, nil); r.status != 303 {
		t.Errorf("the owner revokes the robot: %d %s", r.status, r.body)
	}
	if p := alice.do("GET", "/namespace?name=ops", nil, nil); !strings.Contains(p.body, "<td>bob</td>") || !strings.Contains(p.body, "revoked") {
		t.Errorf("after the owner's changes: %s", p.body)
	}
	// The owner makes a push robot; its secret, shown once, pushes to ops.
	made := alice.do("POST", "/namespace", url.Values{"csrf": {tok}, "namespace": {"ops"}, "op": {"robot-create"}, "robot": {"deploy"},
		"scopes": {"ops/*"}, "actions": {"pull", "push"}, "expires": {"7d"}}, nil)
	sec := regexp.MustCompile(`id="new-robot-secret">([^<]+)<`).FindStringSubmatch(made.body)
	if made.status != 201 || sec == nil {
		t.Fatalf("make a robot: %d %s", made.status, made.body)
	}
	robotTok := tokenFor(t, u, "ops+deploy", html.UnescapeString(sec[1]), "repository:ops/app:push,pull")
	if r := do(t, "POST", u+"/v2/ops/app/blobs/uploads/", bearer(robotTok), nil); r.status != 202 {
		t.Errorf("the robot's push: %d %s", r.status, r.body)
	}
	// A reader of team forging a member change there.
	before := members("team")
	if r := alice.do("POST", "/namespace", url.Values{"csrf": {tok}, "namespace": {"team"}, "op": {"member-set"}, "user": {"alice"}, "role": {"owner"}}, nil); r.status != 403 {
		t.Errorf("a reader's forged role change: %d %s", r.status, r.body)
	}
	if after := members("team"); after != before {
		t.Errorf("team's members changed: %s -> %s", before, after)
	}
	if r := alice.do("GET", "/namespace?name=other", nil, nil); r.status != 404 {
		t.Errorf("a namespace alice does not belong to: %d", r.status)
	}
}

// TestConsoleGarbageCollection: an administrator's dry run lists an
// untagged manifest and removes nothing, the real run removes it and
// appears in the history with its actor; a reader's forged run gets 403.
func TestConsoleGarbageCollection(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	push := tokenFor(t, u, "admin", adminPass, "repository:team/app:push,pull")
	cfg := []byte(`{"architecture":"amd64","os":"linux","note":"garbage"}`)
	expect(t, "config", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(cfg), bearer(push), cfg), 201, "")
	mf := imageManifest(cfg, "garbage")
	expect(t, "untagged manifest", do(t, "PUT", u+"/v2/team/app/manifests/"+digestOf(mf), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Authorization": "Bearer " + push}, mf), 201, "")
	status := func() int { return do(t, "GET", u+"/v2/team/app/manifests/"+digestOf(mf), bearer(push), nil).status }

	alice := newConsoleClient(t, u)
	alice.signIn("alice", "alice-pass-1")
	home := alice.do("GET", "/", nil, nil)
	if r := alice.do("GET", "/admin/gc", nil, nil); r.status != 403 {
		t.Errorf("a reader's GC page: %d", r.status)
	}
	if r := alice.do("POST", "/admin/gc", url.Values{"csrf": {csrf(t, home)}, "op": {"run"}}, nil); r.status != 403 || status() != 200 {
		t.Errorf("a reader's forged run: %d, manifest now %d", r.status, status())
	}

	admin := newConsoleClient(t, u)
	admin.signIn("admin", adminPass)
	page := admin.do("GET", "/admin/gc", nil, nil)
	if page.status != 200 || !strings.Contains(page.body, "No run yet.") {
		t.Fatalf("GC page: %d %s", page.status, page.body)
	}
	dry := admin.do("POST", "/admin/gc", url.Values{"csrf": {csrf(t, page)}, "op": {"dry-run"}}, nil)
	if dry.status != 200 || !strings.Contains(dry.body, `<dd id="gc-manifests">1</dd>`) || !strings.Contains(dry.body, "The dry run found") || status() != 200 {
		t.Fatalf("dry run: %d, manifest %d: %s", dry.status, status(), dry.body)
	}
	real := admin.do("POST", "/admin/gc", url.Values{"csrf": {csrf(t, page)}, "op": {"run"}}, nil)
	if real.status != 200 || !strings.Contains(real.body, `<dd id="gc-manifests">1</dd>`) || status() != 404 {
		t.Fatalf("run: %d, manifest %d: %s", real.status, status(), real.body)
	}
	if !regexp.MustCompile(`<tr><td>[0-9: -]+</td><td>admin</td><td>0</td><td>1</td>`).MatchString(real.body) {
		t.Errorf("the run is not in the history: %s", real.body)
	}
}

// TestConsolePolicies: an administrator adds an immutable rule, previews
// a retention policy (a dry run: it lists the tags it would delete and
// deletes nothing), saves it and deletes the rule; a reader's forged rule
// gets 403.
func TestConsolePolicies(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	push := tokenFor(t, u, "admin", adminPass, "repository:team/app:push,pull")
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	expect(t, "config", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(cfg), bearer(push), cfg), 201, "")
	for i, tag := range []string{"a1", "a2", "a3"} {
		expect(t, "manifest "+tag, do(t, "PUT", u+"/v2/team/app/manifests/"+tag, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Authorization": "Bearer " + push}, imageManifest(cfg, strconv.Itoa(i))), 201, "")
		time.Sleep(10 * time.Millisecond) // distinct push times
	}
	adminAPI := map[string]string{"Authorization": basic("admin", adminPass)}
	rules := func() string {
		r := do(t, "GET", u+"/api/v1/immutable-rules", adminAPI, nil)
		if r.status != 200 {
			t.Fatalf("list immutable rules: %d %s", r.status, r.body)
		}
		return string(r.body)
	}

	alice := newConsoleClient(t, u)
	alice.signIn("alice", "alice-pass-1")
	home := alice.do("GET", "/", nil, nil)
	before := rules()
	if r := alice.do("POST", "/admin/policies", url.Values{"csrf": {csrf(t, home)}, "op": {"rule-add"}, "rule_repositories": {"team/*"}, "rule_tags": {"*"}}, nil); r.status != 403 || rules() != before {
		t.Errorf("a reader's forged rule: %d, rules %s -> %s", r.status, before, rules())
	}

	admin := newConsoleClient(t, u)
	admin.signIn("admin", adminPass)
	pg := admin.do("GET", "/admin/policies", nil, nil)
	tok := csrf(t, pg)
	if r := admin.do("POST", "/admin/policies", url.Values{"csrf": {tok}, "op": {"rule-add"}, "rule_repositories": {"team/*"}, "rule_tags": {"v*"}}, nil); r.status != 303 || !strings.Contains(rules(), `"v*"`) {
		t.Fatalf("add a rule: %d %s; rules %s", r.status, r.body, rules())
	}
	pg = admin.do("GET", "/admin/policies", nil, nil)
	if !strings.Contains(pg.body, "<code>v*</code>") {
		t.Fatalf("the rule is not listed: %s", pg.body)
	}
	preview := admin.do("POST", "/admin/policies", url.Values{"csrf": {tok}, "op": {"policy-preview"}, "repositories": {"team/app"}, "keep_last": {"1"}}, nil)
	if preview.status != 200 || !strings.Contains(preview.body, `<p id="preview-counts">2 tags and`) ||
		!strings.Contains(preview.body, "team/app:a1") || !strings.Contains(preview.body, "team/app:a2") || strings.Contains(preview.body, "team/app:a3") {
		t.Fatalf("preview: %d %s", preview.status, preview.body)
	}
	for _, tag := range []string{"a1", "a2", "a3"} {
		if s := do(t, "GET", u+"/v2/team/app/manifests/"+tag, bearer(push), nil).status; s != 200 {
			t.Errorf("%s after the preview: %d", tag, s)
		}
	}
	if r := admin.do("POST", "/admin/policies", url.Values{"csrf": {tok}, "op": {"policy-add"}, "repositories": {"team/app"}, "keep_last": {"1"}, "unpulled_for": {"30d"}}, nil); r.status != 303 {
		t.Fatalf("save the policy: %d %s", r.status, r.body)
	}
	if r := admin.do("POST", "/admin/policies", url.Values{"csrf": {tok}, "op": {"policy-add"}, "repositories": {"team/app"}, "unpulled_for": {"soon"}}, nil); r.status != 400 {
		t.Errorf("a bad duration: %d", r.status)
	}
	pg = admin.do("GET", "/admin/policies", nil, nil)
	if !strings.Contains(pg.body, "<td>30d</td>") {
		t.Errorf("the policy is not listed: %s", pg.body)
	}
	id := regexp.MustCompile(`name="op" value="rule-delete"><input type="hidden" name="id" value="(\d+)"`).FindStringSubmatch(pg.body)
	if id == nil {
		t.Fatal("no rule to delete")
	}
	if r := admin.do("POST", "/admin/policies", url.Values{"csrf": {tok}, "op": {"rule-delete"}, "id": {id[1]}}, nil); r.status != 303 || strings.Contains(rules(), "v*") {
		t.Errorf("delete the rule: %d, rules %s", r.status, rules())
	}
}

// TestConsoleSignInLimits: the sign-in form counts against the token
// endpoint's limits: the sixth wrong password gets 429 with Retry-After,
// the right one is refused while blocked, and the token endpoint refuses
// too (one account, one budget).
func TestConsoleSignInLimits(t *testing.T) {
	ts, _ := authServer(t)
	c := newConsoleClient(t, ts.URL)
	for i := 1; i <= 6; i++ {
		r := c.signIn("alice", "wrong-password")
		want := 401
		if i == 6 {
			want = 429
		}
		if r.status != want {
			t.Fatalf("attempt %d: %d, want %d", i, r.status, want)
		}
		if i == 6 && r.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if r := c.signIn("alice", "alice-pass-1"); r.status != 429 || c.cookies["berth_session"] != nil {
		t.Errorf("the right password while blocked: %d", r.status)
	}
	if _, r := getToken(t, ts.URL, "alice", "alice-pass-1"); r.status != 429 {
		t.Errorf("the token endpoint after the console's failures: %d", r.status)
	}
}

// TestConsoleIndex: an index's tag shows its platforms on the repository
// page, and its image page lists them with links to each manifest.
func TestConsoleIndex(t *testing.T) {
	ts, _ := testServer(t) // no auth: the console shows everything
	u := ts.URL
	ctype := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
	var children []string
	for _, arch := range []string{"amd64", "arm64"} {
		cfg := []byte(`{"architecture":"` + arch + `","os":"linux"}`)
		expect(t, "config "+arch, do(t, "POST", u+"/v2/team/multi/blobs/uploads/?digest="+digestOf(cfg), nil, cfg), 201, "")
		mf := imageManifest(cfg, arch)
		expect(t, "manifest "+arch, do(t, "PUT", u+"/v2/team/multi/manifests/"+digestOf(mf), ctype, mf), 201, "")
		children = append(children, `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+digestOf(mf)+`","size":`+strconv.Itoa(len(mf))+`,"platform":{"os":"linux","architecture":"`+arch+`"}}`)
	}
	idx := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + strings.Join(children, ",") + `]}`)
	expect(t, "index", do(t, "PUT", u+"/v2/team/multi/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}, idx), 201, "")

	c := newConsoleClient(t, u)
	repo := c.do("GET", "/repo?name=team/multi", nil, nil)
	if !strings.Contains(repo.body, `<span class="muted platforms">linux/amd64, linux/arm64</span>`) {
		t.Errorf("repository page without the index's platforms: %s", repo.body)
	}
	img := c.do("GET", "/image?name=team/multi&ref=v1", nil, nil)
	if img.status != 200 || !strings.Contains(img.body, `id="platforms"`) || !strings.Contains(img.body, "<td>linux/arm64</td>") || strings.Contains(img.body, `id="config"`) {
		t.Errorf("index page: %d %s", img.status, img.body)
	}
}
