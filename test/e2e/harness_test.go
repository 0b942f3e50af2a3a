package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

const (
	// berthPackage is the import path of the server binary under test.
	berthPackage = "github.com/berth-registry/berth/cmd/berth"
	// startTimeout bounds how long a fresh berth may take to answer /healthz.
	startTimeout = 30 * time.Second
	// stopTimeout bounds the graceful shutdown after SIGTERM.
	stopTimeout = 15 * time.Second
	// commandTimeout bounds a single client command (push, pull, copy...).
	commandTimeout = 5 * time.Minute
)

var (
	// berthBin is the path of the berth binary built by TestMain.
	berthBin string
	// berthBuildErr is set when TestMain could not build berth; every test
	// that needs a server then fails with it.
	berthBuildErr error
)

// TestMain builds the berth binary once for the whole run (unless the tests
// are skipped with -short or BERTH_BIN names a prebuilt binary) and removes
// it afterwards.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if testing.Short() {
		return m.Run()
	}
	run := func() int { return testserver.Main(m) } // stops the PostgreSQL server tests started
	if bin := os.Getenv("BERTH_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			berthBuildErr = fmt.Errorf("BERTH_BIN=%s: %w", bin, err)
		}
		berthBin = abs
		return run()
	}
	dir, err := os.MkdirTemp("", "berth-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	berthBin = filepath.Join(dir, "berth")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", berthBin, berthPackage)
	out, err := cmd.CombinedOutput()
	if err != nil {
		berthBuildErr = fmt.Errorf("go build %s: %v\n%s", berthPackage, err, out)
	} else {
		fmt.Fprintf(os.Stderr, "e2e: built berth in %s\n", time.Since(start).Round(time.Millisecond))
	}
	return run()
}

// skipIfShort skips end-to-end tests under `go test -short`.
func skipIfShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
}

// toolsBinDir returns the directory scripts/test-deps.sh links tools into.
func toolsBinDir() string {
	dir := os.Getenv("BERTH_TOOLS_DIR")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".cache", "berth-tools")
	}
	return filepath.Join(dir, "bin")
}

// findTool returns the absolute path of the named executable, looked up on
// PATH and then in the tools directory, or "" when it is in neither.
func findTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	if dir := toolsBinDir(); dir != "" {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// missing reports that something the test needs is not installed: it fails
// the test when CI=true (CI must have everything), and skips it otherwise.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + "; install the test dependencies with: bash scripts/test-deps.sh"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// needTool returns the path of the named tool (see findTool). When it is
// missing the test fails if CI=true and is skipped otherwise.
func needTool(t *testing.T, name string) string {
	t.Helper()
	skipIfShort(t)
	p := findTool(name)
	if p == "" {
		missing(t, "%s not found on PATH or in %s", name, toolsBinDir())
	}
	return p
}

// server is a berth instance started for one test.
type server struct {
	// Addr is host:port, e.g. 127.0.0.1:41234.
	Addr string
	// URL is the base URL, e.g. http://127.0.0.1:41234.
	URL string
	// DataDir is the server's data directory.
	DataDir string
	// LogPath is the file that receives the server's stdout and stderr.
	LogPath string
}

// startBerth starts a fresh open berth (--auth=none) on a free loopback
// port with an empty data directory; it stops with SIGTERM at cleanup.
func startBerth(t *testing.T) *server {
	t.Helper()
	return start(t, launch{Args: []string{"--auth=none"}}).server
}

// tailFile returns the last n lines of a file (or an error note).
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cmdResult is the outcome of one external command.
type cmdResult struct {
	Stdout, Stderr string
	Err            error
}

// execIn runs a command in dir (the current directory when empty) with
// extra environment variables, bounded by commandTimeout, and returns its
// output. It never fails the test.
func execIn(t *testing.T, dir string, env []string, name string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timed out after %s)", err, commandTimeout)
	}
	t.Logf("$ %s %s  (%s, %v)", filepath.Base(name), strings.Join(args, " "), time.Since(start).Round(time.Millisecond), exitStatus(err))
	return cmdResult{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

func exitStatus(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// run runs a command and fails the test if it fails; it returns stdout.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return runIn(t, "", name, args...)
}

// runIn is run with a working directory.
func runIn(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	r := execIn(t, dir, nil, name, args...)
	if r.Err != nil {
		t.Fatalf("%s %s failed: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "),
			r.Err, truncate(r.Stdout, 4000), truncate(r.Stderr, 4000))
	}
	return r.Stdout
}

// mustFail runs a command that is expected to fail and fails the test if it
// succeeds; it returns the command's combined output.
func mustFail(t *testing.T, name string, args ...string) string {
	t.Helper()
	r := execIn(t, "", nil, name, args...)
	if r.Err == nil {
		t.Fatalf("%s %s succeeded but should have failed; stdout:\n%s", filepath.Base(name), strings.Join(args, " "), truncate(r.Stdout, 2000))
	}
	return r.Stdout + r.Stderr
}

// truncate shortens s to at most n bytes, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d more bytes)", len(s)-n)
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// randomHex returns 2n hex characters of randomness.
func randomHex(t *testing.T, n int) string {
	return hex.EncodeToString(randomBytes(t, n))
}

// sha256Digest returns the OCI digest string ("sha256:<hex>") of b.
func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// writeFile writes a file, creating parent directories, or fails the test.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Media types used by the tests and in Accept headers.
const (
	mediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// allManifestTypes is an Accept header value naming every manifest type.
var allManifestTypes = strings.Join([]string{
	mediaTypeOCIManifest, mediaTypeOCIIndex, mediaTypeDockerManifest, mediaTypeDockerList,
}, ", ")

// fetchManifest GETs a manifest straight from the registry API and checks
// that the body's sha256 matches the Docker-Content-Digest header (when the
// server sends one) and, when ref is a digest, the digest itself. It returns
// the body and its computed digest.
func fetchManifest(t *testing.T, s *server, repo, ref string) ([]byte, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", allManifestTypes)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET manifest %s:%s: %v", repo, ref, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading manifest %s:%s: %v", repo, ref, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s:%s: %s: %s", repo, ref, resp.Status, truncate(string(body), 500))
	}
	dgst := sha256Digest(body)
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" && h != dgst {
		t.Errorf("GET manifest %s:%s: Docker-Content-Digest %s, but the body hashes to %s", repo, ref, h, dgst)
	}
	if strings.HasPrefix(ref, "sha256:") && ref != dgst {
		t.Errorf("GET manifest %s@%s returned a body hashing to %s", repo, ref, dgst)
	}
	return body, dgst
}

// httpGet GETs a URL with extra request headers and returns the status,
// the response headers and the body.
func httpGet(t *testing.T, url string, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, resp.Header, body
}

// lines splits command output into trimmed, non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
