package testserver

import (
	"context"
	"net"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// TestHydra: a relying party signs a person in through Hydra with the
// authorization code flow and PKCE, verifies the ID token (issuer,
// audience, nonce) and reads the groups claim; a refresh carries the
// groups as they are then; a wrong PKCE verifier gets no token.
func TestHydra(t *testing.T) {
	h := Hydra(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The relying party's callback: it hands over what it receives.
	type callback struct{ code, state, query string }
	got := make(chan callback, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cb := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- callback{r.URL.Query().Get("code"), r.URL.Query().Get("state"), r.URL.RawQuery}
		_, _ = w.Write([]byte("signed in"))
	})}
	go cb.Serve(ln)
	defer cb.Close()
	redirect := "http://" + ln.Addr().String() + "/callback"
	if err := h.CreateClient(ctx, "berth", "berth-secret-1", redirect); err != nil {
		t.Fatal(err)
	}

	provider, err := oidc.NewProvider(ctx, h.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "berth", ClientSecret: "berth-secret-1", Endpoint: provider.Endpoint(),
		RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "offline", "groups"}}
	verifier := provider.Verifier(&oidc.Config{ClientID: "berth"})

	// signIn runs the browser's part and returns the code.
	signIn := func(pkce, state, nonce string) string {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
		resp, err := browser.Get(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		select {
		case c := <-got:
			if c.state != state || c.code == "" {
				t.Fatalf("callback: %s; want state %q and a code", c.query, state)
			}
			return c.code
		default:
			t.Fatalf("the sign-in did not reach the callback (last answer %d from %s)", resp.StatusCode, resp.Request.URL)
		}
		return ""
	}
	idClaims := func(tok *oauth2.Token, nonce string) (string, []string) {
		t.Helper()
		raw, _ := tok.Extra("id_token").(string)
		idt, err := verifier.Verify(ctx, raw)
		if err != nil {
			t.Fatalf("ID token: %v", err)
		}
		if nonce != "" && idt.Nonce != nonce {
			t.Errorf("ID token nonce %q, want %q", idt.Nonce, nonce)
		}
		var c struct {
			User   string   `json:"preferred_username"`
			Groups []string `json:"groups"`
		}
		if err := idt.Claims(&c); err != nil {
			t.Fatal(err)
		}
		return c.User, c.Groups
	}

	h.SignInAs("alice", "team-dev", "readers")
	pkce := oauth2.GenerateVerifier()
	// Hydra wants at least 8 characters of state (and nonce).
	state, nonce := "state-"+randomHex(8), "nonce-"+randomHex(8)
	code := signIn(pkce, state, nonce)
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatal(err)
	}
	if user, groups := idClaims(tok, nonce); user != "alice" || !slices.Equal(groups, []string{"team-dev", "readers"}) {
		t.Errorf("ID token: user %q groups %v, want alice in team-dev and readers", user, groups)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token (offline scope)")
	}

	// A refresh carries the groups as they are now.
	h.SetGroups("alice", "readers")
	tok.Expiry = time.Now().Add(-time.Minute)
	fresh, err := conf.TokenSource(ctx, tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if user, groups := idClaims(fresh, ""); user != "alice" || !slices.Equal(groups, []string{"readers"}) {
		t.Errorf("refreshed ID token: user %q groups %v, want alice in readers only", user, groups)
	}

	// PKCE: the code with another verifier is refused.
	code = signIn(oauth2.GenerateVerifier(), "state-"+randomHex(8), "nonce-"+randomHex(8))
	if _, err := conf.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("exchange with a wrong PKCE verifier: %v, want invalid_grant", err)
	}
	if h.Logins() != 2 {
		t.Errorf("the app accepted %d logins, want 2", h.Logins())
	}
}
