package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// observed collects what an S3Observer is told.
type observed struct {
	mu  sync.Mutex
	got []string // operation/outcome
}

func (o *observed) observe(op, outcome string, elapsed time.Duration) {
	if elapsed < 0 {
		outcome += "(negative duration)"
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, op+"/"+outcome)
}

func (o *observed) take() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := strings.Join(o.got, " ")
	o.got = nil
	return s
}

// fakeS3 answers every request with the status (or transport error) that
// the test set, for whatever key.
type fakeS3 struct {
	mu     sync.Mutex
	status int
	err    error
	// during, when set, runs while a request is being answered.
	during func()
}

func (f *fakeS3) set(status int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.err = status, err
}

func (f *fakeS3) Do(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	status, err, during := f.status, f.err, f.during
	f.mu.Unlock()
	if during != nil {
		during()
	}
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	if err != nil {
		return nil, err
	}
	body := ""
	if status >= 300 && r.Method != http.MethodHead {
		body = fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>E%d</Code><Message>m</Message></Error>`, status)
	}
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{"Content-Type": {"application/xml"}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
}

func fakeS3Client(f *fakeS3, tp trace.TracerProvider, o *observed) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AK", "SK", ""),
		BaseEndpoint: aws.String("http://s3.test"),
		UsePathStyle: true,
		HTTPClient:   smithyhttp.ClientDoFunc(f.Do),
		Retryer: retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 3
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		}),
		APIOptions: []func(*middleware.Stack) error{instrumentS3(tp, o.observe)},
	})
}

// TestS3InstrumentOutcomes checks the operation and outcome each S3
// request is observed with: every attempt, classified by status.
func TestS3InstrumentOutcomes(t *testing.T) {
	f, o := &fakeS3{}, &observed{}
	c := fakeS3Client(f, nil, o)
	ctx := context.Background()
	bucket, key := aws.String("b"), aws.String("k")
	put := func() error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: bucket, Key: key, Body: strings.NewReader("x")})
		return err
	}
	for _, tc := range []struct {
		status int
		err    error
		call   func() error
		want   string
	}{
		{status: 200, call: put, want: "PutObject/ok"},
		{status: 404, call: func() error { _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: key}); return err },
			want: "HeadObject/not_found"},
		{status: 412, call: put, want: "PutObject/precondition_failed"},
		{status: 403, call: put, want: "PutObject/client_error"},
		{status: 503, call: put, want: "PutObject/throttled PutObject/throttled PutObject/throttled"},
		{status: 500, call: put, want: "PutObject/server_error PutObject/server_error PutObject/server_error"},
		{err: errors.New("connection reset by peer"), call: put, want: "PutObject/network_error PutObject/network_error PutObject/network_error"},
	} {
		f.set(tc.status, tc.err)
		err := tc.call()
		if (err == nil) != (tc.status == 200) {
			t.Errorf("status %d: error %v", tc.status, err)
		}
		if got := o.take(); got != tc.want {
			t.Errorf("status %d, error %v: observed %q, want %q", tc.status, tc.err, got, tc.want)
		}
	}

	// A caller that gives up while the request is out: it fails with its
	// context, and is not retried.
	f.set(200, nil)
	cctx, cancel := context.WithCancel(ctx)
	f.during = cancel
	if err := func() error {
		_, err := c.PutObject(cctx, &s3.PutObjectInput{Bucket: bucket, Key: key, Body: strings.NewReader("x")})
		return err
	}(); err == nil {
		t.Errorf("a cancelled PutObject succeeded")
	}
	if got := o.take(); got != "PutObject/canceled" {
		t.Errorf("a cancelled request is observed as %q, want PutObject/canceled", got)
	}
	f.during = nil

	// Presigning sends nothing and is not observed.
	f.set(200, nil)
	if _, err := s3.NewPresignClient(c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: key}); err != nil {
		t.Fatal(err)
	}
	if got := o.take(); got != "" {
		t.Errorf("presigning was observed: %q", got)
	}
}

// TestS3InstrumentSpans checks the client span of an S3 request: a child
// of the caller's span, named after the operation, with its status; none
// without a parent.
func TestS3InstrumentSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	f, o := &fakeS3{}, &observed{}
	c := fakeS3Client(f, tp, o)
	f.set(404, nil)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "parent")
	_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	if err == nil {
		t.Fatal("HeadObject of a 404 succeeded")
	}
	f.set(500, nil)
	_, _ = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), Body: strings.NewReader("x")})
	parent.End()
	// Without a span in the context: observed, not traced.
	f.set(200, nil)
	if _, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")}); err != nil {
		t.Fatal(err)
	}

	attrs := func(s tracetest.SpanStub) map[attribute.Key]string {
		m := map[attribute.Key]string{}
		for _, kv := range s.Attributes {
			m[kv.Key] = kv.Value.Emit()
		}
		return m
	}
	var head, puts int
	for _, s := range exp.GetSpans() {
		switch s.Name {
		case "parent":
			continue
		case "S3.HeadObject":
			head++
			a := attrs(s)
			if a["http.response.status_code"] != "404" || a["berth.s3.outcome"] != "not_found" || a["rpc.method"] != "HeadObject" || s.Status.Code == codes.Error {
				t.Errorf("S3.HeadObject span: %v, status %v", a, s.Status)
			}
		case "S3.PutObject":
			puts++
			if s.Status.Code != codes.Error || attrs(s)["http.response.status_code"] != "500" {
				t.Errorf("S3.PutObject of a 500: status %v, attributes %v", s.Status, attrs(s))
			}
		default:
			t.Errorf("unexpected span %q", s.Name)
			continue
		}
		if s.SpanKind != trace.SpanKindClient || s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: kind %v, parent %s, want client and %s", s.Name, s.SpanKind, s.Parent.SpanID(), parent.SpanContext().SpanID())
		}
	}
	if head != 1 || puts != 3 {
		t.Errorf("%d HeadObject and %d PutObject spans, want 1 and 3 (one per attempt)", head, puts)
	}
	if got := o.take(); got != "HeadObject/not_found PutObject/server_error PutObject/server_error PutObject/server_error HeadObject/ok" {
		t.Errorf("observed %q", got)
	}
}
