package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
)

// Namespaces, their members, robots and quota: administrators see all,
// other signed-in users the namespaces they belong to; what each may
// change is the auth service's rule (owners manage members and robots,
// administrators everything), checked on every change.

// needSignIn sends an anonymous visitor to the sign-in page (false, nil:
// the answer is written), and refuses all without authentication.
func (h *Handler) needSignIn(w http.ResponseWriter, r *http.Request, v *viewer) (bool, error) {
	if v.AuthOff() {
		return false, errorf(http.StatusNotFound, "This registry runs without authentication: it has no accounts, namespaces or policies to manage.")
	}
	if !v.SignedIn() {
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return false, nil
	}
	return true, nil
}

// accountError maps the auth service's refusals to pages: 403, 404, or
// (for input it rejects) the form again with the message.
func accountError(err error, again func(string) error) error {
	switch {
	case errors.Is(err, auth.ErrForbidden):
		return errorf(http.StatusForbidden, "Not allowed: "+err.Error())
	case errors.Is(err, auth.ErrNotFound), errors.Is(err, auth.ErrExists), errors.Is(err, auth.ErrInvalid):
		return again(err.Error())
	}
	return err
}

// namespacesPage is the namespace list's data.
type namespacesPage struct {
	Namespaces []auth.NamespaceView
	Message    string
}

// namespaces lists the namespaces the viewer may see.
func (h *Handler) namespaces(w http.ResponseWriter, r *http.Request, v *viewer, msg string, status int) error {
	if ok, err := h.needSignIn(w, r, v); !ok {
		return err
	}
	ns, err := h.opts.Accounts.ListNamespaces(r.Context(), v.p)
	if err != nil {
		return err
	}
	return h.render(w, r, "namespaces", status, page{Title: "Namespaces", Viewer: v, Data: namespacesPage{Namespaces: ns, Message: msg}})
}

// changeNamespaces creates a namespace (administrators).
func (h *Handler) changeNamespaces(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := checkForm(r, v.CSRF()); err != nil {
		return err
	}
	if ok, err := h.needSignIn(w, r, v); !ok {
		return err
	}
	name := strings.TrimSpace(r.PostForm.Get("namespace"))
	if r.PostForm.Get("op") != "create" {
		return errorf(http.StatusBadRequest, "Unknown operation.")
	}
	if _, err := h.opts.Accounts.CreateNamespace(r.Context(), v.p, name, r.PostForm.Get("public") == "on"); err != nil {
		return accountError(err, func(msg string) error { return h.namespaces(w, r, v, msg, http.StatusBadRequest) })
	}
	http.Redirect(w, r, "/namespace?"+url.Values{"name": {name}}.Encode(), http.StatusSeeOther)
	return nil
}

// namespacePage is one namespace's page.
type namespacePage struct {
	Name    string
	Public  bool
	Members []metadata.Member
	Robots  []metadata.Robot
	// Used and Quota are bytes (Quota 0: none).
	Used, Quota int64
	Roles       []string
	Message     string
	// NewRobot and NewSecret are a robot just made and its secret
	// (shown once).
	NewRobot, NewSecret string
	Expiries            []struct{ Value, Label string }
}

// namespace shows a namespace's visibility, members, robots and quota.
func (h *Handler) namespace(w http.ResponseWriter, r *http.Request, v *viewer, name, msg string, status int) error {
	if ok, err := h.needSignIn(w, r, v); !ok {
		return err
	}
	p, err := h.namespaceData(r, v, name, msg)
	if err != nil {
		return err
	}
	return h.render(w, r, "namespace", status, page{Title: "Namespace " + name, Viewer: v, Data: p})
}

// namespaceData reads what the namespace page shows (what the viewer may
// see of it: members and robots to owners and administrators).
func (h *Handler) namespaceData(r *http.Request, v *viewer, name, msg string) (namespacePage, error) {
	views, err := h.opts.Accounts.ListNamespaces(r.Context(), v.p)
	if err != nil {
		return namespacePage{}, err
	}
	p := namespacePage{Name: name, Message: msg, Roles: []string{string(auth.Reader), string(auth.Writer), string(auth.Maintainer), string(auth.Owner)},
		Expiries: expiries}
	found := false
	for _, ns := range views {
		if ns.Name == name {
			found, p.Public = true, ns.Public
		}
	}
	if !found {
		return p, errorf(http.StatusNotFound, "No namespace "+name+" that you belong to.")
	}
	again := func(m string) error { return errorf(http.StatusBadRequest, m) }
	if p.Members, err = h.opts.Accounts.Members(r.Context(), v.p, name); err != nil && !errors.Is(err, auth.ErrForbidden) {
		return p, accountError(err, again)
	}
	if p.Robots, err = h.opts.Accounts.ListRobots(r.Context(), v.p, name); err != nil && !errors.Is(err, auth.ErrForbidden) {
		return p, accountError(err, again)
	}
	if p.Used, p.Quota, err = h.opts.Accounts.Usage(r.Context(), v.p, name); err != nil && !errors.Is(err, auth.ErrForbidden) {
		return p, accountError(err, again)
	}
	return p, nil
}

// changeNamespace sets visibility, a member's role, removes a member,
// revokes a robot or sets the quota.
func (h *Handler) changeNamespace(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := checkForm(r, v.CSRF()); err != nil {
		return err
	}
	if ok, err := h.needSignIn(w, r, v); !ok {
		return err
	}
	f := r.PostForm
	ns := f.Get("namespace")
	ctx, actor, acc := r.Context(), v.p, h.opts.Accounts
	var err error
	switch f.Get("op") {
	case "visibility":
		_, err = acc.SetPublic(ctx, actor, ns, f.Get("public") == "on")
	case "member-set":
		err = acc.SetMember(ctx, actor, ns, strings.TrimSpace(f.Get("user")), auth.Role(f.Get("role")))
	case "member-remove":
		err = acc.RemoveMember(ctx, actor, ns, f.Get("user"))
	case "robot-revoke":
		err = acc.RevokeRobot(ctx, actor, ns, f.Get("robot"))
	case "robot-create":
		var lifetime time.Duration
		if e := f.Get("expires"); e != "never" {
			if lifetime, err = auth.ParseExpiry(e); err != nil {
				break
			}
		}
		var scopes []string
		for _, sc := range strings.Split(f.Get("scopes"), ",") {
			if sc = strings.TrimSpace(sc); sc != "" {
				scopes = append(scopes, sc)
			}
		}
		robot, secret, cerr := acc.CreateRobot(ctx, actor, ns, strings.TrimSpace(f.Get("robot")), scopes, f["actions"], lifetime)
		if cerr == nil {
			p, err := h.namespaceData(r, v, ns, "")
			if err != nil {
				return err
			}
			p.NewRobot, p.NewSecret = robot.Name, secret
			return h.render(w, r, "namespace", http.StatusCreated, page{Title: "Namespace " + ns, Viewer: v, Data: p})
		}
		err = cerr
	case "quota":
		var bytes int64
		if q := strings.TrimSpace(f.Get("quota")); q != "" && q != "0" {
			mib, perr := strconv.ParseInt(q, 10, 64)
			if perr != nil || mib < 0 || mib > 1<<40 {
				return h.namespace(w, r, v, ns, "The quota is a whole number of MiB (0 or empty: none).", http.StatusBadRequest)
			}
			bytes = mib << 20
		}
		err = acc.SetQuota(ctx, actor, ns, bytes)
	default:
		return errorf(http.StatusBadRequest, "Unknown operation.")
	}
	if err != nil {
		return accountError(err, func(msg string) error { return h.namespace(w, r, v, ns, msg, http.StatusBadRequest) })
	}
	http.Redirect(w, r, "/namespace?"+url.Values{"name": {ns}}.Encode(), http.StatusSeeOther)
	return nil
}
