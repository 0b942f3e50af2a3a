package auth

import (
	"fmt"
	"strings"

	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/token"
)

// ParseScope parses one scope of a token request: "repository:NAME:ACTIONS"
// (NAME validated by the repository grammar, ACTIONS comma separated) or
// "registry:catalog:*". A repository name may itself not contain a colon,
// but a host-qualified form "repository:host:5000/name:pull" is refused.
func ParseScope(s string) (token.Access, error) {
	typ, rest, ok := strings.Cut(s, ":")
	if !ok {
		return token.Access{}, fmt.Errorf("malformed scope %q", s)
	}
	i := strings.LastIndex(rest, ":")
	if i < 0 {
		return token.Access{}, fmt.Errorf("malformed scope %q", s)
	}
	name, actions := rest[:i], strings.Split(rest[i+1:], ",")
	switch typ {
	case "repository":
		if err := reference.ValidateName(name); err != nil {
			return token.Access{}, fmt.Errorf("scope %q: %w", s, err)
		}
	case "registry":
		if name != "catalog" {
			return token.Access{}, fmt.Errorf("unknown registry scope %q", s)
		}
	default:
		return token.Access{}, fmt.Errorf("unknown scope type in %q", s)
	}
	var acts []string
	for _, a := range actions {
		if a = strings.TrimSpace(a); a != "" {
			acts = append(acts, a)
		}
	}
	return token.Access{Type: typ, Name: name, Actions: acts}, nil
}

// MaxScopes is the most scopes one token request may ask for. Clients ask
// for one or two (a push with a mount three); a request for more is
// refused whole rather than cut, so that it cannot make berth check and
// log thousands of scopes.
const MaxScopes = 64

// ParseScopes parses scope parameters, each of which may hold several
// space-separated scopes (the OAuth2 form); more than MaxScopes in all
// are refused.
func ParseScopes(params []string) ([]token.Access, error) {
	var out []token.Access
	for _, p := range params {
		for _, s := range strings.Fields(p) {
			if len(out) == MaxScopes {
				return nil, fmt.Errorf("too many scopes: a token request may ask for at most %d", MaxScopes)
			}
			a, err := ParseScope(s)
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	return out, nil
}
