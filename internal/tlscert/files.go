package tlscert

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File names WriteFiles uses inside its directory.
const (
	// CertFile holds the certificate; it is public and also the CA file
	// clients trust.
	CertFile = "berth.crt"
	// KeyFile holds the private key; only the server may read it.
	KeyFile = "berth.key"
)

// WriteFiles writes certPEM to dir/berth.crt (mode 0644) and keyPEM to
// dir/berth.key (mode 0600), creating dir (0755) if needed and replacing
// existing files. Each file is written to a temporary file in dir, synced
// and renamed into place, so readers see either the old or the new
// content, never a partial file, and the key is never readable by others,
// not even briefly. Both temporary files are complete before the first
// rename; a crash between the two renames can still leave a new key next
// to the old certificate.
func WriteFiles(dir string, certPEM, keyPEM []byte) error {
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return errors.New("empty certificate or key")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keyTmp, err := writeTemp(dir, KeyFile, keyPEM, 0o600)
	if err != nil {
		return err
	}
	certTmp, err := writeTemp(dir, CertFile, certPEM, 0o644)
	if err != nil {
		os.Remove(keyTmp)
		return err
	}
	if err := os.Rename(keyTmp, filepath.Join(dir, KeyFile)); err != nil {
		os.Remove(keyTmp)
		os.Remove(certTmp)
		return err
	}
	if err := os.Rename(certTmp, filepath.Join(dir, CertFile)); err != nil {
		os.Remove(certTmp)
		return err
	}
	return syncDir(dir)
}

// writeTemp writes data to a new temporary file next to dir/name with the
// given mode and returns its path. The file is created with mode 0600 and
// only then widened, so a key never exists with looser permissions.
func writeTemp(dir, name string, data []byte, mode os.FileMode) (path string, err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", err
	}
	path = f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
			err = fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return "", err
	}
	if _, err = f.Write(data); err != nil {
		return "", err
	}
	if err = f.Sync(); err != nil {
		return "", err
	}
	if err = f.Close(); err != nil {
		return "", err
	}
	return path, nil
}

// syncDir flushes dir's entries so the renames survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
