package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// IdentityProvider is where people without a password in berth come
// from: a directory (LDAP) or an OpenID Connect provider. berth asks it
// again about a person now and then, so that a person removed there, or
// moved out of a group, loses access here.
type IdentityProvider interface {
	// Lookup returns who the provider says name is now, without a
	// password (for personal access tokens and sessions):
	// ErrBadCredentials when the account is gone or disabled, or berth may
	// no longer ask (the person must sign in again).
	Lookup(ctx context.Context, name string) (*Identity, error)
	// Source is the users' source recorded for the people it signs in
	// (metadata.SourceLDAP, metadata.SourceOIDC).
	Source() string
}

// Directory is an identity provider that checks people's passwords for
// berth (LDAP, Active Directory): berth never stores those passwords.
type Directory interface {
	IdentityProvider
	// Authenticate checks name's password and returns who the directory
	// says it is. A wrong password, an unknown or a disabled account is
	// ErrBadCredentials; other errors mean the directory could not answer.
	Authenticate(ctx context.Context, name, password string) (*Identity, error)
}

// Identity is a person as a directory describes them.
type Identity struct {
	// Name is the account name (the directory's, in lower case).
	Name string
	// Groups are the names of the directory groups the person belongs to.
	Groups []string
	// Subject is the provider's stable id of the person (OIDC's sub;
	// empty for a directory): an account made for one subject never
	// signs in another.
	Subject string
}

// ErrCheckedElsewhere is what an IdentityProvider's Lookup answers when
// another replica asked about the person within the recheck interval, or
// is asking now: the groups it stored stand.
var ErrCheckedElsewhere = errors.New("asked about recently by another replica")

// ErrDisabled refuses a user an admin disabled (a kind of
// ErrBadCredentials, not counted as a guess).
var ErrDisabled = fmt.Errorf("%w: account disabled", ErrBadCredentials)

// ErrLocalLoginOff refuses a local user's password when local sign-in is
// limited to admins (Options.LocalLoginAdminOnly).
var ErrLocalLoginOff = fmt.Errorf("%w: local sign-in is off for this account, sign in with your directory account", ErrBadCredentials)

// checkDirectory signs name in through the directory with a password. u
// is the account when it exists (from the directory), else nil. name is
// in lower case (Login).
func (s *Service) checkDirectory(ctx context.Context, u *metadata.User, name, secret string) (*Principal, error) {
	id, err := s.opts.Directory.Authenticate(ctx, name, secret)
	if err != nil {
		return nil, err
	}
	if id.Name != name {
		// The directory matched another name (a filter surprise): never
		// sign in as someone else.
		return nil, ErrBadCredentials
	}
	return s.signInAs(ctx, s.opts.Directory, u, id)
}

// signInAs signs in the person an identity provider vouched for: the
// account is made on the first sign-in (just in time) and the person's
// groups are stored at each, so that group-mapped roles follow the
// provider. u is the account when it exists (of that provider's source),
// else nil.
func (s *Service) signInAs(ctx context.Context, prov IdentityProvider, u *metadata.User, id *Identity) (*Principal, error) {
	if validAccountName(id.Name) != nil {
		return nil, fmt.Errorf("%w: %q is not a valid account name here (lower-case letters, digits and . _ - between them)", ErrBadCredentials, id.Name)
	}
	if u == nil {
		err := s.acc.CreateUser(ctx, metadata.User{Name: id.Name, Source: prov.Source(), Subject: id.Subject})
		if err != nil && !errors.Is(err, metadata.ErrExists) {
			return nil, fmt.Errorf("create %s on first sign-in: %w", id.Name, err)
		}
		created := err == nil
		u, err = s.acc.GetUser(ctx, id.Name)
		if errors.Is(err, metadata.ErrNotFound) {
			// CreateUser refused: a namespace has the person's name.
			return nil, fmt.Errorf("%w: no account can be made for %s: a namespace of that name exists (an admin can rename or delete it)", ErrBadCredentials, id.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", id.Name, err)
		}
		if created {
			s.audit.change("user created on first sign-in", "user", id.Name, "source", u.Source)
		}
	}
	if u.Source != prov.Source() {
		// A local account, or another provider's, has the name: a
		// provider never signs in as an account it did not make.
		return nil, fmt.Errorf("%w: account %s is not from %s", ErrBadCredentials, u.Name, prov.Source())
	}
	if u.Subject != id.Subject {
		// The provider gave the name to someone else (renamed accounts).
		return nil, fmt.Errorf("%w: account %s belongs to another person at %s (subject changed)", ErrBadCredentials, u.Name, prov.Source())
	}
	if u.Disabled {
		return nil, ErrDisabled
	}
	changed, err := s.acc.SetUserGroups(ctx, u.Name, id.Groups)
	if err != nil {
		return nil, err
	}
	s.checked.note(u.Name, s.now())
	return &Principal{Kind: UserKind, Name: u.Name, Admin: u.Admin, Created: u.Created, Via: ViaPassword, groupsChanged: changed}, nil
}

// SignInWith signs in a person an identity provider vouched for outside
// berth (an OpenID Connect ID token the caller verified): made on the
// first sign-in, refused when disabled or when the name belongs to a
// local account or another provider's, groups stored. The principal is
// ViaPassword, as after a password: it may start a session.
func (s *Service) SignInWith(ctx context.Context, prov IdentityProvider, id *Identity, client string) (*Principal, error) {
	if s.provider(prov.Source()) != prov {
		return nil, fmt.Errorf("%w: %s sign-in is not configured", ErrBadCredentials, prov.Source())
	}
	epoch := s.revs.current(ctx, id.Name) // before the account's state is read
	u, err := s.acc.GetUser(ctx, id.Name)
	switch {
	case errors.Is(err, metadata.ErrNotFound):
		u = nil
	case err != nil:
		return nil, err
	}
	p, err := s.signInAs(ctx, prov, u, id)
	s.count(err)
	if err != nil {
		s.audit.warn(client, "login failed", "user", id.Name, "client", client, "source", prov.Source(), "reason", err.Error())
		return nil, err
	}
	p.Epoch = s.signInEpoch(ctx, p.Name, epoch, p)
	s.audit.info(client, "login", "user", p.Name, "client", client, "source", prov.Source())
	return p, nil
}

// provider returns the configured identity provider of source, or nil.
func (s *Service) provider(source string) IdentityProvider {
	switch {
	case s.opts.Directory != nil && s.opts.Directory.Source() == source:
		return s.opts.Directory
	case s.opts.OIDC != nil && s.opts.OIDC.Source() == source:
		return s.opts.OIDC
	}
	return nil
}

// DefaultRecheck is how long an identity provider's word on a person
// stands for credentials that do not go through it (personal tokens,
// refresh tokens, pull credentials, sessions) unless Options.Recheck says
// otherwise: a person disabled or moved out of a group there loses access
// within this time (and the token lifetime).
const DefaultRecheck = time.Minute

// recheckLog remembers when each directory person was last confirmed.
type recheckLog struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (l *recheckLog) note(name string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at == nil {
		l.at = map[string]time.Time{}
	}
	l.at[name] = t
}

func (l *recheckLog) fresh(name string, now time.Time, within time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.at[name]
	return ok && now.Sub(t) < within
}

// admit decides whether an account may act now with a credential that is
// not its password (checked by the caller): not disabled; a local
// non-admin not while local sign-in is for admins only; a provider's
// person still there (looked up at most once per Options.Recheck, its
// groups stored again). It reports whether the groups changed.
func (s *Service) admit(ctx context.Context, u *metadata.User) (groupsChanged bool, err error) {
	if u.Disabled {
		return false, ErrDisabled
	}
	prov := s.provider(u.Source)
	switch {
	case localUser(u):
		if s.ssoOn() && s.opts.LocalLoginAdminOnly && !u.Admin {
			return false, ErrLocalLoginOff
		}
		return false, nil
	case prov == nil:
		return false, ErrBadCredentials // its provider is not configured now
	case s.checked.fresh(u.Name, s.now(), s.opts.Recheck):
		return false, nil
	}
	id, err := prov.Lookup(ctx, u.Name)
	if errors.Is(err, ErrCheckedElsewhere) {
		s.checked.note(u.Name, s.now())
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if id.Name != u.Name || id.Subject != u.Subject {
		return false, ErrBadCredentials
	}
	changed, err := s.acc.SetUserGroups(ctx, u.Name, id.Groups)
	if err != nil {
		return false, err
	}
	s.checked.note(u.Name, s.now())
	return changed, nil
}

// signInEpoch is the revocation epoch a sign-in's tokens carry: the one
// read before the account was checked, or, when the check stored new
// directory groups (which raised it by exactly one), the raised one. A
// revocation by anything else in between still ends the tokens.
func (s *Service) signInEpoch(ctx context.Context, name string, before int64, p *Principal) int64 {
	if !p.groupsChanged {
		return before
	}
	if now := s.revs.current(ctx, name); now == before+1 {
		return now
	}
	return before
}

// userRoles returns a user's role in each namespace: its memberships and
// the roles its directory groups map to, the strongest where both give one.
func (s *Service) userRoles(ctx context.Context, user string) (map[string]string, error) {
	roles, err := s.acc.UserRoles(ctx, user)
	if err != nil || !s.ssoOn() {
		// Without an identity provider no one signs in with groups.
		return roles, err
	}
	mapped, err := s.acc.GroupRoles(ctx, user)
	if err != nil {
		return nil, err
	}
	for _, m := range mapped {
		if roleRank(Role(m.Role)) > roleRank(Role(roles[m.Namespace])) {
			roles[m.Namespace] = m.Role
		}
	}
	return roles, nil
}

// localUser reports whether u signs in with a password berth keeps.
func localUser(u *metadata.User) bool { return u.Source == "" || u.Source == metadata.SourceLocal }

// ssoOn reports whether an identity provider is configured.
func (s *Service) ssoOn() bool { return s.opts.Directory != nil || s.opts.OIDC != nil }

// roleRank orders the roles; 0 is none.
func roleRank(r Role) int {
	switch r {
	case Reader:
		return 1
	case Writer:
		return 2
	case Maintainer:
		return 3
	case Owner:
		return 4
	}
	return 0
}
