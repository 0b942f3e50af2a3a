package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/berth-registry/berth/internal/testserver"
)

// TestOIDCConsoleInBrowser (issue 16, item 1, with a real browser):
// headless Chromium clicks "Sign in with Hydra" on the console's sign-in
// page, goes through Ory Hydra and its login and consent app, and comes
// back signed in as alice; on the Tokens page it makes a personal access
// token, shown once, which gets push on team/app (group team-dev mapped
// to writer) and nothing on other/app; revoking it there refuses it.
func TestOIDCConsoleInBrowser(t *testing.T) {
	skipIfShort(t)
	ctx := newBrowser(t)
	hydra := testserver.Hydra(t)
	secret := "oidc-client-" + randomHex(t, 16)
	adminPass := "admin-" + randomHex(t, 12)
	p := start(t, launch{
		Args: []string{"--oidc-issuer", hydra.Issuer, "--oidc-client-id", "berth", "--oidc-scopes", "openid profile groups offline_access", "--oidc-name", "Hydra"},
		Env:  []string{"BERTH_ADMIN_PASSWORD=" + adminPass, "BERTH_OIDC_CLIENT_SECRET=" + secret},
	})
	b := &authBerth{proc: p, AdminPassword: adminPass}
	hctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := hydra.CreateClient(hctx, "berth", secret, b.URL+"/oidc/callback"); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"team", "other"} {
		createNamespace(t, b, ns)
	}
	mustSucceed(t, "berth group-map add", berthKube(t, b.adminEnv(), "", "group-map", "add", "team-dev", "--namespace", "team", "--role", "writer"))
	hydra.SignInAs("alice", "team-dev")

	do(t, ctx, "sign in through Hydra",
		chromedp.Navigate(b.URL+"/login"),
		chromedp.WaitVisible(chromedp.ID("sso")),
		chromedp.Click(chromedp.ID("sso")),
		chromedp.WaitVisible(chromedp.ID("tokens-link")),
	)
	if who := run1(t, ctx, "header", chromedp.Text(chromedp.CSS(`header nav`))); !strings.Contains(who, "alice") {
		t.Fatalf("after the sign-in the header says %q, want alice", who)
	}
	do(t, ctx, "make a token on the Tokens page",
		chromedp.Click(chromedp.ID("tokens-link")),
		chromedp.WaitVisible(chromedp.ID("make-token")),
		chromedp.SendKeys(chromedp.ID("token-name-input"), "laptop"),
		chromedp.Click(chromedp.ID("make-token")),
		chromedp.WaitVisible(chromedp.ID("token-secret")),
	)
	name := run1(t, ctx, "token name", chromedp.Text(chromedp.ID("token-name")))
	tok := run1(t, ctx, "token secret", chromedp.Text(chromedp.ID("token-secret")))
	if name != "laptop" || !strings.HasPrefix(tok, "berth_pat_") {
		t.Fatalf("the Tokens page showed %q %q, want laptop and a berth_pat_ secret", name, tok)
	}
	if got := strings.Join(tokenAccess(t, b.token(t, "alice", tok, "repository:team/app:pull,push").Token), " "); got != "team/app:pull,push" {
		t.Errorf("alice's console token was granted %q on team/app, want pull,push", got)
	}
	if got := tokenAccess(t, b.token(t, "alice", tok, "repository:other/app:pull,push").Token); len(got) != 0 {
		t.Errorf("alice's console token was granted %v on other/app", got)
	}
	do(t, ctx, "revoke the token",
		chromedp.Navigate(b.URL+"/tokens"),
		chromedp.WaitVisible(chromedp.CSS(`#tokens button`)),
		chromedp.Click(chromedp.CSS(`#tokens button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#tokens button`)),
	)
	if rows := run1(t, ctx, "tokens table", chromedp.Text(chromedp.ID("tokens"))); !strings.Contains(rows, "revoked") {
		t.Errorf("the tokens table after Revoke: %q, want it revoked", rows)
	}
	if r := authDo(t, "GET", b.tokenURL(), nil, reqBasic("alice", tok)); r.Status != 401 {
		t.Errorf("the revoked token: %s, want 401", r)
	}
}
