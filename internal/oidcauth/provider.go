// Package oidcauth signs people in through an OpenID Connect provider
// (authorization code flow with PKCE, state and nonce): the console's
// sign-in and `berth login --oidc`. The person's account, groups and
// roles are package auth's (SignInWith); this package checks what the
// provider says, keeps the provider's refresh token sealed so that berth
// can ask about the person again later (auth.IdentityProvider's Lookup),
// and serves the sign-in pages.
package oidcauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
)

// Config is the provider berth signs people in with.
type Config struct {
	// Issuer is the provider's issuer URL (its discovery document is at
	// Issuer/.well-known/openid-configuration).
	Issuer string
	// ClientID and ClientSecret are berth's client at the provider (a
	// confidential client; the secret also keys what berth seals).
	ClientID, ClientSecret string
	// Scopes asked for (default openid, profile, offline_access: the
	// refresh token lets berth read a person's groups again).
	Scopes []string
	// UsernameClaim names the account (default preferred_username);
	// GroupsClaim lists the groups (default groups).
	UsernameClaim, GroupsClaim string
	// HTTPClient talks to the provider (default: one with a 30 s timeout).
	HTTPClient *http.Client
	// Now is the clock ID tokens are checked against (default time.Now).
	Now func() time.Time
	// Recheck is how long a refresh by any replica stands (default
	// auth.DefaultRecheck): Lookup does not refresh again within it.
	Recheck time.Duration
}

// Store keeps each person's sealed refresh token, leased by one replica
// at a time for a refresh (metadata.Accounts).
type Store interface {
	SaveProviderToken(ctx context.Context, user string, sealed string, fresh bool) error
	ClaimProviderToken(ctx context.Context, user string, at, leaseUntil, freshAfter time.Time) (string, error)
	ReleaseProviderToken(ctx context.Context, user string) error
}

// refreshTimeout bounds one refresh at the provider; its lease is twice
// as long (the claim's round trip and clock skew between replicas eat
// into it).
const refreshTimeout = 30 * time.Second

// Provider is an OpenID Connect provider as berth uses it.
type Provider struct {
	cfg   Config
	store Store
	seal  sealer

	mu       sync.Mutex
	disc     *oidc.Provider // discovered on first use, kept once it worked
	failedAt time.Time      // the last failed discovery
	failure  error
}

// discoveryBackoff is how long a failed discovery answers for itself: an
// unreachable provider is not asked again by every sign-in.
const discoveryBackoff = 5 * time.Second

// New returns the provider; its discovery document is read at first use
// (the provider may start after berth).
func New(cfg Config, store Store) (*Provider, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("oidc: issuer and client id are required")
	}
	if cfg.ClientSecret == "" {
		return nil, errors.New("oidc: a client secret is required (berth is a confidential client; give it as BERTH_OIDC_CLIENT_SECRET)")
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "profile", oidc.ScopeOfflineAccess}
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	if cfg.UsernameClaim == "" {
		cfg.UsernameClaim = "preferred_username"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Recheck <= 0 {
		cfg.Recheck = auth.DefaultRecheck
	}
	return &Provider{cfg: cfg, store: store, seal: sealer{secret: []byte(cfg.ClientSecret)}}, nil
}

// Source implements auth.IdentityProvider.
func (p *Provider) Source() string { return metadata.SourceOIDC }

// ctx carries the provider's HTTP client for go-oidc and oauth2.
func (p *Provider) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, p.cfg.HTTPClient)
}

// discover returns the provider's endpoints and keys.
func (p *Provider) discover(ctx context.Context) (*oidc.Provider, error) {
	p.mu.Lock()
	d, failedAt, failure := p.disc, p.failedAt, p.failure
	p.mu.Unlock()
	if d != nil {
		return d, nil
	}
	if time.Since(failedAt) < discoveryBackoff {
		return nil, failure
	}
	// Not under the lock: a provider that does not answer holds up only
	// the requests that need it.
	d, err := oidc.NewProvider(p.ctx(ctx), p.cfg.Issuer)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failedAt, p.failure = time.Now(), fmt.Errorf("oidc discovery at %s: %w", p.cfg.Issuer, err)
		return nil, p.failure
	}
	if p.disc == nil {
		p.disc = d
	}
	return p.disc, nil
}

// oauth2Config is the client for redirectURL.
func (p *Provider) oauth2Config(d *oidc.Provider, redirectURL string) *oauth2.Config {
	ep := d.Endpoint()
	// client_secret_basic, the method every provider must support: with
	// auto-detection a refused code or refresh token is retried with
	// client_secret_post, and the provider's second answer (that method
	// is not allowed) hides the first.
	ep.AuthStyle = oauth2.AuthStyleInHeader
	return &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, Endpoint: ep,
		RedirectURL: redirectURL, Scopes: p.cfg.Scopes}
}

// authURL is where a browser signs in: the provider's authorization
// endpoint with state, nonce and the PKCE challenge of verifier.
func (p *Provider) authURL(ctx context.Context, redirectURL, state, nonce, verifier string) (string, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	return p.oauth2Config(d, redirectURL).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

// SignIn is a person the provider vouched for at a sign-in.
type SignIn struct {
	auth.Identity
	refresh string
}

// Exchange trades the authorization code for tokens and checks the ID
// token: signature, issuer, audience, expiry and nonce. (That the name's
// account belongs to the token's subject is auth.SignInWith's check.)
func (p *Provider) Exchange(ctx context.Context, redirectURL, code, verifier, nonce string) (*SignIn, error) {
	d, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := p.oauth2Config(d, redirectURL).Exchange(p.ctx(ctx), code, oauth2.VerifierOption(verifier))
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		// The code only: the provider's description may say more than a
		// browser should see.
		return nil, fmt.Errorf("%w: the provider refused the code (%s)", auth.ErrBadCredentials, re.ErrorCode)
	}
	if err != nil {
		return nil, fmt.Errorf("oidc code exchange: %w", err)
	}
	id, err := p.verify(ctx, d, tok, nonce)
	if err != nil {
		return nil, err
	}
	return &SignIn{Identity: *id, refresh: tok.RefreshToken}, nil
}

// Keep stores the sign-in's refresh token, sealed, for Lookup, once the
// person's account exists. Without one (the provider gave none) berth
// cannot ask about the person later: their tokens and sessions work until
// the next recheck only, and Keep says so.
func (p *Provider) Keep(ctx context.Context, s *SignIn) error {
	if s.refresh == "" {
		return fmt.Errorf("the provider gave no refresh token for %s: add offline_access to oidc_scopes (and allow it for berth's client), or the person's tokens stop working within a minute", s.Name)
	}
	return p.keep(ctx, s.Name, s.Subject, s.refresh, true)
}

// kept is what berth keeps of a person's provider session.
type kept struct {
	Refresh string `json:"rt"`
	Subject string `json:"sub"`
}

// keep seals and stores user's refresh token, and ends the lease on it;
// fresh marks the person as asked about now.
func (p *Provider) keep(ctx context.Context, user, subject, refresh string, fresh bool) error {
	sealed, err := p.seal.seal("refresh token", user, kept{Refresh: refresh, Subject: subject})
	if err != nil {
		return err
	}
	return p.store.SaveProviderToken(ctx, user, sealed, fresh)
}

// verify checks the token response's ID token and reads the person from
// it; nonce, when not empty, must be the ID token's.
func (p *Provider) verify(ctx context.Context, d *oidc.Provider, tok *oauth2.Token, nonce string) (*auth.Identity, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, fmt.Errorf("%w: the provider sent no ID token (is openid among oidc_scopes?)", auth.ErrBadCredentials)
	}
	idt, err := d.Verifier(&oidc.Config{ClientID: p.cfg.ClientID, Now: p.cfg.Now}).Verify(p.ctx(ctx), raw)
	if err != nil {
		return nil, fmt.Errorf("%w: ID token refused: %v", auth.ErrBadCredentials, err)
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, fmt.Errorf("%w: ID token refused: its nonce is not this sign-in's", auth.ErrBadCredentials)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: ID token claims: %v", auth.ErrBadCredentials, err)
	}
	return p.identity(idt.Subject, claims)
}

// identity reads the account name and groups from claims. The name must
// be ASCII before it is lower-cased: strings.ToLower folds the Kelvin
// sign to "k" and a dotted capital I to "i", which would let a name at
// the provider become another person's here.
func (p *Provider) identity(subject string, claims map[string]any) (*auth.Identity, error) {
	name, _ := claims[p.cfg.UsernameClaim].(string)
	if name == "" {
		return nil, fmt.Errorf("%w: the ID token has no %q claim (set oidc_username_claim)", auth.ErrBadCredentials, p.cfg.UsernameClaim)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return nil, fmt.Errorf("%w: the %q claim %q is not a plain ASCII name", auth.ErrBadCredentials, p.cfg.UsernameClaim, name)
	}
	if subject == "" {
		return nil, fmt.Errorf("%w: the ID token has no subject", auth.ErrBadCredentials)
	}
	id := &auth.Identity{Name: strings.ToLower(name), Subject: subject}
	switch g := claims[p.cfg.GroupsClaim].(type) {
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok && s != "" {
				id.Groups = append(id.Groups, s)
			}
		}
	case string:
		if g != "" {
			id.Groups = []string{g}
		}
	}
	return id, nil
}

// Lookup implements auth.IdentityProvider: it refreshes the person's
// provider session with the kept refresh token and reads their groups
// from the new ID token (or, without one, from the userinfo endpoint).
// One replica at a time refreshes a person (a lease in the database: two
// using one refresh token would look like a replay to the provider, which
// then revokes the whole session); the others, and all within
// Config.Recheck of a refresh, get auth.ErrCheckedElsewhere. No kept
// token, or one the provider refuses, is ErrBadCredentials: the person
// must sign in again.
func (p *Provider) Lookup(ctx context.Context, name string) (*auth.Identity, error) {
	now := time.Now()
	sealed, err := p.store.ClaimProviderToken(ctx, name, now, now.Add(2*refreshTimeout), now.Add(-p.cfg.Recheck))
	switch {
	case errors.Is(err, metadata.ErrNotFound):
		return nil, fmt.Errorf("%w: no provider session for %s: sign in again (berth login --oidc, or the console)", auth.ErrBadCredentials, name)
	case errors.Is(err, metadata.ErrBusy):
		return nil, auth.ErrCheckedElsewhere
	case err != nil:
		return nil, err
	}
	// The refresh runs to its end even if the request is cancelled: the
	// provider may rotate the token, and the new one must be kept.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	id, saved, err := p.refresh(ctx, name, sealed)
	if err != nil && !saved {
		if rerr := p.store.ReleaseProviderToken(ctx, name); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
	}
	return id, err
}

// refresh trades the sealed refresh token for a fresh ID token (or
// userinfo) and keeps the token the provider gives back, which ends the
// lease (saved reports whether it did).
func (p *Provider) refresh(ctx context.Context, name, sealed string) (id *auth.Identity, saved bool, err error) {
	var k kept
	if err := p.seal.open("refresh token", name, sealed, &k); err != nil {
		return nil, false, fmt.Errorf("%w: the provider session of %s cannot be read (client secret changed?): sign in again", auth.ErrBadCredentials, name)
	}
	d, err := p.discover(ctx)
	if err != nil {
		return nil, false, err
	}
	// The redirect URL plays no part in a refresh.
	tok, err := p.oauth2Config(d, "").TokenSource(p.ctx(ctx), &oauth2.Token{RefreshToken: k.Refresh}).Token()
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
		return nil, false, fmt.Errorf("%w: the provider ended the session of %s (%s): sign in again", auth.ErrBadCredentials, name, re.ErrorCode)
	}
	if err != nil {
		return nil, false, fmt.Errorf("oidc refresh for %s: %w", name, err)
	}
	rt := tok.RefreshToken
	if rt == "" {
		rt = k.Refresh // not rotated
	}
	id, err = p.identityOf(ctx, d, tok)
	switch {
	case err != nil:
	case id.Subject != k.Subject:
		err = fmt.Errorf("%w: the provider answered for another subject", auth.ErrBadCredentials)
	case id.Name != name:
		// Renamed at the provider: not a good answer for this account (a
		// fresh one would let the old groups stand on other replicas).
		err = fmt.Errorf("%w: the provider now calls %s %q: sign in again", auth.ErrBadCredentials, name, id.Name)
	}
	// Kept either way (a rotated token is the only one that works now);
	// fresh only when the answer was good.
	if kerr := p.keep(ctx, name, k.Subject, rt, err == nil); kerr != nil {
		return nil, false, errors.Join(err, kerr)
	}
	if err != nil {
		return nil, true, err
	}
	return id, true, nil
}

// identityOf reads the person from a refreshed token response: its ID
// token, or without one the userinfo endpoint.
func (p *Provider) identityOf(ctx context.Context, d *oidc.Provider, tok *oauth2.Token) (*auth.Identity, error) {
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		return p.verify(ctx, d, tok, "")
	}
	info, err := d.UserInfo(p.ctx(ctx), oauth2.StaticTokenSource(tok))
	if err != nil {
		return nil, fmt.Errorf("oidc userinfo: %w", err)
	}
	claims := map[string]any{}
	if err := info.Claims(&claims); err != nil {
		return nil, fmt.Errorf("oidc userinfo: %w", err)
	}
	return p.identity(info.Subject, claims)
}
