package testserver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// distributionBinary is CNCF Distribution 2.8 as Debian packages it.
const distributionBinary = "docker-registry"

// Registry is a running CNCF Distribution 2.8 registry, open, with
// filesystem storage, deletes enabled and its access log on.
type Registry struct {
	// Addr is host:port; URL is http://Addr.
	Addr, URL string
	// Log receives its output, the access log included (one line per
	// request).
	Log string
	p   *proc
}

// StartDistribution starts docker-registry on a free port of 127.0.0.1
// with its storage, configuration and log under dir (a port lost to
// another process is tried again); its absence gives an error matching
// ErrMissing. Stop ends it.
func StartDistribution(dir string) (*Registry, error) {
	bin, err := lookTool(distributionBinary)
	if err != nil {
		return nil, missingError(err.Error() + " (apt-get install docker-registry)")
	}
	d := &Registry{Log: filepath.Join(dir, "registry.log")}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		d.Addr = "127.0.0.1:" + strconv.Itoa(port)
		d.URL = "http://" + d.Addr
		cfg := filepath.Join(dir, "config.yml")
		conf := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
			filepath.Join(dir, "data"), d.Addr)
		if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		if d.p, err = startProc(bin, d.Log, nil, "serve", cfg); err != nil {
			return nil, fmt.Errorf("start docker-registry: %w", err)
		}
		if lastErr = waitHTTP(d.URL+"/v2/", d.p, 15*time.Second); lastErr == nil {
			return d, nil
		}
		d.p.stop()
	}
	return nil, fmt.Errorf("docker-registry did not start: %v\n--- tail of %s ---\n%s", lastErr, d.Log, logTail(d.Log))
}

// Distribution starts a Distribution registry in a temporary directory of
// the test and stops it when the test ends; without docker-registry the
// test is skipped, or fails when CI=true.
func Distribution(t testing.TB) *Registry {
	t.Helper()
	d, err := StartDistribution(t.TempDir())
	if err != nil {
		need(t, err)
	}
	t.Cleanup(func() { d.Stop() })
	return d
}

// Stop ends the registry (SIGTERM, then SIGKILL); stopping twice is fine.
func (d *Registry) Stop() error { return d.p.stop() }

// BlobGETs counts the GETs of blob digest in the access log.
func (d *Registry) BlobGETs(digest string) (int, error) {
	data, err := os.ReadFile(d.Log)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"GET /v2/`) && strings.Contains(line, "/blobs/"+digest+" ") {
			n++
		}
	}
	return n, nil
}

// startProc starts bin with args, its output appended to logPath and env
// added to the environment (nil: as it is), killed if this process dies.
func startProc(bin, logPath string, env []string, args ...string) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	fmt.Fprintf(logFile, "=== %s starting\n", filepath.Base(bin))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}
