package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/internal/metadata"
)

// Limits on what a login may present: no account name is longer than
// maxNameLen, and bcrypt reads only the first 72 bytes of a password, so a
// longer one is refused rather than silently cut (a 72-byte password plus
// any suffix would log in). Stored bearer secrets are shorter still.
const (
	maxNameLen     = 256
	maxPasswordLen = 72
)

// Credential is the kind of secret a principal logged in with; each kind
// grants only what it was issued for.
type Credential int

// The kinds of credential.
const (
	// ViaToken: an access token, or no login at all (anonymous).
	ViaToken Credential = iota
	// ViaPassword: a user's password or a robot's secret, which may do
	// everything the account may.
	ViaPassword
	// ViaRefresh: a refresh token (docker's identity token), for registry
	// access only: not for the admin API.
	ViaRefresh
	// ViaPullCredential: a short-lived pull credential, which can pull
	// and nothing else.
	ViaPullCredential
	// ViaPersonalToken: a person's access token, for registry access
	// only, within the token's scopes and actions.
	ViaPersonalToken
	// ViaSession: a session secret a person was given at a sign-in
	// through an identity provider (IssueSession): what a password may
	// do, for as long as the session lasts.
	ViaSession
)

// Login checks a user's password or a robot's secret (robots are named
// "<namespace>+<name>"), or a refresh token or pull credential presented
// as the password. Attempts are counted before the secret is compared, per
// client address, per account and address pair, and per account from
// addresses it has never logged in from; too many give a
// *RateLimitedError (see docs/auth.md, "Brute force").
func (s *Service) Login(ctx context.Context, name, secret, client string) (*Principal, error) {
	p, err := s.login(ctx, name, secret, client)
	s.count(err)
	return p, err
}

// count adds a login's outcome to the counters.
func (s *Service) count(err error) {
	var rl *RateLimitedError
	switch {
	case err == nil:
		s.counters.LoginsOK.Add(1)
	case errors.As(err, &rl):
		s.counters.LoginsRateLimited.Add(1)
	case err == ErrBadCredentials:
		s.counters.LoginsFailed.Add(1)
	default:
		s.counters.LoginsRefused.Add(1)
	}
}

func (s *Service) login(ctx context.Context, name, secret, client string) (*Principal, error) {
	// Account names are lower case: every spelling of one counts against
	// the same limits (a directory matches names regardless of case).
	name = strings.ToLower(name)
	if len(name) > maxNameLen || name == "" {
		// No account has such a name; it still costs the client an
		// attempt, and is logged cut short.
		if _, wait, ok := s.clients.Reserve(ctx, clientKey(client)); !ok { // a guess: it stays counted
			s.audit.warn(client, "login refused", "user", name, "client", client, "reason", "rate limited")
			return nil, &RateLimitedError{RetryAfter: wait}
		}
		s.audit.failure(client, "login failed", "user", name, "client", client, "reason", ErrBadCredentials.Error())
		return nil, ErrBadCredentials
	}
	held, err := s.reserve(ctx, name, client)
	if err != nil {
		s.audit.warn(client, "login refused", "user", name, "client", client, "reason", "rate limited")
		return nil, err
	}
	epoch := s.revs.current(ctx, name) // before the account's state is read
	p, err := s.check(ctx, name, secret)
	if err == ErrBadCredentials {
		// A guess: every reservation stays counted.
		s.audit.failure(client, "login failed", "user", name, "client", client, "reason", err.Error())
		return nil, err
	}
	// No guess: the attempt does not count against the address or the
	// account.
	held.client.Release(ctx)
	held.account.Release(ctx)
	if err != nil {
		// A revoked or expired robot whose secret was right is not
		// repeated at will either: it counts for the pair alone, and its
		// record comes out of the client's audit budget.
		s.audit.warn(client, "login failed", "user", name, "client", client, "reason", err.Error())
		return nil, err
	}
	// The pair's failures, this attempt's included, are forgotten: the
	// right secret came from this address.
	s.pairs.Reset(ctx, pairKey(name, client))
	if p.Via == ViaPassword {
		// Only the account's own secret makes an address known: a leaked
		// pull credential must not exempt its holder's addresses from the
		// account's limit.
		s.known.remember(ctx, s.acc, name, clientKey(client), s.now())
	}
	p.Epoch = s.signInEpoch(ctx, name, epoch, p)
	s.audit.info(client, "login", "user", name, "client", client)
	return p, nil
}

// reservations are the attempts one login holds in the limiters (account
// is nil when the address is known to the account and its limit is
// exhausted).
type reservations struct{ client, pair, account *Reservation }

func (rs reservations) release(ctx context.Context) {
	rs.client.Release(ctx)
	rs.pair.Release(ctx)
	rs.account.Release(ctx)
}

// pairKey is the key of an account and client address pair.
func pairKey(name, client string) string { return name + " " + clientKey(client) }

// reserve counts a login attempt of name from client in every limiter, or
// refuses it (counting nothing) when one of them is exhausted. The limit
// per account alone does not apply to an address the account has logged
// in from before: strangers' guesses from elsewhere cannot lock the owner
// out.
func (s *Service) reserve(ctx context.Context, name, client string) (reservations, error) {
	var held reservations
	refuse := func(wait time.Duration) (reservations, error) {
		held.release(ctx)
		return reservations{}, &RateLimitedError{RetryAfter: wait}
	}
	var wait time.Duration
	var ok bool
	if held.client, wait, ok = s.clients.Reserve(ctx, clientKey(client)); !ok {
		return refuse(wait)
	}
	if held.pair, wait, ok = s.pairs.Reserve(ctx, pairKey(name, client)); !ok {
		return refuse(wait)
	}
	if held.account, wait, ok = s.accounts.Reserve(ctx, name); ok || s.known.known(ctx, s.acc, name, clientKey(client), s.now()) {
		return held, nil
	}
	return refuse(wait)
}

// check verifies the secret presented for name.
func (s *Service) check(ctx context.Context, name, secret string) (*Principal, error) {
	if strings.HasPrefix(secret, personalTokenPrefix) && !strings.Contains(name, "+") {
		return s.personalToken(ctx, name, secret)
	}
	if strings.HasPrefix(secret, pullCredentialPrefix) || strings.HasPrefix(secret, refreshPrefix) || strings.HasPrefix(secret, sessionPrefix) {
		// A pull credential, refresh token or session of the account,
		// used as its password: what the kubelet, docker and berth
		// configs can carry.
		return s.bearer(ctx, secret, name)
	}
	if strings.Contains(name, "+") {
		r, err := s.acc.GetRobot(ctx, name)
		if errors.Is(err, metadata.ErrNotFound) {
			return nil, ErrBadCredentials
		}
		if err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare([]byte(secretHash(secret)), []byte(r.SecretHash)) != 1 {
			return nil, ErrBadCredentials
		}
		p, err := robotPrincipal(r, s.now())
		if err != nil {
			return nil, err
		}
		if s.now().Sub(r.LastUsed) > time.Minute {
			_ = s.acc.TouchRobot(ctx, name, s.now())
		}
		p.Via = ViaPassword
		return p, nil
	}
	u, err := s.acc.GetUser(ctx, name)
	if s.opts.Directory != nil && secret != "" {
		switch {
		case errors.Is(err, metadata.ErrNotFound):
			return s.checkDirectory(ctx, nil, name, secret)
		case err == nil && u.Source == s.opts.Directory.Source():
			return s.checkDirectory(ctx, u, name, secret)
		}
	}
	if errors.Is(err, metadata.ErrNotFound) || err == nil && (len(secret) > maxPasswordLen || !localUser(u)) {
		// Unknown, or a provider's person (berth checks no password of
		// theirs, whatever hash the row holds): the same time as a
		// compare.
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(secret[:min(len(secret), maxPasswordLen)]))
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(secret)) != nil {
		return nil, ErrBadCredentials
	}
	if _, err := s.admit(ctx, u); err != nil {
		return nil, err
	}
	return &Principal{Kind: UserKind, Name: u.Name, Admin: u.Admin, Created: u.Created, Via: ViaPassword}, nil
}

// bearer looks up a stored bearer secret (refresh token or pull
// credential) and returns the principal it was issued to, with the rights
// of its kind; name, when not empty, must be that principal. A secret
// issued to an account since deleted is refused even when an account of
// the same name exists now.
func (s *Service) bearer(ctx context.Context, secret, name string) (*Principal, error) {
	g, err := s.acc.RefreshToken(ctx, secretHash(secret))
	if errors.Is(err, metadata.ErrNotFound) {
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if name != "" && g.Subject != name || !s.now().Before(g.Expires) {
		return nil, ErrBadCredentials
	}
	var epoch int64
	if name == "" { // Refresh: the subject is known only now (Login read its epoch)
		epoch = s.revs.current(ctx, g.Subject) // before the account's state is read
	}
	p, err := s.Principal(ctx, g.Subject)
	if err != nil {
		return nil, err
	}
	p.Epoch = epoch
	if name == "" {
		p.Epoch = s.signInEpoch(ctx, g.Subject, epoch, p)
	}
	if !p.Created.Equal(g.SubjectCreated) {
		return nil, ErrBadCredentials
	}
	switch {
	case strings.HasPrefix(secret, pullCredentialPrefix):
		p.Via = ViaPullCredential
	case strings.HasPrefix(secret, sessionPrefix):
		p.Via = ViaSession
	default:
		p.Via = ViaRefresh
	}
	return p, nil
}

// Refresh exchanges a refresh token for the principal it was issued to.
// Failures count against the client address.
func (s *Service) Refresh(ctx context.Context, refresh, client string) (*Principal, error) {
	p, err := s.refresh(ctx, refresh, client)
	s.count(err)
	return p, err
}

func (s *Service) refresh(ctx context.Context, refresh, client string) (*Principal, error) {
	r, wait, ok := s.clients.Reserve(ctx, clientKey(client))
	if !ok {
		s.audit.warn(client, "refresh refused", "client", client, "reason", "rate limited")
		return nil, &RateLimitedError{RetryAfter: wait}
	}
	if !strings.HasPrefix(refresh, refreshPrefix) && !strings.HasPrefix(refresh, pullCredentialPrefix) {
		s.audit.warn(client, "refresh failed", "client", client, "reason", "not a refresh token")
		return nil, ErrBadCredentials
	}
	p, err := s.bearer(ctx, refresh, "")
	if err != nil {
		if errors.Is(err, ErrBadCredentials) {
			s.audit.failure(client, "refresh failed", "client", client, "reason", "unknown, expired or revoked refresh token")
			return nil, ErrBadCredentials
		}
		r.Release(ctx)
		return nil, err
	}
	r.Release(ctx)
	return p, nil
}

// LoginAdmin is Login for the admin API: only a password or a robot's
// secret may change accounts and settings. A refresh token was issued for
// registry access, and a pull credential can pull and nothing else;
// neither may change a password or mint credentials.
func (s *Service) LoginAdmin(ctx context.Context, name, secret, client string) (*Principal, error) {
	p, err := s.Login(ctx, name, secret, client)
	if err != nil {
		return nil, err
	}
	switch p.Via {
	case ViaRefresh:
		return nil, fmt.Errorf("%w: a refresh token gives registry access only; use the password for the admin API", ErrForbidden)
	case ViaPullCredential:
		return nil, fmt.Errorf("%w: a pull credential can pull images and nothing else", ErrForbidden)
	case ViaPersonalToken:
		return nil, fmt.Errorf("%w: a personal access token gives registry access only; use your password for the admin API", ErrForbidden)
	}
	return p, nil
}

// knownAddresses remembers, per account, the client addresses it has
// logged in from (in the store, shared by replicas), writing each pair at
// most once an hour per process.
type knownAddresses struct {
	ttl time.Duration // how long an address stays known after a login

	mu      sync.Mutex
	written map[string]time.Time
}

func (k *knownAddresses) remember(ctx context.Context, acc metadata.Accounts, name, client string, now time.Time) {
	key := pairKey(name, client)
	k.mu.Lock()
	last, ok := k.written[key]
	if ok && now.Sub(last) < time.Hour {
		k.mu.Unlock()
		return
	}
	if len(k.written) > 100000 {
		clear(k.written)
	}
	k.written[key] = now
	k.mu.Unlock()
	if err := acc.RememberLoginAddress(context.WithoutCancel(ctx), name, client, now, now.Add(-k.ttl)); err != nil {
		k.mu.Lock()
		delete(k.written, key)
		k.mu.Unlock()
	}
}

func (k *knownAddresses) known(ctx context.Context, acc metadata.Accounts, name, client string, now time.Time) bool {
	ok, err := acc.KnownLoginAddress(ctx, name, client, now.Add(-k.ttl))
	return err == nil && ok
}
