package e2e

import (
	"bytes"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

// TestLDAPSignIn (issue 16, items 2 and 4): berth signs people in against
// a real OpenLDAP (slapd) with their directory passwords, and their
// directory groups map to roles. Docker Engine logs in as a directory
// user and pushes where its group's role allows, not elsewhere; leaving
// the group in the directory takes the right away at the next token
// request. A wrong password is refused and then rate limited, an account
// the directory disables (left out by the user filter) and one an admin
// disables are refused, local sign-in is limited to admins, berth keeps
// no directory password anywhere in its data directory or log, and an
// SSO-only person makes a robot pull Secret with `berth secret create
// --robot` as before.
func TestLDAPSignIn(t *testing.T) {
	skipIfShort(t)
	docker := needDocker(t)
	needStaticBusybox(t)
	dir := testserver.LDAP(t)
	passwords := map[string]string{}
	for _, u := range []string{"alice", "dave", "eve", "owner1", "clash"} {
		passwords[u] = "pw-" + u + "-" + randomHex(t, 8)
		dir.AddUser(t, u, passwords[u])
	}
	passwords["carol"] = "pw-carol-" + randomHex(t, 8)
	dir.AddUser(t, "carol", passwords["carol"], "employeeType: disabled")
	dir.AddGroup(t, "team-dev", "alice", "carol")
	dir.AddGroup(t, "team-owners", "owner1")

	adminPass := "admin-" + randomHex(t, 12)
	p := start(t, launch{
		Args: []string{"--ldap-url", dir.URL, "--ldap-start-tls=true", "--ldap-ca-cert", dir.CACertFile,
			"--ldap-bind-dn", dir.AdminDN, "--ldap-user-base", "ou=people," + dir.BaseDN,
			"--ldap-user-filter", "(&(uid=%s)(!(employeeType=disabled)))",
			"--ldap-group-base", "ou=groups," + dir.BaseDN, "--local-login", "admins"},
		Env: []string{"BERTH_ADMIN_PASSWORD=" + adminPass, "BERTH_LDAP_BIND_PASSWORD=" + dir.AdminPassword},
	})
	b := &authBerth{proc: p, AdminPassword: adminPass}
	for _, ns := range []string{"team", "other"} {
		createNamespace(t, b, ns)
	}
	mustSucceed(t, "berth group-map add team-dev", berthKube(t, b.adminEnv(), "", "group-map", "add", "team-dev", "--namespace", "team", "--role", "writer"))
	mustSucceed(t, "berth group-map add team-owners", berthKube(t, b.adminEnv(), "", "group-map", "add", "team-owners", "--namespace", "team", "--role", "owner"))

	// Docker logs in with the directory password and pushes to team/.
	d := newDockerClient(t, docker, b.Addr)
	d.mustLogin("alice", passwords["alice"])
	ref, other := d.ref("team/app:v1"), d.ref("other/app:v1")
	d.buildBusybox(ref, other)
	d.push(ref)
	mustFailWith(t, "docker push to other/ as alice", d.exec("push", other), "denied|unauthorized|insufficient")
	users := mustSucceed(t, "berth user list", berthKube(t, b.adminEnv(), "", "user", "list"))
	if !regexp.MustCompile(`(?m)^alice\s+false\s+ldap\s+false\s`).MatchString(users) {
		t.Errorf("berth user list does not show alice as an enabled ldap user made on first sign-in:\n%s", users)
	}
	if got := strings.Join(b.userGroups(t, "alice"), ","); got != "team-dev" {
		t.Errorf("alice's groups in berth: %q, want team-dev", got)
	}

	// Personal access tokens: alice makes them with her directory
	// password; Docker logs in with one, within its scope and her rights.
	aliceEnv := []string{"BERTH_REGISTRY=" + b.URL, "BERTH_USERNAME=alice", "BERTH_PASSWORD=" + passwords["alice"]}
	pat := func(args ...string) personalTokenAnswer {
		t.Helper()
		var ans personalTokenAnswer
		out := mustSucceed(t, "berth token create "+strings.Join(args, " "), berthKube(t, aliceEnv, "", append([]string{"token", "create", "-o", "json"}, args...)...))
		mustUnmarshal(t, "berth token create -o json", []byte(out), &ans)
		if !strings.HasPrefix(ans.Secret, "berth_pat_") || ans.ID == 0 {
			t.Fatalf("berth token create answered %s", out)
		}
		passwords["token "+ans.Name] = ans.Secret
		return ans
	}
	ci, wide, otherNS := pat("--name", "ci", "--scope", "team/*", "--actions", "pull,push"), pat("--name", "wide"), pat("--name", "other", "--scope", "other/*")
	short := pat("--name", "short", "--expires", "2s")
	dp := newDockerClient(t, docker, b.Addr)
	dp.mustLogin("alice", ci.Secret)
	patRef := dp.ref("team/app:pat")
	dp.created = append(dp.created, patRef)
	dp.run("tag", ref, patRef)
	dp.push(patRef)
	mustFailWith(t, "docker push to other/ with alice's token", dp.exec("push", other), "denied|unauthorized|insufficient")
	// Never more than the owner may: a token for other/* gets nothing there.
	if got := tokenAccess(t, b.token(t, "alice", otherNS.Secret, "repository:other/app:pull,push").Token); len(got) != 0 {
		t.Errorf("alice's token for other/* was granted %v on other/app, where alice has no role", got)
	}
	// Registry access only: not the admin API, not another token.
	patEnv := []string{"BERTH_REGISTRY=" + b.URL, "BERTH_USERNAME=alice", "BERTH_PASSWORD=" + wide.Secret}
	mustFailWith(t, "berth token create with a token", berthKube(t, patEnv, "", "token", "create", "--name", "x"), "registry access only|403|forbidden")
	// Revoked and expired tokens are refused; the list shows uses.
	mustSucceed(t, "berth token revoke", berthKube(t, aliceEnv, "", "token", "revoke", strconv.FormatInt(wide.ID, 10)))
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("alice", wide.Secret)); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "revoked") {
		t.Errorf("a revoked token: %s, want 401 saying revoked", r)
	}
	time.Sleep(2500 * time.Millisecond)
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("alice", short.Secret)); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "expired") {
		t.Errorf("an expired token: %s, want 401 saying expired", r)
	}
	list := mustSucceed(t, "berth token list", berthKube(t, aliceEnv, "", "token", "list"))
	if !regexp.MustCompile(`(?m)^\d+\s+ci\s+team/\*\s+pull,push\s+\d{4}-\d\d-\d\d \S+\s+\d{4}-\d\d-\d\d `).MatchString(list) {
		t.Errorf("berth token list does not show ci's scope, actions and last use:\n%s", list)
	}

	// Leaving the group in the directory: the next token request (docker
	// asks one per push) reads the groups again, with her password or her
	// personal token alike.
	dir.RemoveMember(t, "team-dev", "alice")
	d.run("tag", ref, d.ref("team/app:v2"))
	d.created = append(d.created, d.ref("team/app:v2"))
	mustFailWith(t, "docker push to team/ after leaving team-dev", d.exec("push", d.ref("team/app:v2")), "denied|unauthorized|insufficient")
	if got := tokenAccess(t, b.token(t, "alice", ci.Secret, "repository:team/app:pull,push").Token); len(got) != 0 {
		t.Errorf("alice's token after she left team-dev was granted %v on team/app", got)
	}

	// A person in no mapped group signs in and gets nothing but its own
	// namespace; a directory-disabled account does not sign in.
	if tok := b.token(t, "dave", passwords["dave"], "repository:team/app:pull"); len(tokenAccess(t, tok.Token)) != 0 {
		t.Errorf("dave (no group) was granted %v on team/app", tokenAccess(t, tok.Token))
	}
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("carol", passwords["carol"])); r.Status != http.StatusUnauthorized {
		t.Errorf("carol (disabled in the directory) signing in: %s, want 401", r)
	}
	// A sign-in that finds new groups (dave joins team-dev) gives a token
	// that keeps working (its epoch is the one the new groups raised), and
	// a capitalised name signs the same account in.
	dir.AddMember(t, "team-dev", "dave")
	joined := b.token(t, "DAVE", passwords["dave"], "repository:team/app:pull")
	if sub, _, _ := tokenClaims(t, joined.Token); sub != "dave" || len(tokenAccess(t, joined.Token)) != 1 {
		t.Errorf("DAVE after joining team-dev: subject %q, grants %v; want dave with pull on team/app", sub, tokenAccess(t, joined.Token))
	}
	time.Sleep(1500 * time.Millisecond) // past the revocation cache's interval
	if r := authDo(t, http.MethodGet, b.URL+"/v2/team/app/tags/list", nil, reqBearer(joined.Token)); r.Status != http.StatusOK {
		t.Errorf("the token of the sign-in that stored dave's new groups: %s, want 200", r)
	}
	// An admin disables dave in berth: refused although the password is right.
	mustSucceed(t, "berth user disable dave", berthKube(t, b.adminEnv(), "", "user", "disable", "dave"))
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("dave", passwords["dave"])); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "disabled") {
		t.Errorf("dave (disabled by an admin) signing in: %s, want 401 saying disabled", r)
	}
	// A person whose name a namespace already has gets no account (nor
	// that namespace).
	createNamespace(t, b, "clash")
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("clash", passwords["clash"])); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "namespace of that name exists") {
		t.Errorf("clash signing in while a namespace has its name: %s, want 401 saying so", r)
	}
	// Local sign-in is for admins only: a local user is refused.
	mustSucceed(t, "berth user add lu", berthKube(t, b.adminEnv(), "lu-pw-123456", "user", "add", "lu", "--password-stdin"))
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("lu", "lu-pw-123456")); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "local sign-in is off") {
		t.Errorf("local user lu signing in with local_login=admins: %s, want 401 saying local sign-in is off", r)
	}

	// Wrong directory passwords are refused, then rate limited (429) even
	// with the right one; every spelling of the name counts for the same
	// account (the directory matches names regardless of case).
	var last authResult
	for i, name := range []string{"eve", "Eve", "eVe", "evE", "EVe", "EvE", "eVE", "EVE"} {
		last = authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic(name, "wrong-"+randomHex(t, 4)))
		if last.Status == http.StatusTooManyRequests {
			break
		}
		if last.Status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d for eve: %s, want 401", i+1, last)
		}
	}
	if last.Status != http.StatusTooManyRequests {
		t.Errorf("8 wrong passwords for eve: the last answered %s, want 429", last)
	}
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("eve", passwords["eve"])); r.Status != http.StatusTooManyRequests {
		t.Errorf("eve's right password while limited: %s, want 429", r)
	}

	// An SSO-only owner makes a robot pull Secret as before; the robot
	// pulls team/app.
	ownerEnv := []string{"BERTH_REGISTRY=" + b.URL, "BERTH_USERNAME=owner1", "BERTH_PASSWORD=" + passwords["owner1"]}
	ps, _ := makePullSecret(t, ownerEnv, "", "regcred", "--robot", "--scope", "team/*", "--registry-host", b.Addr)
	entry := ps.Config.Auths[b.Addr]
	if tok := b.token(t, entry.Username, entry.Password, "repository:team/app:pull"); !strings.Contains(strings.Join(tokenAccess(t, tok.Token), " "), "team/app:pull") {
		t.Errorf("the robot of owner1's Secret was granted %v on team/app, want pull", tokenAccess(t, tok.Token))
	}

	// No directory password (nor the service account's) anywhere in the
	// data directory or the log.
	passwords["the service account"] = dir.AdminPassword
	secrets := map[string]string{}
	for user, pw := range passwords {
		secrets[user+"'s directory password"] = pw
	}
	mustNotHold(t, secrets, p.DataDir, p.LogPath)
}

// mustNotHold fails the test for each secret found in a file under roots
// (berth's data directory, its log): what berth must never store or log.
func mustNotHold(t *testing.T, secrets map[string]string, roots ...string) {
	t.Helper()
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			for what, s := range secrets {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("%s is in %s", what, path)
				}
			}
			return nil
		})
	}
}

// personalTokenAnswer is what berth token create -o json prints.
type personalTokenAnswer struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// userGroups reads a user's directory groups through the admin API.
func (b *authBerth) userGroups(t *testing.T, user string) []string {
	t.Helper()
	var groups []string
	mustUnmarshal(t, "groups of "+user, b.admin(t, http.MethodGet, "/api/v1/users/"+user+"/groups", nil, http.StatusOK), &groups)
	return groups
}

// tokenAccess lists a token's grants as repository:actions strings.
func tokenAccess(t *testing.T, jwt string) []string {
	t.Helper()
	_, _, access := tokenClaims(t, jwt)
	var out []string
	for _, a := range access {
		out = append(out, a.Name+":"+strings.Join(a.Actions, ","))
	}
	return out
}
