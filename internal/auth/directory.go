package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// Directory is an identity provider that checks people's passwords for
// berth (LDAP, Active Directory): berth never stores those passwords.
type Directory interface {
	// Authenticate checks name's password and returns who the directory
	// says it is. A wrong password, an unknown or a disabled account is
	// ErrBadCredentials; other errors mean the directory could not answer.
	Authenticate(ctx context.Context, name, password string) (*Identity, error)
	// Lookup returns who the directory says name is now, without a
	// password (for personal access tokens): ErrBadCredentials when the
	// account is gone or disabled.
	Lookup(ctx context.Context, name string) (*Identity, error)
	// Source is the users' source recorded for the people it signs in
	// (metadata.SourceLDAP).
	Source() string
}

// Identity is a person as a directory describes them.
type Identity struct {
	// Name is the account name (the directory's, in lower case).
	Name string
	// Groups are the names of the directory groups the person belongs to.
	Groups []string
}

// ErrDisabled refuses a user an admin disabled (a kind of
// ErrBadCredentials, not counted as a guess).
var ErrDisabled = fmt.Errorf("%w: account disabled", ErrBadCredentials)

// ErrLocalLoginOff refuses a local user's password when local sign-in is
// limited to admins (Options.LocalLoginAdminOnly).
var ErrLocalLoginOff = fmt.Errorf("%w: local sign-in is off for this account, sign in with your directory account", ErrBadCredentials)

// checkDirectory signs name in through the directory: the person's account
// is made on the first sign-in (just in time) and their groups are stored
// at each, so that group-mapped roles follow the directory. u is the
// account when it exists (from the directory), else nil. name is in lower
// case (Login).
func (s *Service) checkDirectory(ctx context.Context, u *metadata.User, name, secret string) (*Principal, error) {
	id, err := s.opts.Directory.Authenticate(ctx, name, secret)
	if err != nil {
		return nil, err
	}
	if id.Name != name || validAccountName(id.Name) != nil {
		// The directory matched another name (a filter surprise): never
		// sign in as someone else.
		return nil, ErrBadCredentials
	}
	if u == nil {
		err := s.acc.CreateUser(ctx, metadata.User{Name: id.Name, Source: s.opts.Directory.Source()})
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
		if u.Source != s.opts.Directory.Source() {
			return nil, ErrBadCredentials // a local account took the name meanwhile
		}
		if created {
			s.audit.change("user created on first sign-in", "user", id.Name, "source", u.Source)
		}
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

// directoryRecheck is how long the directory's word on a person stands for
// credentials that do not go through it (personal tokens, refresh tokens,
// pull credentials, console sessions): a person disabled or moved out of a
// group there loses access within this time (and the token lifetime).
const directoryRecheck = time.Minute

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

func (l *recheckLog) fresh(name string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.at[name]
	return ok && now.Sub(t) < directoryRecheck
}

// admit decides whether an account may act now with a credential that is
// not its password (checked by the caller): not disabled; a local
// non-admin not while local sign-in is for admins only; a directory's
// person still there (looked up at most once per directoryRecheck, its
// groups stored again). It reports whether the groups changed.
func (s *Service) admit(ctx context.Context, u *metadata.User) (groupsChanged bool, err error) {
	if u.Disabled {
		return false, ErrDisabled
	}
	d := s.opts.Directory
	switch {
	case u.Source == "" || u.Source == metadata.SourceLocal:
		if d != nil && s.opts.LocalLoginAdminOnly && !u.Admin {
			return false, ErrLocalLoginOff
		}
		return false, nil
	case d == nil || u.Source != d.Source():
		return false, ErrBadCredentials // its directory is not configured now
	case s.checked.fresh(u.Name, s.now()):
		return false, nil
	}
	id, err := d.Lookup(ctx, u.Name)
	if err != nil {
		return false, err
	}
	if id.Name != u.Name {
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
	if err != nil || s.opts.Directory == nil {
		// Without a directory no one signs in with groups.
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
