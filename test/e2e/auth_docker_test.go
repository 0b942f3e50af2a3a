package e2e

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Output of docker that says a registry refused credentials or access.
const (
	// dockerAuthErr: a pull or push without (valid) credentials.
	dockerAuthErr = "unauthorized|authentication required|denied|docker login"
	// dockerDeniedErr: an authenticated push the account may not do.
	dockerDeniedErr = "denied"
	// dockerLoginErr: docker login with wrong credentials.
	dockerLoginErr = "unauthorized|incorrect username or password|invalid user name or password"
)

// dockerClient runs the docker CLI with its own configuration directory
// (DOCKER_CONFIG), so that logins never touch ~/.docker.
type dockerClient struct {
	t       *testing.T
	bin     string
	cfgDir  string
	host    string   // registry host:port
	created []string // image references to remove at the end
}

func newDockerClient(t *testing.T, docker, host string) *dockerClient {
	t.Helper()
	d := &dockerClient{t: t, bin: docker, cfgDir: t.TempDir(), host: host}
	t.Cleanup(func() {
		if len(d.created) > 0 {
			execIn(t, "", d.env(), d.bin, append([]string{"rmi", "-f"}, d.created...)...)
		}
	})
	return d
}

func (d *dockerClient) env() []string { return []string{"DOCKER_CONFIG=" + d.cfgDir} }

func (d *dockerClient) exec(args ...string) cmdResult {
	d.t.Helper()
	return execIn(d.t, "", d.env(), d.bin, args...)
}

func (d *dockerClient) run(args ...string) string {
	d.t.Helper()
	return mustSucceed(d.t, "docker "+strings.Join(args, " "), d.exec(args...))
}

// ref is the full reference of repo:tag on the registry.
func (d *dockerClient) ref(repoTag string) string { return d.host + "/" + repoTag }

// login runs docker login with the password on stdin.
func (d *dockerClient) login(user, pass string) cmdResult {
	d.t.Helper()
	return execStdin(d.t, d.env(), pass, d.bin, "login", d.host, "-u", user, "--password-stdin")
}

func (d *dockerClient) mustLogin(user, pass string) {
	d.t.Helper()
	out := mustSucceed(d.t, "docker login as "+user, d.login(user, pass))
	if !strings.Contains(out, "Login Succeeded") {
		d.t.Errorf("docker login as %s printed no \"Login Succeeded\":\n%s", user, out)
	}
}

func (d *dockerClient) logout() {
	d.t.Helper()
	d.run("logout", d.host)
}

// buildBusybox builds a FROM scratch image of the static busybox (running
// `busybox sleep 3600`) tagged as each of refs, which cleanup removes.
func (d *dockerClient) buildBusybox(refs ...string) {
	d.t.Helper()
	ctxDir := busyboxContext(d.t)
	writeFile(d.t, filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"sleep\", \"3600\"]\n"))
	d.created = append(d.created, refs...)
	d.run("build", "-q", "-t", refs[0], ctxDir)
	for _, r := range refs[1:] {
		d.run("tag", refs[0], r)
	}
}

// rmi removes local images, ignoring ones that are not there.
func (d *dockerClient) rmi(refs ...string) {
	d.t.Helper()
	for _, r := range refs {
		if d.exec("image", "inspect", r).Err == nil {
			d.run("rmi", "-f", r)
		}
	}
}

// dockerAuthEntry is one entry of config.json's auths.
type dockerAuthEntry struct {
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
}

// authEntry returns the config.json auths entry for the registry.
func (d *dockerClient) authEntry() (dockerAuthEntry, bool) {
	d.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.cfgDir, "config.json"))
	if os.IsNotExist(err) {
		return dockerAuthEntry{}, false
	}
	if err != nil {
		d.t.Fatal(err)
	}
	var cfg struct {
		Auths      map[string]dockerAuthEntry `json:"auths"`
		CredsStore string                     `json:"credsStore"`
	}
	mustUnmarshal(d.t, "docker config.json", data, &cfg)
	if cfg.CredsStore != "" {
		d.t.Fatalf("docker config.json uses the credential store %q; the test expects credentials in the file:\n%s", cfg.CredsStore, data)
	}
	e, ok := cfg.Auths[d.host]
	return e, ok
}

// buildImage builds a FROM scratch image with the static busybox and a
// file holding note, tags it ref, and returns nothing: docker keeps it.
func (d *dockerClient) buildImage(ref, note string) {
	d.t.Helper()
	ctxDir := busyboxContext(d.t)
	writeFile(d.t, filepath.Join(ctxDir, "note.txt"), []byte(note))
	writeFile(d.t, filepath.Join(ctxDir, "Dockerfile"), []byte(strings.Join([]string{
		"FROM scratch",
		"COPY busybox /bin/busybox",
		"COPY note.txt /note.txt",
		`ENTRYPOINT ["/bin/busybox"]`,
		`CMD ["cat", "/note.txt"]`,
		"",
	}, "\n")))
	d.created = append(d.created, ref)
	d.run("build", "-q", "-t", ref, ctxDir)
}

// push pushes ref and returns the digest docker reports.
func (d *dockerClient) push(ref string) string {
	d.t.Helper()
	out := d.run("push", ref)
	m := pushDigestRE.FindStringSubmatch(out)
	if m == nil {
		d.t.Fatalf("no digest in docker push output:\n%s", out)
	}
	return m[1]
}

// pull removes any local copy of ref, pulls it and returns the digest
// docker reports.
func (d *dockerClient) pull(ref string) string {
	d.t.Helper()
	d.rmi(ref)
	d.created = append(d.created, ref)
	out := d.run("pull", ref)
	m := pullDigestRE.FindStringSubmatch(out)
	if m == nil {
		d.t.Fatalf("no digest in docker pull output:\n%s", out)
	}
	return m[1]
}

// pullFails removes any local copy of ref and checks that pulling it
// fails with an error matching re.
func (d *dockerClient) pullFails(what, ref, re string) {
	d.t.Helper()
	d.rmi(ref)
	mustFailWith(d.t, what+": docker pull "+ref, d.exec("pull", ref), re)
	if d.exec("image", "inspect", ref).Err == nil {
		d.t.Errorf("%s: %s is present locally after the refused pull", what, ref)
	}
}

// TestAuthDocker exercises Docker Engine against berth with token auth:
// docker login (and what it stores), push and pull in a personal
// namespace, refusals after logout, a reader that may pull but not push, a
// pull-only robot confined to its scope and revoked, anonymous pulls from a
// public namespace, and docker login with a wrong password.
func TestAuthDocker(t *testing.T) {
	skipIfShort(t)
	docker := needDocker(t)
	needStaticBusybox(t)
	b := startAuthBerth(t)

	// Accounts: alice (her personal namespace alice), bob (reader of team),
	// namespaces team and other (private) and pub (made public below), a
	// pull-only robot of team.
	alicePass := b.addUser(t, "alice", false)
	bobPass := b.addUser(t, "bob", false)
	b.addNamespace(t, "team", false)
	b.addNamespace(t, "other", false)
	b.addNamespace(t, "pub", false)
	b.setMember(t, "team", "bob", "reader")
	robot, robotSecret := b.addRobot(t, "team", "ci", []string{"team/*"}, []string{"pull"}, "90d")

	d := newDockerClient(t, docker, b.Addr)
	if _, ok := d.authEntry(); ok {
		t.Fatal("the fresh DOCKER_CONFIG already holds credentials for the registry")
	}

	// alice logs in. config.json must get an auths entry for the registry.
	// With identity tokens off (the default) berth answers docker's
	// offline_token=true without a refresh token, so docker keeps the
	// password in "auth": what a pull Secret made from the file needs.
	d.mustLogin("alice", alicePass)
	entry, ok := d.authEntry()
	if !ok {
		t.Fatalf("after docker login, %s/config.json has no auths entry for %s", d.cfgDir, b.Addr)
	}
	stored, _ := base64.StdEncoding.DecodeString(entry.Auth)
	user, storedPass, _ := strings.Cut(string(stored), ":")
	if entry.IdentityToken != "" || storedPass != alicePass {
		t.Errorf("docker stored identitytoken %d bytes and a password of %d bytes; want no identity token and the password in auth",
			len(entry.IdentityToken), len(storedPass))
	}
	if user != "alice" {
		t.Errorf("config.json auth entry names user %q, want alice", user)
	}

	// Push and pull in her personal namespace.
	aliceRef := d.ref("alice/app:v1")
	note := "alice " + randomHex(t, 8)
	d.buildImage(aliceRef, note)
	pushed := d.push(aliceRef)
	if got := d.pull(aliceRef); got != pushed {
		t.Errorf("docker pull %s reported digest %s, pushed %s", aliceRef, got, pushed)
	}
	if out := d.run("run", "--rm", "--network", "none", aliceRef); out != note {
		t.Errorf("container of %s printed %q, want %q", aliceRef, out, note)
	}

	// Logged out, the private image cannot be pulled.
	d.logout()
	if _, ok := d.authEntry(); ok {
		t.Errorf("docker logout left an auths entry for %s", b.Addr)
	}
	// (No anonymous push of new layers here: Docker Engine retries a
	// refused blob upload five times, for 50 s, before it gives up. The
	// anonymous push below meets only existing layers and a refused
	// manifest.)
	d.pullFails("logged out", aliceRef, dockerAuthErr)

	// The admin publishes team/app, other/app and pub/app.
	d.mustLogin("admin", b.AdminPassword)
	teamRef, otherRef, pubRef := d.ref("team/app:v1"), d.ref("other/app:v1"), d.ref("pub/app:v1")
	teamNote := "team " + randomHex(t, 8)
	d.buildImage(teamRef, teamNote)
	teamDigest := d.push(teamRef)
	d.run("tag", teamRef, otherRef)
	d.run("tag", teamRef, pubRef)
	d.created = append(d.created, otherRef, pubRef)
	d.push(otherRef)
	d.push(pubRef)
	d.logout()

	// bob, a reader of team, pulls team/app but may not push there, nor
	// pull from other.
	d.mustLogin("bob", bobPass)
	if got := d.pull(teamRef); got != teamDigest {
		t.Errorf("bob pulled %s as %s, pushed %s", teamRef, got, teamDigest)
	}
	bobRef := d.ref("team/app:bob")
	d.buildImage(bobRef, "bob "+randomHex(t, 8))
	mustFailWith(t, "reader bob: docker push "+bobRef, d.exec("push", bobRef), dockerDeniedErr)
	if st := b.manifestStatus(t, "team/app", "bob"); st != 404 {
		t.Errorf("after bob's refused push, GET team/app:bob answers %d, want 404", st)
	}
	d.pullFails("bob, not a member of other", otherRef, dockerAuthErr)
	d.logout()

	// The pull-only robot team+ci: pulls team/app, nothing outside team,
	// and cannot push.
	d.mustLogin(robot, robotSecret)
	if got := d.pull(teamRef); got != teamDigest {
		t.Errorf("robot pulled %s as %s, pushed %s", teamRef, got, teamDigest)
	}
	d.pullFails("robot outside its scope", otherRef, dockerAuthErr)
	robotRef := d.ref("team/app:ci")
	d.run("tag", teamRef, robotRef)
	d.created = append(d.created, robotRef)
	// The layers are already in team/app, so docker only tries to put the
	// manifest, which must be denied.
	mustFailWith(t, "pull-only robot: docker push "+robotRef, d.exec("push", robotRef), dockerDeniedErr)
	if st := b.manifestStatus(t, "team/app", "ci"); st != 404 {
		t.Errorf("after the robot's refused push, GET team/app:ci answers %d, want 404", st)
	}
	// Revoked, it can pull no more (its stored refresh token dies with it)
	// and cannot log in again.
	b.revokeRobot(t, "team", robot)
	d.pullFails("revoked robot", teamRef, dockerAuthErr)
	d.logout()
	mustFailWith(t, "docker login as the revoked robot", d.login(robot, robotSecret), dockerLoginErr)

	// Anonymous: pub is private until the admin makes it public.
	if _, ok := d.authEntry(); ok {
		t.Fatal("still logged in")
	}
	d.pullFails("anonymous, pub still private", pubRef, dockerAuthErr)
	b.setPublic(t, "pub", true)
	if got := d.pull(pubRef); got != teamDigest {
		t.Errorf("anonymous pull of %s reported %s, pushed %s", pubRef, got, teamDigest)
	}
	if out := d.run("run", "--rm", "--network", "none", pubRef); out != teamNote {
		t.Errorf("container of %s printed %q, want %q", pubRef, out, teamNote)
	}
	d.pullFails("anonymous, team private", teamRef, dockerAuthErr)
	mustFailWith(t, "anonymous: docker push to the public namespace", d.exec("push", pubRef), dockerAuthErr)

	// A wrong password is refused and stores nothing.
	mustFailWith(t, "docker login with a wrong password", d.login("alice", alicePass+"x"), dockerLoginErr)
	if e, ok := d.authEntry(); ok {
		t.Errorf("a refused docker login stored an auths entry: %+v", e)
	}
	// More wrong passwords: within a few more attempts berth's login limit
	// (5 failures a minute per account and address; the robot's and the
	// one above count too) answers 429, which docker login reports.
	limited := false
	for i := 0; i < 6 && !limited; i++ {
		r := d.login("alice", alicePass+"x"+randomHex(t, 2))
		if r.Err == nil {
			t.Fatalf("docker login with a wrong password succeeded:\n%s", r.combined())
		}
		if matchesAny(r.combined(), "429|too many") {
			limited = true
			t.Logf("docker login after repeated wrong passwords: %s", oneLine(r.combined()))
		} else if !matchesAny(r.combined(), dockerLoginErr) {
			t.Errorf("docker login with a wrong password failed without saying why:\n%s", r.combined())
		}
	}
	if !limited {
		t.Errorf("7 wrong passwords in a row through docker login never hit berth's login limit (429)")
	}
}

// TestAuthDockerIdentityToken: with identity_tokens on, docker login keeps
// a berth refresh token instead of the password, and pushes and pulls with
// it through the OAuth2 refresh_token grant.
func TestAuthDockerIdentityToken(t *testing.T) {
	docker := needDocker(t)
	b := startAuthBerth(t, "--identity-tokens=true")
	pass := b.addUser(t, "carol", false)
	d := newDockerClient(t, docker, b.Addr)
	d.mustLogin("carol", pass)
	entry, ok := d.authEntry()
	if !ok || !strings.HasPrefix(entry.IdentityToken, "berth-refresh-") {
		t.Fatalf("docker stored %+v, want a berth refresh token as identitytoken", entry)
	}
	stored, _ := base64.StdEncoding.DecodeString(entry.Auth)
	if strings.Contains(string(stored), pass) {
		t.Fatal("docker kept the password beside the identity token")
	}
	ref := d.ref("carol/app:v1")
	d.buildImage(ref, "carol "+randomHex(t, 8))
	pushed := d.push(ref)
	if got := d.pull(ref); got != pushed {
		t.Fatalf("pulled %s, pushed %s", got, pushed)
	}
}
