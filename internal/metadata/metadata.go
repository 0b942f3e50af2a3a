// Package metadata defines the one interface through which the registry
// records repositories, tags, manifests, the references between them and
// upload sessions, and implements it on an embedded SQL database.
package metadata

import (
	"context"
	"errors"
	"time"

	"github.com/berth-registry/berth/internal/reference"
)

// Errors returned by a Store.
var (
	ErrNotFound = errors.New("not found")
	// ErrSizeMismatch is wrapped by PutManifest when a descriptor's size
	// differs from the stored blob's.
	ErrSizeMismatch = errors.New("descriptor size does not match blob")
)

// Manifest is a stored manifest.
type Manifest struct {
	Repository   string
	Digest       reference.Digest
	MediaType    string
	ArtifactType string
	Subject      reference.Digest // empty when the manifest has none
	Annotations  map[string]string
	Payload      []byte
	Created      time.Time
}

// Ref is a reference from a manifest to a blob or child manifest, with the
// size its descriptor claims.
type Ref struct {
	Digest reference.Digest
	Size   int64
}

// PutManifest is a manifest to record with the references that must exist.
type PutManifest struct {
	Manifest
	Blobs    []Ref
	Children []Ref
	Tags     []string // empty when pushed by digest only
	// Protect lists tags that may be created but not moved to another
	// manifest (immutable tags); moving one fails with ErrTagImmutable.
	Protect []string
	// Lazy records a mirror's manifest, whose blobs and child manifests
	// are fetched from the upstream on their first pull: references not
	// in the repository yet are recorded without the check (those that
	// are must still match their sizes).
	Lazy bool
}

// MissingReferenceError is returned by PutManifest when a referenced blob or
// child manifest is not in the repository.
type MissingReferenceError struct {
	Digest reference.Digest
	What   string // "blob" or "manifest"
}

func (e *MissingReferenceError) Error() string {
	return e.What + " " + string(e.Digest) + " is not in the repository"
}

// Descriptor is a referrer as the referrers API lists it.
type Descriptor struct {
	MediaType    string
	Digest       reference.Digest
	Size         int64
	ArtifactType string
	Annotations  map[string]string
}

// Upload is an upload session.
type Upload struct {
	ID         string
	Repository string
	Started    time.Time
	// TokenID is the id of the bearer token that started the upload, which
	// may finish it even after it expires; empty without auth.
	TokenID string
	// Namespace is the first component of Repository; open sessions are
	// counted per namespace.
	Namespace string
}

// ErrTooManyUploads is returned by CreateUpload when the upload's namespace
// already has the most open sessions allowed.
var ErrTooManyUploads = errors.New("too many open upload sessions")

// Guard is called inside a deletion's transaction, after the row is locked
// against concurrent pushes, with the tags of the repository that point to
// the deleted manifest or reach the deleted content: through index
// children, and for a blob through the manifests using it (config and
// layers). An error rolls the deletion back and is returned as it is.
type Guard func(tags []string) error

// ErrTagImmutable is returned by PutManifest when it would move a
// protected tag.
var ErrTagImmutable = errors.New("tag is immutable")

// Store is the metadata seam. Every method is one transaction.
type Store interface {
	Rules
	// TagsOf lists the tags pointing to a manifest.
	TagsOf(ctx context.Context, repo string, d reference.Digest) ([]string, error)
	// RepositoryBlob returns the size of a blob linked into a repository.
	RepositoryBlob(ctx context.Context, repo string, d reference.Digest) (int64, error)
	// KeepBlobLink is RepositoryBlob for a client that will rely on the
	// link (a blob HEAD, a mount): a link made before refreshBefore has
	// its time moved to now first, so that garbage collection keeps it for
	// another grace period. The refresh and the collector's sweep are
	// serialized: a link the sweep removed is ErrNotFound, never made
	// again.
	KeepBlobLink(ctx context.Context, repo string, d reference.Digest, refreshBefore time.Time) (int64, error)
	// LinkBlob records that a committed blob of the given size belongs to a
	// repository, creating the repository if needed; when uploadID is set,
	// the upload session that produced the blob ends in the same transaction.
	LinkBlob(ctx context.Context, repo string, d reference.Digest, size int64, uploadID string) error
	// UnlinkBlob removes a blob from a repository (ErrNotFound if absent),
	// unless guard (when not nil) refuses.
	UnlinkBlob(ctx context.Context, repo string, d reference.Digest, guard Guard) error
	// BlobSize returns the size of a blob linked into at least one
	// repository, for mounts without a source repository.
	BlobSize(ctx context.Context, d reference.Digest) (int64, error)

	// BlobRepositories lists up to limit repositories holding a blob.
	BlobRepositories(ctx context.Context, d reference.Digest, limit int) ([]string, error)
	// ManifestRepositories lists up to limit repositories holding a
	// manifest.
	ManifestRepositories(ctx context.Context, d reference.Digest, limit int) ([]string, error)

	// GetManifest returns a manifest by tag or digest.
	GetManifest(ctx context.Context, repo, ref string) (*Manifest, error)
	// PutManifest records a manifest, its references and its tag in one
	// transaction; a missing reference fails it with *MissingReferenceError.
	PutManifest(ctx context.Context, m *PutManifest) error
	// DeleteManifest deletes a manifest and every tag pointing to it,
	// unless guard (when not nil) refuses.
	DeleteManifest(ctx context.Context, repo string, d reference.Digest, guard Guard) error
	// DeleteTag deletes a tag.
	DeleteTag(ctx context.Context, repo, tag string) error
	// Tags lists a repository's tags in order, after last, at most n; ok is
	// false when the repository does not exist.
	Tags(ctx context.Context, repo, last string, n int) (tags []string, ok bool, err error)
	// Repositories lists repository names in order, after last, at most n.
	Repositories(ctx context.Context, last string, n int) ([]string, error)
	// Referrers lists the manifests whose subject is d, optionally only
	// those of one artifact type.
	Referrers(ctx context.Context, repo string, d reference.Digest, artifactType string) ([]Descriptor, error)

	// CreateUpload records a new upload session, unless its namespace has
	// limit open sessions already (ErrTooManyUploads; limit <= 0: none).
	CreateUpload(ctx context.Context, u Upload, limit int) error
	// GetUpload returns an upload session.
	GetUpload(ctx context.Context, id string) (*Upload, error)
	// DeleteUpload removes an upload session.
	DeleteUpload(ctx context.Context, id string) error
	// UploadsBefore lists every upload session started before t.
	UploadsBefore(ctx context.Context, t time.Time) ([]Upload, error)

	// CollectGarbage applies retention's tag deletions, removes unreachable
	// manifests and unused blob links created before the cutoff and lists
	// the blobs no repository holds; a dry run changes nothing.
	CollectGarbage(ctx context.Context, req GCRequest) (*GCPlan, error)
	// TagInfos lists a repository's tags, newest push first, with their
	// push and last pull times.
	TagInfos(ctx context.Context, repo string) ([]TagInfo, error)
	// RecordPulls records when manifests were pulled.
	RecordPulls(ctx context.Context, pulls []Pull) error
	// DeleteBlobRecords deletes the records of those of the blobs that are
	// unheld and were created before the cutoff, and returns them.
	DeleteBlobRecords(ctx context.Context, ds []reference.Digest, before time.Time) ([]reference.Digest, error)

	// AppendEvents writes events to the webhook outbox in a transaction
	// of their own (for what is no metadata write: pulls, refusals).
	AppendEvents(ctx context.Context, evs []Event) error

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}
