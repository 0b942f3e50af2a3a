package console

import (
	"context"
	"net/http"
	"net/url"
	"slices"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/events"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/registry"
)

// notices are the messages a redirect may ask a page to show (by key, so
// that no text of the URL reaches the page).
var notices = map[string]string{
	"deleted":          "The tag was deleted.",
	"deleted-manifest": "The manifest was deleted, and the tags that named it.",
}

func noticeText(key string) string { return notices[key] }

// deleteTarget reads and checks the repository and the tag or digest a
// delete form or its confirmation names: valid, and the viewer may delete
// there (the API's rule). A viewer who may not gets 403, or 404 when they
// may not even see the repository. manifest tells a digest (the manifest
// goes) from a tag.
func (h *Handler) deleteTarget(r *http.Request, v *viewer, q url.Values) (repo, tag string, manifest bool, err error) {
	repo, tag = q.Get("name"), q.Get("tag")
	if err := reference.ValidateName(repo); err != nil {
		return "", "", false, errorf(http.StatusBadRequest, "Not a repository name: "+err.Error())
	}
	_, derr := reference.ParseDigest(tag)
	if manifest = derr == nil; !manifest {
		if err := reference.ValidateTag(tag); err != nil {
			return "", "", false, errorf(http.StatusBadRequest, "Not a tag or digest: "+err.Error())
		}
	}
	acts, err := h.actions(r, v, repo)
	if err != nil {
		return "", "", false, err
	}
	switch {
	case !slices.Contains(acts, auth.Pull):
		return "", "", false, errorf(http.StatusNotFound, "No repository "+repo+" that you may see.")
	case !slices.Contains(acts, auth.Delete):
		return "", "", false, errorf(http.StatusForbidden, "You may not delete in "+repo+".")
	}
	return repo, tag, manifest, nil
}

// confirmDeleteTag asks before a tag is deleted (a page, not a script
// dialog: it works with the keyboard and without JavaScript).
func (h *Handler) confirmDeleteTag(w http.ResponseWriter, r *http.Request, v *viewer) error {
	repo, tag, manifest, err := h.deleteTarget(r, v, r.URL.Query())
	if err != nil {
		return err
	}
	return h.render(w, r, "delete", http.StatusOK, page{Title: "Delete " + repo + ":" + tag, Viewer: v,
		Data: map[string]any{"Repo": repo, "Tag": tag, "Manifest": manifest}})
}

// deleteTag deletes a tag as DELETE /v2/<name>/manifests/<tag> does:
// the same rules (delete access, immutable tags kept unless an admin
// deletes), the same event and audit record.
func (h *Handler) deleteTag(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := h.checkChange(r, v); err != nil {
		return err
	}
	repo, tag, manifest, err := h.deleteTarget(r, v, r.PostForm)
	if err != nil {
		return err
	}
	if err := h.opts.Registry.DeleteManifest(h.writeContext(r, v), repo, tag); err != nil {
		e := errcode.As(err)
		switch {
		case e.Status == http.StatusNotFound:
			return errorf(http.StatusNotFound, "No tag "+tag+" in "+repo+".")
		case e.Status/100 == 4:
			return errorf(e.Status, "The registry refused: "+e.Message)
		}
		return err
	}
	notice := "deleted"
	if manifest {
		notice = "deleted-manifest"
	}
	http.Redirect(w, r, "/repo?"+url.Values{"name": {repo}, "notice": {notice}}.Encode(), http.StatusSeeOther)
	return nil
}

// checkChange checks a form that changes something: from this console's
// origin, with the session's token (without authentication there is no
// session, and the origin check alone stands).
func (h *Handler) checkChange(r *http.Request, v *viewer) error {
	if !v.AuthOff() {
		return checkForm(r, v.CSRF())
	}
	if err := parseForm(r); err != nil {
		return err
	}
	if !sameOrigin(r) {
		return errForeignForm
	}
	return nil
}

// writeContext is the context of a change made from the console: who and
// from where (for events and the audit log), and admin rights.
func (h *Handler) writeContext(r *http.Request, v *viewer) context.Context {
	ctx := events.WithOrigin(r.Context(), events.Origin{Actor: v.Name(), Request: events.Request{
		Addr: h.opts.ClientIP(r), Host: r.Host, Method: r.Method, UserAgent: r.UserAgent()}})
	if v.Admin() {
		ctx = registry.AsAdmin(ctx)
	}
	return ctx
}
