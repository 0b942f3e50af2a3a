package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// berthCLI runs the berth binary with a private config directory.
type berthCLI struct {
	t      *testing.T
	config string
	env    []string
}

func (c *berthCLI) run(stdin string, args ...string) (string, error) {
	c.t.Helper()
	cmd := exec.Command(berthBin, args...)
	cmd.Env = append(append(os.Environ(), "BERTH_CONFIG_DIR="+c.config), c.env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	c.t.Logf("$ berth %s\n%s", strings.Join(args, " "), out)
	return string(out), err
}

func (c *berthCLI) must(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.run(stdin, args...)
	if err != nil {
		c.t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// grants asks the token endpoint what user may do to repo.
func grants(t *testing.T, s *server, user, pass, repo string) string {
	t.Helper()
	q := url.Values{"service": {"berth"}, "scope": {"repository:" + repo + ":pull,push,delete"}}
	req, _ := http.NewRequest("GET", s.URL+"/token?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Sprintf("status %d", res.StatusCode)
	}
	var tr struct{ Token string }
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tr.Token, ".")[1])
	var claims struct {
		Access []struct{ Actions []string }
	}
	_ = json.Unmarshal(payload, &claims)
	if len(claims.Access) == 0 {
		return ""
	}
	return strings.Join(claims.Access[0].Actions, ",")
}

// TestOperatorCommands runs the commands docs/auth.md gives a new operator
// and checks that each had its effect on the server.
func TestOperatorCommands(t *testing.T) {
	b := startAuthBerth(t)
	s, adminPass := b.server, b.AdminPassword
	cli := &berthCLI{t: t, config: t.TempDir()}

	// berth login
	if out, err := cli.run("wrong-password\n", "login", s.URL, "--username", "admin", "--password-stdin"); err == nil || !strings.Contains(out, "401") && !strings.Contains(strings.ToLower(out), "invalid") {
		t.Fatalf("login with a wrong password: err %v, output %q", err, out)
	}
	cli.must(adminPass+"\n", "login", s.URL, "--username", "admin", "--password-stdin")
	fi, err := os.Stat(filepath.Join(cli.config, "config.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CLI config file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// berth user add / list
	out := cli.must("", "user", "add", "alice", "-o", "json")
	var created struct{ Name, Password string }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &created); err != nil || created.Password == "" {
		t.Fatalf("user add output %q", out)
	}
	if !strings.Contains(cli.must("", "user", "list"), "alice") {
		t.Fatal("user list does not show alice")
	}

	// berth namespace create / add-member / members / set-public
	cli.must("", "namespace", "create", "team")
	if got := grants(t, s, "alice", created.Password, "team/app"); got != "" {
		t.Fatalf("alice before membership: %q", got)
	}
	cli.must("", "namespace", "add-member", "team", "alice", "--role", "writer")
	if got := grants(t, s, "alice", created.Password, "team/app"); got != "pull,push" {
		t.Fatalf("alice as writer: %q, want pull,push", got)
	}
	if out := cli.must("", "namespace", "members", "team"); !strings.Contains(out, "alice") || !strings.Contains(out, "writer") {
		t.Fatalf("namespace members: %q", out)
	}
	cli.must("", "namespace", "set-public", "team", "true")
	if got := grants(t, s, "", "", "team/app"); got != "pull" {
		t.Fatalf("anonymous on a public namespace: %q, want pull", got)
	}
	cli.must("", "namespace", "set-public", "team", "false")
	if got := grants(t, s, "", "", "team/app"); got != "" {
		t.Fatalf("anonymous on a private namespace: %q, want nothing", got)
	}

	// berth robot create / list / revoke
	out = cli.must("", "robot", "create", "team", "k8s", "--scope", "team/*", "--actions", "pull", "--expires", "90d", "-o", "json")
	var robot struct{ Name, Secret string }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &robot); err != nil || robot.Name != "team+k8s" || robot.Secret == "" {
		t.Fatalf("robot create output %q", out)
	}
	if got := grants(t, s, robot.Name, robot.Secret, "team/app"); got != "pull" {
		t.Fatalf("robot grants %q, want pull", got)
	}
	if !strings.Contains(cli.must("", "robot", "list", "team"), "team+k8s") {
		t.Fatal("robot list does not show team+k8s")
	}
	cli.must("", "robot", "revoke", "team", "team+k8s")
	if got := grants(t, s, robot.Name, robot.Secret, "team/app"); got != "status 401" {
		t.Fatalf("revoked robot: %q", got)
	}

	// berth user passwd / delete
	cli.must("new-alice-pass\n", "user", "passwd", "alice", "--password-stdin")
	if got := grants(t, s, "alice", "new-alice-pass", "team/app"); got != "pull,push" {
		t.Fatalf("alice after passwd: %q", got)
	}

	// berth keys rotate: the JWKS then holds two keys.
	cli.must("", "keys", "rotate")
	res, err := http.Get(s.URL + "/token/jwks")
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct{ Keys []struct{ Kid string } }
	_ = json.NewDecoder(res.Body).Decode(&jwks)
	res.Body.Close()
	if len(jwks.Keys) != 2 {
		t.Fatalf("JWKS after rotation has %d keys, want 2", len(jwks.Keys))
	}

	// A non-admin cannot administer users.
	alice := &berthCLI{t: t, config: t.TempDir(), env: []string{"BERTH_REGISTRY=" + s.URL, "BERTH_USERNAME=alice", "BERTH_PASSWORD=new-alice-pass"}}
	if out, err := alice.run("", "user", "add", "mallory"); err == nil || !strings.Contains(out, "403") {
		t.Fatalf("alice adding a user: err %v, output %q", err, out)
	}
	cli.must("", "user", "delete", "alice")
	if got := grants(t, s, "alice", "new-alice-pass", "team/app"); got != "status 401" {
		t.Fatalf("deleted user: %q", got)
	}
	// The audit log recorded the logins, the failure and every change, and
	// no password or secret.
	audit, err := os.ReadFile(filepath.Join(s.DataDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"msg":"login failed"`, `"msg":"user created"`, `"msg":"member set"`, `"msg":"robot created"`, `"msg":"robot revoked"`, `"msg":"password changed"`, `"msg":"signing key rotated"`, `"msg":"user deleted"`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	for _, secret := range []string{adminPass, created.Password, robot.Secret, "new-alice-pass"} {
		if strings.Contains(string(audit), secret) {
			t.Errorf("audit log contains a secret")
		}
	}
	if logText, _ := os.ReadFile(s.LogPath); strings.Contains(string(logText), robot.Secret) || strings.Contains(string(logText), "new-alice-pass") {
		t.Errorf("server log contains a secret")
	}

	cli.must("", "logout", s.URL)
	if out, err := cli.run("", "user", "list"); err == nil || !strings.Contains(out, "berth login") {
		t.Fatalf("after logout: err %v, output %q", err, out)
	}
}
