package server

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/config"
)

// Regression tests of the holes a second review of the issue 10 fixes
// found; each failed before its fix.

// A pull credential buys no refresh token (which would push and renew
// itself), by either form of the token endpoint.
func TestPullCredentialBuysNoRefreshToken(t *testing.T) {
	ts, _ := authServer(t, func(c *config.Config) { c.IdentityTokens = true })
	u := ts.URL
	robot, _, cred := pullCredential(t, u, "team", "node")
	q := url.Values{"service": {"berth"}, "offline_token": {"true"}, "client_id": {"docker"}, "scope": {"repository:team/app:pull,push"}}
	r := do(t, "GET", u+"/token?"+q.Encode(), map[string]string{"Authorization": basic(robot, cred)}, nil)
	var tr tokenResponse
	if err := json.Unmarshal(r.body, &tr); err != nil || r.status != 200 || tr.RefreshToken != "" {
		t.Fatalf("GET offline_token with a pull credential: %d %s; want a token and no refresh token", r.status, r.body)
	}
	if c := claimsOf(t, tr.Token); c.Allows("repository", "team/app", "push") {
		t.Fatalf("pull credential granted push: %+v", c.Access)
	}
	form := url.Values{"grant_type": {"password"}, "username": {robot}, "password": {cred}, "access_type": {"offline"},
		"service": {"berth"}, "client_id": {"x"}}
	r = do(t, "POST", u+"/token", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte(form.Encode()))
	if err := json.Unmarshal(r.body, &tr); err != nil || r.status != 200 || tr.RefreshToken != "" {
		t.Fatalf("POST password grant with a pull credential: %d %s; want no refresh token", r.status, r.body)
	}
	// The robot's own secret still gets one.
	if _, secret, _ := pullCredential(t, u, "team", "ci"); offlineToken(t, u, "team+ci", secret).RefreshToken == "" {
		t.Fatal("the robot's secret got no refresh token")
	}
}

// Logging in with a pull credential does not make an address "known" to
// the account, which would exempt it from the account's limit.
func TestPullCredentialMakesNoAddressKnown(t *testing.T) {
	ts, _ := authServer(t, behindProxy)
	u := ts.URL
	r := must(t, "POST", u+"/api/v1/pull-credentials", map[string]string{"Authorization": basic("alice", "alice-pass-1"), "X-Forwarded-For": "192.0.2.1"}, `{"ttl":"1h"}`)
	var pc struct{ Password string }
	if err := json.Unmarshal(r.body, &pc); err != nil {
		t.Fatal(err)
	}
	if r := tokenFrom(t, u, "198.51.100.77", "alice", pc.Password); r.status != 200 {
		t.Fatalf("alice's pull credential from the attacker's address: %d %s", r.status, r.body)
	}
	for i := range 20 { // exhaust alice's limit for unknown addresses
		if r := tokenFrom(t, u, fmt.Sprintf("203.0.113.%d", i+1), "alice", "wrong"); r.status != 401 {
			t.Fatalf("guess %d: %d", i, r.status)
		}
	}
	if r := tokenFrom(t, u, "198.51.100.77", "alice", "guess"); r.status != 429 {
		t.Fatalf("a guess from where only a pull credential was used: %d, want 429", r.status)
	}
	if r := tokenFrom(t, u, "192.0.2.1", "alice", "alice-pass-1"); r.status != 200 {
		t.Fatalf("alice from the address she used her password from: %d", r.status)
	}
}

// A revoked robot's right secret, repeated, is limited like a guess from
// its address and does not write a record each time.
func TestRevokedSecretIsLimited(t *testing.T) {
	ts, dir := authServer(t)
	u := ts.URL
	r := must(t, "POST", u+"/api/v1/namespaces/team/robots", adminHdr(), `{"name":"gone"}`)
	var rb struct{ Name, Secret string }
	if err := json.Unmarshal(r.body, &rb); err != nil {
		t.Fatal(err)
	}
	must(t, "DELETE", u+"/api/v1/namespaces/team/robots/gone", adminHdr(), "")
	st := map[int]int{}
	for range 150 {
		_, r := getToken(t, u, rb.Name, rb.Secret)
		st[r.status]++
	}
	if st[401] != 5 || st[429] != 145 {
		t.Fatalf("150 logins with a revoked robot's secret: %v, want 5 refused as revoked and 145 rate limited", st)
	}
	n := 0
	for _, m := range auditRecords(t, dir) {
		if m["user"] == rb.Name {
			n++
		}
	}
	if n > 61 {
		t.Fatalf("%d audit records for 150 logins of a revoked robot", n)
	}
	// Other accounts from that address are not blocked.
	if _, r := getToken(t, u, "bob", "bob-pass-1"); r.status != 200 {
		t.Fatalf("bob after the revoked robot's retries: %d", r.status)
	}
}

// An IPv6 client cannot escape the address limit by rotating through its
// /64.
func TestIPv6ClientIsItsSlash64(t *testing.T) {
	ts, _ := authServer(t, behindProxy)
	st := map[int]int{}
	for i := range 40 {
		r := tokenFrom(t, ts.URL, fmt.Sprintf("2001:db8:1:2::%x", i+1), strings.Repeat("n", 300), "x")
		st[r.status]++
	}
	if st[401] != 30 || st[429] != 10 {
		t.Fatalf("40 failed logins from one /64: %v, want 30 then 429", st)
	}
	if r := tokenFrom(t, ts.URL, "2001:db8:1:3::1", "bob", "bob-pass-1"); r.status != 200 {
		t.Fatalf("another /64: %d", r.status)
	}
}

// Deleting a namespace stops its members' tokens, as it stops its robots'.
func TestNamespaceDeletionRevokesMembersTokens(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	tok := tokenFor(t, u, "bob", "bob-pass-1", "repository:team/app:pull,push")
	expect(t, "bob's push before", do(t, "POST", u+"/v2/team/app/blobs/uploads/", bearer(tok), nil), 202, "")
	must(t, "DELETE", u+"/api/v1/namespaces/team", adminHdr(), "")
	if r := do(t, "POST", u+"/v2/team/app/blobs/uploads/", bearer(tok), nil); r.status != 401 {
		t.Fatalf("bob's token after team was deleted: %d %s, want 401", r.status, r.body)
	}
	// Raising a role does not revoke: bob's new token keeps working.
	must(t, "POST", u+"/api/v1/namespaces", adminHdr(), `{"name":"team"}`)
	must(t, "PUT", u+"/api/v1/namespaces/team/members/bob", adminHdr(), `{"role":"reader"}`)
	tok = tokenFor(t, u, "bob", "bob-pass-1", "repository:team/app:pull")
	must(t, "PUT", u+"/api/v1/namespaces/team/members/bob", adminHdr(), `{"role":"writer"}`)
	if r := do(t, "GET", u+"/v2/team/app/tags/list", bearer(tok), nil); r.status != 404 {
		t.Fatalf("bob's token after his role was raised: %d, want 404 (accepted)", r.status)
	}
	must(t, "PUT", u+"/api/v1/namespaces/team/members/bob", adminHdr(), `{"role":"reader"}`)
	tok2 := tokenFor(t, u, "bob", "bob-pass-1", "repository:team/app:pull")
	must(t, "PUT", u+"/api/v1/namespaces/team/members/alice", adminHdr(), `{"role":"writer"}`)
	if r := do(t, "GET", u+"/v2/team/app/tags/list", bearer(tok2), nil); r.status != 404 {
		t.Fatalf("bob's token after another member changed: %d, want 404", r.status)
	}
	must(t, "DELETE", u+"/api/v1/namespaces/team/members/bob", adminHdr(), "")
	if r := do(t, "GET", u+"/v2/team/app/tags/list", bearer(tok2), nil); r.status != 401 {
		t.Fatalf("bob's token after he was removed: %d, want 401", r.status)
	}
}

// Making a namespace private stops the anonymous tokens that could pull
// from it.
func TestPrivateNamespaceStopsAnonymousTokens(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	admin := tokenFor(t, u, "admin", adminPass, "repository:team/app:pull,push")
	data := []byte("public layer")
	expect(t, "push", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(data), bearer(admin), data), 201, "")
	must(t, "PATCH", u+"/api/v1/namespaces/team", adminHdr(), `{"public":true}`)
	anon := tokenFor(t, u, "", "", "repository:team/app:pull")
	expect(t, "anonymous pull while public", do(t, "GET", u+"/v2/team/app/blobs/"+digestOf(data), bearer(anon), nil), 200, "")
	must(t, "PATCH", u+"/api/v1/namespaces/team", adminHdr(), `{"public":false}`)
	if r := do(t, "GET", u+"/v2/team/app/blobs/"+digestOf(data), bearer(anon), nil); r.status != 401 {
		t.Fatalf("anonymous token after the namespace was made private: %d, want 401", r.status)
	}
	if r := do(t, "GET", u+"/v2/team/app/blobs/"+digestOf(data), bearer(admin), nil); r.status != 200 {
		t.Fatalf("admin's token after the change: %d", r.status)
	}
}
