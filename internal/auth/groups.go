package auth

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/berth-registry/berth/internal/metadata"
)

// maxGroupLen bounds a directory group's name in a mapping.
const maxGroupLen = 256

// validGroup checks a directory group's name: any printable text (LDAP
// common names, OIDC group claims, paths such as "/eng/dev"), not empty
// and not too long.
func validGroup(g string) error {
	if g == "" || len(g) > maxGroupLen || !utf8.ValidString(g) || strings.ContainsFunc(g, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%w: a group is 1 to %d printable characters", ErrInvalid, maxGroupLen)
	}
	return nil
}

// AddGroupMapping gives the members of a directory group a role in a
// namespace (admins). People's roles follow at their next sign-in, when
// berth reads their groups; tokens issued before stop working.
func (s *Service) AddGroupMapping(ctx context.Context, actor *Principal, group, ns string, role Role) (int64, error) {
	if err := requireAdmin(actor); err != nil {
		return 0, err
	}
	if err := validGroup(group); err != nil {
		return 0, err
	}
	if !ValidRole(role) {
		return 0, fmt.Errorf("%w: role must be reader, writer, maintainer or owner", ErrInvalid)
	}
	id, err := s.acc.AddGroupMapping(ctx, metadata.GroupMapping{Group: group, Namespace: ns, Role: string(role)})
	if err != nil {
		return 0, storeErr(err, "namespace "+ns)
	}
	s.revs.refresh(ctx, true)
	s.auditChange(actor, "group mapping set", "group", group, "namespace", ns, "role", role)
	return id, nil
}

// GroupMappings lists the group mappings (admins).
func (s *Service) GroupMappings(ctx context.Context, actor *Principal) ([]metadata.GroupMapping, error) {
	if err := requireAdmin(actor); err != nil {
		return nil, err
	}
	return s.acc.GroupMappings(ctx)
}

// DeleteGroupMapping deletes a group mapping (admins); its group's members
// lose the role at once.
func (s *Service) DeleteGroupMapping(ctx context.Context, actor *Principal, id int64) error {
	if err := requireAdmin(actor); err != nil {
		return err
	}
	if err := storeErr(s.acc.DeleteGroupMapping(ctx, id), fmt.Sprintf("group mapping %d", id)); err != nil {
		return err
	}
	s.revs.refresh(ctx, true)
	s.auditChange(actor, "group mapping deleted", "id", id)
	return nil
}

// UserGroups returns the directory groups berth last read for a user
// (admins, and the user).
func (s *Service) UserGroups(ctx context.Context, actor *Principal, user string) ([]string, error) {
	if actor == nil || actor.Kind != UserKind || !actor.Admin && actor.Name != user {
		return nil, ErrForbidden
	}
	if _, err := s.acc.GetUser(ctx, user); err != nil {
		return nil, storeErr(err, "user "+user)
	}
	return s.acc.UserGroups(ctx, user)
}

// SetUserDisabled disables or enables a user (admins; not oneself). A
// disabled user cannot sign in, and its tokens stop working.
func (s *Service) SetUserDisabled(ctx context.Context, actor *Principal, user string, disabled bool) error {
	if err := requireAdmin(actor); err != nil {
		return err
	}
	if disabled && actor.Name == user {
		return fmt.Errorf("%w: an admin cannot disable itself", ErrInvalid)
	}
	if err := storeErr(s.acc.SetUserDisabled(ctx, user, disabled), "user "+user); err != nil {
		return err
	}
	s.revs.refresh(ctx, true)
	s.auditChange(actor, "user disabled set", "user", user, "disabled", disabled)
	return nil
}
