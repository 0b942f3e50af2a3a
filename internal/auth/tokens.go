package auth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// Personal access tokens: a person's passwords for docker login and CI,
// which cannot speak to a directory or an identity provider. A token is
// shown once and stored by hash; it is limited to repository patterns
// and actions, and at each use it grants at most what its owner may do
// then (for a directory's person: with the groups read again).

const (
	// personalTokenPrefix starts every personal access token.
	personalTokenPrefix = "berth_pat_"
	// DefaultTokenLifetime and MaxTokenLifetime bound a token's life.
	DefaultTokenLifetime = 30 * 24 * time.Hour
	MaxTokenLifetime     = 366 * 24 * time.Hour
)

// tokenName is a personal access token's name: 1 to 64 of a-z, 0-9, ., _, -.
var tokenName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// CreatePersonalToken makes actor a personal access token and returns it
// with its secret, which is never shown again. scopes are repository
// patterns (team/app, team/*; none: every repository the owner may
// reach), actions a subset of pull, push, delete (none: pull and push),
// lifetime at most MaxTokenLifetime (0: DefaultTokenLifetime).
func (s *Service) CreatePersonalToken(ctx context.Context, actor *Principal, name string, scopes, actions []string, lifetime time.Duration) (*metadata.PersonalToken, string, error) {
	if actor == nil || actor.Kind != UserKind || actor.Via != ViaPassword && actor.Via != ViaSession {
		return nil, "", fmt.Errorf("%w: personal access tokens are made by a signed-in person", ErrForbidden)
	}
	if !tokenName.MatchString(name) {
		return nil, "", fmt.Errorf("%w: token name %q (1 to 64 of a-z, 0-9, '.', '_', '-')", ErrInvalid, name)
	}
	for _, sc := range scopes {
		if reference.ValidateName(strings.TrimSuffix(sc, "/*")) != nil {
			return nil, "", fmt.Errorf("%w: scope %q must be a repository or a ns/* pattern", ErrInvalid, sc)
		}
	}
	actions, err := validActions(actions, Pull, Push)
	if err != nil {
		return nil, "", err
	}
	switch {
	case lifetime == 0:
		lifetime = DefaultTokenLifetime
	case lifetime < 0 || lifetime > MaxTokenLifetime:
		return nil, "", fmt.Errorf("%w: a token lives at most %dd", ErrInvalid, MaxTokenLifetime/(24*time.Hour))
	}
	secret := personalTokenPrefix + randomSecret(32)
	t := metadata.PersonalToken{Owner: actor.Name, OwnerCreated: actor.Created, Name: name, Hash: secretHash(secret),
		Scopes: scopes, Actions: actions, Expires: s.now().Add(lifetime)}
	id, err := s.acc.CreatePersonalToken(ctx, t)
	if err != nil {
		return nil, "", storeErr(err, "token "+name+" of "+actor.Name)
	}
	t.ID, t.Created, t.Hash = id, s.now(), ""
	s.auditChange(actor, "personal token created", "token", name, "scopes", strings.Join(scopes, " "), "actions", strings.Join(actions, ","),
		"expires", t.Expires.UTC().Format(time.RFC3339))
	return &t, secret, nil
}

// PersonalTokens lists actor's own tokens (without their hashes).
func (s *Service) PersonalTokens(ctx context.Context, actor *Principal) ([]metadata.PersonalToken, error) {
	if actor == nil || actor.Kind != UserKind {
		return nil, ErrForbidden
	}
	ts, err := s.acc.PersonalTokens(ctx, actor.Name)
	for i := range ts {
		ts[i].Hash = ""
	}
	return ts, err
}

// RevokePersonalToken revokes one of actor's tokens; the access tokens it
// was traded for stop working too.
func (s *Service) RevokePersonalToken(ctx context.Context, actor *Principal, id int64) error {
	if actor == nil || actor.Kind != UserKind {
		return ErrForbidden
	}
	if err := storeErr(s.acc.RevokePersonalToken(ctx, actor.Name, id), fmt.Sprintf("token %d of %s", id, actor.Name)); err != nil {
		return err
	}
	s.revs.refresh(ctx, true)
	s.auditChange(actor, "personal token revoked", "id", id)
	return nil
}

// personalToken signs name in with one of its personal access tokens.
func (s *Service) personalToken(ctx context.Context, name, secret string) (*Principal, error) {
	t, err := s.acc.PersonalToken(ctx, secretHash(secret))
	if errors.Is(err, metadata.ErrNotFound) {
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if t.Owner != name {
		return nil, ErrBadCredentials
	}
	if t.Revoked {
		return nil, fmt.Errorf("%w: personal token %s is revoked", ErrBadCredentials, t.Name)
	}
	if !s.now().Before(t.Expires) {
		return nil, fmt.Errorf("%w: personal token %s expired", ErrBadCredentials, t.Name)
	}
	u, err := s.acc.GetUser(ctx, name)
	if errors.Is(err, metadata.ErrNotFound) || err == nil && !u.Created.Equal(t.OwnerCreated) {
		return nil, ErrBadCredentials // its owner is gone (a new account of the name is someone else)
	}
	if err != nil {
		return nil, err
	}
	// Disabled, local sign-in off, or (for a directory's person) gone from
	// the directory: refused; the person's groups as the directory says
	// now, so that a token's rights shrink with theirs.
	changed, err := s.admit(ctx, u)
	if err != nil {
		return nil, err
	}
	if s.now().Sub(t.LastUsed) > time.Minute {
		_ = s.acc.TouchPersonalToken(ctx, t.ID, s.now())
	}
	return &Principal{Kind: UserKind, Name: u.Name, Admin: u.Admin, Created: u.Created, Via: ViaPersonalToken,
		Scopes: t.Scopes, Actions: t.Actions, ExpiresAt: t.Expires, groupsChanged: changed}, nil
}
