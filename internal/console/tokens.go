package console

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
)

// Personal access tokens in the browser: what a person who signs in
// through single sign-on uses as the password of docker login and CI.

// tokenExpiries are the lifetimes the form offers (the first is the
// default).
var tokenExpiries = []struct{ Value, Label string }{
	{"30d", "30 days"}, {"7d", "7 days"}, {"90d", "90 days"}, {"1d", "1 day"}, {"365d", "1 year"},
}

// tokensPage is the page's data.
type tokensPage struct {
	Tokens   []metadata.PersonalToken
	Expiries []struct{ Value, Label string }
	// The form, as sent again after a refusal.
	Name, Scopes, Expires string
	Actions               map[string]bool
	Message               string
	// Made is the token just made, with its secret (shown once).
	Made   *metadata.PersonalToken
	Secret string
	Now    time.Time
}

// tokenActor is the viewer as the author of token changes: a console
// session stands for the person's sign-in (auth.ViaSession), as a CLI
// session does.
func tokenActor(v *viewer) (*auth.Principal, error) {
	if !v.SignedIn() {
		return nil, errorf(http.StatusForbidden, "Sign in to see and make your personal access tokens.")
	}
	actor := *v.p
	actor.Via = auth.ViaSession
	return &actor, nil
}

// tokens lists the viewer's personal access tokens, with the form that
// makes one.
func (h *Handler) tokens(w http.ResponseWriter, r *http.Request, v *viewer) error {
	return h.renderTokens(w, r, v, tokensPage{Expires: tokenExpiries[0].Value, Actions: map[string]bool{auth.Pull: true, auth.Push: true}}, http.StatusOK)
}

func (h *Handler) renderTokens(w http.ResponseWriter, r *http.Request, v *viewer, p tokensPage, status int) error {
	if v.AuthOff() {
		return errorf(http.StatusNotFound, "This registry runs without authentication: there are no tokens to make.")
	}
	actor, err := tokenActor(v)
	if err != nil {
		return err
	}
	if p.Tokens, err = h.opts.Accounts.PersonalTokens(r.Context(), actor); err != nil {
		return err
	}
	p.Expiries, p.Now = tokenExpiries, h.now()
	return h.render(w, r, "tokens", status, page{Title: "Personal access tokens", Viewer: v, Data: p})
}

// changeTokens makes or revokes one of the viewer's tokens.
func (h *Handler) changeTokens(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if v.AuthOff() {
		return errorf(http.StatusNotFound, "This registry runs without authentication: there are no tokens to make.")
	}
	if err := checkForm(r, v.CSRF()); err != nil {
		return err
	}
	actor, err := tokenActor(v)
	if err != nil {
		return err
	}
	f := r.PostForm
	if id := f.Get("revoke"); id != "" {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "No such token.")
		}
		err = h.opts.Accounts.RevokePersonalToken(r.Context(), actor, n)
		if errors.Is(err, auth.ErrNotFound) {
			return errorf(http.StatusNotFound, "No such token of yours.")
		}
		if err != nil {
			return err
		}
		// The revocation raised the person's epoch (the access tokens the
		// token was traded for end), which would end this session too: it
		// carries on under a new id, with its sign-in time, only when this
		// was the one revocation since the session began (anything else,
		// such as an admin's, ends it as it must).
		if h.opts.Accounts.Epoch(r.Context(), actor.Subject()) == v.session.Epoch+1 {
			if err := h.opts.Store.DeleteConsoleSession(r.Context(), v.idHash); err != nil {
				return err
			}
			p := *v.p
			p.Epoch = v.session.Epoch + 1
			return h.startSession(w, r, &p, "/tokens", v.session.Created)
		}
		http.Redirect(w, r, "/tokens", http.StatusSeeOther)
		return nil
	}
	p := tokensPage{Name: strings.TrimSpace(f.Get("name")), Scopes: strings.TrimSpace(f.Get("scopes")), Expires: f.Get("expires"), Actions: map[string]bool{}}
	var actions []string
	for _, a := range []string{auth.Pull, auth.Push, auth.Delete} {
		if f.Get("action-"+a) != "" {
			p.Actions[a] = true
			actions = append(actions, a)
		}
	}
	again := func(msg string) error {
		p.Message = msg
		return h.renderTokens(w, r, v, p, http.StatusBadRequest)
	}
	if len(actions) == 0 {
		return again("Choose at least one action.")
	}
	lifetime, err := auth.ParseExpiry(p.Expires)
	if err != nil {
		return again("The expiry: " + err.Error())
	}
	t, secret, err := h.opts.Accounts.CreatePersonalToken(r.Context(), actor, p.Name, strings.Fields(p.Scopes), actions, lifetime)
	switch {
	case errors.Is(err, auth.ErrExists):
		return again("You have a token named " + p.Name + " already; choose another name.")
	case errors.Is(err, auth.ErrInvalid):
		return again(err.Error())
	case err != nil:
		return err
	}
	return h.renderTokens(w, r, v, tokensPage{Made: t, Secret: secret, Expires: tokenExpiries[0].Value,
		Actions: map[string]bool{auth.Pull: true, auth.Push: true}}, http.StatusCreated)
}
