package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/token"
)

// Errors of the auth service.
var (
	ErrBadCredentials = errors.New("invalid user name or password")
	ErrForbidden      = errors.New("forbidden")
	ErrNotFound       = errors.New("not found")
	ErrExists         = errors.New("already exists")
	ErrInvalid        = errors.New("invalid request")
)

// RateLimitedError says how long a client must wait before trying again.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many failed logins; retry after %s", e.RetryAfter.Round(time.Second))
}

// Store is what the auth service keeps in the metadata database.
type Store interface {
	metadata.Accounts
	metadata.Rules
	FailureLog
}

// Options configure the auth service.
type Options struct {
	// Issuer is the iss claim of tokens; Service is their audience, the
	// service name of the WWW-Authenticate challenge.
	Issuer, Service string
	// TokenTTL is the lifetime of access tokens; RefreshTTL of refresh
	// tokens.
	TokenTTL, RefreshTTL time.Duration
	// MaxFailures failed logins of an account from one client address
	// within FailureWindow block that account from that address for the
	// rest of the window; MaxClientFailures failed logins from one client
	// address block that address (higher: one node or NAT carries many
	// accounts). MaxAccountFailures failed logins of an account within
	// AccountWindow, from anywhere, block it from every address it has not
	// logged in from within KnownAddressTTL: strangers cannot lock its
	// owner out, and guesses spread over many addresses stay slow.
	MaxFailures        int
	MaxClientFailures  int
	FailureWindow      time.Duration
	MaxAccountFailures int
	AccountWindow      time.Duration
	KnownAddressTTL    time.Duration
	// IdentityTokens lets clients that ask (offline_token=true, or
	// access_type=offline) have a refresh token.
	IdentityTokens bool
	// SharedLimits counts failed logins in the store, which replicas
	// share, instead of in this process.
	SharedLimits bool
	// Directory, when set, signs people in with their directory passwords
	// (single sign-on); local accounts keep working beside it.
	Directory Directory
	// OIDC, when set, is the OpenID Connect provider people sign in
	// through (package oidcauth, which calls SignInWith).
	OIDC IdentityProvider
	// LocalLoginAdminOnly refuses local passwords except admins' (break
	// glass) when a Directory or OIDC is set.
	LocalLoginAdminOnly bool
	// Recheck is how often an identity provider is asked again about a
	// person whose credential does not go through it (DefaultRecheck).
	Recheck time.Duration
	// SessionTTL is the lifetime of the sessions IssueSession makes (for
	// the CLI of people who sign in through OIDC; default 12 h).
	SessionTTL time.Duration
}

// Service authenticates principals, decides what they may do and issues
// tokens saying so.
type Service struct {
	acc  Store
	keys *token.Keys
	opts Options
	// pairs, clients and accounts count login attempts per account and
	// client address pair, per client address and per account.
	pairs, clients, accounts *Limiter
	known                    knownAddresses
	revs                     *revocations
	audit                    *auditLog
	// onChange is told of administrative changes (OnChange).
	onChange func(actor, msg string, attrs []any)
	now      func() time.Time

	cacheMu sync.Mutex
	cache   map[string]*token.Claims // verified access tokens

	counters Counters
	// checked remembers when the directory last confirmed each person.
	checked recheckLog
	// alias maps a repository name a mirror serves under another name
	// (Docker Hub's names without a namespace) to that name (SetAlias).
	alias func(ctx context.Context, name string) (string, bool)
}

// SetAlias sets how repository names that a mirror serves under another
// name resolve (package mirror's Alias): a token asked for such a name
// carries the pull access the principal has on the name it resolves to,
// under that name, which is the one the registry API checks. Call it
// before serving.
func (s *Service) SetAlias(fn func(ctx context.Context, name string) (string, bool)) { s.alias = fn }

// Counters are running totals of logins and tokens since the process
// started, for metrics.
type Counters struct {
	// Logins by outcome: accepted; a wrong secret (a guess); refused
	// although the secret was right (a revoked or expired robot); refused
	// by a rate limit before any check.
	LoginsOK, LoginsFailed, LoginsRefused, LoginsRateLimited atomic.Int64
	// TokensIssued counts access tokens; ScopesDenied the scopes of token
	// requests that were not granted.
	TokensIssued, ScopesDenied atomic.Int64
}

// Counters returns the service's running totals.
func (s *Service) Counters() *Counters { return &s.counters }

// New returns the auth service. audit receives one record per login,
// denial and administrative change.
func New(acc Store, keys *token.Keys, opts Options, audit *slog.Logger) *Service {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 5 * time.Minute
	}
	if opts.RefreshTTL <= 0 {
		opts.RefreshTTL = 90 * 24 * time.Hour
	}
	if opts.MaxFailures <= 0 {
		opts.MaxFailures = 5
	}
	if opts.MaxClientFailures <= 0 {
		opts.MaxClientFailures = 30
	}
	if opts.FailureWindow <= 0 {
		opts.FailureWindow = time.Minute
	}
	if opts.MaxAccountFailures <= 0 {
		opts.MaxAccountFailures = 20
	}
	if opts.AccountWindow <= 0 {
		opts.AccountWindow = 15 * time.Minute
	}
	if opts.KnownAddressTTL <= 0 {
		opts.KnownAddressTTL = 30 * 24 * time.Hour
	}
	if opts.Recheck <= 0 {
		opts.Recheck = DefaultRecheck
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	s := &Service{acc: acc, keys: keys, opts: opts,
		pairs:    NewLimiter(opts.MaxFailures, opts.FailureWindow),
		clients:  NewLimiter(opts.MaxClientFailures, opts.FailureWindow),
		accounts: NewLimiter(opts.MaxAccountFailures, opts.AccountWindow),
		known:    knownAddresses{ttl: opts.KnownAddressTTL, written: map[string]time.Time{}},
		audit:    &auditLog{log: audit, now: time.Now, buckets: map[string]*bucket{}},
		now:      time.Now, cache: map[string]*token.Claims{}}
	s.revs = &revocations{acc: acc, log: audit, now: time.Now, epochs: map[string]int64{}}
	if opts.SharedLimits {
		s.pairs = NewSharedLimiter(opts.MaxFailures, opts.FailureWindow, acc, "pair:")
		s.clients = NewSharedLimiter(opts.MaxClientFailures, opts.FailureWindow, acc, "client:")
		s.accounts = NewSharedLimiter(opts.MaxAccountFailures, opts.AccountWindow, acc, "account:")
	}
	return s
}

// Anonymous is the principal of a request without credentials. Its tokens
// carry the anonymous revocation epoch, which goes up when a namespace is
// made private (the cached value: a token issued a moment before is
// refused a moment after, and grants nothing private anyway).
func (s *Service) Anonymous(ctx context.Context) *Principal {
	return &Principal{Kind: Anonymous, Epoch: s.revs.epoch(ctx, "")}
}

// Keys returns the token signing keys.
func (s *Service) Keys() *token.Keys { return s.keys }

// ServiceName is the audience of tokens and the challenge's service.
func (s *Service) ServiceName() string { return s.opts.Service }

// randomSecret returns n random bytes encoded for use in a URL or header.
func randomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// secretHash is how high-entropy secrets (robot secrets, refresh tokens)
// are stored: a SHA-256, which suffices because they cannot be guessed.
func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// dummyHash keeps the time of a login for an unknown user equal to that of
// a known one.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("berth-dummy-password"), bcrypt.DefaultCost)

// hashPassword hashes a user password with bcrypt.
func hashPassword(pw string) (string, error) {
	if len(pw) < 8 || len(pw) > 72 {
		return "", fmt.Errorf("%w: a password has 8 to 72 bytes", ErrInvalid)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// passwordHash hashes password, or a generated one when it is empty; the
// generated password is returned so the caller can show it once.
func passwordHash(password string) (hash, generated string, err error) {
	if password == "" {
		password = randomSecret(18)
		generated = password
	}
	hash, err = hashPassword(password)
	return hash, generated, err
}

// Bootstrap creates the admin user when there are no users: with the given
// password, or a random one that it returns so the caller can show it once.
func (s *Service) Bootstrap(ctx context.Context, password string) (generated string, err error) {
	n, err := s.acc.CountUsers(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	h, generated, err := passwordHash(password)
	if err != nil {
		return "", err
	}
	if err := s.acc.CreateUser(ctx, metadata.User{Name: "admin", PasswordHash: h, Admin: true}); err != nil {
		return "", fmt.Errorf("create admin user: %w", err)
	}
	s.audit.change("user created", "actor", "bootstrap", "user", "admin", "admin", true)
	return generated, nil
}

// robotPrincipal refuses revoked and expired robots.
func robotPrincipal(r *metadata.Robot, now time.Time) (*Principal, error) {
	if r.Revoked {
		return nil, fmt.Errorf("%w: robot %s is revoked", ErrBadCredentials, r.Name)
	}
	if !r.Expires.IsZero() && !now.Before(r.Expires) {
		return nil, fmt.Errorf("%w: robot %s expired", ErrBadCredentials, r.Name)
	}
	return &Principal{Kind: RobotKind, Name: r.Name, Scopes: r.Scopes, Actions: r.Actions, ExpiresAt: r.Expires, Created: r.Created}, nil
}

// Epoch returns subject's current revocation epoch, read from the store.
func (s *Service) Epoch(ctx context.Context, subject string) int64 {
	return s.revs.current(ctx, subject)
}

// RevokedSince reports whether subject's credentials were revoked after
// epoch, the revocation epoch of a sign-in (Principal.Epoch): a password
// change, the account's deletion or lowered rights end the sessions
// started before. It reads the store, not the cache, so that a session
// ends at once on every replica.
func (s *Service) RevokedSince(ctx context.Context, subject string, epoch int64) bool {
	return s.revs.current(ctx, subject) > epoch
}

// Principal looks up the current state of a token's subject: a user that
// still exists, or a robot that is neither revoked nor expired.
func (s *Service) Principal(ctx context.Context, subject string) (*Principal, error) {
	if subject == "" {
		return &Principal{Kind: Anonymous}, nil
	}
	if strings.Contains(subject, "+") {
		r, err := s.acc.GetRobot(ctx, subject)
		if errors.Is(err, metadata.ErrNotFound) {
			return nil, ErrBadCredentials
		}
		if err != nil {
			return nil, err
		}
		return robotPrincipal(r, s.now())
	}
	u, err := s.acc.GetUser(ctx, subject)
	if errors.Is(err, metadata.ErrNotFound) {
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	changed, err := s.admit(ctx, u)
	if err != nil {
		return nil, err
	}
	return &Principal{Kind: UserKind, Name: u.Name, Admin: u.Admin, Created: u.Created, groupsChanged: changed}, nil
}

// facts gathers what Allowed needs about repo's namespace for p.
func (s *Service) facts(ctx context.Context, p *Principal, repo string, roles map[string]string) NamespaceFacts {
	nsName := Namespace(repo)
	var f NamespaceFacts
	if ns, err := s.acc.GetNamespace(ctx, nsName); err == nil {
		f.Public = ns.Public
	}
	if p.Kind == UserKind {
		f.Role = Role(roles[nsName])
	}
	return f
}

func (s *Service) roles(ctx context.Context, p *Principal) (map[string]string, error) {
	if p.Kind != UserKind || p.Admin {
		return nil, nil
	}
	return s.userRoles(ctx, p.Name)
}

// Grant returns, for each requested access, the actions p may take: the
// intersection of what was asked and what is allowed. Nothing is granted
// that was not asked for. What is denied goes to the audit log in one
// record per request, charged to client.
func (s *Service) Grant(ctx context.Context, p *Principal, requested []token.Access, client string) ([]token.Access, error) {
	roles, err := s.roles(ctx, p)
	if err != nil {
		return nil, err
	}
	var out []token.Access
	var denied []string
	for _, req := range requested {
		var allowed []string
		switch req.Type {
		case "repository":
			if local, ok := s.aliasOf(ctx, req.Name); ok {
				// Granted on the mirror's name for it, the one the
				// registry checks: what p may pull there, and no more (a
				// mirror takes no pushes). Under the asked name it would
				// open a repository of that name pushed later.
				req.Name = local
				allowed = Intersect([]string{Pull}, Allowed(p, local, s.facts(ctx, p, local, roles), s.now()))
				break
			}
			allowed = Allowed(p, req.Name, s.facts(ctx, p, req.Name, roles), s.now())
		case "registry":
			// Not for a pull credential or a personal access token: the
			// catalog shows what the account may pull, which may be more
			// than the token may.
			if p.Kind != Anonymous && p.Via != ViaPullCredential && p.Via != ViaPersonalToken {
				allowed = []string{"*"} // the catalog lists only what the caller may pull
			}
		}
		acts := Intersect(req.Actions, allowed)
		if req.Type == "registry" && len(allowed) > 0 {
			acts = req.Actions
		}
		if len(acts) == 0 {
			denied = append(denied, req.Type+":"+req.Name+":"+strings.Join(req.Actions, ","))
			continue
		}
		out = append(out, token.Access{Type: req.Type, Name: req.Name, Actions: acts})
	}
	if len(denied) > 0 {
		s.counters.ScopesDenied.Add(int64(len(denied)))
		args := []any{"subject", p.Name, "client", client, "denied", len(denied),
			"resources", strings.Join(denied[:min(len(denied), maxDeniedListed)], " ")}
		s.audit.info(client, "access denied", args...)
	}
	return out, nil
}

// aliasOf resolves a name a mirror serves under another name.
func (s *Service) aliasOf(ctx context.Context, name string) (string, bool) {
	if s.alias == nil {
		return "", false
	}
	return s.alias(ctx, name)
}

// Actions returns what p may do on repo (pull, push, delete), as the token
// endpoint would grant them; roles are p's namespace roles (Roles).
func (s *Service) Actions(ctx context.Context, p *Principal, repo string, roles map[string]string) []string {
	return Allowed(p, repo, s.facts(ctx, p, repo, roles), s.now())
}

// CanPull reports whether p may pull repo; the catalog uses it to list
// only what the caller may see.
func (s *Service) CanPull(ctx context.Context, p *Principal, repo string, roles map[string]string) bool {
	return len(Intersect([]string{Pull}, Allowed(p, repo, s.facts(ctx, p, repo, roles), s.now()))) > 0
}

// Roles returns p's namespace roles for repeated CanPull calls.
func (s *Service) Roles(ctx context.Context, p *Principal) (map[string]string, error) {
	return s.roles(ctx, p)
}

// Issue signs an access token for p with the granted access.
func (s *Service) Issue(p *Principal, granted []token.Access) (string, *token.Claims, error) {
	now := s.now()
	c := &token.Claims{
		Issuer: s.opts.Issuer, Subject: p.Subject(), Audience: s.opts.Service,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(s.opts.TokenTTL).Unix(),
		ID: randomSecret(12), Access: granted, Revocation: p.Epoch,
		Limited: p.Via == ViaPersonalToken || p.Via == ViaPullCredential,
	}
	if c.Access == nil {
		c.Access = []token.Access{}
	}
	tok, err := s.keys.Sign(c)
	if err == nil {
		s.counters.TokensIssued.Add(1)
	}
	return tok, c, err
}

// IssueRefresh creates a long-lived refresh token for p (docker stores it
// as the identity token of its login). It returns "" when identity tokens
// are off.
func (s *Service) IssueRefresh(ctx context.Context, p *Principal) (string, error) {
	if !s.opts.IdentityTokens || p.Via != ViaPassword {
		// Only a password buys a refresh token: a pull credential traded
		// for one would push and renew itself.
		return "", nil
	}
	tok := refreshPrefix + randomSecret(32)
	g := metadata.Grant{Subject: p.Name, SubjectCreated: p.Created, Expires: s.now().Add(s.opts.RefreshTTL)}
	if err := s.saveGrant(ctx, secretHash(tok), g); err != nil {
		return "", fmt.Errorf("save refresh token: %w", err)
	}
	return tok, nil
}

// EndSession ends one of actor's sessions (berth logout): secret is the
// session the request came with. Anything else is refused.
func (s *Service) EndSession(ctx context.Context, actor *Principal, secret string) error {
	if actor == nil || actor.Kind != UserKind || actor.Via != ViaSession || !strings.HasPrefix(secret, sessionPrefix) {
		return fmt.Errorf("%w: only a session signs itself out", ErrInvalid)
	}
	if err := storeErr(s.acc.DeleteRefreshToken(ctx, secretHash(secret), actor.Name), "session"); err != nil {
		return err
	}
	s.audit.change("session ended", "user", actor.Name)
	return nil
}

// SessionTTL is the lifetime of the sessions IssueSession makes.
func (s *Service) SessionTTL() time.Duration { return s.opts.SessionTTL }

// saveGrant stores a bearer secret's grant: refused (ErrDisabled,
// ErrBadCredentials) when its person was disabled or deleted since they
// were checked.
func (s *Service) saveGrant(ctx context.Context, hash string, g metadata.Grant) error {
	err := s.acc.SaveRefreshToken(ctx, hash, g)
	switch {
	case errors.Is(err, metadata.ErrDisabled):
		return ErrDisabled
	case errors.Is(err, metadata.ErrNotFound):
		return ErrBadCredentials
	}
	return err
}

// Prefixes of the stored bearer secrets, which tell them from passwords.
const (
	refreshPrefix        = "berth-refresh-"
	pullCredentialPrefix = "berth-pull-"
	sessionPrefix        = "berth-session-"
)

// IssueSession gives a person who signed in without a password (through
// OpenID Connect) a session secret for the CLI, valid for
// Options.SessionTTL: it stands for their password wherever one is asked
// (the admin API, docker login), and each use asks the identity provider
// about the person again (at most once per Options.Recheck).
func (s *Service) IssueSession(ctx context.Context, p *Principal) (string, time.Time, error) {
	if p == nil || p.Kind != UserKind || p.Via != ViaPassword {
		return "", time.Time{}, fmt.Errorf("%w: a session is issued at a sign-in", ErrForbidden)
	}
	u, err := s.acc.GetUser(ctx, p.Name)
	if err != nil {
		return "", time.Time{}, storeErr(err, "user "+p.Name)
	}
	if localUser(u) || s.provider(u.Source) == nil {
		// Sessions are for people without a password here; whoever could
		// seal a sign-in code must not get one for a local admin.
		return "", time.Time{}, fmt.Errorf("%w: %s signs in with a password, not through an identity provider", ErrForbidden, p.Name)
	}
	secret := sessionPrefix + randomSecret(32)
	expires := s.now().Add(s.opts.SessionTTL)
	if err := s.saveGrant(ctx, secretHash(secret), metadata.Grant{Subject: p.Name, SubjectCreated: p.Created, Expires: expires}); err != nil {
		return "", time.Time{}, fmt.Errorf("save session: %w", err)
	}
	s.audit.change("session issued", "user", p.Name, "expires", expires.UTC().Format(time.RFC3339))
	return secret, expires, nil
}

// IssuePullCredential gives p a short-lived password of its own, valid for
// ttl: the kubelet credential provider trades a node's long-lived robot
// secret for one, so that nodes never hand the long-lived one to the
// container runtime.
func (s *Service) IssuePullCredential(ctx context.Context, p *Principal, ttl time.Duration) (string, time.Time, error) {
	if p.Kind == Anonymous {
		return "", time.Time{}, ErrForbidden
	}
	if p.Via != ViaPassword {
		// A pull credential that could mint another would never expire.
		return "", time.Time{}, fmt.Errorf("%w: a pull credential is issued only for a password or a robot's secret", ErrForbidden)
	}
	if ttl > MaxPullCredentialTTL {
		return "", time.Time{}, fmt.Errorf("%w: a pull credential lives at most %s", ErrInvalid, MaxPullCredentialTTL)
	}
	if ttl <= 0 {
		ttl = time.Hour
	}
	secret := pullCredentialPrefix + randomSecret(32)
	expires := s.now().Add(ttl)
	if p.Kind == RobotKind && !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(expires) {
		expires = p.ExpiresAt
	}
	if err := s.saveGrant(ctx, secretHash(secret), metadata.Grant{Subject: p.Name, SubjectCreated: p.Created, Expires: expires}); err != nil {
		return "", time.Time{}, fmt.Errorf("save pull credential: %w", err)
	}
	s.audit.change("pull credential issued", "subject", p.Name, "expires", expires.UTC().Format(time.RFC3339))
	return secret, expires, nil
}

// MaxPullCredentialTTL is the longest lifetime of a pull credential.
const MaxPullCredentialTTL = 24 * time.Hour

// Verify checks an access token: signature, issuer, audience, time, and
// that its subject was not revoked since it was issued (ErrRevoked). An
// expired but otherwise valid token returns its claims with
// token.ErrExpired.
func (s *Service) Verify(ctx context.Context, tok string) (*token.Claims, error) {
	s.cacheMu.Lock()
	c, ok := s.cache[tok]
	s.cacheMu.Unlock()
	if !ok {
		var err error
		if c, err = s.keys.Verify(tok); err != nil {
			return nil, err
		}
	}
	if s.revs.epoch(ctx, c.Subject) > c.Revocation {
		return nil, ErrRevoked
	}
	if err := c.Validate(s.now(), s.opts.Issuer, s.opts.Service); err != nil {
		if errors.Is(err, token.ErrExpired) {
			return c, err
		}
		return nil, err
	}
	if !ok {
		s.cacheMu.Lock()
		if len(s.cache) >= 10000 {
			clear(s.cache)
		}
		s.cache[tok] = c
		s.cacheMu.Unlock()
	}
	return c, nil
}
