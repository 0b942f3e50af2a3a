package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// storeErr maps metadata errors to the service's, naming what they are
// about.
func storeErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, metadata.ErrNotFound):
		return fmt.Errorf("%w: no %s", ErrNotFound, what)
	case errors.Is(err, metadata.ErrExists):
		return fmt.Errorf("%w: %s", ErrExists, what)
	}
	return err
}

// validAccountName checks a user or namespace name: one component of the
// repository grammar, since a user's name is also its namespace.
func validAccountName(name string) error {
	if strings.Contains(name, "/") || reference.ValidateName(name) != nil || len(name) > 64 {
		return fmt.Errorf("%w: %q is not a valid name (lower-case letters, digits and . _ - between them)", ErrInvalid, name)
	}
	return nil
}

// requireAdmin lets only admins through.
func requireAdmin(actor *Principal) error {
	if actor.Kind != UserKind || !actor.Admin {
		return fmt.Errorf("%w: only admins may do this", ErrForbidden)
	}
	return nil
}

// RequireAdmin lets only admins through (ErrForbidden for anyone else):
// the rule of other packages' admin-only endpoints (the audit log).
func RequireAdmin(actor *Principal) error { return requireAdmin(actor) }

// requireOwner lets admins and the namespace's owners through.
func (s *Service) requireOwner(ctx context.Context, actor *Principal, ns string) error {
	if actor.Kind == UserKind && actor.Admin {
		return nil
	}
	if actor.Kind == UserKind {
		roles, err := s.userRoles(ctx, actor.Name)
		if err != nil {
			return err
		}
		if Role(roles[ns]) == Owner {
			return nil
		}
	}
	return fmt.Errorf("%w: only admins and owners of %s may do this", ErrForbidden, ns)
}

// RequireOwner lets admins and the owners of namespace ns through, and
// only admins when ns is "" (the whole registry): the rule of other
// packages' namespace-scoped settings (webhooks).
func (s *Service) RequireOwner(ctx context.Context, actor *Principal, ns string) error {
	if ns == "" {
		return requireAdmin(actor)
	}
	return s.requireOwner(ctx, actor, ns)
}

func (s *Service) auditChange(actor *Principal, msg string, args ...any) {
	s.audit.change(msg, append([]any{"actor", actor.Name}, args...)...)
	if s.onChange != nil {
		s.onChange(actor.Name, msg, args)
	}
}

// OnChange sets what is told of each administrative change after it is
// made (its audit message and attributes, never a secret): the webhook
// event of account changes.
func (s *Service) OnChange(fn func(actor, msg string, attrs []any)) { s.onChange = fn }

// CreateUser creates a user with its personal namespace. Without a password
// one is generated and returned.
func (s *Service) CreateUser(ctx context.Context, actor *Principal, name, password string, admin bool) (string, error) {
	if err := requireAdmin(actor); err != nil {
		return "", err
	}
	if err := validAccountName(name); err != nil {
		return "", err
	}
	h, generated, err := passwordHash(password)
	if err != nil {
		return "", err
	}
	if err := storeErr(s.acc.CreateUser(ctx, metadata.User{Name: name, PasswordHash: h, Admin: admin}), "user or namespace "+name); err != nil {
		return "", err
	}
	s.auditChange(actor, "user created", "user", name, "admin", admin)
	return generated, nil
}

// ListUsers lists users (admins only).
func (s *Service) ListUsers(ctx context.Context, actor *Principal) ([]metadata.User, error) {
	if err := requireAdmin(actor); err != nil {
		return nil, err
	}
	return s.acc.ListUsers(ctx)
}

// DeleteUser deletes a user (admins only; not oneself).
func (s *Service) DeleteUser(ctx context.Context, actor *Principal, name string) error {
	if err := requireAdmin(actor); err != nil {
		return err
	}
	if name == actor.Name {
		return fmt.Errorf("%w: you cannot delete yourself", ErrInvalid)
	}
	if err := storeErr(s.acc.DeleteUser(ctx, name), "user "+name); err != nil {
		return err
	}
	s.revs.refresh(ctx, true) // effective here at once, elsewhere within RevocationInterval
	s.auditChange(actor, "user deleted", "user", name)
	return nil
}

// SetPassword sets a user's password (admins, or the user itself); without
// a password one is generated and returned. Refresh tokens are revoked.
func (s *Service) SetPassword(ctx context.Context, actor *Principal, name, password string) (string, error) {
	if !(actor.Kind == UserKind && (actor.Admin || actor.Name == name)) {
		return "", fmt.Errorf("%w: only admins may change another user's password", ErrForbidden)
	}
	u, err := s.acc.GetUser(ctx, name)
	if err != nil {
		return "", storeErr(err, "user "+name)
	}
	if !localUser(u) {
		// A password here would outlive the provider's word on the person.
		return "", fmt.Errorf("%w: %s signs in through %s; berth keeps no password for it", ErrInvalid, name, u.Source)
	}
	h, generated, err := passwordHash(password)
	if err != nil {
		return "", err
	}
	if err := storeErr(s.acc.SetPassword(ctx, name, h), "user "+name); err != nil {
		return "", err
	}
	s.revs.refresh(ctx, true) // effective here at once, elsewhere within RevocationInterval
	s.auditChange(actor, "password changed", "user", name)
	return generated, nil
}

// NamespaceView is a namespace with the caller's role in it.
type NamespaceView struct {
	metadata.Namespace
	Role string
}

// ListNamespaces lists all namespaces for admins, else those the actor
// belongs to.
func (s *Service) ListNamespaces(ctx context.Context, actor *Principal) ([]NamespaceView, error) {
	all, err := s.acc.ListNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	roles := map[string]string{}
	if actor.Kind == UserKind {
		if roles, err = s.userRoles(ctx, actor.Name); err != nil {
			return nil, err
		}
	}
	var out []NamespaceView
	for _, ns := range all {
		role, member := roles[ns.Name]
		if member || actor.Admin {
			out = append(out, NamespaceView{ns, role})
		}
	}
	return out, nil
}

// CreateNamespace creates a namespace (admins only).
func (s *Service) CreateNamespace(ctx context.Context, actor *Principal, name string, public bool) (*metadata.Namespace, error) {
	if err := requireAdmin(actor); err != nil {
		return nil, err
	}
	if err := validAccountName(name); err != nil {
		return nil, err
	}
	if err := storeErr(s.acc.CreateNamespace(ctx, metadata.Namespace{Name: name, Public: public}), "namespace "+name); err != nil {
		return nil, err
	}
	s.auditChange(actor, "namespace created", "namespace", name, "public", public)
	return s.acc.GetNamespace(ctx, name)
}

// SetPublic makes a namespace public (anonymous pull) or private.
func (s *Service) SetPublic(ctx context.Context, actor *Principal, name string, public bool) (*metadata.Namespace, error) {
	if err := s.requireOwner(ctx, actor, name); err != nil {
		return nil, err
	}
	if err := storeErr(s.acc.SetNamespacePublic(ctx, name, public), "namespace "+name); err != nil {
		return nil, err
	}
	if !public {
		s.revs.refresh(ctx, true) // anonymous tokens stop here at once, elsewhere within RevocationInterval
	}
	s.auditChange(actor, "namespace visibility changed", "namespace", name, "public", public)
	return s.acc.GetNamespace(ctx, name)
}

// DeleteNamespace deletes a namespace's settings, members and robots.
func (s *Service) DeleteNamespace(ctx context.Context, actor *Principal, name string) error {
	if err := requireAdmin(actor); err != nil {
		return err
	}
	if err := storeErr(s.acc.DeleteNamespace(ctx, name), "namespace "+name); err != nil {
		return err
	}
	s.revs.refresh(ctx, true) // effective here at once, elsewhere within RevocationInterval
	s.auditChange(actor, "namespace deleted", "namespace", name)
	return nil
}

// Members lists a namespace's members (admins and owners).
func (s *Service) Members(ctx context.Context, actor *Principal, ns string) ([]metadata.Member, error) {
	if err := s.requireOwner(ctx, actor, ns); err != nil {
		return nil, err
	}
	if _, err := s.acc.GetNamespace(ctx, ns); err != nil {
		return nil, storeErr(err, "namespace "+ns)
	}
	return s.acc.Members(ctx, ns)
}

// SetMember gives a user a role in a namespace (admins and owners).
func (s *Service) SetMember(ctx context.Context, actor *Principal, ns, user string, role Role) error {
	if err := s.requireOwner(ctx, actor, ns); err != nil {
		return err
	}
	if !ValidRole(role) {
		return fmt.Errorf("%w: role must be reader, writer, maintainer or owner", ErrInvalid)
	}
	if _, err := s.acc.GetUser(ctx, user); err != nil {
		return storeErr(err, "user "+user)
	}
	before, err := s.userRoles(ctx, user)
	if err != nil {
		return err
	}
	if err := storeErr(s.acc.SetMember(ctx, metadata.Member{Namespace: ns, User: user, Role: string(role)}), "namespace "+ns); err != nil {
		return err
	}
	if old := Role(before[ns]); old != "" && len(role.Actions()) < len(old.Actions()) {
		// A lowered role: the tokens granted under the old one stop. A
		// raised one needs nothing (they grant less than now allowed).
		if err := s.acc.RevokeTokens(ctx, user); err != nil {
			return fmt.Errorf("revoke tokens of %s: %w", user, err)
		}
		s.revs.refresh(ctx, true) // effective here at once, elsewhere within RevocationInterval
	}
	s.auditChange(actor, "member set", "namespace", ns, "user", user, "role", role)
	return nil
}

// RemoveMember removes a user from a namespace (admins and owners).
func (s *Service) RemoveMember(ctx context.Context, actor *Principal, ns, user string) error {
	if err := s.requireOwner(ctx, actor, ns); err != nil {
		return err
	}
	if err := storeErr(s.acc.RemoveMember(ctx, ns, user), "member "+user+" in "+ns); err != nil {
		return err
	}
	s.revs.refresh(ctx, true) // effective here at once, elsewhere within RevocationInterval
	s.auditChange(actor, "member removed", "namespace", ns, "user", user)
	return nil
}

// MaxRobotLifetime is the longest lifetime a robot may be given (ten
// years); a robot that should never expire is created without one.
const MaxRobotLifetime = 3650 * 24 * time.Hour

// ParseExpiry reads a lifetime: a Go duration or a number of days ("90d");
// empty means none. Lifetimes beyond MaxRobotLifetime are refused, so
// that no count of days can overflow into "never".
func ParseExpiry(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%w: expiry %q (use e.g. 90d or 12h)", ErrInvalid, s)
		}
		if n > int(MaxRobotLifetime/(24*time.Hour)) {
			return 0, fmt.Errorf("%w: expiry %q is longer than %dd (omit it for a robot that never expires)", ErrInvalid, s, MaxRobotLifetime/(24*time.Hour))
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return 0, fmt.Errorf("%w: expiry %q (use e.g. 90d or 12h)", ErrInvalid, s)
		}
	}
	if d > MaxRobotLifetime {
		return 0, fmt.Errorf("%w: expiry %q is longer than %dd (omit it for a robot that never expires)", ErrInvalid, s, MaxRobotLifetime/(24*time.Hour))
	}
	return d, nil
}

// validActions checks a credential's actions (pull, push, delete), sorted
// and without repeats; none means defaults.
func validActions(actions []string, defaults ...string) ([]string, error) {
	if len(actions) == 0 {
		actions = defaults
	}
	for _, a := range actions {
		if a != Pull && a != Push && a != Delete {
			return nil, fmt.Errorf("%w: action %q (want pull, push or delete)", ErrInvalid, a)
		}
	}
	actions = slices.Clone(actions)
	slices.Sort(actions)
	return slices.Compact(actions), nil
}

// CreateRobot creates a robot account "<ns>+<name>" scoped to repository
// patterns inside ns and to actions, and returns it with its secret, which
// is never shown again.
func (s *Service) CreateRobot(ctx context.Context, actor *Principal, ns, name string, scopes, actions []string, lifetime time.Duration) (*metadata.Robot, string, error) {
	if err := s.requireOwner(ctx, actor, ns); err != nil {
		return nil, "", err
	}
	if _, err := s.acc.GetNamespace(ctx, ns); err != nil {
		return nil, "", storeErr(err, "namespace "+ns)
	}
	if err := validAccountName(name); err != nil {
		return nil, "", err
	}
	if len(scopes) == 0 {
		scopes = []string{ns + "/*"}
	}
	for _, sc := range scopes {
		repo := strings.TrimSuffix(sc, "/*")
		if Namespace(repo) != ns || reference.ValidateName(repo) != nil {
			return nil, "", fmt.Errorf("%w: scope %q must be a repository or ns/* pattern inside %s", ErrInvalid, sc, ns)
		}
	}
	actions, err := validActions(actions, Pull)
	if err != nil {
		return nil, "", err
	}
	secret := "berth_" + randomSecret(32)
	r := metadata.Robot{Name: ns + "+" + name, Namespace: ns, SecretHash: secretHash(secret), Scopes: scopes, Actions: actions}
	if lifetime > 0 {
		r.Expires = s.now().Add(lifetime)
	}
	if err := storeErr(s.acc.CreateRobot(ctx, r), "robot "+r.Name); err != nil {
		return nil, "", err
	}
	s.auditChange(actor, "robot created", "robot", r.Name, "scopes", strings.Join(scopes, " "), "actions", strings.Join(actions, ","))
	created, err := s.acc.GetRobot(ctx, r.Name)
	return created, secret, err
}

// ListRobots lists a namespace's robots (admins and owners).
func (s *Service) ListRobots(ctx context.Context, actor *Principal, ns string) ([]metadata.Robot, error) {
	if err := s.requireOwner(ctx, actor, ns); err != nil {
		return nil, err
	}
	return s.acc.ListRobots(ctx, ns)
}

// RevokeRobot revokes a robot of ns (admins and owners).
func (s *Service) RevokeRobot(ctx context.Context, actor *Principal, ns, name string) error {
	if err := s.requireOwner(ctx, actor, ns); err != nil {
		return err
	}
	if !strings.HasPrefix(name, ns+"+") {
		name = ns + "+" + name
	}
	if err := storeErr(s.acc.RevokeRobot(ctx, name), "robot "+name); err != nil {
		return err
	}
	s.revs.refresh(ctx, true) // effective here at once, elsewhere within RevocationInterval
	s.auditChange(actor, "robot revoked", "robot", name)
	return nil
}

// RotateKeys makes a new token signing key (admins only).
func (s *Service) RotateKeys(ctx context.Context, actor *Principal) (string, error) {
	if err := requireAdmin(actor); err != nil {
		return "", err
	}
	kid, err := s.keys.Rotate()
	if err != nil {
		return "", err
	}
	s.auditChange(actor, "signing key rotated", "kid", kid)
	return kid, nil
}
