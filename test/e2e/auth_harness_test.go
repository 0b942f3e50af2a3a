package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// This file is the harness of the auth_*_test.go tests: a berth started
// with token auth on (the default) and a known admin password, helpers for
// the admin API (/api/v1/, HTTP Basic) and the token endpoint, and a small
// registry client that sends bearer tokens.

// authBerth is a berth serving with token auth.
type authBerth struct {
	*proc
	// AdminPassword is the password of the admin user created on first
	// start (from BERTH_ADMIN_PASSWORD).
	AdminPassword string
}

// startAuthBerth starts a fresh berth with token auth on a free loopback
// port, an empty data directory and BERTH_ADMIN_PASSWORD set to a random
// password, plus any extra serve flags; it stops with SIGTERM at cleanup.
func startAuthBerth(t *testing.T, extraArgs ...string) *authBerth {
	t.Helper()
	pass := "admin-" + randomHex(t, 12)
	p := start(t, launch{Args: extraArgs, Env: []string{"BERTH_ADMIN_PASSWORD=" + pass}})
	return &authBerth{proc: p, AdminPassword: pass}
}

// envWithout returns env without the variables whose names start with
// prefix (so that the caller's BERTH_* settings do not leak into a test).
func envWithout(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// newPassword returns a random password for a test account.
func newPassword(t *testing.T) string {
	return "pw-" + randomHex(t, 12)
}

// authResult is a response read in full.
type authResult struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r authResult) String() string {
	return fmt.Sprintf("%d %s: %s", r.Status, http.StatusText(r.Status), truncate(strings.TrimSpace(string(r.Body)), 500))
}

// reqOpt adjusts a request before it is sent.
type reqOpt func(*http.Request)

// reqBasic sets HTTP Basic credentials.
func reqBasic(user, pass string) reqOpt {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

// reqBearer sets a bearer token (nothing when token is empty).
func reqBearer(token string) reqOpt {
	return func(r *http.Request) {
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
	}
}

// reqHeader sets a request header.
func reqHeader(k, v string) reqOpt {
	return func(r *http.Request) { r.Header.Set(k, v) }
}

// authHTTP is the client of the auth tests: no redirects are followed,
// so that every answer is seen as the server sent it.
var authHTTP = &http.Client{
	Timeout:       time.Minute,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// authDo sends one request and reads the whole answer; it fails the test only
// when the request cannot be made at all.
func authDo(t *testing.T, method, rawURL string, body []byte, opts ...reqOpt) authResult {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, rawURL, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := authHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, rawURL, err)
	}
	return authResult{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// adminAPI calls the admin API as user:pass with a JSON body (nil for none).
func (b *authBerth) adminAPI(t *testing.T, user, pass, method, path string, body any) authResult {
	t.Helper()
	var data []byte
	opts := []reqOpt{reqBasic(user, pass)}
	if body != nil {
		data = mustJSON(t, body)
		opts = append(opts, reqHeader("Content-Type", "application/json"))
	}
	return authDo(t, method, b.URL+path, data, opts...)
}

// admin calls the admin API as admin and fails the test unless the answer
// has the wanted status.
func (b *authBerth) admin(t *testing.T, method, path string, body any, want int) []byte {
	t.Helper()
	r := b.adminAPI(t, "admin", b.AdminPassword, method, path, body)
	if r.Status != want {
		t.Fatalf("admin API %s %s %s: got %s, want %d", method, path, truncate(string(mustJSON(t, body)), 300), r, want)
	}
	return r.Body
}

// addUser creates a (non-admin unless admin) user with a random password
// and returns the password.
func (b *authBerth) addUser(t *testing.T, name string, admin bool) string {
	t.Helper()
	pass := newPassword(t)
	b.admin(t, http.MethodPost, "/api/v1/users", map[string]any{"name": name, "password": pass, "admin": admin}, http.StatusCreated)
	return pass
}

// addNamespace creates a namespace.
func (b *authBerth) addNamespace(t *testing.T, name string, public bool) {
	t.Helper()
	b.admin(t, http.MethodPost, "/api/v1/namespaces", map[string]any{"name": name, "public": public}, http.StatusCreated)
}

// setPublic makes a namespace public or private.
func (b *authBerth) setPublic(t *testing.T, ns string, public bool) {
	t.Helper()
	body := b.admin(t, http.MethodPatch, "/api/v1/namespaces/"+ns, map[string]any{"public": public}, http.StatusOK)
	var got struct {
		Public bool `json:"public"`
	}
	mustUnmarshal(t, "PATCH namespace answer", body, &got)
	if got.Public != public {
		t.Fatalf("PATCH /api/v1/namespaces/%s {public:%v} answered %s", ns, public, body)
	}
}

// setMember gives user a role in namespace ns.
func (b *authBerth) setMember(t *testing.T, ns, user, role string) {
	t.Helper()
	b.admin(t, http.MethodPut, "/api/v1/namespaces/"+ns+"/members/"+user, map[string]any{"role": role}, http.StatusOK)
}

// addRobot creates a robot account in ns and returns its full name
// (ns+name) and its secret.
func (b *authBerth) addRobot(t *testing.T, ns, name string, scopes, actions []string, expiresIn string) (fullName, secret string) {
	t.Helper()
	body := b.admin(t, http.MethodPost, "/api/v1/namespaces/"+ns+"/robots",
		map[string]any{"name": name, "scopes": scopes, "actions": actions, "expires_in": expiresIn}, http.StatusCreated)
	var got struct {
		Name   string `json:"name"`
		Secret string `json:"secret"`
	}
	mustUnmarshal(t, "robot creation answer", body, &got)
	if want := ns + "+" + name; got.Name != want || got.Secret == "" {
		t.Fatalf("robot creation answered name %q and a secret of %d bytes, want name %q and a secret", got.Name, len(got.Secret), want)
	}
	return got.Name, got.Secret
}

// revokeRobot revokes a robot account.
func (b *authBerth) revokeRobot(t *testing.T, ns, fullName string) {
	t.Helper()
	r := b.adminAPI(t, "admin", b.AdminPassword, http.MethodDelete, "/api/v1/namespaces/"+ns+"/robots/"+fullName, nil)
	if r.Status != http.StatusOK && r.Status != http.StatusNoContent {
		t.Fatalf("revoking robot %s: %s", fullName, r)
	}
}

// tokenAnswer is the token endpoint's JSON answer.
type tokenAnswer struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token"`
}

// tokenURL is the GET /token URL for scopes.
func (b *authBerth) tokenURL(scopes ...string) string {
	q := url.Values{"service": {"berth"}}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	return b.URL + "/token?" + q.Encode()
}

// token gets a token for scopes from GET /token, with Basic credentials
// (anonymously when user is empty), and fails the test unless it gets one.
func (b *authBerth) token(t *testing.T, user, pass string, scopes ...string) tokenAnswer {
	t.Helper()
	var opts []reqOpt
	if user != "" {
		opts = append(opts, reqBasic(user, pass))
	}
	r := authDo(t, http.MethodGet, b.tokenURL(scopes...), nil, opts...)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /token as %q for %v: %s", user, scopes, r)
	}
	var ans tokenAnswer
	mustUnmarshal(t, "token answer", r.Body, &ans)
	if ans.Token == "" {
		t.Fatalf("GET /token as %q for %v: no token in %s", user, scopes, truncate(string(r.Body), 300))
	}
	return ans
}

// jwtAccess is the access claim of a berth token.
type jwtAccess struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// tokenClaims decodes (without verifying) the claims of a JWT.
func tokenClaims(t *testing.T, jwt string) (sub string, exp int64, access []jwtAccess) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("token is not a JWT: %q", truncate(jwt, 80))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("token claims: %v", err)
	}
	var c struct {
		Sub    string      `json:"sub"`
		Exp    int64       `json:"exp"`
		Access []jwtAccess `json:"access"`
	}
	mustUnmarshal(t, "token claims", raw, &c)
	return c.Sub, c.Exp, c.Access
}

// pushImageWithToken pushes img's blobs (monolithic uploads) and manifest
// to repo:tag with a bearer token, failing the test on any error.
func pushImageWithToken(t *testing.T, base, token, repo, tag string, img *ociImage) {
	t.Helper()
	for _, blob := range []struct {
		digest string
		data   []byte
	}{{img.ConfigDigest, img.Config}, {img.LayerDigest, img.Layer}} {
		r := authDo(t, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/?digest="+blob.digest, blob.data,
			reqBearer(token), reqHeader("Content-Type", "application/octet-stream"))
		if r.Status != http.StatusCreated {
			t.Fatalf("monolithic upload of %s to %s: %s", blob.digest, repo, r)
		}
	}
	r := authDo(t, http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, img.Manifest,
		reqBearer(token), reqHeader("Content-Type", mediaTypeOCIManifest))
	if r.Status != http.StatusCreated {
		t.Fatalf("PUT manifest %s:%s: %s", repo, tag, r)
	}
}

// pushImageAs pushes img to repo:tag as user with a token from GET /token.
func (b *authBerth) pushImageAs(t *testing.T, user, pass, repo, tag string, img *ociImage) {
	t.Helper()
	tok := b.token(t, user, pass, "repository:"+repo+":pull,push")
	pushImageWithToken(t, b.URL, tok.Token, repo, tag, img)
}

// manifestStatus answers the status of GET repo's manifest ref as the
// admin (to check what clients left behind).
func (b *authBerth) manifestStatus(t *testing.T, repo, ref string) int {
	t.Helper()
	tok := b.token(t, "admin", b.AdminPassword, "repository:"+repo+":pull")
	return authDo(t, http.MethodGet, b.URL+"/v2/"+repo+"/manifests/"+ref, nil,
		reqBearer(tok.Token), reqHeader("Accept", allManifestTypes)).Status
}

// execStdin is execIn with data on the command's standard input.
func execStdin(t *testing.T, env []string, stdin string, name string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timed out after %s)", err, commandTimeout)
	}
	t.Logf("$ %s %s  (%s, %v)", filepath.Base(name), strings.Join(args, " "), time.Since(start).Round(time.Millisecond), exitStatus(err))
	return cmdResult{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// combined is a command's stdout and stderr together.
func (r cmdResult) combined() string { return r.Stdout + r.Stderr }

// mustSucceed fails the test when a command failed.
func mustSucceed(t *testing.T, what string, r cmdResult) string {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("%s failed: %v\nstdout:\n%s\nstderr:\n%s", what, r.Err, truncate(r.Stdout, 4000), truncate(r.Stderr, 4000))
	}
	return r.Stdout
}

// mustFailWith fails the test when a command succeeded or when its output
// does not match re (case-insensitive alternatives, e.g.
// "unauthorized|authentication required"); it returns the output.
func mustFailWith(t *testing.T, what string, r cmdResult, re string) string {
	t.Helper()
	out := r.combined()
	if r.Err == nil {
		t.Errorf("%s succeeded but must fail; output:\n%s", what, truncate(out, 2000))
		return out
	}
	if !matchesAny(out, re) {
		t.Errorf("%s failed as it must, but its output does not say why (want /%s/):\n%s", what, re, truncate(out, 2000))
	} else {
		t.Logf("%s refused as it must: %s", what, truncate(oneLine(out), 400))
	}
	return out
}

// matchesAny reports whether s contains, case-insensitively, any of the
// |-separated alternatives.
func matchesAny(s, alternatives string) bool {
	s = strings.ToLower(s)
	for _, a := range strings.Split(alternatives, "|") {
		if strings.Contains(s, strings.ToLower(a)) {
			return true
		}
	}
	return false
}
