package testserver

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestS3(t *testing.T) {
	srv := S3(t)
	if !strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:") || srv.Region != "us-east-1" ||
		srv.AccessKey == "" || srv.SecretKey == "" || srv.Bucket == "" {
		t.Fatalf("incomplete server description: %+v", srv)
	}
	ctx := context.Background()
	c := srv.Client()
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &srv.Bucket}); err != nil {
		t.Fatalf("head bucket: %v", err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &srv.Bucket, Key: aws.String("a/b"), Body: strings.NewReader("hello"),
	}); err != nil {
		t.Fatalf("put: %v", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &srv.Bucket, Key: aws.String("a/b")})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer out.Body.Close()
	if b, err := io.ReadAll(out.Body); err != nil || string(b) != "hello" {
		t.Fatalf("get = %q, %v", b, err)
	}

	// Wrong credentials are refused: the server really checks signatures.
	bad := *srv
	bad.SecretKey = "wrong" + srv.SecretKey
	if _, err := bad.Client().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &srv.Bucket}); err == nil {
		t.Fatal("head bucket with a wrong secret key succeeded")
	}
}

func TestS3MissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("BERTH_TOOLS_DIR", t.TempDir())
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		var skipped, failed string
		fake := &recorder{TB: t, skip: &skipped, fail: &failed}
		func() {
			defer func() { recover() }()
			findTool(fake, "versitygw")
		}()
		got := skipped
		if ci == "true" {
			got = failed
			if skipped != "" {
				t.Errorf("CI=true: skipped (%q), want a failure", skipped)
			}
		} else if failed != "" {
			t.Errorf("CI unset: failed (%q), want a skip", failed)
		}
		if !strings.Contains(got, "scripts/test-deps.sh") {
			t.Errorf("CI=%q: message %q does not say how to install versitygw", ci, got)
		}
	}
}

// recorder captures Skipf and Fatalf of a helper without ending the real
// test; both panic to stop the helper as runtime.Goexit would.
type recorder struct {
	testing.TB
	skip, fail *string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	*r.skip = fmt.Sprintf(format, args...)
	panic("skipped")
}

func (r *recorder) Fatalf(format string, args ...any) {
	*r.fail = fmt.Sprintf(format, args...)
	panic("failed")
}

// TestS3StartFailure runs a fake versitygw that exits at once: the failure
// shows the tail of its log, and a file system without extended attributes
// skips the test (fails it when CI=true).
func TestS3StartFailure(t *testing.T) {
	for _, tc := range []struct {
		message, ci string
		skip        bool
		want        string // in the skip or failure message
	}{
		{"fake failure: cannot bind", "", false, "fake failure: cannot bind"},
		{"xattrs are not supported on this filesystem", "", true, "extended attributes"},
		{"xattrs are not supported on this filesystem", "true", false, "extended attributes"},
	} {
		bin := t.TempDir()
		script := "#!/bin/sh\necho '" + tc.message + "' >&2\nexit 1\n"
		if err := os.WriteFile(filepath.Join(bin, "versitygw"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		t.Setenv("CI", tc.ci)
		var skipped, failed string
		fake := &recorder{TB: t, skip: &skipped, fail: &failed}
		func() {
			defer func() { recover() }()
			S3(fake)
		}()
		got := failed
		if tc.skip {
			got = skipped
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%q (CI=%q): skipped %q, failed %q", tc.message, tc.ci, skipped, failed)
		}
	}
}
