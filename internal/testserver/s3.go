package testserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// versitygwBinary is the S3 server the S3 helper runs: Versity's S3
// gateway over a POSIX directory.
const versitygwBinary = "versitygw"

// S3Server is a running S3 server with one empty bucket, reachable with
// signature V4 and path-style addressing.
type S3Server struct {
	// Endpoint is the server's base URL, http://127.0.0.1:PORT.
	Endpoint string
	// Region is the region to sign requests for.
	Region string
	// AccessKey and SecretKey are the server's only (root) credentials,
	// random for each server.
	AccessKey, SecretKey string
	// Bucket is the name of the bucket created at start.
	Bucket string
}

// S3 starts a versitygw S3 server on a free port of 127.0.0.1, storing its
// objects in a fresh temporary directory, with random credentials, creates
// the bucket S3Server.Bucket and stops the server when the test ends.
//
// versitygw keeps object metadata in extended attributes, so the temporary
// directory (os.TempDir, see TMPDIR) must be on a file system that has them,
// such as ext4, xfs or a recent tmpfs. When versitygw is not installed, or
// the file system lacks extended attributes, the test is skipped, or fails
// when CI=true.
func S3(t testing.TB) *S3Server {
	t.Helper()
	bin := findTool(t, versitygwBinary)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o750); err != nil {
		t.Fatalf("testserver: %v", err)
	}
	srv := &S3Server{
		Region:    "us-east-1",
		AccessKey: "AK" + strings.ToUpper(randomHex(t, 9)),
		SecretKey: randomHex(t, 20),
		Bucket:    "berth-test",
	}
	logPath := filepath.Join(dir, "versitygw.log")

	// The port is found free and then handed to the server, so another
	// process may take it in between: try a few ports.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		srv.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
		p, err := startVersitygw(bin, srv, port, data, logPath)
		if err != nil {
			t.Fatalf("testserver: start versitygw: %v", err)
		}
		lastErr = waitHTTP(srv.Endpoint, p, 15*time.Second)
		if lastErr == nil {
			t.Cleanup(func() { stop(t, p) })
			break
		}
		stop(t, p)
		if !errors.Is(lastErr, errExited) {
			break
		}
		if tail := logTail(logPath); strings.Contains(tail, "xattrs are not supported") {
			missing(t, fmt.Sprintf("versitygw needs extended attributes, which the file system of %s does not support; "+
				"set TMPDIR to a directory on ext4, xfs or tmpfs", dir))
		}
	}
	if lastErr != nil {
		t.Fatalf("testserver: versitygw did not start: %v\n--- tail of %s ---\n%s", lastErr, logPath, logTail(logPath))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := srv.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(srv.Bucket)}); err != nil {
		t.Fatalf("testserver: create bucket %s: %v\n--- tail of %s ---\n%s", srv.Bucket, err, logPath, logTail(logPath))
	}
	return srv
}

// Client returns an S3 client for the server, with path-style addressing
// and the server's credentials.
func (s *S3Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// proc is a started server process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

func startVersitygw(bin string, srv *S3Server, port int, data, logPath string) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	fmt.Fprintf(logFile, "=== versitygw on port %d\n", port)
	cmd := exec.Command(bin,
		"--access", srv.AccessKey,
		"--secret", srv.SecretKey,
		"--region", srv.Region,
		"--port", "127.0.0.1:"+strconv.Itoa(port),
		"--quiet",
		"posix", data)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// A developer's VGW_* or ROOT_* settings must not change the server.
	cmd.Env = environWithout("VGW_", "ROOT_ACCESS_KEY", "ROOT_SECRET")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

var errExited = errors.New("server exited")

// waitHTTP waits until the server answers HTTP requests (with any status).
func waitHTTP(endpoint string, p *proc, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %v", errExited, p.cmd.ProcessState)
		default:
		}
		var resp *http.Response
		resp, err = client.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer from %s within %v: %v", endpoint, timeout, err)
}

// stop ends a server with SIGTERM, then SIGKILL if it has not exited after
// a few seconds.
func stop(t testing.TB, p *proc) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Logf("testserver: %s did not stop on SIGTERM; killing it", filepath.Base(p.cmd.Path))
		p.cmd.Process.Kill()
		<-p.done
	}
}

// findTool returns the path of a server binary from PATH or
// $BERTH_TOOLS_DIR/bin, or skips the test (fails it when CI=true).
func findTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	dir := os.Getenv("BERTH_TOOLS_DIR")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err == nil {
			dir = filepath.Join(home, ".cache", "berth-tools")
		}
	}
	if dir != "" {
		p := filepath.Join(dir, "bin", name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	missing(t, fmt.Sprintf("%s is not on PATH nor in %s; install it with `bash scripts/test-deps.sh`",
		name, filepath.Join(dir, "bin")))
	return ""
}

// missing skips the test for lack of a tool, or fails it on CI, where every
// test must run.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testserver: %s (CI=true: not skipping)", msg)
	}
	t.Skipf("testserver: %s", msg)
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testserver: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testserver: %v", err)
	}
	return hex.EncodeToString(b)
}

// logTail returns the last lines of a log file.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	const max = 4 << 10
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// environWithout returns the environment minus the variables whose names
// start with one of the prefixes.
func environWithout(prefixes ...string) []string {
	var env []string
outer:
	for _, kv := range os.Environ() {
		for _, n := range prefixes {
			if strings.HasPrefix(kv, n) {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return env
}
