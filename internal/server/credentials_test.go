package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/testserver"
)

// Regression tests of the credential holes found by the adversarial review
// (issue 10): each failed on the code before its fix.

// auditRecords reads the audit log of a data directory.
func auditRecords(t *testing.T, dir string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// passwordChecks counts the logins refused because the password was
// wrong: each is one password compare.
func passwordChecks(t *testing.T, dirs ...string) int {
	t.Helper()
	n := 0
	for _, d := range dirs {
		for _, m := range auditRecords(t, d) {
			if m["msg"] == "login failed" && m["reason"] == "invalid user name or password" {
				n++
			}
		}
	}
	return n
}

func adminHdr() map[string]string {
	return map[string]string{"Authorization": basic("admin", adminPass)}
}

// must makes an admin API call and fails the test unless it succeeds.
func must(t *testing.T, method, u string, hdr map[string]string, body string) resp {
	t.Helper()
	r := do(t, method, u, hdr, []byte(body))
	if r.status/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, u, r.status, r.body)
	}
	return r
}

// pullCredential makes robot ns+name (pull on ns/*) and trades its
// secret for a pull credential.
func pullCredential(t *testing.T, base, ns, name string) (robot, secret, credential string) {
	t.Helper()
	r := must(t, "POST", base+"/api/v1/namespaces/"+ns+"/robots", adminHdr(), `{"name":"`+name+`","actions":["pull","push"]}`)
	var rb struct{ Name, Secret string }
	if err := json.Unmarshal(r.body, &rb); err != nil {
		t.Fatal(err)
	}
	r = must(t, "POST", base+"/api/v1/pull-credentials", map[string]string{"Authorization": basic(rb.Name, rb.Secret)}, `{"ttl":"1h"}`)
	var pc struct{ Username, Password string }
	if err := json.Unmarshal(r.body, &pc); err != nil || pc.Username != rb.Name || !strings.HasPrefix(pc.Password, "berth-pull-") {
		t.Fatalf("pull credential: %s", r.body)
	}
	return rb.Name, rb.Secret, pc.Password
}

// Vulnerability 3: a refresh token or a pull credential does not act as a
// password on the admin API, and a pull credential can only pull.
func TestCredentialKindsKeepTheirRights(t *testing.T) {
	ts, _ := authServer(t, func(c *config.Config) { c.IdentityTokens = true })
	u := ts.URL
	tr := offlineToken(t, u, "bob", "bob-pass-1")
	// The refresh token still works where it was issued for: tokens.
	if c := claimsOf(t, tokenFor(t, u, "bob", tr.RefreshToken, "repository:team/app:pull,push")); !c.Allows("repository", "team/app", "push") {
		t.Fatal("refresh token as docker's identity token lost its push grant")
	}
	viaRefresh := map[string]string{"Authorization": basic("bob", tr.RefreshToken)}
	if r := do(t, "PUT", u+"/api/v1/users/bob/password", viaRefresh, []byte(`{"password":"taken-over-1"}`)); r.status != 403 {
		t.Fatalf("password change with a refresh token: %d %s, want 403", r.status, r.body)
	}
	if r := do(t, "POST", u+"/api/v1/pull-credentials", viaRefresh, nil); r.status != 403 {
		t.Fatalf("pull credential minted with a refresh token: %d %s, want 403", r.status, r.body)
	}
	if _, r := getToken(t, u, "bob", "bob-pass-1"); r.status != 200 {
		t.Fatalf("bob's password no longer works: %d %s", r.status, r.body)
	}

	robot, _, cred := pullCredential(t, u, "team", "node")
	viaPull := map[string]string{"Authorization": basic(robot, cred)}
	if r := do(t, "POST", u+"/api/v1/pull-credentials", viaPull, []byte(`{"ttl":"1h"}`)); r.status != 403 {
		t.Fatalf("a pull credential minted another: %d %s, want 403", r.status, r.body)
	}
	if r := do(t, "GET", u+"/api/v1/whoami", viaPull, nil); r.status != 403 {
		t.Fatalf("admin API with a pull credential: %d %s, want 403", r.status, r.body)
	}
	// The robot may push, but its pull credential only pulls.
	c := claimsOf(t, tokenFor(t, u, robot, cred, "repository:team/app:pull,push", "registry:catalog:*"))
	if !c.Allows("repository", "team/app", "pull") || c.Allows("repository", "team/app", "push") || c.Allows("registry", "catalog", "*") {
		t.Fatalf("pull credential's grants: %+v", c.Access)
	}
}

// Vulnerability 6: credentials of a deleted robot do not pass to a robot
// created later under the same name.
func TestRecreatedRobotInheritsNoCredentials(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	must(t, "POST", u+"/api/v1/namespaces", adminHdr(), `{"name":"ns"}`)
	robot, _, cred := pullCredential(t, u, "ns", "node")
	oldTok := tokenFor(t, u, robot, cred, "repository:ns/app:pull")
	must(t, "DELETE", u+"/api/v1/namespaces/ns", adminHdr(), "")
	must(t, "POST", u+"/api/v1/namespaces", adminHdr(), `{"name":"ns"}`)
	must(t, "POST", u+"/api/v1/namespaces/ns/robots", adminHdr(), `{"name":"node"}`)
	if _, r := getToken(t, u, robot, cred, "repository:ns/app:pull"); r.status != 401 {
		t.Fatalf("old pull credential on the re-created robot: %d %s, want 401", r.status, r.body)
	}
	if r := do(t, "GET", u+"/v2/ns/app/tags/list", bearer(oldTok), nil); r.status != 401 {
		t.Fatalf("old robot's access token after its namespace was deleted: %d %s, want 401", r.status, r.body)
	}
}

// Vulnerability 7: bcrypt reads 72 bytes; a longer password is refused
// at login as it is when set.
func TestPasswordsOver72BytesRefused(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	pw := strings.Repeat("p", 72)
	must(t, "POST", u+"/api/v1/users", adminHdr(), `{"name":"long","password":"`+pw+`"}`)
	if _, r := getToken(t, u, "long", pw+"anything"); r.status != 401 {
		t.Fatalf("72-byte password plus a suffix: %d %s, want 401", r.status, r.body)
	}
	if _, r := getToken(t, u, "long", pw); r.status != 200 {
		t.Fatalf("the 72-byte password: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", u+"/api/v1/users", adminHdr(), []byte(`{"name":"longer","password":"`+pw+`x"}`)); r.status != 400 {
		t.Fatalf("setting a 73-byte password: %d, want 400", r.status)
	}
}

// Hardening: a robot's lifetime is bounded and cannot overflow into
// "never expires".
func TestRobotLifetimeBounded(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	for _, exp := range []string{"106752d", "3651d", "999999999999999999d", "87601h"} {
		r := do(t, "POST", u+"/api/v1/namespaces/team/robots", adminHdr(), []byte(`{"name":"r1","expires_in":"`+exp+`"}`))
		if r.status != 400 {
			t.Fatalf("expires_in %s: %d %s, want 400", exp, r.status, r.body)
		}
	}
	r := must(t, "POST", u+"/api/v1/namespaces/team/robots", adminHdr(), `{"name":"r1","expires_in":"3650d"}`)
	var rb struct {
		Expires *string `json:"expires_at"`
	}
	if err := json.Unmarshal(r.body, &rb); err != nil || rb.Expires == nil {
		t.Fatalf("robot with the longest lifetime: %s", r.body)
	}
	if at, err := time.Parse(time.RFC3339, *rb.Expires); err != nil || at.Before(time.Now().Add(3649*24*time.Hour)) {
		t.Fatalf("expires_at %s", *rb.Expires)
	}
}

// Vulnerability 2: one anonymous request cannot make the audit log grow
// without bound.
func TestAuditLogBoundedPerRequest(t *testing.T) {
	ts, dir := authServer(t)
	u := ts.URL
	size := func() int64 {
		fi, err := os.Stat(filepath.Join(dir, "audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var b strings.Builder
	b.WriteString(u + "/token?service=berth")
	for i := range 20000 {
		fmt.Fprintf(&b, "&scope=repository:other/r%d:pull", i)
	}
	before := size()
	if r := do(t, "GET", b.String(), nil, nil); r.status != 400 {
		t.Fatalf("20000 scopes: %d %.200s, want 400", r.status, r.body)
	}
	// 64 denied scopes, the most allowed, make one record.
	q := url.Values{"service": {"berth"}}
	for i := range 64 {
		q.Add("scope", fmt.Sprintf("repository:other/r%d:pull", i))
	}
	if r := do(t, "GET", u+"/token?"+q.Encode(), nil, nil); r.status != 200 {
		t.Fatalf("64 scopes: %d %s", r.status, r.body)
	}
	if grown := size() - before; grown > 2048 {
		t.Fatalf("the audit log grew by %d bytes for two anonymous token requests", grown)
	}
	// A 300 KiB user name of control characters is logged cut short and
	// clean, and a flood of failures from one client writes a bounded
	// number of records.
	name := strings.Repeat("\x01\x1b[31m", 300<<10/6)
	before = size()
	for range 100 {
		getToken(t, u, name, "x")
	}
	grown := size() - before
	recs := auditRecords(t, dir)
	if grown > 64<<10 {
		t.Fatalf("100 failed logins with a 300 KiB name grew the audit log by %d bytes", grown)
	}
	for _, m := range recs {
		if s, _ := m["user"].(string); strings.ContainsAny(s, "\x01\x1b") || len(s) > 200 {
			t.Fatalf("user logged raw: %.80q (%d bytes)", s, len(s))
		}
	}
	before = size()
	for i := range 200 {
		getToken(t, u, fmt.Sprintf("nobody%d", i), "x")
	}
	if n := strings.Count(readFile(t, filepath.Join(dir, "audit.log"))[before:], "\n"); n > 61 {
		t.Fatalf("200 failed logins from one client wrote %d audit records", n)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// replica starts a second berth on the first one's PostgreSQL database and
// signing keys, with a data directory of its own.
func replica(t *testing.T, dsn, keysDir string, opts ...func(*config.Config)) (*httptest.Server, string) {
	t.Helper()
	cfg := authConfig(t, append([]func(*config.Config){func(c *config.Config) {
		c.Metadata, c.PostgresDSN, c.PostgresConns, c.KeysDir = "postgres", dsn, 10, keysDir
	}}, opts...)...)
	return serve(t, cfg), cfg.DataDir
}

// replicaPair starts two replicas sharing one PostgreSQL database and one
// set of signing keys; the first has the users of authServer.
func replicaPair(t *testing.T, opts ...func(*config.Config)) (a, b *httptest.Server, dirA, dirB string) {
	t.Helper()
	dsn := testserver.PostgresDSN(t)
	keys := t.TempDir()
	shared := func(c *config.Config) {
		c.Metadata, c.PostgresDSN, c.PostgresConns, c.KeysDir = "postgres", dsn, 10, keys
	}
	a, dirA = authServer(t, append([]func(*config.Config){shared}, opts...)...)
	b, dirB = replica(t, dsn, keys, opts...)
	return a, b, dirA, dirB
}

// behindProxy believes X-Forwarded-For from loopback, so that a test can
// speak from many client addresses.
func behindProxy(c *config.Config) { c.TrustedProxies = "127.0.0.1/32,::1/128" }

func tokenFrom(t *testing.T, base, addr, user, pass string) resp {
	t.Helper()
	hdr := map[string]string{"Authorization": basic(user, pass), "X-Forwarded-For": addr}
	return do(t, "GET", base+"/token?service=berth", hdr, nil)
}

// parallel runs n calls of fn at once and returns their statuses.
func parallel(n int, fn func(i int) int) map[int]int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := map[int]int{}
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			st := fn(i)
			mu.Lock()
			out[st]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// Vulnerability 1 and the lock-out policy: parallel guesses spread over
// two replicas compare no more passwords than the limits allow, and a
// stranger's failures do not keep the owner out.
func TestConcurrentBruteForceOnReplicas(t *testing.T) {
	a, b, dirA, dirB := replicaPair(t, behindProxy)
	bruteForce(t, a, b, dirA, dirB)
}

// The same guesses against one server (SQLite, or PostgreSQL under
// TestOnPostgres): the limits hold within one process too.
func TestConcurrentBruteForce(t *testing.T) {
	ts, dir := authServer(t, behindProxy)
	bruteForce(t, ts, ts, dir, dir)
}

// bruteForce sends parallel guesses alternately to a and b, whose audit
// logs are in dirA and dirB (the same server may be given twice).
func bruteForce(t *testing.T, a, b *httptest.Server, dirA, dirB string) {
	if dirA == dirB {
		dirB = t.TempDir() // one log, counted once
		if err := os.WriteFile(filepath.Join(dirB, "audit.log"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pick := func(i int) string {
		if i%2 == 0 {
			return a.URL
		}
		return b.URL
	}
	// The owner has logged in from 192.0.2.7 before.
	if r := tokenFrom(t, a.URL, "192.0.2.7", "alice", "alice-pass-1"); r.status != 200 {
		t.Fatalf("alice's login: %d %s", r.status, r.body)
	}

	// 50 parallel wrong passwords for alice from one address: 5 checks.
	st := parallel(50, func(i int) int {
		return tokenFrom(t, pick(i), "198.51.100.1", "alice", fmt.Sprintf("guess-%d", i)).status
	})
	if n := passwordChecks(t, dirA, dirB); n > 5 || st[401] != n || st[429] != 50-n {
		t.Fatalf("50 parallel guesses from one address: %d password checks, statuses %v; want at most 5", n, st)
	}
	t.Logf("50 parallel guesses for alice from one address: %d password checks, statuses %v", passwordChecks(t, dirA, dirB), st)

	// 100 parallel wrong passwords from one address for many accounts: 30
	// checks (5 of them above).
	st = parallel(100, func(i int) int {
		return tokenFrom(t, pick(i), "198.51.100.2", fmt.Sprintf("user%d", i%40), "wrong").status
	})
	if n := passwordChecks(t, dirA, dirB) - 5; n > 30 || st[429] < 70 {
		t.Fatalf("100 parallel guesses from one address: %d password checks, statuses %v; want at most 30", n, st)
	}
	t.Logf("100 parallel guesses from one address: %d password checks, statuses %v", passwordChecks(t, dirA, dirB)-5, st)

	// Guesses for alice from 50 addresses at once: the per-account limit
	// (20 in 15 minutes from addresses alice never used) holds.
	before := passwordChecks(t, dirA, dirB)
	st = parallel(50, func(i int) int {
		return tokenFrom(t, pick(i), fmt.Sprintf("203.0.113.%d", i+1), "alice", "wrong").status
	})
	if n := passwordChecks(t, dirA, dirB) - before; n+5 > 20 || st[429] < 30 {
		t.Fatalf("guesses for alice from 50 addresses: %d more password checks, statuses %v; want at most 20 in all", n, st)
	}
	t.Logf("50 parallel guesses for alice from 50 addresses: %d more password checks, statuses %v", passwordChecks(t, dirA, dirB)-before, st)

	// alice is now blocked from strangers' addresses, but her own known
	// address still logs her in, on both replicas.
	if r := tokenFrom(t, b.URL, "203.0.113.200", "alice", "alice-pass-1"); r.status != 429 {
		t.Fatalf("alice from an unknown address while under attack: %d, want 429", r.status)
	}
	for _, base := range []string{a.URL, b.URL} {
		if r := tokenFrom(t, base, "192.0.2.7", "alice", "alice-pass-1"); r.status != 200 {
			t.Fatalf("alice from her known address while under attack: %d %s", r.status, r.body)
		}
	}
}

// The lock-out policy on one server: five wrong passwords from a stranger
// block the stranger, not the account's owner at another address.
func TestStrangerCannotLockOwnerOut(t *testing.T) {
	ts, _ := authServer(t, behindProxy)
	for i := range 5 {
		if r := tokenFrom(t, ts.URL, "198.51.100.9", "admin", fmt.Sprintf("guess-%d", i)); r.status != 401 {
			t.Fatalf("guess %d: %d", i, r.status)
		}
	}
	if r := tokenFrom(t, ts.URL, "198.51.100.9", "admin", adminPass); r.status != 429 {
		t.Fatalf("the stranger's address after 5 failures: %d, want 429", r.status)
	}
	if r := tokenFrom(t, ts.URL, "192.0.2.1", "admin", adminPass); r.status != 200 {
		t.Fatalf("the owner from another address: %d %s", r.status, r.body)
	}
}

// Hardening: revoking a robot, deleting a user or changing a password
// stops their access tokens on every replica within RevocationInterval.
func TestRevocationReachesReplicas(t *testing.T) {
	a, b, _, _ := replicaPair(t)
	r := must(t, "POST", a.URL+"/api/v1/namespaces/team/robots", adminHdr(), `{"name":"ci","actions":["pull","push"]}`)
	var rb struct{ Name, Secret string }
	if err := json.Unmarshal(r.body, &rb); err != nil {
		t.Fatal(err)
	}
	robotTok := tokenFor(t, a.URL, rb.Name, rb.Secret, "repository:team/app:pull")
	bobTok := tokenFor(t, b.URL, "bob", "bob-pass-1", "repository:team/app:pull")
	for _, base := range []string{a.URL, b.URL} {
		for _, tok := range []string{robotTok, bobTok} {
			if r := do(t, "GET", base+"/v2/team/app/tags/list", bearer(tok), nil); r.status != 404 {
				t.Fatalf("token before revocation: %d %s", r.status, r.body)
			}
		}
	}
	must(t, "DELETE", a.URL+"/api/v1/namespaces/team/robots/ci", adminHdr(), "")
	must(t, "PUT", b.URL+"/api/v1/users/bob/password", adminHdr(), `{"password":"bob-pass-2"}`)
	revoked := time.Now()
	// At once on the replica that revoked.
	if r := do(t, "GET", a.URL+"/v2/team/app/tags/list", bearer(robotTok), nil); r.status != 401 {
		t.Fatalf("revoked robot's token on the replica that revoked it: %d", r.status)
	}
	if r := do(t, "GET", b.URL+"/v2/team/app/tags/list", bearer(bobTok), nil); r.status != 401 {
		t.Fatalf("bob's token on the replica that changed his password: %d", r.status)
	}
	// Within the interval (plus a query) on the other.
	for _, c := range []struct {
		base, tok string
	}{{b.URL, robotTok}, {a.URL, bobTok}} {
		for {
			r := do(t, "GET", c.base+"/v2/team/app/tags/list", bearer(c.tok), nil)
			if r.status == 401 {
				break
			}
			if time.Since(revoked) > 2*time.Second {
				t.Fatalf("token still accepted %v after revocation: %d", time.Since(revoked), r.status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("revocations effective on the other replica after %v", time.Since(revoked))
	// New tokens work.
	tok := tokenFor(t, b.URL, "bob", "bob-pass-2", "repository:team/app:pull")
	if r := do(t, "GET", a.URL+"/v2/team/app/tags/list", bearer(tok), nil); r.status != 404 {
		t.Fatalf("a token issued after the change: %d %s", r.status, r.body)
	}
}
