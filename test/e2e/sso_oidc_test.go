package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

// TestOIDCSignIn (issue 16, items 1, 3 and 4): people sign in through a
// real OpenID Connect provider (Ory Hydra, with a login and consent app
// that gives each person's groups claim). In the console, a browser signs
// in and lands signed in; `berth login --oidc` signs the CLI in over a
// loopback redirect; the person, in group team-dev mapped to writer on
// team, makes a personal access token with the CLI session, and Docker
// Engine logs in with it, pushes to team/app and is refused on other/app.
// Removed from team-dev at the provider, the person loses push at the
// next token request after sso_recheck. Forged, replayed and
// state-swapped callbacks are refused, as are a CLI code with the wrong
// PKCE verifier or traded twice; an SSO-only owner makes a robot pull
// Secret as before, and the kubelet credential provider works with its
// robot; no secret shows in berth's log or data directory.
func TestOIDCSignIn(t *testing.T) {
	skipIfShort(t)
	docker := needDocker(t)
	needStaticBusybox(t)
	hydra := testserver.Hydra(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	clientSecret := "oidc-client-" + randomHex(t, 16)
	adminPass := "admin-" + randomHex(t, 12)
	p := start(t, launch{
		Args: []string{"--oidc-issuer", hydra.Issuer, "--oidc-client-id", "berth",
			"--oidc-scopes", "openid profile groups offline_access", "--oidc-name", "Hydra",
			"--sso-recheck", "2s", "--local-login", "admins"},
		Env: []string{"BERTH_ADMIN_PASSWORD=" + adminPass, "BERTH_OIDC_CLIENT_SECRET=" + clientSecret},
	})
	b := &authBerth{proc: p, AdminPassword: adminPass}
	callback := b.URL + "/oidc/callback"
	if err := hydra.CreateClient(ctx, "berth", clientSecret, callback); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"team", "other"} {
		createNamespace(t, b, ns)
	}
	mustSucceed(t, "berth group-map add team-dev", berthKube(t, b.adminEnv(), "", "group-map", "add", "team-dev", "--namespace", "team", "--role", "writer"))
	mustSucceed(t, "berth group-map add team-owners", berthKube(t, b.adminEnv(), "", "group-map", "add", "team-owners", "--namespace", "team", "--role", "owner"))
	noRedirect := func(jar http.CookieJar) *http.Client {
		return &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	get := func(c *http.Client, u string, header ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}

	// The console: the sign-in page offers the provider; a browser goes
	// through it and comes back signed in.
	hydra.SignInAs("alice", "team-dev")
	jar, _ := cookiejar.New(nil)
	browser := noRedirect(jar)
	if _, page := get(browser, b.URL+"/login"); !strings.Contains(page, "Sign in with Hydra") {
		t.Fatalf("the console's sign-in page offers no single sign-on:\n%s", page)
	}
	back, err := hydra.Browse(ctx, jar, b.URL+"/oidc/login?next=/namespaces", callback)
	if err != nil {
		t.Fatal(err)
	}
	// (Cookies do not tell ports apart: Hydra's on 127.0.0.1 are there too.)
	var flowCookies []*http.Cookie
	for _, c := range jar.Cookies(&url.URL{Scheme: "http", Host: b.Addr, Path: "/oidc/"}) {
		if c.Name == "berth_oidc" {
			flowCookies = append(flowCookies, c)
		}
	}
	resp, body := get(browser, back.String())
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/namespaces" {
		t.Fatalf("the callback answered %d (Location %q), want 303 to /namespaces: %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if _, page := get(browser, b.URL+"/namespaces"); !strings.Contains(page, "alice") || !strings.Contains(page, "Sign out") {
		t.Errorf("after the sign-in the console does not show alice signed in:\n%s", page)
	}
	users := mustSucceed(t, "berth user list", berthKube(t, b.adminEnv(), "", "user", "list"))
	if !regexp.MustCompile(`(?m)^alice\s+false\s+oidc\s+false\s`).MatchString(users) {
		t.Errorf("berth user list does not show alice as an enabled oidc user made on first sign-in:\n%s", users)
	}
	if got := strings.Join(b.userGroups(t, "alice"), ","); got != "team-dev" {
		t.Errorf("alice's groups in berth: %q, want team-dev", got)
	}

	// Replayed callbacks: in the same browser (its sign-in cookie is
	// spent), and with the sign-in cookie saved before (the code is spent
	// at the provider).
	if resp, body := get(browser, back.String()); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the callback replayed in the same browser: %d, want 400: %s", resp.StatusCode, body)
	}
	if len(flowCookies) != 1 {
		t.Fatalf("sign-in cookies before the callback: %v, want one", flowCookies)
	}
	fresh := noRedirect(nil)
	if resp, body := get(fresh, back.String(), "Cookie", flowCookies[0].String()); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Set-Cookie") != "" && strings.Contains(resp.Header.Get("Set-Cookie"), "berth_session") {
		t.Errorf("the callback replayed with the saved sign-in cookie: %d, want 401 and no session: %s", resp.StatusCode, body)
	}
	// Forged callbacks: no sign-in in this browser; another browser's
	// answer (state) with this browser's sign-in (a login CSRF).
	if resp, _ := get(fresh, callback+"?code=forged&state=forged"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a callback without a sign-in in progress: %d, want 400", resp.StatusCode)
	}
	victimJar, _ := cookiejar.New(nil)
	victim := noRedirect(victimJar)
	if resp, _ := get(victim, b.URL+"/oidc/login"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), hydra.Issuer) {
		t.Fatalf("/oidc/login: %d to %q, want 302 to the provider", resp.StatusCode, resp.Header.Get("Location"))
	}
	attackerJar, _ := cookiejar.New(nil)
	attackerBack, err := hydra.Browse(ctx, attackerJar, b.URL+"/oidc/login", callback)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := get(victim, attackerBack.String()); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "state") {
		t.Errorf("another browser's callback in a browser with its own sign-in: %d, want 400 for the state: %s", resp.StatusCode, body)
	}
	for _, c := range victimJar.Cookies(&url.URL{Scheme: "http", Host: b.Addr, Path: "/"}) {
		if c.Name == "berth_session" {
			t.Error("a forged callback started a console session")
		}
	}

	// The CLI signs in over a loopback redirect and makes a personal
	// access token with its session.
	cliDir := t.TempDir()
	cliEnv := []string{"BERTH_CONFIG_DIR=" + cliDir}
	out, code := oidcCLILogin(t, ctx, hydra, b.URL, cliDir)
	if !strings.Contains(out, "as alice") {
		t.Errorf("berth login --oidc printed %q, want it logged in as alice", out)
	}
	var pat personalTokenAnswer
	mustUnmarshal(t, "berth token create", []byte(mustSucceed(t, "berth token create with the OIDC session",
		berthKube(t, cliEnv, "", "token", "create", "--name", "ci", "--scope", "team/*", "-o", "json"))), &pat)
	if !strings.HasPrefix(pat.Secret, "berth_pat_") {
		t.Fatalf("berth token create answered %+v", pat)
	}
	// The one-time code the browser handed the CLI: spent, and useless
	// with another verifier.
	for _, verifier := range []string{randomHex(t, 32), ""} {
		body, _ := json.Marshal(map[string]string{"code": code, "code_verifier": verifier})
		if r := authDo(t, http.MethodPost, b.URL+"/oidc/token", body); r.Status != http.StatusBadRequest {
			t.Errorf("the CLI's code again (verifier %q): %s, want 400", verifier, r)
		}
	}

	// The CLI's token may push to team/ and nothing in other/.
	if got := strings.Join(tokenAccess(t, b.token(t, "alice", pat.Secret, "repository:team/app:pull,push").Token), " "); got != "team/app:pull,push" {
		t.Errorf("alice's CLI token was granted %q on team/app, want pull,push", got)
	}
	if got := tokenAccess(t, b.token(t, "alice", pat.Secret, "repository:other/app:pull,push").Token); len(got) != 0 {
		t.Errorf("alice's CLI token was granted %v on other/app", got)
	}

	// In the console she makes a token too; Docker Engine logs in with
	// it: push to team/, not other/.
	webPAT := consoleToken(t, browser, b.URL, "web")
	d := newDockerClient(t, docker, b.Addr)
	d.mustLogin("alice", webPAT)
	ref, other := d.ref("team/app:v1"), d.ref("other/app:v1")
	d.buildBusybox(ref, other)
	d.push(ref)
	mustFailWith(t, "docker push to other/ with alice's token", d.exec("push", other), "denied|unauthorized|insufficient")
	list := mustSucceed(t, "berth token list", berthKube(t, cliEnv, "", "token", "list"))
	if !regexp.MustCompile(`(?m)^\d+\s+web\s+\(all yours\)\s+pull,push\s+\d{4}-\d\d-\d\d \S+\s+\d{4}-\d\d-\d\d `).MatchString(list) {
		t.Errorf("berth token list does not show the console's token with its last use:\n%s", list)
	}

	// Removed from team-dev at the provider: after sso_recheck the next
	// token request (docker asks one per push) refreshes her provider
	// session, reads her groups and refuses the push.
	hydra.SetGroups("alice")
	time.Sleep(2500 * time.Millisecond)
	v2 := d.ref("team/app:v2")
	d.created = append(d.created, v2)
	d.run("tag", ref, v2)
	mustFailWith(t, "docker push to team/ after leaving team-dev", d.exec("push", v2), "denied|unauthorized|insufficient")
	if got := b.userGroups(t, "alice"); len(got) != 0 {
		t.Errorf("alice's groups in berth after leaving team-dev: %v, want none", got)
	}
	// Back in the group: push works again, with the same token.
	hydra.SetGroups("alice", "team-dev")
	time.Sleep(2500 * time.Millisecond)
	d.push(v2)

	// No password for a provider's person: neither she (with her
	// session) nor an admin can set one, and no password signs her in.
	mustFailWith(t, "berth user passwd alice (her session)", berthKube(t, cliEnv, "alice-pw-123456", "user", "passwd", "alice", "--password-stdin"), "signs in through oidc")
	mustFailWith(t, "berth user passwd alice (admin)", berthKube(t, b.adminEnv(), "alice-pw-123456", "user", "passwd", "alice", "--password-stdin"), "signs in through oidc")
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("alice", "alice-pw-123456")); r.Status != http.StatusUnauthorized {
		t.Errorf("alice with a password: %s, want 401", r)
	}

	// An admin disables alice: her token and session stop working.
	mustSucceed(t, "berth user disable alice", berthKube(t, b.adminEnv(), "", "user", "disable", "alice"))
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("alice", webPAT)); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "disabled") {
		t.Errorf("alice's token after she was disabled: %s, want 401 saying disabled", r)
	}
	mustFailWith(t, "berth token list with a disabled person's session", berthKube(t, cliEnv, "", "token", "list"), "disabled|401|invalid")
	// Enabled again: her personal tokens work again, but the CLI session
	// she had ended for good (a leaked one does not come back).
	mustSucceed(t, "berth user enable alice", berthKube(t, b.adminEnv(), "", "user", "enable", "alice"))
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("alice", webPAT)); r.Status != http.StatusOK {
		t.Errorf("alice's token after she was enabled again: %s, want 200", r)
	}
	mustFailWith(t, "berth token list with the session alice had before she was disabled", berthKube(t, cliEnv, "", "token", "list"), "401|invalid")

	// A local account's name cannot be taken through the provider.
	hydra.SignInAs("admin", "team-owners")
	adminJar, _ := cookiejar.New(nil)
	adminBack, err := hydra.Browse(ctx, adminJar, b.URL+"/oidc/login", callback)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := get(noRedirect(adminJar), adminBack.String()); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "not from oidc") {
		t.Errorf("the provider signing in as the local admin: %d, want 403: %s", resp.StatusCode, body)
	}

	// An SSO-only owner makes a robot pull Secret with her session; the
	// robot pulls team/app.
	hydra.SignInAs("olga", "team-owners")
	olgaDir := t.TempDir()
	oidcCLILogin(t, ctx, hydra, b.URL, olgaDir)
	ps, _ := makePullSecret(t, []string{"BERTH_CONFIG_DIR=" + olgaDir}, "", "regcred", "--robot", "--scope", "team/*", "--registry-host", b.Addr)

	entry := ps.Config.Auths[b.Addr]
	if tok := b.token(t, entry.Username, entry.Password, "repository:team/app:pull"); !strings.Contains(strings.Join(tokenAccess(t, tok.Token), " "), "team/app:pull") {
		t.Errorf("the robot of olga's Secret was granted %v on team/app, want pull", tokenAccess(t, tok.Token))
	}
	// The kubelet credential provider with that robot: a short-lived pull
	// credential that pulls team/app.
	r := runCredentialProvider(t, b, writeRobotFile(t, entry.Username, entry.Password), b.Addr+"/team/app:v1")
	var cp credentialProviderResponse
	mustUnmarshal(t, "credential-provider", []byte(mustSucceed(t, "berth credential-provider", r)), &cp)
	var pulled bool
	for _, a := range cp.Auth {
		tok := b.token(t, a.Username, a.Password, "repository:team/app:pull")
		pulled = a.Username == entry.Username && strings.HasPrefix(a.Password, "berth-pull-") && strings.Join(tokenAccess(t, tok.Token), " ") == "team/app:pull"
	}
	if !pulled || len(cp.Auth) != 1 {
		t.Errorf("the credential provider with olga's robot answered %+v, want one pull credential that pulls team/app", cp.Auth)
	}

	// berth logout ends olga's session on the server: the copy of the
	// config file kept before is worth nothing after.
	saved := filepath.Join(t.TempDir(), "berth")
	if err := os.MkdirAll(saved, 0o700); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(olgaDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(saved, "config.json"), raw)
	mustSucceed(t, "berth logout", berthKube(t, []string{"BERTH_CONFIG_DIR=" + olgaDir}, "", "logout"))
	mustFailWith(t, "berth token list with olga's session after berth logout", berthKube(t, []string{"BERTH_CONFIG_DIR=" + saved}, "", "token", "list"), "401|invalid")

	// The client secret changes (berth restarts with a new client): the
	// sealed provider tokens no longer open, but the accounts stay bound
	// to their subjects: another person whom the provider now calls olga
	// is refused, olga herself signs in.
	p.stop(t)
	secret2 := "oidc-client-" + randomHex(t, 16)
	p2 := start(t, launch{DataDir: p.DataDir,
		Args: []string{"--oidc-issuer", hydra.Issuer, "--oidc-client-id", "berth2", "--oidc-scopes", "openid profile groups offline_access"},
		Env:  []string{"BERTH_ADMIN_PASSWORD=" + adminPass, "BERTH_OIDC_CLIENT_SECRET=" + secret2}})
	if err := hydra.CreateClient(ctx, "berth2", secret2, p2.URL+"/oidc/callback"); err != nil {
		t.Fatal(err)
	}
	signInAt := func() (int, string) {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		back, err := hydra.Browse(ctx, jar, p2.URL+"/oidc/login", p2.URL+"/oidc/callback")
		if err != nil {
			t.Fatal(err)
		}
		resp, body := get(noRedirect(jar), back.String())
		return resp.StatusCode, body
	}
	hydra.SignInAsSubject("mallory", "olga", "team-owners")
	if status, body := signInAt(); status != http.StatusForbidden || !strings.Contains(body, "another person") {
		t.Errorf("another subject named olga after the secret changed: %d, want 403: %s", status, body)
	}
	hydra.SignInAs("olga", "team-owners")
	if status, body := signInAt(); status != http.StatusSeeOther {
		t.Errorf("olga after the secret changed: %d, want 303: %s", status, body)
	}

	// No secret in berth's log or data directory: the client secret, the
	// personal token, the CLI sessions.
	secrets := map[string]string{"the client secret": clientSecret, "the second client secret": secret2, "alice's token": pat.Secret, "alice's console token": webPAT}
	for _, dir := range []string{cliDir, saved} {
		raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`berth-session-[A-Za-z0-9_-]+`).FindAllString(decodedAuths(t, raw), -1) {
			secrets["a session in "+dir] = m
		}
	}
	if len(secrets) != 6 {
		t.Errorf("found %d secrets to look for, want 6 (two sessions)", len(secrets))
	}
	mustNotHold(t, secrets, p.DataDir, p.LogPath, p2.LogPath)
}

// oidcCLILogin runs `berth login URL --oidc --no-browser` with its config
// in configDir, plays the browser on the link it prints (through the
// provider, then to the CLI's loopback port) and returns what the CLI
// printed and the one-time code the browser handed it after the person
// confirmed (the page must show the code the CLI printed).
func oidcCLILogin(t *testing.T, ctx context.Context, hydra *testserver.HydraServer, registry, configDir string) (string, string) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, berthBin, "login", registry, "--oidc", "--no-browser")
	cmd.Env = append(envWithout(os.Environ(), "BERTH_"), "HOME="+home, "BERTH_CONFIG_DIR="+configDir)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	link := ""
	var printed strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, registry+"/oidc/login?") {
			link = l
			break
		}
	}
	if link == "" {
		t.Fatalf("berth login --oidc printed no sign-in link:\n%s", printed.String())
	}
	confirm := ""
	if sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if m := regexp.MustCompile(`code ([A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4})$`).FindStringSubmatch(sc.Text()); m != nil {
			confirm = m[1]
		}
	}
	if confirm == "" {
		t.Fatalf("berth login --oidc printed no confirmation code:\n%s", printed.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	u, _ := url.Parse(link)
	loopback := "http://127.0.0.1:" + u.Query().Get("cli_port") + "/"
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	back, err := hydra.Browse(ctx, jar, link, registry+"/oidc/callback")
	if err != nil {
		t.Fatal(err)
	}
	// The callback does not hand the CLI anything by itself: it asks the
	// person to confirm, showing the code the CLI printed.
	resp, err := browser.Get(back.String())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	grant := regexp.MustCompile(`name="grant" value="([^"]+)"`).FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" || grant == nil || !strings.Contains(string(page), `id="confirm-code">`+confirm+`<`) {
		t.Fatalf("the CLI sign-in's callback: %d (Location %q), want a confirmation page with the code %s:\n%s", resp.StatusCode, resp.Header.Get("Location"), confirm, page)
	}
	resp, err = browser.PostForm(registry+"/oidc/cli", url.Values{"grant": {string(grant[1])}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	again, err := browser.PostForm(registry+"/oidc/cli", url.Values{"grant": {string(grant[1])}})
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode != http.StatusBadRequest {
		t.Errorf("the confirmation posted twice: %s, want 400", again.Status)
	}
	to, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(to.String(), loopback) {
		t.Fatalf("the confirmation: %d to %q, want 303 to %s", resp.StatusCode, resp.Header.Get("Location"), loopback)
	}
	resp, err = http.Get(to.String())
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "Signed in") {
		t.Errorf("the CLI's loopback page: %d %s", resp.StatusCode, page)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("berth login --oidc: %v\n%s", err, printed.String())
	}
	return stdout.String(), to.Query().Get("code")
}

// decodedAuths returns a berth CLI config with its base64 auth values
// decoded (user:secret).
func decodedAuths(t *testing.T, raw []byte) string {
	t.Helper()
	var cfg struct {
		Servers map[string]struct {
			Auth string `json:"auth"`
		} `json:"servers"`
	}
	mustUnmarshal(t, "berth config", raw, &cfg)
	var out strings.Builder
	for _, s := range cfg.Servers {
		b, _ := base64.StdEncoding.DecodeString(s.Auth)
		out.Write(b)
		out.WriteByte('\n')
	}
	return out.String()
}

// consoleToken makes a personal access token named name on the console's
// tokens page in a signed-in browser and returns its secret.
func consoleToken(t *testing.T, browser *http.Client, base, name string) string {
	t.Helper()
	resp, err := browser.Get(base + "/tokens")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("the console's tokens page: %d\n%s", resp.StatusCode, page)
	}
	form := url.Values{"csrf": {string(m[1])}, "name": {name}, "scopes": {""}, "action-pull": {"1"}, "action-push": {"1"}, "expires": {"7d"}}
	req, _ := http.NewRequest(http.MethodPost, base+"/tokens", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err = browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	secret := regexp.MustCompile(`id="token-secret">(berth_pat_[A-Za-z0-9_-]+)<`).FindSubmatch(page)
	if resp.StatusCode != http.StatusCreated || secret == nil {
		t.Fatalf("making a token in the console: %d\n%s", resp.StatusCode, page)
	}
	return string(secret[1])
}
