package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/metadata"
)

// Administration pages: shown to administrators only, with the admin
// API's rules (the auth service checks them again on every change).

// requireAdmin refuses whoever is not an administrator: 403, or the
// sign-in page for an anonymous visitor.
func (h *Handler) requireAdmin(w http.ResponseWriter, r *http.Request, v *viewer) (bool, error) {
	if ok, err := h.needSignIn(w, r, v); !ok {
		return false, err
	}
	if !v.Admin() {
		return false, errorf(http.StatusForbidden, "Administration is for administrators.")
	}
	return true, nil
}

// usersPage is the users page's data.
type usersPage struct {
	Users   []metadata.User
	Message string
	// Generated is a password berth generated for a new user (shown once).
	Generated, For string
}

// users lists the users, with a form to add one and buttons to delete.
func (h *Handler) users(w http.ResponseWriter, r *http.Request, v *viewer, msg string, status int) error {
	if ok, err := h.requireAdmin(w, r, v); !ok {
		return err
	}
	us, err := h.opts.Accounts.ListUsers(r.Context(), v.p)
	if err != nil {
		return err
	}
	return h.render(w, r, "users", status, page{Title: "Users", Viewer: v, Data: usersPage{Users: us, Message: msg}})
}

// changeUsers adds or deletes a user (POST with op=create or op=delete).
func (h *Handler) changeUsers(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := checkForm(r, v.CSRF()); err != nil {
		return err
	}
	if ok, err := h.requireAdmin(w, r, v); !ok {
		return err
	}
	name := strings.TrimSpace(r.PostForm.Get("user"))
	var err error
	var generated string
	switch r.PostForm.Get("op") {
	case "create":
		generated, err = h.opts.Accounts.CreateUser(r.Context(), v.p, name, r.PostForm.Get("password"), r.PostForm.Get("admin") == "on")
	case "delete":
		err = h.opts.Accounts.DeleteUser(r.Context(), v.p, name)
	default:
		return errorf(http.StatusBadRequest, "Unknown operation.")
	}
	if err != nil {
		return accountError(err, func(msg string) error { return h.users(w, r, v, msg, http.StatusBadRequest) })
	}
	if generated != "" {
		us, err := h.opts.Accounts.ListUsers(r.Context(), v.p)
		if err != nil {
			return err
		}
		return h.render(w, r, "users", http.StatusCreated, page{Title: "Users", Viewer: v,
			Data: usersPage{Users: us, Generated: generated, For: name, Message: "User " + name + " made."}})
	}
	http.Redirect(w, r, "/admin/users", http.StatusSeeOther)
	return nil
}

// auditPage is the audit log page's data.
type auditPage struct {
	Actor, Namespace, Action, Since, Until string
	Entries                                []metadata.AuditEntry
	// Next is the URL of the next (older) page, "" on the last.
	Next string
}

// auditLog lists audit entries, newest first, 100 a page, filtered by
// actor, namespace, action and time.
func (h *Handler) auditLog(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if ok, err := h.requireAdmin(w, r, v); !ok {
		return err
	}
	q := r.URL.Query()
	p := auditPage{Actor: q.Get("actor"), Namespace: q.Get("namespace"), Action: q.Get("action"), Since: q.Get("since"), Until: q.Get("until")}
	f := metadata.AuditFilter{Actor: p.Actor, Namespace: p.Namespace, Action: p.Action, Limit: metadata.DefaultAuditLimit}
	now := h.now()
	var err error
	if p.Since != "" {
		if f.Since, err = audit.ParseTime(p.Since, now); err != nil {
			return errorf(http.StatusBadRequest, "Since: "+err.Error())
		}
	}
	if p.Until != "" {
		if f.Until, err = audit.ParseTime(p.Until, now); err != nil {
			return errorf(http.StatusBadRequest, "Until: "+err.Error())
		}
	}
	if b := q.Get("before"); b != "" {
		if f.Before, err = strconv.ParseInt(b, 10, 64); err != nil || f.Before <= 0 {
			return errorf(http.StatusBadRequest, "Not a page cursor.")
		}
	}
	if p.Entries, err = h.opts.Store.ListAudit(r.Context(), f); err != nil {
		return err
	}
	if len(p.Entries) == f.Limit {
		next := url.Values{}
		for k, val := range map[string]string{"actor": p.Actor, "namespace": p.Namespace, "action": p.Action, "since": p.Since, "until": p.Until} {
			if val != "" {
				next.Set(k, val)
			}
		}
		next.Set("before", strconv.FormatInt(p.Entries[len(p.Entries)-1].ID, 10))
		p.Next = "/admin/audit?" + next.Encode()
	}
	return h.render(w, r, "audit", http.StatusOK, page{Title: "Audit log", Viewer: v, Data: p})
}
