package adminapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/retention"
)

// policyJSON is a retention policy on the wire; durations read as 30d,
// 72h or 90m, and an absent or empty one is off.
type policyJSON struct {
	ID            int64    `json:"id,omitempty"`
	Repositories  string   `json:"repositories"`
	KeepLast      int      `json:"keep_last,omitempty"`
	KeepTags      []string `json:"keep_tags,omitempty"`
	UntaggedAfter string   `json:"untagged_after,omitempty"`
	UnpulledFor   string   `json:"unpulled_for,omitempty"`
	Created       *string  `json:"created_at,omitempty"`
}

func policyView(p metadata.RetentionPolicy) policyJSON {
	return policyJSON{ID: p.ID, Repositories: p.Repositories, KeepLast: p.KeepLast, KeepTags: p.KeepTags,
		UntaggedAfter: retention.FormatDuration(p.UntaggedAfter), UnpulledFor: retention.FormatDuration(p.UnpulledFor), Created: stamp(p.Created)}
}

func (in policyJSON) policy() (metadata.RetentionPolicy, error) {
	p := metadata.RetentionPolicy{Repositories: in.Repositories, KeepLast: in.KeepLast, KeepTags: in.KeepTags}
	var err error
	if p.UntaggedAfter, err = retention.ParseDuration(in.UntaggedAfter); err != nil {
		return p, fmt.Errorf("%w: untagged_after: %w", auth.ErrInvalid, err)
	}
	if p.UnpulledFor, err = retention.ParseDuration(in.UnpulledFor); err != nil {
		return p, fmt.Errorf("%w: unpulled_for: %w", auth.ErrInvalid, err)
	}
	return p, nil
}

func (h *Handler) listRetention(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	ps, err := h.auth.RetentionPolicies(r.Context(), a)
	if err != nil {
		return 0, nil, err
	}
	out := []policyJSON{}
	for _, p := range ps {
		out = append(out, policyView(p))
	}
	return http.StatusOK, out, nil
}

// retentionDryRun is what a policy would delete if it were saved and
// garbage collection ran now, in the repositories it covers.
type retentionDryRun struct {
	Policy    policyJSON             `json:"policy"`
	Tags      []metadata.TagDeletion `json:"tags"`
	Manifests []metadata.GCManifest  `json:"manifests"`
}

// addRetention stores a policy, or with ?dry_run=true shows what it would
// delete now without storing it.
func (h *Handler) addRetention(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	var in policyJSON
	if err := decode(r, &in); err != nil {
		return 0, nil, err
	}
	p, err := in.policy()
	if err != nil {
		return 0, nil, err
	}
	if r.URL.Query().Get("dry_run") != "true" {
		id, err := h.auth.AddRetentionPolicy(r.Context(), a, p)
		if err != nil {
			return 0, nil, err
		}
		p.ID = id
		return http.StatusCreated, policyView(p), nil
	}
	if err := h.auth.CheckRetentionPolicy(r.Context(), a, p); err != nil {
		return 0, nil, err
	}
	if h.GC == nil {
		return 0, nil, fmt.Errorf("%w: garbage collection is not configured", auth.ErrInvalid)
	}
	report, err := h.GC(r.Context(), gc.Options{DryRun: true, Candidate: &p})
	if err != nil {
		return 0, nil, err
	}
	out := retentionDryRun{Policy: policyView(p)}
	out.Tags, out.Manifests = report.Covering(p.Repositories)
	return http.StatusOK, out, nil
}

func (h *Handler) deleteRetention(_ http.ResponseWriter, r *http.Request, a *auth.Principal) (int, any, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: policy id %q is not a number", auth.ErrInvalid, r.PathValue("id"))
	}
	return http.StatusNoContent, nil, h.auth.DeleteRetentionPolicy(r.Context(), a, id)
}
