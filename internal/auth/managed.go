package auth

import (
	"errors"
	"fmt"

	"github.com/berth-registry/berth/internal/metadata"
)

// MayAdminister says whether actor may manage registry-wide settings that
// only admins manage (mirrors, replication): admins, or anyone on an open
// registry, whose requests carry no actor (nil). what names the settings
// for the refusal.
func MayAdminister(actor *Principal, what string) error {
	if actor != nil && !actor.Admin {
		return fmt.Errorf("%w: only admins manage %s", ErrForbidden, what)
	}
	return nil
}

// ActorName is actor's name, "" on an open registry (nil actor).
func ActorName(actor *Principal) string {
	if actor == nil {
		return ""
	}
	return actor.Name
}

// StoreError maps the metadata store's ErrExists and ErrNotFound to this
// package's, which the admin API answers with 409 and 404; missing says
// what was not found ("no mirror named hub").
func StoreError(err error, missing string) error {
	switch {
	case errors.Is(err, metadata.ErrNotFound):
		return fmt.Errorf("%w: %s", ErrNotFound, missing)
	case errors.Is(err, metadata.ErrExists):
		return fmt.Errorf("%w: %v", ErrExists, err)
	}
	return err
}
