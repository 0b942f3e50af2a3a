package e2e

import (
	"strings"
	"testing"
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
