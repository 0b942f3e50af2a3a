package e2e

import (
	"bytes"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

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
	for _, u := range []string{"alice", "dave", "eve", "owner1"} {
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
	ctxDir := busyboxContext(t)
	writeFile(t, filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY busybox /bin/busybox\n"))
	ref, other := d.ref("team/app:v1"), d.ref("other/app:v1")
	d.created = append(d.created, ref, other)
	d.run("build", "-q", "-t", ref, ctxDir)
	d.run("tag", ref, other)
	d.push(ref)
	mustFailWith(t, "docker push to other/ as alice", d.exec("push", other), "denied|unauthorized|insufficient")
	users := mustSucceed(t, "berth user list", berthKube(t, b.adminEnv(), "", "user", "list"))
	if !regexp.MustCompile(`(?m)^alice\s+false\s+ldap\s+false\s`).MatchString(users) {
		t.Errorf("berth user list does not show alice as an enabled ldap user made on first sign-in:\n%s", users)
	}
	if got := strings.Join(b.userGroups(t, "alice"), ","); got != "team-dev" {
		t.Errorf("alice's groups in berth: %q, want team-dev", got)
	}

	// Leaving the group in the directory: the next token request (docker
	// asks one per push) reads the groups again.
	dir.RemoveMember(t, "team-dev", "alice")
	d.run("tag", ref, d.ref("team/app:v2"))
	d.created = append(d.created, d.ref("team/app:v2"))
	mustFailWith(t, "docker push to team/ after leaving team-dev", d.exec("push", d.ref("team/app:v2")), "denied|unauthorized|insufficient")

	// A person in no mapped group signs in and gets nothing but its own
	// namespace; a directory-disabled account does not sign in.
	if tok := b.token(t, "dave", passwords["dave"], "repository:team/app:pull"); len(tokenAccess(t, tok.Token)) != 0 {
		t.Errorf("dave (no group) was granted %v on team/app", tokenAccess(t, tok.Token))
	}
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("carol", passwords["carol"])); r.Status != http.StatusUnauthorized {
		t.Errorf("carol (disabled in the directory) signing in: %s, want 401", r)
	}
	// An admin disables dave in berth: refused although the password is right.
	mustSucceed(t, "berth user disable dave", berthKube(t, b.adminEnv(), "", "user", "disable", "dave"))
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("dave", passwords["dave"])); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "disabled") {
		t.Errorf("dave (disabled by an admin) signing in: %s, want 401 saying disabled", r)
	}
	// Local sign-in is for admins only: a local user is refused.
	mustSucceed(t, "berth user add lu", berthKube(t, b.adminEnv(), "lu-pw-123456", "user", "add", "lu", "--password-stdin"))
	if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("lu", "lu-pw-123456")); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "local sign-in is off") {
		t.Errorf("local user lu signing in with local_login=admins: %s, want 401 saying local sign-in is off", r)
	}

	// Wrong directory passwords are refused, then rate limited (429) even
	// with the right one.
	var last authResult
	for i := 0; i < 8; i++ {
		last = authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("eve", "wrong-"+randomHex(t, 4)))
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
	for user, pw := range passwords {
		for _, root := range []string{p.DataDir, p.LogPath} {
			_ = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
				if err != nil || e.IsDir() {
					return nil
				}
				if data, err := os.ReadFile(path); err == nil && bytes.Contains(data, []byte(pw)) {
					t.Errorf("%s's directory password is in %s", user, path)
				}
				return nil
			})
		}
	}
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
