package metadata

import (
	"context"
	"errors"
	"time"
)

// ErrExists is returned when creating something that already exists.
var ErrExists = errors.New("already exists")

// ErrBusy is returned when another holds what was asked for (a lease).
var ErrBusy = errors.New("busy")

// ErrDisabled is returned when a credential is to be issued to a disabled
// user.
var ErrDisabled = errors.New("account disabled")

// User is an account that logs in with a password.
type User struct {
	Name         string
	PasswordHash string
	Admin        bool
	Created      time.Time
	// Source is where the user comes from: SourceLocal (a password kept by
	// berth), a directory (SourceLDAP) or an OpenID Connect provider
	// (SourceOIDC): no password here for those.
	Source string
	// Disabled users cannot sign in.
	Disabled bool
	// Subject is who an OpenID Connect provider says the user is (the
	// ID token's sub), set when the account is made: a later sign-in
	// under the same name must come with the same subject.
	Subject string
}

// PersonalToken is a person's access token: a password for docker and CI,
// stored by hash, limited to Scopes (repository patterns such as team/*;
// none: every repository) and Actions.
type PersonalToken struct {
	ID           int64
	Owner        string
	OwnerCreated time.Time
	Name         string
	Hash         string
	Scopes       []string
	Actions      []string
	Expires      time.Time
	Created      time.Time
	LastUsed     time.Time
	Revoked      bool
}

// Where users come from.
const (
	SourceLocal = "local"
	SourceLDAP  = "ldap"
	SourceOIDC  = "oidc"
)

// GroupMapping gives the members of a directory group a role in a
// namespace.
type GroupMapping struct {
	ID        int64
	Group     string
	Namespace string
	Role      string
	Created   time.Time
}

// Namespace is the first component of repository names, with its settings.
type Namespace struct {
	Name    string
	Public  bool
	Created time.Time
}

// Member is a user's role in a namespace.
type Member struct {
	Namespace string
	User      string
	Role      string
}

// Robot is a machine account of a namespace.
type Robot struct {
	Name       string // "<namespace>+<name>"
	Namespace  string
	SecretHash string
	Scopes     []string
	Actions    []string
	Expires    time.Time // zero: never
	Created    time.Time
	LastUsed   time.Time // zero: never
	Revoked    bool
}

// Accounts is the metadata seam for users, namespaces, memberships, robots
// and refresh tokens. Every method is one transaction.
type Accounts interface {
	CountUsers(ctx context.Context) (int, error)
	// CreateUser creates a user, its personal namespace and its ownership
	// of that namespace (ErrExists if the user or namespace exists).
	CreateUser(ctx context.Context, u User) error
	GetUser(ctx context.Context, name string) (*User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// DeleteUser deletes a user, its memberships and refresh tokens.
	DeleteUser(ctx context.Context, name string) error
	// SetPassword replaces a password hash and revokes refresh tokens.
	SetPassword(ctx context.Context, name, hash string) error

	CreateNamespace(ctx context.Context, ns Namespace) error
	GetNamespace(ctx context.Context, name string) (*Namespace, error)
	ListNamespaces(ctx context.Context) ([]Namespace, error)
	// SetNamespacePublic makes a namespace public or private; making it
	// private raises the revocation epoch of anonymous tokens (subject "").
	SetNamespacePublic(ctx context.Context, name string, public bool) error
	// DeleteNamespace deletes a namespace's settings, members and robots
	// (its repositories stay).
	DeleteNamespace(ctx context.Context, name string) error
	SetMember(ctx context.Context, m Member) error
	RemoveMember(ctx context.Context, ns, user string) error
	Members(ctx context.Context, ns string) ([]Member, error)
	// UserRoles returns the user's role in each namespace it belongs to.
	UserRoles(ctx context.Context, user string) (map[string]string, error)

	// SetUserGroups replaces the directory groups of a user and, when
	// they changed, raises its revocation epoch; it reports whether they
	// changed.
	SetUserGroups(ctx context.Context, user string, groups []string) (bool, error)
	// UserGroups returns a user's directory groups, sorted.
	UserGroups(ctx context.Context, user string) ([]string, error)
	// GroupRoles returns the mappings of the user's groups.
	GroupRoles(ctx context.Context, user string) ([]GroupMapping, error)
	// AddGroupMapping adds (or changes the role of) a mapping and raises
	// the revocation epoch of the group's members; it returns the id.
	AddGroupMapping(ctx context.Context, m GroupMapping) (int64, error)
	// GroupMappings lists the mappings by group and namespace.
	GroupMappings(ctx context.Context) ([]GroupMapping, error)
	// DeleteGroupMapping deletes a mapping and raises the revocation
	// epoch of the group's members.
	DeleteGroupMapping(ctx context.Context, id int64) error
	// SetUserDisabled disables or enables a user; disabling deletes its
	// refresh tokens, pull credentials and sessions and raises its
	// revocation epoch.
	SetUserDisabled(ctx context.Context, name string, disabled bool) error
	// SaveProviderToken keeps what an identity provider gave a user to
	// ask about them later (an OIDC refresh token, sealed by the caller),
	// and ends any lease on it; fresh records the user as asked about now.
	SaveProviderToken(ctx context.Context, user string, sealed string, fresh bool) error
	// ClaimProviderToken leases a user's provider token until leaseUntil
	// for one refresh, shared by replicas, and returns it: ErrNotFound
	// when there is none, ErrBusy when another holds the lease at at or
	// it was saved at or after freshAfter (asked about recently).
	ClaimProviderToken(ctx context.Context, user string, at, leaseUntil, freshAfter time.Time) (string, error)
	// ReleaseProviderToken ends a lease without saving (a failed refresh).
	ReleaseProviderToken(ctx context.Context, user string) error

	// CreatePersonalToken stores a personal access token (ErrExists when
	// its owner has one of that name) and returns its id.
	CreatePersonalToken(ctx context.Context, t PersonalToken) (int64, error)
	// PersonalToken returns the token with that hash.
	PersonalToken(ctx context.Context, hash string) (*PersonalToken, error)
	// PersonalTokens lists an owner's tokens, newest first.
	PersonalTokens(ctx context.Context, owner string) ([]PersonalToken, error)
	// RevokePersonalToken revokes an owner's token and raises the owner's
	// revocation epoch (ErrNotFound when the owner has no such token).
	RevokePersonalToken(ctx context.Context, owner string, id int64) error
	// TouchPersonalToken records a use.
	TouchPersonalToken(ctx context.Context, id int64, t time.Time) error

	CreateRobot(ctx context.Context, r Robot) error
	GetRobot(ctx context.Context, name string) (*Robot, error)
	ListRobots(ctx context.Context, ns string) ([]Robot, error)
	RevokeRobot(ctx context.Context, name string) error
	TouchRobot(ctx context.Context, name string, t time.Time) error

	// SaveRefreshToken stores a refresh token, pull credential or session
	// (by its hash) of the account named subject created at
	// subjectCreated: ErrNotFound when a person of that name is gone,
	// ErrDisabled when disabled.
	SaveRefreshToken(ctx context.Context, hash string, g Grant) error
	// DeleteRefreshToken deletes subject's bearer secret with that hash
	// (ErrNotFound when it has none).
	DeleteRefreshToken(ctx context.Context, hash, subject string) error
	// RefreshToken returns what a refresh token or pull credential was
	// issued to.
	RefreshToken(ctx context.Context, hash string) (*Grant, error)

	// RevocationEpochs returns the revocation epoch of every subject whose
	// epoch changed at or after since. The epoch of a subject goes up each
	// time its access tokens must stop working: a robot revoked, a user or
	// namespace deleted, a password or role changed.
	RevocationEpochs(ctx context.Context, since time.Time) (map[string]int64, error)
	// RevocationEpoch returns subject's current revocation epoch.
	RevocationEpoch(ctx context.Context, subject string) (int64, error)
	// RevokeTokens raises subject's revocation epoch.
	RevokeTokens(ctx context.Context, subject string) error
	// RememberLoginAddress notes a successful login of account from
	// address, and forgets the addresses it has not logged in from since
	// forget.
	RememberLoginAddress(ctx context.Context, account, address string, at, forget time.Time) error
	// KnownLoginAddress reports whether account logged in successfully
	// from address at or after since.
	KnownLoginAddress(ctx context.Context, account, address string, since time.Time) (bool, error)
}

// Grant is what a stored bearer secret (refresh token, pull credential)
// was issued to: the account, identified by its name and creation time, so
// that an account deleted and created again under the same name does not
// inherit it.
type Grant struct {
	Subject        string
	SubjectCreated time.Time
	Expires        time.Time
}
