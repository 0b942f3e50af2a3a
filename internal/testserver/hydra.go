package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hydraBinary is Ory Hydra, the OpenID Connect provider of the single
// sign-on tests, built by scripts/test-deps.sh (cgo, for its SQLite).
const hydraBinary = "hydra"

// HydraServer is a running Ory Hydra on 127.0.0.1 with an in-memory
// database, and the login and consent app it sends browsers to, served by
// this process: every login signs in as the person set with SignInAs, and
// every ID token carries that person's preferred_username and groups
// claims. A token hook puts the groups in again at each refresh, so that
// a test can change a person's groups between refreshes (SetGroups).
type HydraServer struct {
	// Issuer is the public URL, http://127.0.0.1:PORT (the iss of tokens).
	Issuer string
	// AdminURL is the admin API's URL, http://127.0.0.1:PORT.
	AdminURL string

	p   *proc
	app *http.Server

	mu     sync.Mutex
	next   string              // who the next login signs in as (a subject)
	groups map[string][]string // each subject's groups
	names  map[string]string   // each subject's preferred_username
	logins int                 // logins accepted
}

// Hydra starts Hydra with StartHydra in a fresh temporary directory of the
// test and stops it when the test ends; a missing binary skips the test,
// or fails it when CI=true.
func Hydra(t testing.TB) *HydraServer {
	t.Helper()
	h, err := StartHydra(t.TempDir())
	if err != nil {
		need(t, err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Logf("testserver: %v", err)
		}
	})
	return h
}

// StartHydra starts `hydra serve all --dev` on free ports of 127.0.0.1
// (public and admin), with its log in dir/hydra.log, and the login and
// consent app; it waits until the admin API is ready.
func StartHydra(dir string) (*HydraServer, error) {
	bin, err := lookTool(hydraBinary)
	if err != nil {
		return nil, err
	}
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &HydraServer{groups: map[string][]string{}, names: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", h.login)
	mux.HandleFunc("GET /consent", h.consent)
	mux.HandleFunc("POST /hook", h.hook)
	h.app = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go h.app.Serve(appLn)
	app := "http://" + appLn.Addr().String()

	logPath := filepath.Join(dir, "hydra.log")
	for attempt := 0; ; attempt++ {
		public, err := FreePort()
		if err != nil {
			h.app.Close()
			return nil, err
		}
		admin, err := FreePort()
		if err != nil {
			h.app.Close()
			return nil, err
		}
		h.Issuer = "http://127.0.0.1:" + strconv.Itoa(public)
		h.AdminURL = "http://127.0.0.1:" + strconv.Itoa(admin)
		// A configuration file rather than environment variables, whose
		// names cannot tell oauth2.token_hook from oauth2.token.hook.
		cfg := filepath.Join(dir, "hydra.yml")
		yml := fmt.Sprintf(`dsn: memory
secrets:
  system: [%q]
serve:
  public: {host: 127.0.0.1, port: %d}
  admin: {host: 127.0.0.1, port: %d}
urls:
  self: {issuer: %q}
  login: %q
  consent: %q
ttl: {access_token: 1m, id_token: 1m, refresh_token: 1h}
oauth2:
  token_hook: %q
log: {level: warn}
`, randomHex(16), public, admin, h.Issuer, app+"/login", app+"/consent", app+"/hook")
		if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
			h.app.Close()
			return nil, err
		}
		env := environWithout("DSN", "SECRETS_", "SERVE_", "URLS_", "TTL_", "OAUTH2_", "LOG_")
		if h.p, err = startProc(bin, logPath, env, "serve", "all", "--dev", "--sqa-opt-out", "-c", cfg); err != nil {
			h.app.Close()
			return nil, err
		}
		err = waitReady(h.AdminURL+"/health/ready", h.p, 60*time.Second)
		if err == nil {
			return h, nil
		}
		_ = h.p.stop()
		if attempt == 2 {
			h.app.Close()
			return nil, fmt.Errorf("hydra: %v\n--- tail of %s ---\n%s", err, logPath, logTail(logPath))
		}
	}
}

// waitReady polls url until it answers 200, p exits or timeout passes.
func waitReady(u string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited while starting")
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", timeout)
		}
	}
}

// Stop ends Hydra and the app; it may be called more than once.
func (h *HydraServer) Stop() error {
	h.app.Close()
	if err := h.p.stop(); err != nil {
		return fmt.Errorf("hydra: %w", err)
	}
	return nil
}

// SignInAs makes the next logins sign in as name (its subject and its
// preferred_username), with groups.
func (h *HydraServer) SignInAs(name string, groups ...string) {
	h.SignInAsSubject(name, name, groups...)
}

// SignInAsSubject makes the next logins sign in as subject, whose
// preferred_username is name: another person than an earlier subject of
// that name.
func (h *HydraServer) SignInAsSubject(subject, name string, groups ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next = subject
	h.names[subject] = name
	h.groups[subject] = slices.Clone(groups)
}

// SetGroups changes the groups of subject name: the ID tokens of later
// logins and refreshes carry them.
func (h *HydraServer) SetGroups(name string, groups ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.groups[name] = slices.Clone(groups)
}

// Logins returns how many logins the app accepted.
func (h *HydraServer) Logins() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.logins
}

// CreateClient registers an OAuth2 client for the authorization code flow
// (with refresh tokens), confidential when secret is not empty.
func (h *HydraServer) CreateClient(ctx context.Context, id, secret string, redirectURIs ...string) error {
	auth := "client_secret_basic"
	if secret == "" {
		auth = "none"
	}
	body := map[string]any{
		"client_id": id, "redirect_uris": redirectURIs,
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		"scope": "openid offline offline_access profile groups", "token_endpoint_auth_method": auth,
	}
	if secret != "" {
		body["client_secret"] = secret
	}
	_, err := h.admin(ctx, http.MethodPost, "/admin/clients", body, http.StatusCreated)
	return err
}

// admin calls the admin API with a JSON body and wants status.
func (h *HydraServer) admin(ctx context.Context, method, path string, body any, status int) (map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.AdminURL+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("hydra admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		return nil, fmt.Errorf("hydra admin %s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("hydra admin %s %s: %w", method, path, err)
		}
	}
	return out, nil
}

// claims are the ID token claims of name.
func (h *HydraServer) claims(name string) map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	groups := h.groups[name]
	if groups == nil {
		groups = []string{}
	}
	username := h.names[name]
	if username == "" {
		username = name
	}
	return map[string]any{"preferred_username": username, "groups": groups}
}

// login accepts a login request as the person set with SignInAs.
func (h *HydraServer) login(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	subject := h.next
	h.mu.Unlock()
	if subject == "" {
		http.Error(w, "no person to sign in as (SignInAs)", http.StatusForbidden)
		return
	}
	q := "?login_challenge=" + url.QueryEscape(r.URL.Query().Get("login_challenge"))
	ans, err := h.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/login/accept"+q,
		map[string]any{"subject": subject, "remember": false}, http.StatusOK)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	h.mu.Lock()
	h.logins++
	h.mu.Unlock()
	http.Redirect(w, r, fmt.Sprint(ans["redirect_to"]), http.StatusFound)
}

// consent grants the requested scopes, with the person's claims.
func (h *HydraServer) consent(w http.ResponseWriter, r *http.Request) {
	q := "?consent_challenge=" + url.QueryEscape(r.URL.Query().Get("consent_challenge"))
	req, err := h.admin(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent"+q, nil, http.StatusOK)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	subject, _ := req["subject"].(string)
	claims := h.claims(subject)
	ans, err := h.admin(r.Context(), http.MethodPut, "/admin/oauth2/auth/requests/consent/accept"+q, map[string]any{
		"grant_scope": req["requested_scope"], "grant_access_token_audience": req["requested_access_token_audience"],
		"remember": false, "session": map[string]any{"id_token": claims, "access_token": claims},
	}, http.StatusOK)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, fmt.Sprint(ans["redirect_to"]), http.StatusFound)
}

// hook is Hydra's token hook: at each token (refresh included) the
// person's claims as they are now.
func (h *HydraServer) hook(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Session struct {
			IDToken struct {
				Claims struct {
					Subject string `json:"sub"`
				} `json:"id_token_claims"`
			} `json:"id_token"`
		} `json:"session"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Session.IDToken.Claims.Subject == "" {
		w.WriteHeader(http.StatusNoContent) // keep the claims as they are
		return
	}
	claims := h.claims(in.Session.IDToken.Claims.Subject)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"session": map[string]any{"id_token": claims, "access_token": claims}})
}

// Browse plays a browser with jar: it opens start (the authorization URL,
// or a relying party's sign-in link that redirects there), follows the
// redirects through Hydra and the login and consent app, and returns the
// first redirect to a URL that starts with stop (the relying party's
// callback) without following it.
func (h *HydraServer) Browse(ctx context.Context, jar http.CookieJar, start, stop string) (*url.URL, error) {
	var found *url.URL
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if strings.HasPrefix(r.URL.String(), stop) {
			found = r.URL
			return http.ErrUseLastResponse
		}
		if len(via) > 20 {
			return errors.New("more than 20 redirects")
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, start, nil)
	if err != nil {
		return nil, err
	}
	resp, err := browser.Do(req)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if found == nil {
		return nil, fmt.Errorf("the sign-in never reached %s: last answer %d from %s: %s", stop, resp.StatusCode, resp.Request.URL, body)
	}
	return found, nil
}
