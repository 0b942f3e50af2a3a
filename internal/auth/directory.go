package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
// account when it exists (from the directory), else nil.
func (s *Service) checkDirectory(ctx context.Context, u *metadata.User, name, secret string) (*Principal, error) {
	id, err := s.opts.Directory.Authenticate(ctx, name, secret)
	if err != nil {
		return nil, err
	}
	if id.Name != strings.ToLower(name) || validAccountName(id.Name) != nil {
		// The directory matched another name (a case or filter
		// surprise): never sign in as someone else.
		return nil, ErrBadCredentials
	}
	if u == nil {
		err := s.acc.CreateUser(ctx, metadata.User{Name: id.Name, Source: s.opts.Directory.Source()})
		if err != nil && !errors.Is(err, metadata.ErrExists) {
			return nil, fmt.Errorf("create %s on first sign-in: %w", id.Name, err)
		}
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
		s.audit.change("user created on first sign-in", "user", id.Name, "source", u.Source)
	}
	if u.Disabled {
		return nil, ErrDisabled
	}
	if _, err := s.acc.SetUserGroups(ctx, u.Name, id.Groups); err != nil {
		return nil, err
	}
	return &Principal{Kind: UserKind, Name: u.Name, Admin: u.Admin, Created: u.Created, Via: ViaPassword}, nil
}

// userRoles returns a user's role in each namespace: its memberships and
// the roles its directory groups map to, the strongest where both give one.
func (s *Service) userRoles(ctx context.Context, user string) (map[string]string, error) {
	roles, err := s.acc.UserRoles(ctx, user)
	if err != nil {
		return nil, err
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
