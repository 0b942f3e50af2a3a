package oidcauth

import (
	"context"
	"errors"
	"net"
	"net/http/cookiejar"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/testserver"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// newStore opens a metadata database (SQLite) with accounts for names.
func newStore(t *testing.T, names ...string) *metadata.SQL {
	t.Helper()
	st, err := metadata.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, n := range names {
		if err := st.CreateUser(context.Background(), metadata.User{Name: n, Source: metadata.SourceOIDC}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// sealedOf reads a person's stored provider token as it is.
func sealedOf(t *testing.T, st *metadata.SQL, user string) string {
	t.Helper()
	s, err := st.ClaimProviderToken(context.Background(), user, time.Now(), time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatalf("provider token of %s: %v", user, err)
	}
	return s
}

// rp is a relying party's side of the tests: a provider and the callback
// URL registered for it (nothing listens there: Browse stops at it).
type rp struct {
	p        *Provider
	redirect string
}

func newRP(t *testing.T, h *testserver.HydraServer, id string, now func() time.Time, st Store) *rp {
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
		Scopes: []string{"openid", "profile", "groups", "offline_access"}, Now: now, Recheck: time.Second}, st)
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
	st := newStore(t, "alice", "bob")
	berth := newRP(t, h, "berth", nil, st)

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
	sealed := sealedOf(t, st, "alice")
	if strings.Contains(sealed, si.refresh) {
		t.Fatal("the refresh token is stored in the clear")
	}
	// Asked about just now (the sign-in): no refresh within Recheck.
	if _, err := berth.p.Lookup(ctx, "alice"); !errors.Is(err, auth.ErrCheckedElsewhere) {
		t.Errorf("Lookup right after the sign-in: %v, want ErrCheckedElsewhere", err)
	}
	time.Sleep(1100 * time.Millisecond)

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
	if sealedOf(t, st, "alice") == sealed {
		t.Error("the rotated refresh token was not kept")
	}
	// A refresh under way elsewhere (its lease), or done within Recheck:
	// not again.
	time.Sleep(1100 * time.Millisecond)
	if _, err := st.ClaimProviderToken(ctx, "alice", time.Now(), time.Now().Add(time.Minute), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := berth.p.Lookup(ctx, "alice"); !errors.Is(err, auth.ErrCheckedElsewhere) {
		t.Errorf("Lookup while another replica holds the lease: %v, want ErrCheckedElsewhere", err)
	}
	if err := st.ReleaseProviderToken(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := berth.p.Lookup(ctx, "alice"); err != nil {
		t.Errorf("a second Lookup (with the rotated token): %v", err)
	}
	// Renamed at the provider: refused, and not as a good answer (the
	// next Lookup asks again instead of letting stored groups stand).
	h.SignInAsSubject("alice", "alice2", "readers")
	time.Sleep(1100 * time.Millisecond)
	for i := 0; i < 2; i++ {
		if _, err := berth.p.Lookup(ctx, "alice"); !errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "alice2") {
			t.Errorf("Lookup %d after the provider renamed alice: %v, want refused naming alice2", i+1, err)
		}
	}
	h.SignInAs("alice", "readers")
	// A sealed token moved to another person does not open.
	if err := st.SaveProviderToken(ctx, "bob", sealedOf(t, st, "alice"), false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a new row counts as asked about
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
	other := newRP(t, h, "other-app", nil, newStore(t))
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
	foreign := newRP(t, h2, "berth", nil, newStore(t))
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
	late := newRP(t, h, "late", func() time.Time { return time.Now().Add(2 * time.Minute) }, newStore(t))
	code, verifier, nonce = late.signIn(t, h)
	if _, err := late.p.Exchange(ctx, late.redirect, code, verifier, nonce); !errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired ID token: %v, want refused as expired", err)
	}

	// A name that is not plain ASCII (the Kelvin sign lower-cases to k).
	h.SignInAs("\u212Aate", "team-dev")
	code, verifier, nonce = berth.signIn(t, h)
	if _, err := berth.p.Exchange(ctx, berth.redirect, code, verifier, nonce); !errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "ASCII") {
		t.Errorf("a name with the Kelvin sign: %v, want refused", err)
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
