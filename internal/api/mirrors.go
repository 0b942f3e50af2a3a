package api

import (
	"io"
	"net/http"
	"strconv"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/mirror"
)

// WithMirrors serves the repositories of pull-through mirrors through m.
func (h *Handler) WithMirrors(m *mirror.Service) *Handler {
	h.mirrors = m
	return h
}

// resolveMirror resolves a route's repository to a mirror, for reads
// (rt.Name becomes the local repository and rt.Mirror is set), and
// refuses writes into a mirror's namespace.
func (h *Handler) resolveMirror(r *http.Request, rt *Route) error {
	if h.mirrors == nil || rt.Name == "" {
		return nil
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		t, ok, err := h.mirrors.Resolve(r.Context(), rt.Name, r.URL.Query().Get("ns"))
		if err != nil {
			return errcode.Wrap(err, "mirror lookup failed")
		}
		if ok {
			rt.Name, rt.Mirror = t.Local, &t
		}
		return nil
	}
	if r.Method == http.MethodDelete && (rt.Kind == KindManifest || rt.Kind == KindBlob) {
		return nil // evicting what a mirror cached
	}
	if up, ok := h.mirrors.Mirrored(rt.Name); ok {
		return errcode.New(errcode.Denied, "repository %s is in a read-only mirror of %s: push to a namespace that is not a mirror", rt.Name, up)
	}
	return nil
}

// serveStream sends a mirrored blob: from the cache (sendStored), or as
// it downloads from the upstream. When the download turns out wrong
// mid-way, the response is aborted, so that the client sees a failed
// transfer, never a short or wrong blob.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request, rt Route, body io.ReadCloser, size int64) error {
	defer body.Close()
	if c, ok := body.(blobstore.Content); ok {
		return sendStored(w, r, rt.Digest, c, size)
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	setDigest(hd, rt.Digest)
	if size >= 0 {
		hd.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	// The download's reader writes to w as the spool grows (WriterTo).
	if _, err := io.Copy(w, body); err != nil {
		h.log.WarnContext(r.Context(), "mirrored blob aborted", "repository", rt.Name, "digest", rt.Digest, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}
