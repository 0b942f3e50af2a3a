package e2e

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestFsckCLI: berth fsck on a running berth finds a blob file nothing
// records (an orphan older than gc_grace) and a recorded blob whose file
// is gone, exits 1; --repair removes the orphan and nothing else.
func TestFsckCLI(t *testing.T) {
	skipIfShort(t)
	b := startBerth(t)
	img := newOCIImage(t, testFile{Name: "a", Data: randomBytes(t, 4096)})
	pushOpen(t, b.URL, "team/app", "v1", img)
	lost := newOCIImage(t, testFile{Name: "b", Data: randomBytes(t, 4096)})
	pushOpen(t, b.URL, "team/lost", "v1", lost)
	if err := os.Remove(blobFile(b.DataDir, lost.LayerDigest)); err != nil {
		t.Fatal(err)
	}
	orphanData := randomBytes(t, 1234)
	orphan := sha256Digest(orphanData)
	path := blobFile(b.DataDir, orphan)
	writeFile(t, path, orphanData)
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}

	r := execIn(t, "", nil, berthBin, "fsck", "--registry", b.URL)
	out := r.combined()
	if exitCode(r.Err) != 1 || !strings.Contains(out, "orphan   "+orphan) || !strings.Contains(out, "missing  "+lost.LayerDigest) {
		t.Fatalf("berth fsck: exit %d, want 1 naming the orphan %s and the missing %s:\n%s", exitCode(r.Err), orphan, lost.LayerDigest, out)
	}
	if !fileExists(path) {
		t.Fatal("berth fsck without --repair removed the orphan")
	}
	r = execIn(t, "", nil, berthBin, "fsck", "--repair", "--registry", b.URL)
	if !strings.Contains(r.combined(), "removed 1 orphans and 0 stray objects, 1234 bytes") {
		t.Fatalf("berth fsck --repair:\n%s", r.combined())
	}
	if fileExists(path) {
		t.Error("the orphan is still there after --repair")
	}
	for _, d := range []string{img.LayerDigest, img.ConfigDigest, lost.ConfigDigest} {
		if !fileExists(blobFile(b.DataDir, d)) {
			t.Errorf("--repair removed live blob %s", d)
		}
	}
	pullAll(t, b.URL, "", "team/app", "v1")
	// What is left is the missing blob: still exit 1.
	r = execIn(t, "", nil, berthBin, "fsck", "--registry", b.URL, "-o", "json")
	var report struct {
		Orphans []struct{ Digest string } `json:"orphans"`
		Missing []struct{ Digest string } `json:"missing"`
	}
	mustUnmarshal(t, "berth fsck -o json", []byte(r.Stdout), &report)
	if exitCode(r.Err) != 1 || len(report.Orphans) != 0 || len(report.Missing) != 1 || report.Missing[0].Digest != lost.LayerDigest {
		t.Errorf("berth fsck -o json after repair: exit %d, %+v; want exit 1, only %s missing", exitCode(r.Err), report, lost.LayerDigest)
	}
}
