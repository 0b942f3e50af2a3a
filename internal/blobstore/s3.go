package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/berth-registry/berth/internal/reference"
)

// S3Options configures an S3 blob store.
type S3Options struct {
	// Bucket is the bucket holding blobs and uploads; it must exist.
	Bucket string
	// Prefix is prepended to every key, e.g. "berth/"; a missing trailing
	// slash is added. Empty means the root of the bucket.
	Prefix string
	// Region is the bucket's region. Empty means the SDK's default (the
	// AWS_REGION variable or the shared configuration).
	Region string
	// Endpoint is the base URL of an S3-compatible server; empty means AWS.
	Endpoint string
	// PathStyle addresses the bucket as a path (http://host/bucket/key)
	// rather than a host name (http://bucket.host/key), as most
	// S3-compatible servers need.
	PathStyle bool
	// AccessKey and SecretKey are static credentials. When both are empty
	// the SDK's default credential chain is used: environment variables
	// (AWS_ACCESS_KEY_ID...), the shared configuration and credentials
	// files, web identity (IRSA), container and instance roles.
	AccessKey, SecretKey string
	// PresignTTL is how long the URLs of RedirectURL stay valid; zero
	// means DefaultPresignTTL. At most 7 days.
	PresignTTL time.Duration
	// Observe, when set, is told of every request sent to S3 (metrics).
	Observe S3Observer
	// TracerProvider, when set, makes a client span of every request
	// sent to S3 ("S3.PutObject").
	TracerProvider trace.TracerProvider
	// Index keeps the upload sessions' state and the blobs' locations
	// (the metadata database); required.
	Index S3Index
}

// DefaultPresignTTL is how long presigned blob URLs stay valid unless
// S3Options.PresignTTL says otherwise.
const DefaultPresignTTL = 20 * time.Minute

const (
	// s3PartSize is the size of every multipart part but the last. S3
	// needs at least 5 MiB; it is also the memory one AppendUpload
	// buffers. With S3's limit of 10,000 parts an upload can reach about
	// 78 GiB.
	s3PartSize = 8 << 20
	s3MaxParts = 10000
	// s3MaxPresignTTL is the longest validity of a SigV4 presigned URL.
	s3MaxPresignTTL = 7 * 24 * time.Hour
)

// S3 stores blobs in an S3 bucket (AWS or a compatible server):
//
//	<prefix>blobs/<algorithm>/<first two hex>/<hex>   blobs smaller than a part
//	<prefix>objects/<upload id>                       larger blobs, where their multipart upload completed
//
// What is not content lives in an index (S3Options.Index, the metadata
// database), never in process memory, so that several registry replicas
// sharing the bucket and the database can continue and commit each
// other's uploads: the state of each upload session, with the bytes it
// holds that do not fill a part yet, and the location (key and size) of
// each blob. Reading or writing the index costs no S3 request, so a blob
// HEAD, a Stat and the opening of a blob for a GET cost none either.
//
// An upload is an S3 multipart upload of s3PartSize parts at
// objects/<upload id>, begun at the first full part. Client chunks of any
// size are cut into parts; the tail that does not fill a part stays in the
// index (at most one part's bytes) and is merged into the next part. The
// state records the size, the parts (number, ETag, CRC32, size), the
// multipart upload id and the marshalled sha256 state (a sha512 digest
// is checked from the content at the commit).
// It is written last, conditionally on the revision it was read at, so it
// is the commit point of a chunk: a chunk that fails leaves the upload as
// it was, and of two chunks racing at the same offset one gets ErrOffset.
// Parts a failed chunk uploaded are overwritten by the retry (part numbers
// follow from the state) or left out at completion.
//
// Committing checks the digest from the hash states, which cover exactly
// the recorded bytes, and copies nothing: an upload smaller than a part is
// written to the blob's address with one PUT; a larger one uploads its
// tail as the last part and completes the multipart upload, and the
// object stays at objects/<upload id>, its location recorded in the index.
// An object appears whole or not at all, so a blob is never visible with
// partial content. When the blob is stored already (another upload of the
// same digest), the upload's object is deleted and the first kept. A
// monolithic push of a small blob is so one S3 request, and a blob of N
// parts N+2 (begin, parts, complete), however it was chunked.
//
// Blobs stored before the index kept locations are found at their address
// (one HEAD). Multipart uploads begun by a chunk whose process died before
// it recorded them are aborted when the session is cancelled or expires
// (ListMultipartUploads); a bucket lifecycle rule aborting incomplete
// multipart uploads after a few days is still advisable. Objects under
// objects/ that no location names (a crash between completion and the
// index write) are strays, which berth fsck reports and --repair removes.
//
// Requests are retried by the SDK's standard retryer: up to 5 attempts with
// exponential backoff and jitter on throttling, 5xx answers and connection
// errors.
type S3 struct {
	client     *s3.Client
	presign    *s3.PresignClient
	bucket     string
	prefix     string
	presignTTL time.Duration
	index      S3Index

	bufs sync.Pool // *[]byte of s3PartSize
}

// NewS3 returns an S3 blob store after checking that the bucket is
// reachable with the configured credentials (HeadBucket).
func NewS3(ctx context.Context, o S3Options) (*S3, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3: no bucket configured")
	}
	if o.Index == nil {
		return nil, errors.New("s3: no index for upload state and blob locations")
	}
	if (o.AccessKey == "") != (o.SecretKey == "") {
		return nil, errors.New("s3: access key and secret key must be set together")
	}
	ttl := o.PresignTTL
	if ttl == 0 {
		ttl = DefaultPresignTTL
	}
	if ttl < 0 || ttl > s3MaxPresignTTL {
		return nil, fmt.Errorf("s3: presign TTL %v is not between 0 and %v", o.PresignTTL, s3MaxPresignTTL)
	}
	opts := []func(*config.LoadOptions) error{
		// The standard retryer: exponential backoff with jitter on
		// throttling errors, 5xx answers and connection errors, here up
		// to 5 attempts of each request.
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = 5
				so.Retryables = append(so.Retryables, retry.IsErrorRetryableFunc(transientConflict))
			})
		}),
	}
	// Checksums only where the API requires them: berth verifies every
	// blob's digest itself, and the SDK's default CRC32 on each request
	// (and on each response) costs both sides CPU for nothing more.
	opts = append(opts, config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	if o.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("s3: no region configured (set it in the configuration or AWS_REGION)")
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
		if o.Observe != nil || o.TracerProvider != nil {
			so.APIOptions = append(so.APIOptions, instrumentS3(o.TracerProvider, o.Observe))
		}
	})
	prefix := strings.TrimPrefix(o.Prefix, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	s := &S3{
		client:     client,
		presign:    s3.NewPresignClient(client),
		bucket:     o.Bucket,
		prefix:     prefix,
		presignTTL: ttl,
		index:      o.Index,
	}
	s.bufs.New = func() any { b := make([]byte, s3PartSize); return &b }
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		where := "AWS"
		if o.Endpoint != "" {
			where = o.Endpoint
		}
		return nil, fmt.Errorf("s3: bucket %q at %s is not reachable: %w", o.Bucket, where, err)
	}
	return s, nil
}

func (s *S3) blobKey(d reference.Digest) string {
	enc := d.Encoded()
	if len(enc) < 2 {
		enc = "00" + enc // unreachable for validated digests
	}
	return s.prefix + "blobs/" + string(d.Algorithm()) + "/" + enc[:2] + "/" + enc
}

// dataKey is the key of the object upload id's multipart upload
// completes into, which stays the blob's object: its location is in the
// index.
func (s *S3) dataKey(id string) string { return s.prefix + "objects/" + id }

// location returns the key and size of blob d's object: the one the
// index records, or, for a blob stored before the index kept locations,
// its address (one HEAD).
func (s *S3) location(ctx context.Context, d reference.Digest) (string, int64, error) {
	key, size, err := s.index.BlobLocation(ctx, d)
	if err == nil {
		return s.prefix + key, size, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return "", 0, fmt.Errorf("s3: look up blob %s: %w", d, err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.blobKey(d))})
	if isNotFound(err) {
		return "", 0, ErrNotFound
	}
	if err != nil {
		return "", 0, fmt.Errorf("s3: stat blob %s: %w", d, err)
	}
	return s.blobKey(d), aws.ToInt64(out.ContentLength), nil
}

// Stat implements Store: from the index, without an S3 request.
func (s *S3) Stat(ctx context.Context, d reference.Digest) (int64, error) {
	_, size, err := s.location(ctx, d)
	return size, err
}

// Open implements Store. The Content fetches nothing until it is read, and
// then reads from its offset with ranged GETs, so seeking is free.
func (s *S3) Open(ctx context.Context, d reference.Digest) (Content, int64, error) {
	key, size, err := s.location(ctx, d)
	if err != nil {
		return nil, 0, err
	}
	return &s3Content{ctx: ctx, s: s, d: d, key: key, size: size}, size, nil
}

// Delete implements Store. The location goes first: a failure between
// leaves an object no record points to (which fsck finds), never a record
// of a missing object.
func (s *S3) Delete(ctx context.Context, d reference.Digest) error {
	key, _, err := s.index.BlobLocation(ctx, d)
	switch {
	case err == nil:
		if err := s.index.DeleteBlobLocation(ctx, d); err != nil {
			return fmt.Errorf("s3: delete location of blob %s: %w", d, err)
		}
	case !errors.Is(err, ErrNotFound):
		return fmt.Errorf("s3: look up blob %s: %w", d, err)
	}
	keys := []string{s.blobKey(d)}
	if key != "" && s.prefix+key != s.blobKey(d) {
		keys = append(keys, s.prefix+key)
	}
	for _, k := range keys {
		if err := s.deleteObject(ctx, k); err != nil {
			return fmt.Errorf("s3: delete blob %s: %w", d, err)
		}
	}
	return nil
}

// RedirectURL implements Redirector: a presigned GET of the blob's
// object, valid for the configured presign TTL.
func (s *S3) RedirectURL(ctx context.Context, d reference.Digest) (string, error) {
	key, _, err := s.location(ctx, d)
	if err != nil {
		return "", err
	}
	req, err := s.presign.PresignGetObject(ctx,
		&s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(key)},
		s3.WithPresignExpires(s.presignTTL))
	if err != nil {
		return "", fmt.Errorf("s3: presign blob %s: %w", d, err)
	}
	return req.URL, nil
}

// s3Content reads a blob with ranged GETs from its current offset, opened
// at the first Read after a Seek.
type s3Content struct {
	ctx  context.Context
	s    *S3
	d    reference.Digest
	key  string
	size int64
	off  int64

	body    io.ReadCloser // nil until read, or after a seek elsewhere
	bodyOff int64         // offset of body's next byte
	closed  bool
}

func (c *s3Content) Read(p []byte) (int, error) {
	if c.closed {
		return 0, errors.New("s3: read of closed blob")
	}
	if c.off >= c.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c.body != nil && c.bodyOff != c.off {
		c.body.Close()
		c.body = nil
	}
	if c.body == nil {
		out, err := c.s.client.GetObject(c.ctx, &s3.GetObjectInput{
			Bucket: &c.s.bucket,
			Key:    aws.String(c.key),
			Range:  aws.String(fmt.Sprintf("bytes=%d-", c.off)),
		})
		if isNotFound(err) {
			return 0, fmt.Errorf("s3: read blob %s: %w", c.d, ErrNotFound)
		}
		if err != nil {
			return 0, fmt.Errorf("s3: read blob %s at %d: %w", c.d, c.off, err)
		}
		c.body, c.bodyOff = out.Body, c.off
	}
	if max := c.size - c.off; int64(len(p)) > max {
		p = p[:max]
	}
	n, err := c.body.Read(p)
	c.off += int64(n)
	c.bodyOff += int64(n)
	switch {
	case err == io.EOF:
		c.body.Close()
		c.body = nil
		if c.off < c.size {
			return n, fmt.Errorf("s3: read blob %s: %w at %d of %d bytes", c.d, io.ErrUnexpectedEOF, c.off, c.size)
		}
		return n, nil // io.EOF at the next Read
	case err != nil:
		c.body.Close()
		c.body = nil
		return n, fmt.Errorf("s3: read blob %s at %d: %w", c.d, c.off, err)
	}
	return n, nil
}

func (c *s3Content) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = c.off + offset
	case io.SeekEnd:
		abs = c.size + offset
	default:
		return 0, errors.New("s3: seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("s3: seek: negative position")
	}
	c.off = abs
	return abs, nil
}

func (c *s3Content) Close() error {
	c.closed = true
	if c.body != nil {
		err := c.body.Close()
		c.body = nil
		return err
	}
	return nil
}

// apiCode returns the S3 error code of err, if any.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus returns the HTTP status of a failed request, if any.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isNotFound reports whether err says that an object does not exist. A
// missing bucket is not that, but HEAD answers cannot tell them apart.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	switch apiCode(err) {
	case "NoSuchKey", "NotFound":
		return true
	case "NoSuchBucket", "NoSuchUpload":
		return false
	}
	return httpStatus(err) == 404
}

func isNoSuchUpload(err error) bool {
	return err != nil && (apiCode(err) == "NoSuchUpload" || apiCode(err) == "" && httpStatus(err) == 404)
}

// isConcurrencyError reports whether err may come from another request
// working on the same upload: a missing object or multipart upload, or
// parts that are not the ones listed.
func isConcurrencyError(err error) bool {
	return isNotFound(err) || isNoSuchUpload(err) || apiCode(err) == "InvalidPart"
}

// isPreconditionFailed reports whether a conditional write lost: S3
// answers 412, or 409 to concurrent conditional writes.
func isPreconditionFailed(err error) bool {
	if err == nil {
		return false
	}
	switch apiCode(err) {
	case "PreconditionFailed", "ConditionalRequestConflict":
		return true
	}
	return httpStatus(err) == 412
}

// transientConflict marks for retry the 409 that versitygw's POSIX backend
// answers when a PUT creates a key's parent directory while a DELETE of a
// neighbouring key removes that directory (ExistingObjectIsDirectory);
// object stores without directories never send it.
func transientConflict(err error) aws.Ternary {
	if apiCode(err) == "ExistingObjectIsDirectory" {
		return aws.TrueTernary
	}
	return aws.UnknownTernary
}

// Interfaces S3 implements.
var (
	_ Store      = (*S3)(nil)
	_ Redirector = (*S3)(nil)
)
