package testserver

import (
	"path/filepath"
	"strconv"
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
	return startForTest(t, StartMinIO)
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
	srv, bin, data, err := newS3Server(minioBinary, dir)
	if err != nil {
		return nil, nil, err
	}
	logPath := filepath.Join(dir, "minio.log")
	stop, err = srv.start(logPath, 30*time.Second,
		func(port int) (*proc, error) { return startMinIO(bin, srv, port, data, logPath) },
		func(string) error { return nil })
	if err != nil {
		return nil, nil, err
	}
	return srv, stop, nil
}

func startMinIO(bin string, srv *S3Server, port int, data, logPath string) (*proc, error) {
	env := append(environWithout("MINIO_"), "MINIO_ROOT_USER="+srv.AccessKey, "MINIO_ROOT_PASSWORD="+srv.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_REGION="+srv.Region)
	return startProc(bin, logPath, env, "server", data, "--address", "127.0.0.1:"+strconv.Itoa(port), "--quiet")
}
