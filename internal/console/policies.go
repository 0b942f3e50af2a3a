package console

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/retention"
)

// Immutable tag rules and retention policies: administrators, as the
// admin API (the auth service checks again). A retention policy can be
// previewed: a dry run of garbage collection with it as a candidate,
// showing what it would delete now.

// policyForm is the retention form as typed (kept on errors and previews).
type policyForm struct {
	Repositories, KeepLast, KeepTags, UntaggedAfter, UnpulledFor string
}

// policyRow is a stored policy as shown.
type policyRow struct {
	metadata.RetentionPolicy
	UntaggedAfter, UnpulledFor string
}

// policiesPage is the policies page's data.
type policiesPage struct {
	Rules    []metadata.ImmutableRule
	Policies []policyRow
	Form     policyForm
	Message  string
	// Preview is a candidate policy's dry run (nil without one).
	Preview *policyPreview
}

// policyPreview is what a candidate policy would delete now.
type policyPreview struct {
	Tags      []metadata.TagDeletion
	Manifests []metadata.GCManifest
}

// policies lists the immutable rules and retention policies.
func (h *Handler) policies(w http.ResponseWriter, r *http.Request, v *viewer, d policiesPage, status int) error {
	if ok, err := h.requireAdmin(w, r, v); !ok {
		return err
	}
	var err error
	if d.Rules, err = h.opts.Accounts.ImmutableRules(r.Context(), v.p); err != nil {
		return err
	}
	ps, err := h.opts.Accounts.RetentionPolicies(r.Context(), v.p)
	if err != nil {
		return err
	}
	for _, p := range ps {
		d.Policies = append(d.Policies, policyRow{RetentionPolicy: p, UntaggedAfter: retention.FormatDuration(p.UntaggedAfter),
			UnpulledFor: retention.FormatDuration(p.UnpulledFor)})
	}
	return h.render(w, r, "policies", status, page{Title: "Policies", Viewer: v, Data: d})
}

// changePolicies adds or deletes an immutable rule, or previews, adds or
// deletes a retention policy.
func (h *Handler) changePolicies(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := checkForm(r, v.CSRF()); err != nil {
		return err
	}
	if ok, err := h.requireAdmin(w, r, v); !ok {
		return err
	}
	f := r.PostForm
	ctx, acc := r.Context(), h.opts.Accounts
	d := policiesPage{Form: policyForm{Repositories: f.Get("repositories"), KeepLast: f.Get("keep_last"), KeepTags: f.Get("keep_tags"),
		UntaggedAfter: f.Get("untagged_after"), UnpulledFor: f.Get("unpulled_for")}}
	again := func(msg string) error { d.Message = msg; return h.policies(w, r, v, d, http.StatusBadRequest) }
	id, _ := strconv.ParseInt(f.Get("id"), 10, 64)
	var err error
	switch op := f.Get("op"); op {
	case "rule-add":
		_, err = acc.AddImmutableRule(ctx, v.p, strings.TrimSpace(f.Get("rule_repositories")), strings.TrimSpace(f.Get("rule_tags")))
	case "rule-delete":
		err = acc.DeleteImmutableRule(ctx, v.p, id)
	case "policy-delete":
		err = acc.DeleteRetentionPolicy(ctx, v.p, id)
	case "policy-add", "policy-preview":
		p, perr := d.Form.policy()
		if perr != nil {
			return again(perr.Error())
		}
		if op == "policy-add" {
			_, err = acc.AddRetentionPolicy(ctx, v.p, p)
			break
		}
		if err = acc.CheckRetentionPolicy(ctx, v.p, p); err != nil {
			break
		}
		if h.opts.RunGC == nil {
			return again("Garbage collection is not available here, so nothing can be previewed.")
		}
		rep, gerr := h.opts.RunGC(ctx, gc.Options{DryRun: true, Candidate: &p})
		if gerr != nil {
			return gerr
		}
		prev := &policyPreview{}
		prev.Tags, prev.Manifests = rep.Covering(p.Repositories)
		d.Preview = prev
		return h.policies(w, r, v, d, http.StatusOK)
	default:
		return errorf(http.StatusBadRequest, "Unknown operation.")
	}
	if err != nil {
		return accountError(err, again)
	}
	http.Redirect(w, r, "/admin/policies", http.StatusSeeOther)
	return nil
}

// policy parses the form into a policy (the auth service validates the
// rest: the pattern, the globs, the grace period).
func (f policyForm) policy() (metadata.RetentionPolicy, error) {
	p := metadata.RetentionPolicy{Repositories: strings.TrimSpace(f.Repositories)}
	if s := strings.TrimSpace(f.KeepLast); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return p, errorf(http.StatusBadRequest, "Keep the newest: a whole number of tags (0: all).")
		}
		p.KeepLast = n
	}
	for _, g := range strings.Split(f.KeepTags, ",") {
		if g = strings.TrimSpace(g); g != "" {
			p.KeepTags = append(p.KeepTags, g)
		}
	}
	var err error
	if s := strings.TrimSpace(f.UntaggedAfter); s != "" {
		if p.UntaggedAfter, err = retention.ParseDuration(s); err != nil {
			return p, errorf(http.StatusBadRequest, "Untagged after: "+err.Error())
		}
	}
	if s := strings.TrimSpace(f.UnpulledFor); s != "" {
		if p.UnpulledFor, err = retention.ParseDuration(s); err != nil {
			return p, errorf(http.StatusBadRequest, "Unpulled for: "+err.Error())
		}
	}
	return p, nil
}
