// Package registry holds the rules of the Distribution API: what makes a
// manifest acceptable, how uploads become blobs, what a mount needs. It knows
// nothing of HTTP or SQL; it speaks to storage through the blobstore and
// metadata interfaces and reports failures as errcode errors.
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/digestlock"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// Options tune a Service.
type Options struct {
	// MaxManifestSize is the largest manifest accepted, in bytes.
	MaxManifestSize int64
	// UploadTTL is how long an upload may sit idle before it expires.
	UploadTTL time.Duration
	// Redirect answers blob GETs with a redirect to the store's URL for
	// the blob when the store can make one (presigned S3 URLs).
	Redirect bool
	// Locks serialize storing and linking a blob against garbage
	// collection deleting it; nil locks within this process only.
	Locks digestlock.Locker
	// GCGrace is the garbage collector's grace period (default 1h). A blob
	// HEAD or mount that finds a link older than a minute (or a quarter
	// of the grace, when shorter) makes it young again, so that the
	// client may rely on it for the rest of the grace period.
	GCGrace time.Duration
	// MaxUploadSessions bounds the open upload sessions of a namespace
	// (default 100).
	MaxUploadSessions int
	// Events learns of events committed to the webhook outbox; nil
	// writes no pull or quota events (content events are written anyway
	// and wait for a dispatcher).
	Events Notifier
}

// Service implements the registry's operations on top of the two stores.
type Service struct {
	meta  metadata.Store
	blobs blobstore.Store
	opts  Options
	log   *slog.Logger
	// locks serialize storing and linking a blob against garbage
	// collection deleting it.
	locks      digestlock.Locker
	pulls      pullLog
	pullEvents pullEvents
	// wholeBytes is what whole bodies hold in memory now (whole.go).
	wholeBytes atomic.Int64
}

// New returns a Service.
func New(meta metadata.Store, blobs blobstore.Store, opts Options, log *slog.Logger) *Service {
	if opts.MaxManifestSize <= 0 {
		opts.MaxManifestSize = 4 << 20
	}
	if opts.UploadTTL <= 0 {
		opts.UploadTTL = 24 * time.Hour
	}
	if opts.Locks == nil {
		opts.Locks = &digestlock.Set{}
	}
	if opts.GCGrace <= 0 {
		opts.GCGrace = time.Hour
	}
	if opts.MaxUploadSessions <= 0 {
		opts.MaxUploadSessions = 100
	}
	return &Service{meta: meta, blobs: blobs, opts: opts, log: log, locks: opts.Locks}
}

// Locks returns the digest locks, which the garbage collector must share.
func (s *Service) Locks() digestlock.Locker { return s.locks }

// Ready reports whether the stores answer.
func (s *Service) Ready(ctx context.Context) error {
	return s.meta.Ping(ctx)
}

// internal wraps an unexpected storage failure.
func internal(err error, what string) error {
	return errcode.Wrap(err, what+" failed")
}

// newID returns a random upload session id: 32 lowercase hex digits.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidUploadID reports whether id has the form newID produces, so that it
// can never name anything but an upload.
func ValidUploadID(id string) bool {
	return len(id) == 32 && reference.IsLowerHex(id)
}

// ---- blobs ----

// StatBlob returns the size of a blob in a repository, for a HEAD. A
// pushing client (keep: it may push to repo) told that the blob exists
// skips its upload and relies on it in the manifest it pushes next, so the
// link is kept alive for the grace period (see keepAlive); a link younger
// than that costs no write. A HEAD by a client that may only pull changes
// nothing: pullers cannot keep unreferenced blobs alive.
func (s *Service) StatBlob(ctx context.Context, repo string, d reference.Digest, keep bool) (int64, error) {
	if !keep {
		return s.statBlob(ctx, repo, d)
	}
	size, err := s.meta.KeepBlobLink(ctx, repo, d, s.keepAlive())
	return blobSize(size, err, d)
}

// keepAlive is the time before which a link found by a HEAD or mount is
// refreshed: a minute ago, or a quarter of the grace period when that is
// shorter. A link is so written at most once a minute, and a client told
// it exists may rely on it for three quarters of the grace at least.
func (s *Service) keepAlive() time.Time {
	return time.Now().Add(-min(time.Minute, s.opts.GCGrace/4))
}

// statBlob is StatBlob without the refresh, for GETs: a pull relies on the
// manifest that uses the blob, not on its link.
func (s *Service) statBlob(ctx context.Context, repo string, d reference.Digest) (int64, error) {
	size, err := s.meta.RepositoryBlob(ctx, repo, d)
	return blobSize(size, err, d)
}

// blobSize turns a link lookup's result into the registry's errors.
func blobSize(size int64, err error, d reference.Digest) (int64, error) {
	if errors.Is(err, metadata.ErrNotFound) {
		return 0, errcode.New(errcode.BlobUnknown, "blob unknown to registry").WithDetail(map[string]string{"digest": string(d)})
	}
	if err != nil {
		return 0, internal(err, "blob lookup")
	}
	return size, nil
}

// OpenBlob opens a blob of a repository for reading.
func (s *Service) OpenBlob(ctx context.Context, repo string, d reference.Digest) (blobstore.Content, int64, error) {
	if _, err := s.statBlob(ctx, repo, d); err != nil {
		return nil, 0, err
	}
	c, size, err := s.blobs.Open(ctx, d)
	if errors.Is(err, blobstore.ErrNotFound) {
		s.log.ErrorContext(ctx, "blob recorded in metadata but missing from storage", "repository", repo, "digest", d)
		return nil, 0, errcode.New(errcode.BlobUnknown, "blob unknown to registry")
	}
	if err != nil {
		return nil, 0, internal(err, "blob open")
	}
	return c, size, nil
}

// BlobURL returns a URL the client may download a blob of repo from
// directly (a presigned S3 URL), when redirects are on and the store can
// make one; ok is false otherwise and the API serves the content itself.
func (s *Service) BlobURL(ctx context.Context, repo string, d reference.Digest) (u string, ok bool, err error) {
	rd, can := s.blobs.(blobstore.Redirector)
	if !s.opts.Redirect || !can {
		return "", false, nil
	}
	if _, err := s.statBlob(ctx, repo, d); err != nil {
		return "", false, err
	}
	u, err = rd.RedirectURL(ctx, d)
	if err != nil {
		return "", false, internal(err, "blob redirect")
	}
	return u, true, nil
}

// DeleteBlob removes a blob from a repository. The content stays until
// garbage collection finds nothing else uses it. A blob an immutable tag's
// manifests use (config or layer) is kept, except for admins.
func (s *Service) DeleteBlob(ctx context.Context, repo string, d reference.Digest) error {
	guard, err := s.deleteGuard(ctx, repo, "blob "+string(d))
	if err != nil {
		return err
	}
	err = s.meta.UnlinkBlob(ctx, repo, d, guard)
	var denied *errcode.Error
	switch {
	case errors.Is(err, metadata.ErrNotFound):
		return errcode.New(errcode.BlobUnknown, "blob unknown to registry")
	case errors.As(err, &denied):
		return err
	case err != nil:
		return internal(err, "blob delete")
	}
	return nil
}

// Mount links an existing blob into repo. With from set, the blob must be in
// that repository; without it, the blob must be in some repository (a blob
// deleted from every repository cannot be mounted back). When repo holds
// the blob already, its link is kept alive as StatBlob does. It returns
// false when the blob cannot be mounted.
func (s *Service) Mount(ctx context.Context, repo string, d reference.Digest, from string) (bool, error) {
	var size int64
	var err error
	if from != "" {
		if reference.ValidateName(from) != nil {
			return false, nil
		}
		size, err = s.meta.RepositoryBlob(ctx, from, d)
	} else {
		size, err = s.meta.BlobSize(ctx, d)
	}
	if errors.Is(err, metadata.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, internal(err, "mount lookup")
	}
	// Already in repo: keep that link alive, as a HEAD does, without
	// linking again (a young link costs no write).
	switch _, err := s.meta.KeepBlobLink(ctx, repo, d, s.keepAlive()); {
	case err == nil:
		return true, nil
	case !errors.Is(err, metadata.ErrNotFound):
		return false, internal(err, "mount")
	}
	if err := s.checkQuota(ctx, repo, d, size); err != nil {
		return false, err
	}
	unlock, err := s.locks.Lock(ctx, string(d))
	if err != nil {
		return false, internal(err, "mount")
	}
	defer unlock()
	if _, err := s.blobs.Stat(ctx, d); err != nil {
		return false, nil // collected meanwhile: the client uploads it
	}
	if err := s.meta.LinkBlob(ctx, repo, d, size, ""); err != nil {
		return false, internal(err, "mount")
	}
	return true, nil
}

// ---- uploads ----

// StartUpload opens an upload session for repo and returns its id. tokenID
// names the bearer token that started it ("" without auth). A namespace
// has at most MaxUploadSessions open sessions.
func (s *Service) StartUpload(ctx context.Context, repo, tokenID string) (string, error) {
	id := newID()
	ns := namespaceOf(repo)
	// The session's record and the store's session are independent
	// writes (two round trips to a shared database): made at once, and
	// each undone when the other fails.
	storeErr := make(chan error, 1)
	go func() { storeErr <- s.blobs.CreateUpload(ctx, id) }()
	err := s.meta.CreateUpload(ctx, metadata.Upload{ID: id, Repository: repo, Started: time.Now(), TokenID: tokenID, Namespace: ns}, s.opts.MaxUploadSessions)
	serr := <-storeErr
	switch {
	case err != nil:
		if serr == nil {
			_ = s.blobs.AbortUpload(context.WithoutCancel(ctx), id)
		}
		if errors.Is(err, metadata.ErrTooManyUploads) {
			return "", errcode.New(errcode.TooManyRequests, "namespace %s has %d open upload sessions, the most allowed: finish or cancel one (idle ones expire after %s)",
				ns, s.opts.MaxUploadSessions, s.opts.UploadTTL)
		}
		return "", internal(err, "upload start")
	case serr != nil:
		_ = s.meta.DeleteUpload(context.WithoutCancel(ctx), id)
		return "", internal(serr, "upload start")
	}
	return id, nil
}

var errUploadUnknown = errcode.New(errcode.BlobUploadUnknown, "upload unknown to registry")

// UploadStatus returns how many bytes an upload of repo holds.
func (s *Service) UploadStatus(ctx context.Context, repo, id string) (int64, error) {
	// Two independent reads, made at once; the store's answer counts only
	// for a session of repo.
	type status struct {
		size int64
		err  error
	}
	stored := make(chan status, 1)
	go func() {
		size, _, err := s.blobs.UploadStatus(ctx, id)
		stored <- status{size, err}
	}()
	u, err := s.meta.GetUpload(ctx, id)
	st := <-stored
	if errors.Is(err, metadata.ErrNotFound) || err == nil && u.Repository != repo {
		return 0, errUploadUnknown
	}
	if err != nil {
		return 0, internal(err, "upload lookup")
	}
	size, err := st.size, st.err
	if errors.Is(err, blobstore.ErrUploadNotFound) {
		return 0, errUploadUnknown
	}
	if err != nil {
		return 0, internal(err, "upload status")
	}
	return size, nil
}

// UploadTokenID returns the id of the token that started an upload of repo.
func (s *Service) UploadTokenID(ctx context.Context, repo, id string) (string, error) {
	u, err := s.meta.GetUpload(ctx, id)
	if err != nil {
		return "", err
	}
	if u.Repository != repo {
		return "", errUploadUnknown
	}
	return u.TokenID, nil
}

// BlobRepositories lists up to limit repositories holding a blob.
func (s *Service) BlobRepositories(ctx context.Context, d reference.Digest, limit int) ([]string, error) {
	repos, err := s.meta.BlobRepositories(ctx, d, limit)
	if err != nil {
		return nil, internal(err, "blob lookup")
	}
	return repos, nil
}

// Holders lists, by name, up to limit repositories that hold d as a
// manifest or as a blob (a config or layer), for "where is this digest?".
func (s *Service) Holders(ctx context.Context, d reference.Digest, limit int) (manifests, blobs []string, err error) {
	if manifests, err = s.meta.ManifestRepositories(ctx, d, limit); err != nil {
		return nil, nil, internal(err, "manifest lookup")
	}
	if blobs, err = s.meta.BlobRepositories(ctx, d, limit); err != nil {
		return nil, nil, internal(err, "blob lookup")
	}
	return manifests, blobs, nil
}

// Chunk is a piece of an upload. Start is -1 for a streamed chunk that goes
// at the end; Length is -1 when unknown.
type Chunk struct {
	Body   io.Reader
	Start  int64
	Length int64
}

// AppendUpload writes a chunk to an upload and returns the upload's size.
func (s *Service) AppendUpload(ctx context.Context, repo, id string, c Chunk) (int64, error) {
	size, err := s.UploadStatus(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	return s.append(ctx, repo, id, "", size, c)
}

// append writes a chunk at the end of an upload of size bytes. A chunk
// that would take the namespace's usage plus the upload over its quota is
// refused (a streamed one when it passes the limit) and discarded; when
// the final PUT names a blob d the namespace holds already, it costs
// nothing.
func (s *Service) append(ctx context.Context, repo, id string, d reference.Digest, size int64, c Chunk) (int64, error) {
	offset := size
	if c.Start >= 0 {
		if c.Start != size {
			return size, errcode.WithStatus(errcode.BlobUploadInvalid, http416, "chunk starts at %d but the upload holds %d bytes", c.Start, size)
		}
		offset = c.Start
	}
	room, used, quota, err := s.uploadRoom(ctx, repo, d)
	if err != nil {
		return size, err
	}
	if quota > 0 {
		over := quotaError(namespaceOf(repo), used, fmt.Sprintf("more than %s for this upload", humanBytes(room)), quota)
		if c.Length >= 0 && size+c.Length > room {
			return size, s.overQuota(ctx, repo, used, humanBytes(size+c.Length)+" for this upload", quota)
		}
		c.Body = &quotaReader{r: c.Body, left: room - size, err: over}
	}
	n, err := s.blobs.AppendUpload(ctx, id, offset, c.Body, c.Length)
	var readErr *blobstore.ReadError
	var denied *errcode.Error
	var busy *blobstore.BusyError
	switch {
	case err == nil:
		return n, nil
	case errors.As(err, &busy):
		e := errcode.WithStatus(errcode.BlobUploadInvalid, http416, "%v", busy)
		e.RetryAfter = busy.RetryAfter
		return n, e
	case errors.As(err, &denied): // the quota, from quotaReader
		s.quotaExceeded(ctx, repo, used, quota, fmt.Sprintf("more than %s for this upload", humanBytes(room)))
		return n, denied
	case errors.Is(err, blobstore.ErrOffset):
		return n, errcode.WithStatus(errcode.BlobUploadInvalid, http416, "chunk does not start at the end of the upload (%d bytes)", n)
	case errors.Is(err, blobstore.ErrUploadNotFound):
		return 0, errUploadUnknown
	case errors.Is(err, blobstore.ErrChunkLength):
		return n, errcode.New(errcode.BlobUploadInvalid, "%v", err)
	case errors.As(err, &readErr):
		return n, errcode.New(errcode.BlobUploadInvalid, "reading the chunk failed; the upload is unchanged")
	default:
		return n, internal(err, "upload write")
	}
}

// http416 is Range Not Satisfiable, the status for chunks out of order.
const http416 = 416

// FinishUpload appends an optional last chunk, verifies the digest, stores
// the blob and links it into repo. On a digest mismatch nothing is stored
// and the session ends; on a storage failure the session stays, so that the
// client may retry.
func (s *Service) FinishUpload(ctx context.Context, repo, id string, d reference.Digest, last *Chunk) (int64, error) {
	size, err := s.UploadStatus(ctx, repo, id)
	if err != nil {
		return 0, err
	}
	if last != nil && size == 0 {
		if size, ok, err := s.putWhole(ctx, repo, id, d, *last); ok {
			return size, err
		}
	}
	if last != nil {
		if size, err = s.append(ctx, repo, id, d, size, *last); err != nil {
			return 0, err
		}
	}
	if err := s.checkQuota(ctx, repo, d, size); err != nil {
		// Refused before the data is kept: the upload goes.
		_ = s.CancelUpload(context.WithoutCancel(ctx), repo, id)
		return 0, err
	}
	unlock, err := s.locks.Lock(ctx, string(d))
	if err != nil {
		return 0, internal(err, "upload commit")
	}
	defer unlock()
	size, err = s.blobs.CommitUpload(ctx, id, d)
	if err != nil {
		return 0, s.commitError(ctx, id, d, err)
	}
	if err := s.meta.LinkBlob(ctx, repo, d, size, id); err != nil {
		return 0, internal(err, "blob link")
	}
	return size, nil
}

// PutBlob stores a whole blob sent in one request (a monolithic upload).
// Nothing remains of it when it fails.
func (s *Service) PutBlob(ctx context.Context, repo string, d reference.Digest, c Chunk, tokenID string) error {
	if _, ok, err := s.putWhole(ctx, repo, "", d, c); ok {
		return err
	}
	id, err := s.StartUpload(ctx, repo, tokenID)
	if err != nil {
		return err
	}
	if _, err := s.FinishUpload(ctx, repo, id, d, &c); err != nil {
		// The request may be gone; the cleanup must still happen.
		_ = s.CancelUpload(context.WithoutCancel(ctx), repo, id)
		return err
	}
	return nil
}

// CancelUpload deletes an upload session and its data.
func (s *Service) CancelUpload(ctx context.Context, repo, id string) error {
	if _, err := s.UploadStatus(ctx, repo, id); err != nil {
		return err
	}
	if err := s.blobs.AbortUpload(ctx, id); err != nil {
		return internal(err, "upload cancel")
	}
	if err := s.meta.DeleteUpload(ctx, id); err != nil {
		return internal(err, "upload cancel")
	}
	return nil
}

// ExpireUploads removes upload sessions idle for longer than the TTL, and
// upload data that no session owns (left by a crash), and returns how many
// uploads it removed.
func (s *Service) ExpireUploads(ctx context.Context) (int, error) {
	cutoff := time.Now().Add(-s.opts.UploadTTL)
	ups, err := s.meta.UploadsBefore(ctx, cutoff)
	if err != nil {
		return 0, fmt.Errorf("list expired uploads: %w", err)
	}
	n := 0
	var errs []error
	for _, u := range ups {
		_, modified, err := s.blobs.UploadStatus(ctx, u.ID)
		switch {
		case err == nil && modified.After(cutoff):
			continue // still being written to
		case err != nil && !errors.Is(err, blobstore.ErrUploadNotFound):
			errs = append(errs, fmt.Errorf("upload %s: %w", u.ID, err))
			continue
		}
		if err := s.blobs.AbortUpload(ctx, u.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove upload %s: %w", u.ID, err))
			continue
		}
		if err := s.meta.DeleteUpload(ctx, u.ID); err != nil {
			errs = append(errs, fmt.Errorf("end upload %s: %w", u.ID, err))
			continue
		}
		n++
	}
	stale, err := s.blobs.StaleUploads(ctx, cutoff)
	if err != nil {
		return n, errors.Join(append(errs, err)...)
	}
	for _, id := range stale {
		if _, err := s.meta.GetUpload(ctx, id); !errors.Is(err, metadata.ErrNotFound) {
			continue // owned by a session (handled above once it is idle)
		}
		if err := s.blobs.AbortUpload(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("remove orphaned upload %s: %w", id, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
