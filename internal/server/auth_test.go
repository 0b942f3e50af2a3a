package server

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/testserver"
	"github.com/berth-registry/berth/internal/token"
)

const adminPass = "admin-secret-1"

// authServer starts berth with token auth, an admin user and alice, a
// reader of namespace team.
func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// onPostgres makes authServer keep the metadata in a fresh PostgreSQL
// database; TestOnPostgres runs the tests built on authServer with it.
var onPostgres bool

// TestOnPostgres runs the accounts, token, quota, immutable-tag and
// retention tests with the metadata in a real PostgreSQL server: the same
// behaviour as the embedded database.
func TestOnPostgres(t *testing.T) {
	onPostgres = true
	defer func() { onPostgres = false }()
	for name, fn := range map[string]func(*testing.T){
		"ChallengeAndGrants":         TestChallengeAndGrants,
		"TokenRejections":            TestTokenRejections,
		"Robots":                     TestRobots,
		"NameTricks":                 TestNameTricks,
		"RefreshTokens":              TestRefreshTokens,
		"CatalogShowsOnlyPullable":   TestCatalogShowsOnlyPullable,
		"FailedLoginsAreRateLimited": TestFailedLoginsAreRateLimited,
		"QuotaRefusesBeforeKeeping":  TestQuotaRefusesBeforeKeeping,
		"ImmutableTags":              TestImmutableTags,
		"RetentionPolicies":          TestRetentionPolicies,
		"RetentionUnpulledUntagged":  TestRetentionUnpulledAndUntagged,
		"CredentialKindsKeepRights":  TestCredentialKindsKeepTheirRights,
		"RecreatedRobotInheritsNone": TestRecreatedRobotInheritsNoCredentials,
		"PasswordsOver72Refused":     TestPasswordsOver72BytesRefused,
		"RobotLifetimeBounded":       TestRobotLifetimeBounded,
		"AuditLogBounded":            TestAuditLogBoundedPerRequest,
		"StrangerCannotLockOut":      TestStrangerCannotLockOwnerOut,
		"ConcurrentBruteForce":       TestConcurrentBruteForce,
		"PullCredentialNoRefresh":    TestPullCredentialBuysNoRefreshToken,
		"PullCredentialNotKnown":     TestPullCredentialMakesNoAddressKnown,
		"RevokedSecretIsLimited":     TestRevokedSecretIsLimited,
		"IPv6ClientIsItsSlash64":     TestIPv6ClientIsItsSlash64,
		"NamespaceDeletionRevokes":   TestNamespaceDeletionRevokesMembersTokens,
		"PrivateStopsAnonymous":      TestPrivateNamespaceStopsAnonymousTokens,
		"ImmutableProtectsContent":   TestImmutableTagsProtectContent,
		"QuotaCountsManifests":       TestQuotaCountsManifests,
		"UploadsCountAgainstQuota":   TestUploadsCountAgainstQuota,
		"UploadSessionsAreBounded":   TestUploadSessionsAreBounded,
		"MultiRangeBlobGet":          TestMultiRangeBlobGet,
	} {
		t.Run(name, fn)
	}
}

func authServer(t *testing.T, opts ...func(*config.Config)) (*httptest.Server, string) {
	t.Helper()
	cfg := authConfig(t, opts...)
	if onPostgres && cfg.PostgresDSN == "" {
		cfg.Metadata, cfg.PostgresDSN, cfg.PostgresConns = "postgres", testserver.PostgresDSN(t), 10
	}
	ts, dir := serve(t, cfg), cfg.DataDir
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/v1/users", `{"name":"alice","password":"alice-pass-1"}`},
		{"POST", "/api/v1/users", `{"name":"bob","password":"bob-pass-1"}`},
		{"POST", "/api/v1/namespaces", `{"name":"team"}`},
		{"POST", "/api/v1/namespaces", `{"name":"other"}`},
		{"PUT", "/api/v1/namespaces/team/members/alice", `{"role":"reader"}`},
		{"PUT", "/api/v1/namespaces/team/members/bob", `{"role":"writer"}`},
	} {
		if r := do(t, c.method, ts.URL+c.path, admin, []byte(c.body)); r.status/100 != 2 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	return ts, dir
}

// authConfig is the configuration of a berth with token auth and a fresh
// data directory, changed by opts.
func authConfig(t *testing.T, opts ...func(*config.Config)) *config.Config {
	cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Auth: "token", AdminPassword: adminPass, MaxManifestSize: 1 << 20,
		UploadTTL: time.Hour, ShutdownTimeout: time.Second, BodyTimeout: time.Minute, TokenTTL: 5 * time.Minute}
	for _, o := range opts {
		o(cfg)
	}
	return cfg
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// getToken asks the token endpoint for scopes with Basic credentials
// (none when user is empty).
func getToken(t *testing.T, base, user, pass string, scopes ...string) (tokenResponse, resp) {
	t.Helper()
	q := url.Values{"service": {"berth"}, "scope": scopes}
	hdr := map[string]string{}
	if user != "" {
		hdr["Authorization"] = basic(user, pass)
	}
	r := do(t, "GET", base+"/token?"+q.Encode(), hdr, nil)
	var tr tokenResponse
	_ = json.Unmarshal(r.body, &tr)
	return tr, r
}

// offlineToken logs in as docker does with identity tokens on and returns
// the answer with its refresh token.
func offlineToken(t *testing.T, base, user, pass string) tokenResponse {
	t.Helper()
	q := url.Values{"service": {"berth"}, "offline_token": {"true"}, "client_id": {"docker"}}
	r := do(t, "GET", base+"/token?"+q.Encode(), map[string]string{"Authorization": basic(user, pass)}, nil)
	var tr tokenResponse
	if err := json.Unmarshal(r.body, &tr); err != nil || tr.RefreshToken == "" {
		t.Fatalf("offline token: %d %s", r.status, r.body)
	}
	return tr
}

func claimsOf(t *testing.T, tok string) token.Claims {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c token.Claims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestChallengeAndGrants(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	r := do(t, "GET", u+"/v2/team/app/manifests/v1", nil, nil)
	want := `Bearer realm="` + u + `/token",service="berth",scope="repository:team/app:pull"`
	if r.status != 401 || r.header.Get("WWW-Authenticate") != want || r.code() != "UNAUTHORIZED" {
		t.Fatalf("anonymous GET: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.code())
	}
	// Scope escalation: a reader asking for push gets only pull.
	tr, _ := getToken(t, u, "alice", "alice-pass-1", "repository:team/app:pull,push,delete")
	c := claimsOf(t, tr.Token)
	if len(c.Access) != 1 || strings.Join(c.Access[0].Actions, ",") != "pull" || c.Subject != "alice" || c.Audience != "berth" {
		t.Fatalf("reader's token claims = %+v", c)
	}
	expect(t, "reader pull", do(t, "GET", u+"/v2/team/app/tags/list", bearer(tr.Token), nil), 404, "NAME_UNKNOWN")
	expect(t, "reader push", do(t, "POST", u+"/v2/team/app/blobs/uploads/", bearer(tr.Token), nil), 403, "DENIED")
	// Another namespace: nothing granted, and unknown looks like forbidden.
	tr, _ = getToken(t, u, "alice", "alice-pass-1", "repository:other/app:pull")
	if c := claimsOf(t, tr.Token); len(c.Access) != 0 {
		t.Fatalf("alice got access to other/app: %+v", c.Access)
	}
	expect(t, "outsider pull", do(t, "GET", u+"/v2/other/app/tags/list", bearer(tr.Token), nil), 403, "DENIED")
	expect(t, "outsider pull of nothing", do(t, "GET", u+"/v2/other/none/tags/list", bearer(tr.Token), nil), 403, "DENIED")
	// Personal namespace: owner.
	tr, _ = getToken(t, u, "alice", "alice-pass-1", "repository:alice/app:pull,push,delete")
	if c := claimsOf(t, tr.Token); len(c.Access) != 1 || len(c.Access[0].Actions) != 3 {
		t.Fatalf("alice in her namespace: %+v", c.Access)
	}
	// Anonymous tokens carry only public pulls.
	tr, _ = getToken(t, u, "", "", "repository:team/app:pull")
	if c := claimsOf(t, tr.Token); len(c.Access) != 0 || c.Subject != "" {
		t.Fatalf("anonymous token for a private namespace: %+v", c)
	}
	expect(t, "anonymous token, private repo", do(t, "GET", u+"/v2/team/app/tags/list", bearer(tr.Token), nil), 401, "UNAUTHORIZED")
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	if r := do(t, "PATCH", u+"/api/v1/namespaces/team", admin, []byte(`{"public":true}`)); r.status != 200 {
		t.Fatalf("make team public: %d %s", r.status, r.body)
	}
	tr, _ = getToken(t, u, "", "", "repository:team/app:pull,push")
	if c := claimsOf(t, tr.Token); len(c.Access) != 1 || strings.Join(c.Access[0].Actions, ",") != "pull" {
		t.Fatalf("anonymous token for a public namespace: %+v", c.Access)
	}
}

func TestTokenRejections(t *testing.T) {
	ts, dir := authServer(t)
	u := ts.URL
	keys, err := token.LoadKeys(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func() *token.Claims {
		return &token.Claims{Issuer: "berth", Subject: "admin", Audience: "berth", IssuedAt: now.Unix(), NotBefore: now.Unix(),
			Expiry: now.Add(time.Minute).Unix(), ID: "t1", Access: []token.Access{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}}}
	}
	sign := func(k *token.Keys, c *token.Claims) string {
		tok, err := k.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign(keys, claims())
	expect(t, "valid forged-by-us token", do(t, "GET", u+"/v2/team/app/tags/list", bearer(good), nil), 404, "NAME_UNKNOWN")

	expired := claims()
	expired.Expiry = now.Add(-time.Minute).Unix()
	otherService := claims()
	otherService.Audience = "elsewhere"
	otherIssuer := claims()
	otherIssuer.Issuer = "mallory"
	otherKeys, err := token.LoadKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	escalated := claims()
	escalated.Access[0].Actions = []string{"pull", "push"}
	payload, _ := json.Marshal(escalated)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	for name, tok := range map[string]string{
		"expired":         sign(keys, expired),
		"another service": sign(keys, otherService),
		"another issuer":  sign(keys, otherIssuer),
		"another key":     sign(otherKeys, claims()),
		"tampered":        tampered,
		"garbage":         "not.a.token",
		"alg none":        base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".",
	} {
		r := do(t, "GET", u+"/v2/team/app/tags/list", bearer(tok), nil)
		if r.status != 401 || r.code() != "UNAUTHORIZED" || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s token: %d %s %q", name, r.status, r.code(), r.header.Get("WWW-Authenticate"))
		}
	}
}

func TestRobots(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	r := do(t, "POST", u+"/api/v1/namespaces/team/robots", admin, []byte(`{"name":"ci","scopes":["team/*"],"actions":["pull"]}`))
	var robot struct{ Name, Secret string }
	if err := json.Unmarshal(r.body, &robot); err != nil || r.status != 201 || robot.Name != "team+ci" || robot.Secret == "" {
		t.Fatalf("create robot: %d %s", r.status, r.body)
	}
	tr, _ := getToken(t, u, robot.Name, robot.Secret, "repository:team/app:pull,push", "repository:other/app:pull")
	c := claimsOf(t, tr.Token)
	if len(c.Access) != 1 || c.Access[0].Name != "team/app" || strings.Join(c.Access[0].Actions, ",") != "pull" {
		t.Fatalf("robot grants = %+v", c.Access)
	}
	// Scopes must stay inside the namespace.
	if r := do(t, "POST", u+"/api/v1/namespaces/team/robots", admin, []byte(`{"name":"bad","scopes":["other/*"]}`)); r.status != 400 {
		t.Fatalf("robot scoped outside its namespace: %d %s", r.status, r.body)
	}
	// Revoked robots cannot log in.
	if r := do(t, "DELETE", u+"/api/v1/namespaces/team/robots/team+ci", admin, nil); r.status != 204 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if _, r := getToken(t, u, robot.Name, robot.Secret, "repository:team/app:pull"); r.status != 401 {
		t.Fatalf("revoked robot: %d %s", r.status, r.body)
	}
	// Expired robots neither.
	r = do(t, "POST", u+"/api/v1/namespaces/team/robots", admin, []byte(`{"name":"brief","actions":["pull"],"expires_in":"1s"}`))
	_ = json.Unmarshal(r.body, &robot)
	if _, r := getToken(t, u, robot.Name, robot.Secret, "repository:team/app:pull"); r.status != 200 {
		t.Fatalf("fresh robot: %d %s", r.status, r.body)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, r := getToken(t, u, robot.Name, robot.Secret, "repository:team/app:pull"); r.status != 401 {
		t.Fatalf("expired robot: %d %s", r.status, r.body)
	}
}

func TestNameTricks(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	for _, scope := range []string{"repository:Team/app:pull", "repository:team/../other/app:pull", "repository:team%2F..%2Fother:pull", "repository:other:app:pull"} {
		if _, r := getToken(t, u, "alice", "alice-pass-1", scope); r.status != 400 {
			t.Errorf("scope %q: %d %s, want 400", scope, r.status, r.body)
		}
	}
	tr, _ := getToken(t, u, "alice", "alice-pass-1", "repository:team/app:pull")
	for _, p := range []string{"/v2/team/../other/app/tags/list", "/v2/team%2F..%2Fother%2Fapp/tags/list", "/v2/TEAM/app/tags/list"} {
		req, _ := http.NewRequest("GET", u+"/", nil)
		req.URL.Opaque = p
		req.Header.Set("Authorization", "Bearer "+tr.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		expect(t, p, resp{res.StatusCode, res.Header, b}, 400, "NAME_INVALID")
	}
}

func TestRefreshTokens(t *testing.T) {
	// Off by default: docker login then keeps the password, which a pull
	// Secret made from its config needs.
	ts, _ := authServer(t)
	q0 := url.Values{"service": {"berth"}, "offline_token": {"true"}, "client_id": {"docker"}}
	r0 := do(t, "GET", ts.URL+"/token?"+q0.Encode(), map[string]string{"Authorization": basic("bob", "bob-pass-1")}, nil)
	var tr0 tokenResponse
	if err := json.Unmarshal(r0.body, &tr0); err != nil || r0.status != 200 || tr0.RefreshToken != "" || tr0.Token == "" {
		t.Fatalf("offline token with identity tokens off: %d %s", r0.status, r0.body)
	}

	ts, _ = authServer(t, func(c *config.Config) { c.IdentityTokens = true })
	u := ts.URL
	tr := offlineToken(t, u, "bob", "bob-pass-1")
	form := func(v url.Values) resp {
		return do(t, "POST", u+"/token", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte(v.Encode()))
	}
	r := form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "service": {"berth"}, "client_id": {"docker"}, "scope": {"repository:team/app:pull,push"}})
	var tr2 tokenResponse
	if err := json.Unmarshal(r.body, &tr2); err != nil || r.status != 200 || tr2.AccessToken == "" {
		t.Fatalf("refresh grant: %d %s", r.status, r.body)
	}
	if c := claimsOf(t, tr2.AccessToken); c.Subject != "bob" || len(c.Access) != 1 || strings.Join(c.Access[0].Actions, ",") != "pull,push" {
		t.Fatalf("refreshed claims %+v", c)
	}
	r = form(url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"bob-pass-1"}, "service": {"berth"}, "client_id": {"x"}, "access_type": {"offline"}})
	if json.Unmarshal(r.body, &tr2) != nil || r.status != 200 || tr2.RefreshToken == "" {
		t.Fatalf("password grant: %d %s", r.status, r.body)
	}
	// A password change revokes refresh tokens.
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	if r := do(t, "PUT", u+"/api/v1/users/bob/password", admin, []byte(`{"password":"bob-pass-2"}`)); r.status != 200 {
		t.Fatalf("passwd: %d %s", r.status, r.body)
	}
	r = form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "service": {"berth"}, "client_id": {"docker"}})
	if r.status != 401 {
		t.Fatalf("revoked refresh token: %d %s", r.status, r.body)
	}
	if r := form(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"berth-refresh-forged"}, "client_id": {"docker"}}); r.status != 401 {
		t.Fatalf("forged refresh token: %d", r.status)
	}
}

func TestFailedLoginsAreRateLimited(t *testing.T) {
	ts, _ := authServer(t)
	for i := 1; i <= 6; i++ {
		_, r := getToken(t, ts.URL, "alice", "wrong-password")
		want := 401
		if i == 6 {
			want = 429
		}
		if r.status != want {
			t.Fatalf("attempt %d: %d %s, want %d", i, r.status, r.body, want)
		}
		if i == 6 && r.header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	// The right password is refused too while the account is blocked.
	if _, r := getToken(t, ts.URL, "alice", "alice-pass-1"); r.status != 429 {
		t.Fatalf("blocked account with the right password: %d", r.status)
	}
}

func TestCatalogShowsOnlyPullable(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	admin := tokenFor(t, u, "admin", adminPass, "repository:team/app:push,pull", "repository:other/app:push,pull", "repository:alice/app:push,pull")
	data := []byte("x")
	for _, repo := range []string{"team/app", "other/app", "alice/app"} {
		expect(t, "push "+repo, do(t, "POST", u+"/v2/"+repo+"/blobs/uploads/?digest="+digestOf(data), bearer(admin), data), 201, "")
	}
	alice := tokenFor(t, u, "alice", "alice-pass-1", "registry:catalog:*")
	r := do(t, "GET", u+"/v2/_catalog", bearer(alice), nil)
	if r.status != 200 || strings.TrimSpace(string(r.body)) != `{"repositories":["alice/app","team/app"]}` {
		t.Fatalf("alice's catalog: %d %s", r.status, r.body)
	}
}

func tokenFor(t *testing.T, base, user, pass string, scopes ...string) string {
	t.Helper()
	tr, r := getToken(t, base, user, pass, scopes...)
	if r.status != 200 {
		t.Fatalf("token for %s: %d %s", user, r.status, r.body)
	}
	return tr.Token
}
