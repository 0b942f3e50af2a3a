package server

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/berth-registry/berth/internal/config"
)

// Hardening: every file berth creates in its data directory is readable by
// its user only (0600, directories 0700), even under a umask of 0.
func TestDataDirIsPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	parent := t.TempDir()
	dir := filepath.Join(parent, "data")
	ts, _ := authServer(t, func(c *config.Config) { c.DataDir = dir })
	u := ts.URL
	tok := tokenFor(t, u, "admin", adminPass, "repository:team/app:pull,push")
	data := []byte("a private blob")
	expect(t, "push a blob", do(t, "POST", u+"/v2/team/app/blobs/uploads/?digest="+digestOf(data), bearer(tok), data), 201, "")
	expect(t, "open an upload", do(t, "POST", u+"/v2/team/app/blobs/uploads/", bearer(tok), nil), 202, "")
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		seen[filepath.Base(p)] = true
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v: readable by others", rel, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"data", "berth.db", "berth.db-wal", "berth.db-shm", "berth.lock", "audit.log", "uploads", "blobs", "keys"} {
		if !seen[f] {
			t.Errorf("%s not found in the data directory", f)
		}
	}
}
