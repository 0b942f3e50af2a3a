package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestQuotaRefusalInDocker: a docker push over a namespace quota fails with
// the refusal naming the quota, the CLI shows the usage, and an immutable
// rule set with the CLI stops a tag from moving.
func TestQuotaRefusalInDocker(t *testing.T) {
	docker := needDocker(t)
	b := startAuthBerth(t)
	cli := &berthCLI{t: t, config: t.TempDir(), env: []string{"BERTH_REGISTRY=" + b.URL, "BERTH_USERNAME=admin", "BERTH_PASSWORD=" + b.AdminPassword}}
	cli.must("", "namespace", "create", "team")
	cli.must("", "quota", "set", "team", "100KiB")
	if out := cli.must("", "quota", "show", "team"); !strings.Contains(out, "0 bytes used, quota 102400 bytes") {
		t.Fatalf("quota show: %q", out)
	}
	d := newDockerClient(t, docker, b.Addr)
	d.mustLogin("admin", b.AdminPassword)
	ref := d.ref("team/app:v1")
	d.buildImage(ref, "quota "+randomHex(t, 8))
	r := d.exec("push", ref)
	out := r.Stdout + r.Stderr
	if r.Err == nil || !strings.Contains(out, "denied: quota of namespace team exceeded") {
		t.Fatalf("docker push over quota: err %v, output:\n%s", r.Err, out)
	}
	if got := b.manifestStatus(t, "team/app", "v1"); got != 404 {
		t.Errorf("manifest after the refused push: status %d, want 404", got)
	}
	// Raise the quota: the same push goes through.
	cli.must("", "quota", "set", "team", "50MiB")
	pushed := d.push(ref)
	if out := cli.must("", "quota", "show", "team"); strings.Contains(out, " 0 bytes used") {
		t.Errorf("usage after a push: %q", out)
	}
	// An immutable rule keeps v1 where it is.
	cli.must("", "immutable", "add", "team/*", "--tags", "v*")
	if out := cli.must("", "immutable", "list"); !strings.Contains(out, "team/*\tv*") {
		t.Errorf("immutable list: %q", out)
	}
	// A writer of team may push new tags but not move v1.
	bobPass := b.addUser(t, "bob", false)
	b.setMember(t, "team", "bob", "writer")
	bob := newDockerClient(t, docker, b.Addr)
	bob.mustLogin("bob", bobPass)
	bob.buildImage(ref, "bob "+randomHex(t, 8))
	r = bob.exec("push", ref)
	if out := r.Stdout + r.Stderr; r.Err == nil || !strings.Contains(out, "immutable") {
		t.Fatalf("writer moving an immutable tag: err %v, output:\n%s", r.Err, out)
	}
	if got := b.manifestStatus(t, "team/app", pushed); got != 200 {
		t.Errorf("the original v1 manifest: status %d", got)
	}
}

// TestRetentionWithDockerAndCLI: images pushed and pulled with Docker
// Engine; retention policies tried, saved and applied with the berth CLI;
// deleted tags no longer pull, kept ones do.
func TestRetentionWithDockerAndCLI(t *testing.T) {
	docker := needDocker(t)
	needStaticBusybox(t)
	b := startAuthBerth(t, "--gc-grace", "1s")
	cli := &berthCLI{t: t, config: t.TempDir(), env: []string{"BERTH_REGISTRY=" + b.URL, "BERTH_USERNAME=admin", "BERTH_PASSWORD=" + b.AdminPassword}}
	cli.must("", "namespace", "create", "team")
	d := newDockerClient(t, docker, b.Addr)
	d.mustLogin("admin", b.AdminPassword)
	for _, tag := range []string{"v1", "dev-1", "dev-2", "dev-3", "ci-a", "ci-b"} {
		repo := "team/app:"
		if strings.HasPrefix(tag, "ci-") {
			repo = "team/ci:"
		}
		ref := d.ref(repo + tag)
		d.buildImage(ref, tag+" "+randomHex(t, 8))
		d.push(ref)
	}
	// Past the 1 s grace (tags younger than it are never deleted) and the
	// 4 s of unpulled-for below.
	time.Sleep(4500 * time.Millisecond)
	// Try a policy first: it shows what it would delete and saves nothing.
	out := cli.must("", "retention", "add", "team/app", "--keep-last", "1", "--keep-tags", "v*", "--dry-run")
	if !strings.Contains(out, "tag team/app:dev-2 (beyond the newest 1 tags") || !strings.Contains(out, "tag team/app:dev-1 ") ||
		strings.Contains(out, "dev-3") || strings.Contains(out, ":v1") || !strings.Contains(out, "would delete 2 tags") {
		t.Fatalf("retention dry run:\n%s", out)
	}
	if out := cli.must("", "retention", "list"); out != "" {
		t.Fatalf("a dry run saved a policy: %q", out)
	}
	cli.must("", "retention", "add", "team/app", "--keep-last", "1", "--keep-tags", "v*")
	cli.must("", "retention", "add", "team/ci", "--unpulled-for", "4s")
	if out := cli.must("", "retention", "list"); !strings.Contains(out, "team/app; keep newest 1 tags; always keep v*") || !strings.Contains(out, "team/ci; delete tags unpulled for 4s") {
		t.Fatalf("retention list: %q", out)
	}
	// A bad policy: one line that says why.
	if _, err := cli.run("", "retention", "add", "team/app", "--keep-tags", "v*"); err == nil {
		t.Fatal("a policy that deletes nothing was accepted")
	}
	d.pull(d.ref("team/ci:ci-a")) // ci-a is in use, ci-b is not
	out = cli.must("", "gc")
	for _, want := range []string{"tag team/app:dev-1", "tag team/app:dev-2", "tag team/ci:ci-b (not pulled for 4s", ", 3 tags (retention)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("berth gc output lacks %q:\n%s", want, out)
		}
	}
	for _, gone := range []string{"team/app:dev-1", "team/app:dev-2", "team/ci:ci-b"} {
		d.pullFails("deleted by retention", d.ref(gone), "not found|manifest unknown")
	}
	for _, kept := range []string{"team/app:v1", "team/app:dev-3", "team/ci:ci-a"} {
		d.pull(d.ref(kept))
	}
	if out := cli.must("", "gc", "--dry-run"); !strings.Contains(out, "would free 0 bytes: 0 blobs, 0 manifests, 0 unused blob links, 0 tags (retention)") {
		t.Fatalf("a second run still finds work:\n%s", out)
	}
}
