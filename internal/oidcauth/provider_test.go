package oidcauth

import (
	"context"
	"errors"
	"net"
	"net/http/cookiejar"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/testserver"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// memStore keeps sealed refresh tokens for the provider under test (the
// server keeps them in its metadata database).
type memStore struct {
	mu sync.Mutex
	m  map[string]string
}

func (s *memStore) SaveProviderToken(_ context.Context, user, sealed string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[user] = sealed
	return nil
}

func (s *memStore) ProviderToken(_ context.Context, user string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[user]
	if !ok {
		return "", metadata.ErrNotFound
	}
	return v, nil
}

// rp is a relying party's side of the tests: a provider and the callback
// URL registered for it (nothing listens there: Browse stops at it).
type rp struct {
	p        *Provider
	redirect string
}

func newRP(t *testing.T, h *testserver.HydraServer, id string, now func() time.Time) *rp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	redirect := "http://" + ln.Addr().String() + "/oidc/callback"
	ln.Close()
	if err := h.CreateClient(context.Background(), id, id+"-secret-1234", redirect); err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{Issuer: h.Issuer, ClientID: id, ClientSecret: id + "-secret-1234",
		Scopes: []string{"openid", "profile", "groups", "offline_access"}, Now: now}, &memStore{m: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	return &rp{p: p, redirect: redirect}
}

// signIn runs a browser through the provider and returns the code, the
// PKCE verifier and the nonce it used.
func (r *rp) signIn(t *testing.T, h *testserver.HydraServer) (code, verifier, nonce string) {
	t.Helper()
	ctx := context.Background()
	state, nonce, verifier := random(), random(), random()
	u, err := r.p.authURL(ctx, r.redirect, state, nonce, verifier)
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	back, err := h.Browse(ctx, jar, u, r.redirect)
	if err != nil {
		t.Fatal(err)
	}
	if back.Query().Get("state") != state || back.Query().Get("code") == "" {
		t.Fatalf("callback %s: want state %s and a code", back, state)
	}
	return back.Query().Get("code"), verifier, nonce
}

// TestProviderChecks (issue 16, items 1 and 3): against a real Ory Hydra,
// a sign-in gives the person's name and groups and a refresh token that
// Lookup uses to read the groups again (a rotated refresh token is kept);
// an ID token for another client (audience), from another provider
// (issuer), an expired one, one with another sign-in's nonce, a code with
// the wrong PKCE verifier, and a name that another subject held are all
// refused.
func TestProviderChecks(t *testing.T) {
	h := testserver.Hydra(t)
	ctx := context.Background()
	berth := newRP(t, h, "berth", nil)

	h.SignInAs("alice", "team-dev", "readers")
	code, verifier, nonce := berth.signIn(t, h)
	si, err := berth.p.Exchange(ctx, berth.redirect, code, verifier, nonce)
	if err != nil {
		t.Fatal(err)
	}
	if si.Name != "alice" || !slices.Equal(si.Groups, []string{"team-dev", "readers"}) || si.refresh == "" {
		t.Fatalf("sign-in: %q %v refresh %t; want alice in team-dev, readers with a refresh token", si.Name, si.Groups, si.refresh != "")
	}
	if err := berth.p.Keep(ctx, si); err != nil {
		t.Fatal(err)
	}
	store := berth.p.store.(*memStore)
	sealed := store.m["alice"]
	if strings.Contains(sealed, si.refresh) {
		t.Fatal("the refresh token is stored in the clear")
	}

	// Lookup reads the groups as they are now, and keeps the rotated
	// refresh token.
	h.SetGroups("alice", "readers")
	id, err := berth.p.Lookup(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "alice" || !slices.Equal(id.Groups, []string{"readers"}) {
		t.Errorf("Lookup: %q %v, want alice in readers only", id.Name, id.Groups)
	}
	if store.m["alice"] == sealed {
		t.Error("the rotated refresh token was not kept")
	}
	if _, err := berth.p.Lookup(ctx, "alice"); err != nil {
		t.Errorf("a second Lookup (with the rotated token): %v", err)
	}
	// A sealed token moved to another person does not open.
	store.m["bob"] = store.m["alice"]
	if _, err := berth.p.Lookup(ctx, "bob"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("Lookup with alice's sealed token under bob: %v, want ErrBadCredentials", err)
	}
	if _, err := berth.p.Lookup(ctx, "nobody"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("Lookup without a kept token: %v, want ErrBadCredentials", err)
	}

	// A code traded twice: spent (and, at Hydra, the tokens it gave are
	// revoked).
	code, verifier, nonce = berth.signIn(t, h)
	if _, err := berth.p.Exchange(ctx, berth.redirect, code, verifier, nonce); err != nil {
		t.Fatal(err)
	}
	if _, err := berth.p.Exchange(ctx, berth.redirect, code, verifier, nonce); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("a code traded twice: %v, want ErrBadCredentials", err)
	}

	// Another sign-in's nonce.
	code, verifier, _ = berth.signIn(t, h)
	if _, err := berth.p.Exchange(ctx, berth.redirect, code, verifier, random()); !errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "nonce") {
		t.Errorf("an ID token with another sign-in's nonce: %v, want refused for its nonce", err)
	}
	// The wrong PKCE verifier.
	code, _, nonce = berth.signIn(t, h)
	if _, err := berth.p.Exchange(ctx, berth.redirect, code, random(), nonce); !errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("a code with the wrong PKCE verifier: %v, want invalid_grant", err)
	}

	// An ID token minted for another client of the same provider.
	other := newRP(t, h, "other-app", nil)
	code, verifier, nonce = other.signIn(t, h)
	tok, err := other.p.oauth2Config(mustDiscover(t, other.p), other.redirect).Exchange(other.p.ctx(ctx), code, verifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := berth.p.verify(ctx, mustDiscover(t, berth.p), tok, nonce); !errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "audience") {
		t.Errorf("an ID token for another client: %v, want refused for its audience", err)
	}

	// An ID token from another provider (a second Hydra, same client id).
	h2 := testserver.Hydra(t)
	h2.SignInAs("alice", "team-dev")
	foreign := newRP(t, h2, "berth", nil)
	code, verifier, nonce = foreign.signIn(t, h2)
	tok, err = foreign.p.oauth2Config(mustDiscover(t, foreign.p), foreign.redirect).Exchange(foreign.p.ctx(ctx), code, verifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	// (go-oidc checks the signature against this provider's keys before
	// the issuer claim: either refuses it.)
	if _, err := berth.p.verify(ctx, mustDiscover(t, berth.p), tok, nonce); !errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "issue") && !strings.Contains(err.Error(), "signature") {
		t.Errorf("an ID token from another provider: %v, want refused for its issuer or signature", err)
	}

	// An expired ID token (Hydra's live a minute; this clock is 2 ahead).
	late := newRP(t, h, "late", func() time.Time { return time.Now().Add(2 * time.Minute) })
	code, verifier, nonce = late.signIn(t, h)
	if _, err := late.p.Exchange(ctx, late.redirect, code, verifier, nonce); !errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired ID token: %v, want refused as expired", err)
	}

	// A name berth knows with another subject: alice's name now comes
	// with a new subject (another person took it at the provider).
	if err := berth.p.keep(ctx, "alice", "someone-else", "rt"); err != nil {
		t.Fatal(err)
	}
	code, verifier, nonce = berth.signIn(t, h)
	if _, err := berth.p.Exchange(ctx, berth.redirect, code, verifier, nonce); !errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "another person") {
		t.Errorf("alice's name with another subject: %v, want refused", err)
	}
}

func mustDiscover(t *testing.T, p *Provider) *oidc.Provider {
	t.Helper()
	d, err := p.discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func verifierOption(v string) oauth2.AuthCodeOption { return oauth2.VerifierOption(v) }
