package e2e

import (
	"debug/elf"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// staticBusybox is where Debian's busybox-static puts its binary.
const staticBusybox = "/bin/busybox"

// needDocker returns the docker CLI path once a Docker Engine answers,
// starting one with scripts/dockerd.sh when none does (as root).
func needDocker(t *testing.T) string {
	t.Helper()
	docker := needTool(t, "docker")
	if execIn(t, "", nil, docker, "info").Err == nil {
		return docker
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "dockerd.sh"))
	if err == nil && os.Geteuid() == 0 {
		r := execIn(t, "", nil, "bash", script)
		if r.Err != nil {
			t.Logf("scripts/dockerd.sh failed: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
		}
		if execIn(t, "", nil, docker, "info").Err == nil {
			return docker
		}
	}
	missing(t, "no Docker Engine answers `docker info`; start one with: bash scripts/dockerd.sh")
	return ""
}

// busyboxContext returns a new build context directory holding the static
// busybox as ./busybox (executable), for FROM scratch images.
func busyboxContext(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	busybox, err := os.ReadFile(staticBusybox)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "busybox"), busybox)
	if err := os.Chmod(filepath.Join(dir, "busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// needStaticBusybox checks that /bin/busybox is a statically linked ELF
// binary, which a FROM scratch image can run.
func needStaticBusybox(t *testing.T) {
	t.Helper()
	f, err := elf.Open(staticBusybox)
	if err != nil {
		missing(t, "%s (package busybox-static) not usable: %v", staticBusybox, err)
		return
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			missing(t, "%s is dynamically linked; install busybox-static", staticBusybox)
		}
	}
}

var (
	// pushDigestRE matches docker push's last line, "v1: digest: sha256:... size: N".
	pushDigestRE = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64}) size: \d+`)
	// pullDigestRE matches docker pull's "Digest: sha256:..." line.
	pullDigestRE = regexp.MustCompile(`Digest: (sha256:[0-9a-f]{64})`)
)

// TestDockerPushPullRun builds a FROM scratch image with a static busybox
// and a random file, pushes it to berth with Docker Engine, removes it
// locally, pulls it back by tag and by digest, checks the digests agree
// everywhere (push output, RepoDigests, pull output, the registry's own
// manifest bytes) and runs it to read the file back.
func TestDockerPushPullRun(t *testing.T) {
	skipIfShort(t)
	docker := needDocker(t)
	needStaticBusybox(t)
	s := startBerth(t)

	repo := s.Addr + "/e2e/app"
	ref := repo + ":v1"
	secret := randomHex(t, 32)

	ctxDir := busyboxContext(t)
	writeFile(t, filepath.Join(ctxDir, "secret.txt"), []byte(secret))
	writeFile(t, filepath.Join(ctxDir, "Dockerfile"), []byte(strings.Join([]string{
		"FROM scratch",
		"COPY busybox /bin/busybox",
		"COPY secret.txt /secret.txt",
		`ENTRYPOINT ["/bin/busybox"]`,
		`CMD ["cat", "/secret.txt"]`,
		"",
	}, "\n")))

	// Remove whatever the test leaves in the engine's image store.
	var digestRef string
	t.Cleanup(func() {
		args := []string{"rmi", "-f", ref}
		if digestRef != "" {
			args = append(args, digestRef)
		}
		execIn(t, "", nil, docker, args...)
	})

	run(t, docker, "build", "-q", "-t", ref, ctxDir)
	pushOut := run(t, docker, "push", ref)
	m := pushDigestRE.FindStringSubmatch(pushOut)
	if m == nil {
		t.Fatalf("no digest in docker push output:\n%s", pushOut)
	}
	pushed := m[1]
	digestRef = repo + "@" + pushed
	t.Logf("docker push: %s", digestRef)

	repoDigest := strings.TrimSpace(run(t, docker, "inspect", "--format", "{{index .RepoDigests 0}}", ref))
	if repoDigest != digestRef {
		t.Errorf("RepoDigests[0] after push = %q, want %q", repoDigest, digestRef)
	}

	// The registry serves exactly the manifest docker pushed.
	body, regDigest := fetchManifest(t, s, "e2e/app", "v1")
	if regDigest != pushed {
		t.Errorf("registry manifest for v1 hashes to %s, docker pushed %s", regDigest, pushed)
	}
	var man manifest
	mustUnmarshal(t, "manifest", body, &man)
	if len(man.Layers) != 2 {
		t.Errorf("manifest has %d layers, want 2 (busybox, secret.txt)", len(man.Layers))
	}

	run(t, docker, "rmi", ref)
	if execIn(t, "", nil, docker, "image", "inspect", ref).Err == nil {
		t.Fatalf("%s still present locally after docker rmi", ref)
	}

	pullOut := run(t, docker, "pull", ref)
	if m := pullDigestRE.FindStringSubmatch(pullOut); m == nil {
		t.Errorf("no digest in docker pull output:\n%s", pullOut)
	} else if m[1] != pushed {
		t.Errorf("docker pull reported digest %s, pushed %s", m[1], pushed)
	}
	repoDigest = strings.TrimSpace(run(t, docker, "inspect", "--format", "{{index .RepoDigests 0}}", ref))
	if repoDigest != digestRef {
		t.Errorf("RepoDigests[0] after pull = %q, want %q", repoDigest, digestRef)
	}

	out := run(t, docker, "run", "--rm", "--network", "none", ref)
	if out != secret {
		t.Errorf("container printed %q, want %q", out, secret)
	}

	// Pull by digest too, after dropping the local copy again.
	run(t, docker, "rmi", ref)
	pullOut = run(t, docker, "pull", digestRef)
	if m := pullDigestRE.FindStringSubmatch(pullOut); m == nil || m[1] != pushed {
		t.Errorf("docker pull %s reported:\n%s", digestRef, pullOut)
	}
	out = run(t, docker, "run", "--rm", "--network", "none", digestRef, "cat", "/secret.txt")
	if out != secret {
		t.Errorf("container (pulled by digest) printed %q, want %q", out, secret)
	}
}
