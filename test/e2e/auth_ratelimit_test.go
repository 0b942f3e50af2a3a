package e2e

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// loginLimit is the number of failed logins of one account from one
// address within a minute that berth answers normally (401); the next
// attempt gets 429.
const loginLimit = 5

// accountLimit is the number of failed logins of one account within 15
// minutes, from addresses it has not logged in from, that block it from
// every such address (not from those it has used).
const accountLimit = 20

// clientLimit is the number of failed logins within a minute from one
// client address (of any accounts) that blocks that address.
const clientLimit = 30

// checkRetryAfter fails the test unless r is a 429 with a Retry-After of
// 1 second to 15 minutes (the longest window, the per-account one).
func checkRetryAfter(t *testing.T, what string, r authResult) {
	t.Helper()
	if r.Status != http.StatusTooManyRequests {
		t.Errorf("%s: got %s, want 429 Too Many Requests", what, r)
		return
	}
	ra := r.Header.Get("Retry-After")
	secs, err := strconv.Atoi(ra)
	if err != nil || secs < 1 || secs > 900 {
		t.Errorf("%s: 429 with Retry-After %q, want a number of seconds from 1 to 900", what, ra)
		return
	}
	t.Logf("%s: 429, Retry-After: %s", what, ra)
}

// badLogin is GET /token with wrong Basic credentials (from a given
// X-Forwarded-For address when xff is set).
func badLogin(t *testing.T, b *authBerth, user, xff string) authResult {
	t.Helper()
	opts := []reqOpt{reqBasic(user, "wrong-"+randomHex(t, 4))}
	if xff != "" {
		opts = append(opts, reqHeader("X-Forwarded-For", xff))
	}
	return authDo(t, http.MethodGet, b.tokenURL("repository:"+user+"/app:pull"), nil, opts...)
}

// TestAuthLoginRateLimit checks the brute-force limits: 5 failed logins
// within a minute per account and address, 30 per address, 20 in 15
// minutes per account from addresses it has not used, then 429 with
// Retry-After, on the token endpoint (GET and POST) and the admin API.
func TestAuthLoginRateLimit(t *testing.T) {
	skipIfShort(t)

	// The token endpoint, from one address, one account: 5 answers 401
	// (with the Basic/Bearer challenge), the 6th 429 with Retry-After; the
	// account's right password and the OAuth2 form are blocked as well for
	// the rest of the minute.
	t.Run("token-endpoint", func(t *testing.T) {
		b := startAuthBerth(t)
		pass := b.addUser(t, "alice", false)
		for i := 1; i <= loginLimit; i++ {
			r := badLogin(t, b, "alice", "")
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("failed login %d of %d: got %s, want 401", i, loginLimit, r)
			}
		}
		checkRetryAfter(t, "6th failed login on GET /token", badLogin(t, b, "alice", ""))
		checkRetryAfter(t, "right password on GET /token after 6 failures",
			authDo(t, http.MethodGet, b.tokenURL("repository:alice/app:pull"), nil, reqBasic("alice", pass)))
		form := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {pass},
			"service": {"berth"}, "scope": {"repository:alice/app:pull"}, "client_id": {"e2e"}}
		checkRetryAfter(t, "POST /token grant_type=password after 6 failures",
			authDo(t, http.MethodPost, b.URL+"/token", []byte(form.Encode()), reqHeader("Content-Type", "application/x-www-form-urlencoded")))
	})

	// Per client address: clientLimit failures for as many accounts from
	// one address, then the next account from that address gets 429. Without
	// trusted proxies, X-Forwarded-For is the client's word and must not
	// spread the failures over several addresses.
	t.Run("per-address-xff-not-trusted", func(t *testing.T) {
		b := startAuthBerth(t)
		for i := 1; i <= clientLimit; i++ {
			r := badLogin(t, b, "nobody"+strconv.Itoa(i), "198.51.100."+strconv.Itoa(i))
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("failed login %d of %d: got %s, want 401", i, clientLimit, r)
			}
		}
		checkRetryAfter(t, "one more failed login from 127.0.0.1 (another account, a spoofed X-Forwarded-For)",
			badLogin(t, b, "nobody-more", "198.51.100.99"))
		// The admin API shares the limit of the address.
		r := b.adminAPI(t, "admin", b.AdminPassword, http.MethodGet, "/api/v1/whoami", nil)
		checkRetryAfter(t, "admin API from the blocked address", r)
	})

	// Behind a trusted proxy, X-Forwarded-For is the client address: the
	// per-account and per-address limits can be told apart. The admin API
	// counts failed logins as the token endpoint does.
	t.Run("admin-api-behind-proxy", func(t *testing.T) {
		b := startAuthBerth(t, "--trusted-proxies", "127.0.0.1")
		carolPass := b.addUser(t, "carol", false)
		davePass := b.addUser(t, "dave", false)

		// carol works from 192.0.2.9.
		if r := authDo(t, http.MethodGet, b.URL+"/api/v1/whoami", nil, reqBasic("carol", carolPass),
			reqHeader("X-Forwarded-For", "192.0.2.9")); r.Status != http.StatusOK {
			t.Fatalf("carol's login from her address: got %s", r)
		}
		// Per account: carol's password guessed from 20 other addresses.
		for i := 1; i <= accountLimit; i++ {
			r := authDo(t, http.MethodGet, b.URL+"/api/v1/whoami", nil, reqBasic("carol", "wrong"+strconv.Itoa(i)+"-"+randomHex(t, 4)),
				reqHeader("X-Forwarded-For", "203.0.113."+strconv.Itoa(i)))
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("admin API failed login %d of %d: got %s, want 401", i, accountLimit, r)
			}
		}
		checkRetryAfter(t, "admin API: 21st failed login for carol (from a 21st address)",
			authDo(t, http.MethodGet, b.URL+"/api/v1/whoami", nil, reqBasic("carol", "wrong-again"),
				reqHeader("X-Forwarded-For", "203.0.113.21")))
		checkRetryAfter(t, "admin API: carol's right password, from a fresh address, after 20 failures",
			authDo(t, http.MethodGet, b.URL+"/api/v1/whoami", nil, reqBasic("carol", carolPass),
				reqHeader("X-Forwarded-For", "203.0.113.22")))
		checkRetryAfter(t, "GET /token: carol's right password from a fresh address after 20 failures on the admin API",
			authDo(t, http.MethodGet, b.tokenURL("repository:carol/app:pull"), nil, reqBasic("carol", carolPass),
				reqHeader("X-Forwarded-For", "203.0.113.23")))
		// The strangers do not lock carol out of her own address.
		for _, u := range []string{b.URL + "/api/v1/whoami", b.tokenURL("repository:carol/app:pull")} {
			if r := authDo(t, http.MethodGet, u, nil, reqBasic("carol", carolPass), reqHeader("X-Forwarded-For", "192.0.2.9")); r.Status != http.StatusOK {
				t.Errorf("carol from her own address while strangers are blocked: got %s, want 200", r)
			}
		}

		// Per address: clientLimit accounts guessed from one address.
		for i := 1; i <= clientLimit; i++ {
			r := badLogin(t, b, "ghost"+strconv.Itoa(i), "192.0.2.50")
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("failed login %d of %d from 192.0.2.50: got %s, want 401", i, clientLimit, r)
			}
		}
		checkRetryAfter(t, "dave's right password from the blocked address 192.0.2.50",
			authDo(t, http.MethodGet, b.URL+"/api/v1/whoami", nil, reqBasic("dave", davePass),
				reqHeader("X-Forwarded-For", "192.0.2.50")))
		// Neither dave nor another address is blocked.
		r := authDo(t, http.MethodGet, b.URL+"/api/v1/whoami", nil, reqBasic("dave", davePass),
			reqHeader("X-Forwarded-For", "192.0.2.51"))
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), "dave") {
			t.Errorf("dave from another address: got %s, want 200 naming dave", r)
		}
	})
}
