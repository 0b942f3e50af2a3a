package testserver

import (
	"context"
	"debug/buildinfo"
	"errors"
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

// minioBinary is the second S3 implementation the tests run: MinIO, an
// unmodified binary started as a separate process (it is AGPL: its
// packages are never imported).
const minioBinary = "minio"

// MinIO starts a MinIO server with StartMinIO in a fresh temporary
// directory of the test and stops it when the test ends; when MinIO is not
// installed the test is skipped, or fails when CI=true.
func MinIO(t testing.TB) *S3Server {
	t.Helper()
	srv, stop, err := StartMinIO(t.TempDir())
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

// EachS3 runs fn as a subtest on each S3 implementation the tests use:
// versitygw and MinIO, so that what berth relies on holds on both.
func EachS3(t *testing.T, fn func(t *testing.T, srv *S3Server)) {
	t.Run("versitygw", func(t *testing.T) { fn(t, S3(t)) })
	t.Run("minio", func(t *testing.T) { fn(t, MinIO(t)) })
}

// StartMinIO starts a MinIO server on a free port of 127.0.0.1 with
// random credentials and its console off, storing its objects under
// dir/data and its log in dir/minio.log, and creates the bucket
// S3Server.Bucket. stop is as for StartS3.
func StartMinIO(dir string) (srv *S3Server, stop func() error, err error) {
	bin, err := lookTool(minioBinary)
	if err != nil {
		return nil, nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		return nil, nil, err
	}
	srv = &S3Server{
		Implementation: "minio",
		Region:         "us-east-1",
		AccessKey:      "AK" + strings.ToUpper(randomHex(9)),
		SecretKey:      randomHex(20),
		Bucket:         "berth-test",
		Version:        "unknown",
	}
	if bi, err := buildinfo.ReadFile(bin); err == nil && bi.Main.Version != "" {
		srv.Version = bi.Main.Version
	}
	logPath := filepath.Join(dir, "minio.log")
	var p *proc
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, nil, err
		}
		srv.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
		if p, err = startMinIO(bin, srv, port, data, logPath); err != nil {
			return nil, nil, fmt.Errorf("start minio: %w", err)
		}
		if lastErr = waitHTTP(srv.Endpoint, p, 30*time.Second); lastErr == nil {
			break
		}
		p.stop()
		if !errors.Is(lastErr, errExited) {
			break
		}
	}
	if lastErr != nil {
		return nil, nil, fmt.Errorf("minio did not start: %v\n--- tail of %s ---\n%s", lastErr, logPath, logTail(logPath))
	}
	srv.Pid = p.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// MinIO answers before it takes requests: retry the bucket briefly.
	for {
		if err = srv.CreateBucket(ctx, srv.Bucket); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			p.stop()
			return nil, nil, fmt.Errorf("%v\n--- tail of %s ---\n%s", err, logPath, logTail(logPath))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return srv, p.stop, nil
}

func startMinIO(bin string, srv *S3Server, port int, data, logPath string) (*proc, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "=== minio on port %d\n", port)
	cmd := exec.Command(bin, "server", data, "--address", "127.0.0.1:"+strconv.Itoa(port), "--quiet")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(environWithout("MINIO_"),
		"MINIO_ROOT_USER="+srv.AccessKey, "MINIO_ROOT_PASSWORD="+srv.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION="+srv.Region)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}
