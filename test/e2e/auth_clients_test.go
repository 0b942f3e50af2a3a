package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// authErr is what a registry client says when berth refuses it: no or bad
// credentials (401), or not allowed (403).
const authErr = "unauthorized|authentication required|denied|401|403|forbidden|invalid username/password"

// isolatedHome returns environment variables that give a client an empty
// home, Docker and containers configuration: whatever credentials the
// machine has must not leak into a "without credentials" check.
func isolatedHome(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	return []string{
		"HOME=" + home,
		"DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
		"XDG_RUNTIME_DIR=" + filepath.Join(home, "run"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(home, "auth.json"),
	}
}

// TestAuthSkopeo pushes, inspects and copies with skopeo --creds against
// berth with token auth, and checks that each fails without credentials,
// with wrong ones, and (push) with a reader's.
func TestAuthSkopeo(t *testing.T) {
	skipIfShort(t)
	skopeo := needTool(t, "skopeo")
	b := startAuthBerth(t)
	alicePass := b.addUser(t, "alice", false)
	bobPass := b.addUser(t, "bob", false)
	b.addNamespace(t, "team", false)
	b.setMember(t, "team", "alice", "writer")
	b.setMember(t, "team", "bob", "reader")

	env := isolatedHome(t)
	sk := func(args ...string) cmdResult {
		t.Helper()
		return execIn(t, "", env, skopeo, append([]string{"--insecure-policy"}, args...)...)
	}
	img := newOCIImage(t, testFile{Name: "data/random.bin", Data: randomBytes(t, 200<<10)},
		testFile{Name: "data/hello.txt", Data: []byte("hello from skopeo " + randomHex(t, 8) + "\n")})
	layout := filepath.Join(t.TempDir(), "layout")
	img.writeOCILayout(t, layout, "v1")
	dst := "docker://" + b.Addr + "/team/app"

	// Push.
	mustFailWith(t, "skopeo copy to berth without credentials",
		sk("copy", "--dest-tls-verify=false", "oci:"+layout+":v1", dst+":v1"), authErr)
	mustFailWith(t, "skopeo copy to berth with a wrong password",
		sk("copy", "--dest-tls-verify=false", "--dest-creds", "alice:"+alicePass+"x", "oci:"+layout+":v1", dst+":v1"), authErr)
	mustFailWith(t, "skopeo copy to berth as a reader",
		sk("copy", "--dest-tls-verify=false", "--dest-creds", "bob:"+bobPass, "oci:"+layout+":v1", dst+":v1"), authErr)
	if st := b.manifestStatus(t, "team/app", "v1"); st != 404 {
		t.Fatalf("after refused pushes, team/app:v1 answers %d, want 404", st)
	}
	mustSucceed(t, "skopeo copy to berth as a writer",
		sk("copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", "alice:"+alicePass, "oci:"+layout+":v1", dst+":v1"))

	// Inspect.
	mustFailWith(t, "skopeo inspect without credentials", sk("inspect", "--raw", "--tls-verify=false", dst+":v1"), authErr)
	mustFailWith(t, "skopeo inspect with a wrong password",
		sk("inspect", "--raw", "--tls-verify=false", "--creds", "bob:nope-"+randomHex(t, 4), dst+":v1"), authErr)
	raw := mustSucceed(t, "skopeo inspect as a reader", sk("inspect", "--raw", "--tls-verify=false", "--creds", "bob:"+bobPass, dst+":v1"))
	if got := sha256Digest([]byte(raw)); got != img.ManifestDigest {
		t.Errorf("skopeo inspect --raw: manifest hashes to %s, pushed %s", got, img.ManifestDigest)
	}

	// Pull (copy out to a directory).
	out := filepath.Join(t.TempDir(), "out")
	mustFailWith(t, "skopeo copy from berth without credentials",
		sk("copy", "--src-tls-verify=false", dst+":v1", "dir:"+out), authErr)
	mustSucceed(t, "skopeo copy from berth as a reader",
		sk("copy", "--src-tls-verify=false", "--src-creds", "bob:"+bobPass, dst+":v1", "dir:"+out))
	got, err := os.ReadFile(filepath.Join(out, strings.TrimPrefix(img.LayerDigest, "sha256:")))
	if err != nil || !bytes.Equal(got, img.Layer) {
		t.Errorf("layer copied out by skopeo: %d bytes (err %v), want the %d pushed bytes", len(got), err, len(img.Layer))
	}
}

// TestAuthCrane logs crane in (crane auth login, into a temporary
// DOCKER_CONFIG), pushes and reads back an image in the user's personal
// namespace, and checks that crane is refused once logged out, with a
// fresh configuration, and as a reader pushing.
func TestAuthCrane(t *testing.T) {
	skipIfShort(t)
	crane := needTool(t, "crane")
	b := startAuthBerth(t)
	alicePass := b.addUser(t, "alice", false)
	bobPass := b.addUser(t, "bob", false)
	b.setMember(t, "alice", "bob", "reader")

	env := isolatedHome(t)
	var cfgPath string
	for _, kv := range env {
		if dir, ok := strings.CutPrefix(kv, "DOCKER_CONFIG="); ok {
			cfgPath = filepath.Join(dir, "config.json")
		}
	}
	cr := func(args ...string) cmdResult {
		t.Helper()
		return execIn(t, "", env, crane, args...)
	}
	ref := b.Addr + "/alice/app:v1"
	note := []byte("crane auth " + randomHex(t, 8) + "\n")
	layerPath := filepath.Join(t.TempDir(), "layer.tar")
	writeFile(t, layerPath, layerTar(t, testFile{Name: "data/note.txt", Data: note}))

	mustFailWith(t, "crane append without credentials", cr("append", "--insecure", "-f", layerPath, "-t", ref), authErr)

	mustSucceed(t, "crane auth login", cr("auth", "login", b.Addr, "-u", "alice", "-p", alicePass))
	cfg, err := os.ReadFile(cfgPath)
	if err != nil || !strings.Contains(string(cfg), b.Addr) {
		t.Fatalf("after crane auth login, %s (err %v) has no entry for %s:\n%s", cfgPath, err, b.Addr, cfg)
	}
	mustSucceed(t, "crane append as alice", cr("append", "--insecure", "-f", layerPath, "-t", ref))
	dgst := strings.TrimSpace(mustSucceed(t, "crane digest", cr("digest", "--insecure", ref)))
	if _, d := fetchManifestAs(t, b, "alice", alicePass, "alice/app", "v1"); d != dgst {
		t.Errorf("crane digest says %s, the registry serves %s", dgst, d)
	}
	exported := filepath.Join(t.TempDir(), "fs.tar")
	mustSucceed(t, "crane export", cr("export", "--insecure", ref, exported))
	f, err := os.Open(exported)
	if err != nil {
		t.Fatal(err)
	}
	files := filesInTar(t, f)
	f.Close()
	if !bytes.Equal(files["data/note.txt"], note) {
		t.Errorf("crane export: data/note.txt = %q, want %q", files["data/note.txt"], note)
	}

	// bob (reader of alice) can read but not write.
	mustSucceed(t, "crane auth login as bob", cr("auth", "login", b.Addr, "-u", "bob", "-p", bobPass))
	mustSucceed(t, "crane manifest as a reader", cr("manifest", "--insecure", ref))
	mustFailWith(t, "crane tag as a reader", cr("tag", "--insecure", ref, "bob"), authErr)
	mustFailWith(t, "crane append as a reader", cr("append", "--insecure", "-f", layerPath, "-t", b.Addr+"/alice/app:bob"), authErr)

	// Logged out, and with another empty configuration: refused.
	mustSucceed(t, "crane auth logout", cr("auth", "logout", b.Addr))
	mustFailWith(t, "crane manifest after logout", cr("manifest", "--insecure", ref), authErr)
	mustFailWith(t, "crane manifest with a fresh configuration",
		execIn(t, "", isolatedHome(t), crane, "manifest", "--insecure", ref), authErr)
	mustSucceed(t, "crane auth login with a wrong password (crane does not check it)",
		cr("auth", "login", b.Addr, "-u", "alice", "-p", alicePass+"x"))
	mustFailWith(t, "crane manifest with a wrong password", cr("manifest", "--insecure", ref), authErr)
}

// fetchManifestAs GETs a manifest with a token of user and returns its
// body and digest.
func fetchManifestAs(t *testing.T, b *authBerth, user, pass, repo, ref string) ([]byte, string) {
	t.Helper()
	tok := b.token(t, user, pass, "repository:"+repo+":pull")
	r := authDo(t, "GET", b.URL+"/v2/"+repo+"/manifests/"+ref, nil, reqBearer(tok.Token), reqHeader("Accept", allManifestTypes))
	if r.Status != 200 {
		t.Fatalf("GET manifest %s:%s as %s: %s", repo, ref, user, r)
	}
	return r.Body, sha256Digest(r.Body)
}

// ctrdInstance is a containerd instance of the test's own: own root, state,
// socket and configuration, next to (and not touching) Docker's.
type ctrdInstance struct {
	Socket string
	dir    string
	log    string
}

// startContainerd starts containerd with its CRI plugin, with plain-HTTP
// hosts.toml entries for each registry host:port (config_path), and
// registers its shutdown.
func startContainerd(t *testing.T, registries ...string) *ctrdInstance {
	t.Helper()
	return startContainerdWith(t, func(certsDir string) {
		for _, host := range registries {
			writeFile(t, filepath.Join(certsDir, host, "hosts.toml"), []byte(fmt.Sprintf(
				"server = \"http://%[1]s\"\n\n[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", host)))
		}
	})
}

// daemon is a root daemon (containerd, dockerd) a test runs in a
// directory of its own.
type daemon struct {
	// exited is closed when the process has exited, with its status in err.
	exited chan struct{}
	err    error
}

// startDaemon starts bin with args, its output in logPath, and registers
// its cleanup: SIGTERM (SIGKILL after stopTimeout), the end of its log when
// the test failed, an unmount of the directories under dir it may leave
// mounted (nothing is mounted once it is gone unless something leaked, and
// the removal would fail), and the removal of dir.
func startDaemon(t *testing.T, name, dir, logPath string, mounted []string, bin string, args ...string) *daemon {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{exited: make(chan struct{})}
	go func() { d.err = cmd.Wait(); logFile.Close(); close(d.exited) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of the %s log (%s):\n%s", name, logPath, tailFile(logPath, 40))
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-d.exited
		}
		if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil && bytes.Contains(mounts, []byte(dir)) {
			for _, m := range mounted {
				execIn(t, "", nil, "umount", "-R", "-l", filepath.Join(dir, m))
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("removing %s: %v", dir, err)
		}
	})
	return d
}

// startContainerdWith starts containerd as startContainerd does, with the
// hosts.toml files certs writes into its config_path directory.
func startContainerdWith(t *testing.T, certs func(certsDir string)) *ctrdInstance {
	t.Helper()
	skipIfShort(t)
	bin := needTool(t, "containerd")
	if os.Geteuid() != 0 {
		missing(t, "containerd needs root")
	}
	// A short directory: the socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "berth-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &ctrdInstance{Socket: filepath.Join(dir, "containerd.sock"), dir: dir, log: filepath.Join(dir, "containerd.log")}
	certsDir := filepath.Join(dir, "certs.d")
	certs(certsDir)
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Socket, c.Socket+".ttrpc", certsDir)
	configPath := filepath.Join(dir, "config.toml")
	writeFile(t, configPath, []byte(config))

	d := startDaemon(t, "containerd", dir, c.log, []string{"root"}, bin, "--config", configPath)

	// Ready when the CRI image service answers.
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-d.exited:
			t.Fatalf("containerd exited at start: %v\n%s", d.err, tailFile(c.log, 40))
		default:
		}
		if _, err := os.Stat(c.Socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not create %s within %s:\n%s", c.Socket, startTimeout, tailFile(c.log, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("containerd listening on %s (log %s)", c.Socket, c.log)
	return c
}

// TestAuthContainerdCRI pulls from berth through containerd's CRI plugin
// with crictl --creds, the very call the kubelet makes with an image pull
// secret: with a member's or a robot's credentials it works, without them
// or with wrong ones it fails, a robot is held to its scope, and a public
// namespace pulls anonymously.
func TestAuthContainerdCRI(t *testing.T) {
	skipIfShort(t)
	crictl := needTool(t, "crictl")
	b := startAuthBerth(t)
	ctrd := startContainerd(t, b.Addr)

	bobPass := b.addUser(t, "bob", false)
	b.addNamespace(t, "team", false)
	b.addNamespace(t, "other", false)
	b.addNamespace(t, "pub", true)
	b.setMember(t, "team", "bob", "reader")
	robot, robotSecret := b.addRobot(t, "team", "k8s", []string{"team/*"}, []string{"pull"}, "90d")

	img := newOCIImage(t, testFile{Name: "etc/hello.txt", Data: []byte("hello from containerd " + randomHex(t, 8) + "\n")})
	for _, repo := range []string{"team/app", "other/app", "pub/app"} {
		b.pushImageAs(t, "admin", b.AdminPassword, repo, "v1", img)
	}

	crictlClient := newCRIClient(t, crictl, ctrd)
	cri := crictlClient.run

	team, other, pub := b.Addr+"/team/app:v1", b.Addr+"/other/app:v1", b.Addr+"/pub/app:v1"
	hasImage := func(ref string) bool {
		t.Helper()
		id := crictlClient.imageID(ref)
		if id != "" && id != img.ConfigDigest {
			t.Errorf("containerd holds %s as image %s, want the config digest %s", ref, id, img.ConfigDigest)
		}
		return id != ""
	}

	mustFailWith(t, "crictl pull of a private image without credentials", cri("pull", team), "401|unauthorized")
	mustFailWith(t, "crictl pull with a wrong password", cri("pull", "--creds", "bob:wrong-"+randomHex(t, 4), team), "401|unauthorized")
	if hasImage(team) {
		t.Fatalf("%s is in containerd after refused pulls", team)
	}

	mustSucceed(t, "crictl pull --creds (a reader)", cri("pull", "--creds", "bob:"+bobPass, team))
	if !hasImage(team) {
		t.Errorf("crictl pull succeeded but crictl images does not list %s", team)
	}
	// The cached image does not let a pull without credentials through:
	// the CRI plugin resolves the tag at the registry every time.
	mustFailWith(t, "crictl pull of a cached private image without credentials", cri("pull", team), "401|unauthorized")
	mustSucceed(t, "crictl rmi", cri("rmi", team))

	mustSucceed(t, "crictl pull --creds (the pull-only robot)", cri("pull", "--creds", robot+":"+robotSecret, team))
	mustFailWith(t, "crictl pull --creds (the robot, outside its scope)", cri("pull", "--creds", robot+":"+robotSecret, other), authErr)
	mustFailWith(t, "crictl pull --creds (bob, not a member of other)", cri("pull", "--creds", "bob:"+bobPass, other), authErr)
	if hasImage(other) {
		t.Errorf("%s is in containerd after refused pulls", other)
	}

	mustSucceed(t, "crictl pull of a public image without credentials", cri("pull", pub))
	if !hasImage(pub) {
		t.Errorf("crictl pull succeeded but crictl images does not list %s", pub)
	}

	// A revoked robot pulls no more.
	b.revokeRobot(t, "team", robot)
	mustFailWith(t, "crictl pull --creds (the revoked robot)", cri("pull", "--creds", robot+":"+robotSecret, team), "401|unauthorized")

}
