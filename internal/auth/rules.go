// Package auth holds the access rules of berth: users, namespaces and their
// roles, robot accounts, what each may do to a repository, login with rate
// limiting, and the issuing of bearer tokens. It knows nothing of HTTP or
// SQL; it stores accounts through metadata.Accounts and signs with token.Keys.
package auth

import (
	"slices"
	"strings"
	"time"
)

// Actions on a repository.
const (
	Pull   = "pull"
	Push   = "push"
	Delete = "delete"
)

// Role is a user's role in a namespace.
type Role string

// The roles, each allowing what the one before it does and more.
const (
	Reader     Role = "reader"
	Writer     Role = "writer"
	Maintainer Role = "maintainer"
	Owner      Role = "owner"
)

// ValidRole reports whether r is one of the roles.
func ValidRole(r Role) bool {
	return r == Reader || r == Writer || r == Maintainer || r == Owner
}

// Actions returns the repository actions a role allows.
func (r Role) Actions() []string {
	switch r {
	case Reader:
		return []string{Pull}
	case Writer:
		return []string{Pull, Push}
	case Maintainer, Owner:
		return []string{Pull, Push, Delete}
	}
	return nil
}

// Kind is the kind of a principal.
type Kind int

// The kinds of principal.
const (
	Anonymous Kind = iota
	UserKind
	RobotKind
)

// Principal is who a request acts as.
type Principal struct {
	Kind  Kind
	Name  string // user name or robot name ("team+ci"); empty when anonymous
	Admin bool
	// A robot's grants; for a person signed in with a personal access
	// token, the token's limits (no Scopes: every repository).
	Scopes    []string
	Actions   []string
	ExpiresAt time.Time // zero: never
	// Created identifies the account beyond its name: credentials bound
	// to an account deleted since do not pass to a new one of that name.
	Created time.Time
	// Via is the kind of credential the principal logged in with.
	Via Credential
	// Epoch is the subject's revocation epoch when it logged in; its
	// tokens carry it.
	Epoch int64
	// groupsChanged: signing in stored new directory groups, which raised
	// the subject's epoch by one (Login takes the raised epoch).
	groupsChanged bool
}

// Subject is the token subject of the principal.
func (p *Principal) Subject() string { return p.Name }

// Namespace returns the namespace of a repository: its first component.
func Namespace(repo string) string {
	ns, _, _ := strings.Cut(repo, "/")
	return ns
}

// MatchScope reports whether a robot scope pattern covers repo: "team/*"
// covers every repository under team/, "team/app" exactly that one.
func MatchScope(pattern, repo string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/*"); ok {
		return strings.HasPrefix(repo, prefix+"/")
	}
	return pattern == repo
}

// NamespaceFacts is what the rules need to know about a repository's
// namespace for a principal: whether it is public and the principal's role.
type NamespaceFacts struct {
	Public bool
	Role   Role // "" when the principal is not a member
}

// Allowed returns the actions p may take on repo, given the facts about
// its namespace at time now. Deny by default: only what a rule grants. A
// principal that logged in with a pull credential may only pull.
func Allowed(p *Principal, repo string, ns NamespaceFacts, now time.Time) []string {
	acts := allowed(p, repo, ns, now)
	switch p.Via {
	case ViaPullCredential:
		return Intersect([]string{Pull}, acts)
	case ViaPersonalToken:
		if !now.Before(p.ExpiresAt) || len(p.Scopes) > 0 && !slices.ContainsFunc(p.Scopes, func(s string) bool { return MatchScope(s, repo) }) {
			return nil
		}
		return Intersect(p.Actions, acts)
	}
	return acts
}

func allowed(p *Principal, repo string, ns NamespaceFacts, now time.Time) []string {
	switch {
	case p.Kind == UserKind && p.Admin:
		return []string{Pull, Push, Delete}
	case p.Kind == RobotKind:
		if !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt) {
			return nil
		}
		if !slices.ContainsFunc(p.Scopes, func(s string) bool { return MatchScope(s, repo) }) {
			return nil
		}
		return p.Actions
	case p.Kind == UserKind:
		if acts := ns.Role.Actions(); acts != nil {
			return acts
		}
	}
	if ns.Public {
		return []string{Pull}
	}
	return nil
}

// Intersect returns the requested actions that are also allowed, in the
// order requested, without duplicates.
func Intersect(requested, allowed []string) []string {
	var out []string
	for _, a := range requested {
		if a == "*" {
			for _, x := range allowed {
				if !slices.Contains(out, x) {
					out = append(out, x)
				}
			}
			continue
		}
		if slices.Contains(allowed, a) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
