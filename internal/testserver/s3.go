package testserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/buildinfo"
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

// versitygwBinary is the S3 server StartS3 runs: Versity's S3 gateway
// over a POSIX directory.
const versitygwBinary = "versitygw"

// S3Server is a running S3 server with one empty bucket, reachable with
// signature V4 and path-style addressing.
type S3Server struct {
	// Implementation is "versitygw" or "minio".
	Implementation string
	// Endpoint is the server's base URL, http://127.0.0.1:PORT.
	Endpoint string
	// Region is the region to sign requests for.
	Region string
	// AccessKey and SecretKey are the server's only (root) credentials,
	// random for each server.
	AccessKey, SecretKey string
	// Bucket is the name of the bucket created at start.
	Bucket string
	// Version is the server's module version from its build information
	// (such as v1.8.0), or "unknown".
	Version string
	// Pid is the process id of the server.
	Pid int
}

// S3 starts a versitygw S3 server with StartS3 in a fresh temporary
// directory of the test and stops it when the test ends.
//
// versitygw keeps object metadata in extended attributes, so the temporary
// directory (os.TempDir, see TMPDIR) must be on a file system that has them,
// such as ext4, xfs or a recent tmpfs. When versitygw is not installed, or
// the file system lacks extended attributes, the test is skipped, or fails
// when CI=true.
func S3(t testing.TB) *S3Server {
	t.Helper()
	return startForTest(t, StartS3)
}

// startForTest starts an S3 server in a fresh temporary directory of the
// test and stops it when the test ends; a missing server skips the test,
// or fails it when CI=true.
func startForTest(t testing.TB, start func(dir string) (*S3Server, func() error, error)) *S3Server {
	t.Helper()
	srv, stop, err := start(t.TempDir())
	if err != nil {
		need(t, err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Logf("testserver: %v", err)
		}
	})
	return srv
}

// StartS3 starts a versitygw S3 server on a free port of 127.0.0.1 with
// random credentials, storing its objects under dir/data and its log in
// dir/versitygw.log (dir is created if needed), and creates the bucket
// S3Server.Bucket. The returned stop ends the server (SIGTERM, then SIGKILL
// after five seconds; an error says it had to kill it) and may be called
// more than once; it leaves dir in place.
//
// The binary is looked for on PATH and in $BERTH_TOOLS_DIR/bin. Its
// absence, or a file system without extended attributes under dir, gives
// an error that matches ErrMissing.
func StartS3(dir string) (srv *S3Server, stop func() error, err error) {
	srv, bin, data, err := newS3Server(versitygwBinary, dir)
	if err != nil {
		return nil, nil, err
	}
	logPath := filepath.Join(dir, "versitygw.log")
	stop, err = srv.start(logPath, 15*time.Second,
		func(port int) (*proc, error) { return startVersitygw(bin, srv, port, data, logPath) },
		func(tail string) error {
			if strings.Contains(tail, "xattrs are not supported") {
				return missingError(fmt.Sprintf("versitygw needs extended attributes, which the file system of %s does not support; "+
					"set TMPDIR to a directory on ext4, xfs or tmpfs", dir))
			}
			return nil
		})
	if err != nil {
		return nil, nil, err
	}
	return srv, stop, nil
}

// newS3Server finds the binary of an S3 implementation, makes its data
// directory dir/data and returns the server's description with random
// credentials (Endpoint and Pid are set once it runs).
func newS3Server(binary, dir string) (srv *S3Server, bin, data string, err error) {
	if bin, err = lookTool(binary); err != nil {
		return nil, "", "", err
	}
	data = filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		return nil, "", "", err
	}
	srv = &S3Server{
		Implementation: binary,
		Region:         "us-east-1",
		AccessKey:      "AK" + strings.ToUpper(randomHex(9)),
		SecretKey:      randomHex(20),
		Bucket:         "berth-test",
		Version:        "unknown",
	}
	if bi, err := buildinfo.ReadFile(bin); err == nil && bi.Main.Version != "" {
		srv.Version = bi.Main.Version
	}
	return srv, bin, data, nil
}

// start runs an S3 server with launch on a free port, trying another
// when the server exits at start (it may have lost the port to another
// process; exited may turn its log's tail into a final error), waits up to
// wait for it to answer and creates the bucket (retried while the server
// warms up). It returns the server's stop.
func (srv *S3Server) start(logPath string, wait time.Duration, launch func(port int) (*proc, error), exited func(tail string) error) (func() error, error) {
	var p *proc
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		srv.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
		if p, err = launch(port); err != nil {
			return nil, fmt.Errorf("start %s: %w", srv.Implementation, err)
		}
		if lastErr = waitHTTP(srv.Endpoint, p, wait); lastErr == nil {
			break
		}
		p.stop()
		if !errors.Is(lastErr, errExited) {
			break
		}
		if err := exited(logTail(logPath)); err != nil {
			return nil, err
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%s did not start: %v\n--- tail of %s ---\n%s", srv.Implementation, lastErr, logPath, logTail(logPath))
	}
	srv.Pid = p.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		err := srv.CreateBucket(ctx, srv.Bucket)
		if err == nil {
			return p.stop, nil
		}
		select {
		case <-ctx.Done():
			p.stop()
			return nil, fmt.Errorf("%v\n--- tail of %s ---\n%s", err, logPath, logTail(logPath))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// CreateBucket creates another bucket on the server.
func (s *S3Server) CreateBucket(ctx context.Context, name string) error {
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
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
	// A developer's VGW_* or ROOT_* settings must not change the server.
	return startProc(bin, logPath, environWithout("VGW_", "ROOT_ACCESS_KEY", "ROOT_SECRET"),
		"--access", srv.AccessKey, "--secret", srv.SecretKey, "--region", srv.Region,
		"--port", "127.0.0.1:"+strconv.Itoa(port), "--quiet", "posix", data)
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
// a few seconds, which the error reports. Stopping an exited server does
// nothing.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop on SIGTERM; killed it", filepath.Base(p.cmd.Path))
	}
}

// ErrMissing is matched (errors.Is) by the errors of the Start functions
// that mean the server cannot run on this machine: its binary is not
// installed, or the file system lacks something it needs. Their messages
// say how to install what is missing.
var ErrMissing = errors.New("testserver: server not installed")

// missingError is an error that matches ErrMissing.
type missingError string

func (e missingError) Error() string        { return string(e) }
func (e missingError) Is(target error) bool { return target == ErrMissing }

// need ends a test for a Start function's error: a skip for a missing
// server (a failure when CI=true), a failure otherwise.
func need(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrMissing) {
		missing(t, err.Error())
	}
	t.Fatalf("testserver: %v", err)
}

// lookTool returns the path of a server binary from PATH or
// $BERTH_TOOLS_DIR/bin (default ~/.cache/berth-tools/bin), or an error
// matching ErrMissing.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
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
			return p, nil
		}
	}
	return "", missingError(fmt.Sprintf("%s is not on PATH nor in %s; install it with `bash scripts/test-deps.sh`",
		name, filepath.Join(dir, "bin")))
}

// findTool is lookTool for a test: it skips the test when the binary is
// missing (fails it when CI=true).
func findTool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		need(t, err)
	}
	return p
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

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

// logTail returns the last lines (at most 4 KiB) of a log file.
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
