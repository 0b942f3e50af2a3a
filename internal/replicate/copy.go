package replicate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/events"
	"github.com/berth-registry/berth/internal/manifest"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/registry"
	"github.com/berth-registry/berth/internal/upstream"
)

// Local is what replication needs of berth's own registry
// (registry.Service): reads for push rules, the normal write path (uploads,
// manifest pushes, so that quotas, events and webhooks apply) for pull
// rules.
type Local interface {
	GetManifest(ctx context.Context, repo, ref string) (*metadata.Manifest, error)
	OpenBlob(ctx context.Context, repo string, d reference.Digest) (blobstore.Content, int64, error)
	BlobRepositories(ctx context.Context, d reference.Digest, limit int) ([]string, error)
	StatBlob(ctx context.Context, repo string, d reference.Digest, keep bool) (int64, error)
	Mount(ctx context.Context, repo string, d reference.Digest, from string) (bool, error)
	PutBlob(ctx context.Context, repo string, d reference.Digest, c registry.Chunk, tokenID string) error
	PutManifest(ctx context.Context, repo, ref, contentType string, body io.Reader, extraTags []string) (*registry.PutResult, error)
}

// errGone marks content the source no longer has (deleted since the
// event): there is nothing left to copy.
var errGone = errors.New("gone from the source")

// maxDepth bounds the nesting of indexes a copy follows.
const maxDepth = 4

// source is where a copy reads.
type source interface {
	manifest(ctx context.Context, repo string, d reference.Digest) (mediaType string, payload []byte, err error)
	// blob opens a blob; size is -1 when unknown.
	blob(ctx context.Context, repo string, d reference.Digest) (io.ReadCloser, int64, error)
}

// sink is where a copy writes.
type sink interface {
	hasManifest(ctx context.Context, repo string, d reference.Digest) (bool, error)
	// tagged returns the digest repo:tag names ("" when none).
	tagged(ctx context.Context, repo, tag string) (reference.Digest, error)
	// hasBlob reports whether repo has the blob, or has been given it
	// without a copy (a mount).
	hasBlob(ctx context.Context, repo string, d reference.Digest) (bool, error)
	putBlob(ctx context.Context, repo string, d reference.Digest, size int64, r io.Reader) error
	putManifest(ctx context.Context, repo, ref, mediaType string, payload []byte) error
}

// Counts are what a copy did.
type Counts struct {
	// Manifests and Blobs were copied; Present ones the destination had.
	Manifests, Blobs, Present int64
	// Bytes is the size of the blobs copied.
	Bytes int64
}

// copier copies images from src to dst, digest for digest.
type copier struct {
	src source
	dst sink
	n   Counts
}

// image copies the manifest d of repo with everything it references, then
// points tag at it (when tag is not ""). It reports whether it changed
// anything: false when the destination had it all already.
func (c *copier) image(ctx context.Context, repo string, d reference.Digest, tag string) (bool, error) {
	if tag != "" {
		cur, err := c.dst.tagged(ctx, repo, tag)
		if err != nil {
			return false, err
		}
		if cur == d {
			c.n.Present++
			return false, nil
		}
	}
	mt, payload, err := c.manifest(ctx, repo, d, 0)
	if err != nil {
		return false, err
	}
	if tag == "" {
		return payload != nil, nil
	}
	if payload == nil { // the destination had it: read it for the tag
		if mt, payload, err = c.src.manifest(ctx, repo, d); err != nil {
			return false, err
		}
	}
	if err := c.dst.putManifest(ctx, repo, tag, mt, payload); err != nil {
		return false, fmt.Errorf("tag %s:%s: %w", repo, tag, err)
	}
	return true, nil
}

// manifest copies the manifest d of repo, children and blobs first, unless
// the destination has it; it returns the media type and bytes when it
// copied them (nil bytes when the destination had the manifest).
func (c *copier) manifest(ctx context.Context, repo string, d reference.Digest, depth int) (string, []byte, error) {
	if depth > maxDepth {
		return "", nil, fmt.Errorf("%s@%s: indexes nested deeper than %d", repo, d, maxDepth)
	}
	have, err := c.dst.hasManifest(ctx, repo, d)
	if err != nil {
		return "", nil, err
	}
	if have {
		c.n.Present++
		return "", nil, nil
	}
	mt, payload, err := c.src.manifest(ctx, repo, d)
	if err != nil {
		return "", nil, err
	}
	m, err := manifest.Parse(mt, payload)
	if err != nil {
		return "", nil, fmt.Errorf("%s@%s: %w", repo, d, err)
	}
	for _, ch := range m.Children {
		if _, _, err := c.manifest(ctx, repo, reference.Digest(ch.Digest), depth+1); err != nil {
			return "", nil, err
		}
	}
	for _, b := range m.Blobs {
		if len(b.URLs) > 0 {
			continue // a foreign layer: it is served from its URLs, not by registries
		}
		if err := c.blob(ctx, repo, reference.Digest(b.Digest)); err != nil {
			return "", nil, err
		}
	}
	if err := c.dst.putManifest(ctx, repo, string(d), mt, payload); err != nil {
		return "", nil, fmt.Errorf("manifest %s@%s: %w", repo, d, err)
	}
	c.n.Manifests++
	return mt, payload, nil
}

// blob copies a blob unless the destination has it (or mounts it).
func (c *copier) blob(ctx context.Context, repo string, d reference.Digest) error {
	have, err := c.dst.hasBlob(ctx, repo, d)
	if err != nil {
		return err
	}
	if have {
		c.n.Present++
		return nil
	}
	rc, size, err := c.src.blob(ctx, repo, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := c.dst.putBlob(ctx, repo, d, size, rc); err != nil {
		return fmt.Errorf("blob %s@%s: %w", repo, d, err)
	}
	c.n.Blobs++
	c.n.Bytes += max(size, 0)
	return nil
}

// ---- berth's own registry ----

// localSource reads berth's registry (push rules).
type localSource struct{ svc Local }

func (l localSource) manifest(ctx context.Context, repo string, d reference.Digest) (string, []byte, error) {
	m, err := l.svc.GetManifest(ctx, repo, string(d))
	if isUnknown(err) {
		return "", nil, fmt.Errorf("manifest %s@%s: %w", repo, d, errGone)
	}
	if err != nil {
		return "", nil, err
	}
	return m.MediaType, m.Payload, nil
}

func (l localSource) blob(ctx context.Context, repo string, d reference.Digest) (io.ReadCloser, int64, error) {
	rc, size, err := l.svc.OpenBlob(ctx, repo, d)
	if isUnknown(err) {
		return nil, 0, fmt.Errorf("blob %s@%s: %w", repo, d, errGone)
	}
	return rc, size, err
}

// isUnknown reports a registry error that says the content is not there.
func isUnknown(err error) bool {
	e := errcode.As(err)
	return e != nil && (e.Code == errcode.ManifestUnknown || e.Code == errcode.BlobUnknown || e.Code == errcode.NameUnknown)
}

// localSink writes to berth's registry (pull rules), as a client's push
// would: quotas, immutable tags, events and webhooks apply.
type localSink struct {
	svc Local
}

func (l localSink) hasManifest(ctx context.Context, repo string, d reference.Digest) (bool, error) {
	_, err := l.svc.GetManifest(ctx, repo, string(d))
	if isUnknown(err) {
		return false, nil
	}
	return err == nil, err
}

func (l localSink) tagged(ctx context.Context, repo, tag string) (reference.Digest, error) {
	m, err := l.svc.GetManifest(ctx, repo, tag)
	if isUnknown(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return m.Digest, nil
}

func (l localSink) hasBlob(ctx context.Context, repo string, d reference.Digest) (bool, error) {
	if _, err := l.svc.StatBlob(ctx, repo, d, true); err == nil {
		return true, nil
	} else if !isUnknown(err) {
		return false, err
	}
	// In another repository of berth: linked, not copied.
	return l.svc.Mount(ctx, repo, d, "")
}

func (l localSink) putBlob(ctx context.Context, repo string, d reference.Digest, size int64, r io.Reader) error {
	return l.svc.PutBlob(ctx, repo, d, registry.Chunk{Body: r, Start: -1, Length: size}, "")
}

func (l localSink) putManifest(ctx context.Context, repo, ref, mediaType string, payload []byte) error {
	_, err := l.svc.PutManifest(ctx, repo, ref, mediaType, bytes.NewReader(payload), nil)
	return err
}

// ---- a remote registry ----

// remoteSource reads a remote registry (pull rules).
type remoteSource struct{ c *upstream.Client }

func (r remoteSource) manifest(ctx context.Context, repo string, d reference.Digest) (string, []byte, error) {
	desc, payload, err := r.c.GetManifest(ctx, repo, string(d))
	if err != nil {
		return "", nil, err
	}
	mt := desc.MediaType
	if !manifest.Known(mt) { // a registry that answers a generic type
		mt = sniffMediaType(payload)
	}
	return mt, payload, nil
}

func (r remoteSource) blob(ctx context.Context, repo string, d reference.Digest) (io.ReadCloser, int64, error) {
	return r.c.GetBlob(ctx, repo, d)
}

// sniffMediaType reads a manifest's own mediaType field.
func sniffMediaType(payload []byte) string {
	for _, mt := range []string{manifest.OCIIndex, manifest.OCIManifest, manifest.DockerManifestList, manifest.DockerManifest} {
		if bytes.Contains(payload, []byte(`"`+mt+`"`)) {
			return mt
		}
	}
	return manifest.OCIManifest
}

// remoteSink writes to a remote registry (push rules).
type remoteSink struct {
	c *upstream.Client
	// mountFrom lists other repositories of the remote that may hold a
	// blob (berth's repositories holding it that the rule replicates).
	mountFrom func(ctx context.Context, repo string, d reference.Digest) []string
}

func (r remoteSink) hasManifest(ctx context.Context, repo string, d reference.Digest) (bool, error) {
	_, err := r.c.HeadManifest(ctx, repo, string(d))
	if errors.Is(err, upstream.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (r remoteSink) tagged(ctx context.Context, repo, tag string) (reference.Digest, error) {
	desc, err := r.c.HeadManifest(ctx, repo, tag)
	if errors.Is(err, upstream.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return desc.Digest, nil
}

func (r remoteSink) hasBlob(ctx context.Context, repo string, d reference.Digest) (bool, error) {
	_, err := r.c.HeadBlob(ctx, repo, d)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, upstream.ErrNotFound) {
		return false, err
	}
	if r.mountFrom != nil {
		for _, from := range r.mountFrom(ctx, repo, d) {
			// A refused or failed mount is no reason to fail: the blob is
			// pushed then.
			if ok, err := r.c.Mount(ctx, repo, d, from); err == nil && ok {
				return true, nil
			}
		}
	}
	return false, nil
}

func (r remoteSink) putBlob(ctx context.Context, repo string, d reference.Digest, size int64, body io.Reader) error {
	return r.c.PutBlob(ctx, repo, d, size, body)
}

func (r remoteSink) putManifest(ctx context.Context, repo, ref, mediaType string, payload []byte) error {
	_, err := r.c.PutManifest(ctx, repo, ref, mediaType, payload)
	return err
}

// pushTarget is what a push event names.
type pushTarget struct {
	repo, tag string
	digest    reference.Digest
}

// pushOf reads a push event's target; ok is false for other events.
func pushOf(ev *metadata.Event) (pushTarget, bool, error) {
	if ev.Action != events.ActionPush {
		return pushTarget{}, false, nil
	}
	var e events.Event
	if err := jsonUnmarshal(ev.Payload, &e); err != nil {
		return pushTarget{}, false, fmt.Errorf("read event %s: %w", ev.ID, err)
	}
	if e.Target == nil || e.Target.Repository == "" || e.Target.Digest == "" {
		return pushTarget{}, false, nil
	}
	d, err := reference.ParseDigest(e.Target.Digest)
	if err != nil {
		return pushTarget{}, false, fmt.Errorf("event %s: %w", ev.ID, err)
	}
	return pushTarget{repo: e.Target.Repository, tag: e.Target.Tag, digest: d}, true, nil
}
