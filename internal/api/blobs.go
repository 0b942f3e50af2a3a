package api

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/reference"
)

// setDigest sets the headers that name content by digest.
func setDigest(hd http.Header, d reference.Digest) {
	hd.Set("Docker-Content-Digest", string(d))
	hd.Set("Etag", `"`+string(d)+`"`)
}

func (h *Handler) headBlob(w http.ResponseWriter, r *http.Request, rt Route) error {
	var size int64
	var err error
	if rt.Mirror != nil {
		size, err = h.mirrors.StatBlob(r.Context(), *rt.Mirror, rt.Digest)
	} else {
		size, err = h.svc.StatBlob(r.Context(), rt.Name, rt.Digest, h.mayPush(r, rt.Name))
	}
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Content-Length", strconv.FormatInt(size, 10))
	hd.Set("Accept-Ranges", "bytes")
	setDigest(hd, rt.Digest)
	w.WriteHeader(http.StatusOK)
	return nil
}

func (h *Handler) getBlob(w http.ResponseWriter, r *http.Request, rt Route) error {
	if rt.Mirror != nil {
		body, size, err := h.mirrors.Blob(r.Context(), *rt.Mirror, rt.Digest)
		if err != nil {
			return err
		}
		return h.serveStream(w, r, rt, body, size)
	}
	if u, ok, err := h.svc.BlobURL(r.Context(), rt.Name, rt.Digest); err != nil {
		return err
	} else if ok {
		setDigest(w.Header(), rt.Digest)
		http.Redirect(w, r, u, http.StatusTemporaryRedirect)
		return nil
	}
	c, size, err := h.svc.OpenBlob(r.Context(), rt.Name, rt.Digest)
	if err != nil {
		return err
	}
	defer c.Close()
	return sendStored(w, r, rt.Digest, c, size)
}

// sendStored sends stored content of blob d with ServeContent, which
// answers a Range request with 206. The body is copied through a pooled
// 1 MiB buffer (fewer system calls than net/http's 32 KiB), files
// included: measured on this machine kind, that is as fast as sendfile
// from 256 MiB up and faster below (BenchmarkBlobBody; docs/benchmarks.md),
// and it is what TLS connections, where sendfile does not apply, do anyway.
func sendStored(w http.ResponseWriter, r *http.Request, d reference.Digest, c blobstore.Content, size int64) error {
	if err := checkRanges(w, r, d, size); err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	setDigest(hd, d)
	hd.Set("Cache-Control", "max-age=31536000")
	http.ServeContent(bigCopies{w}, r, "", zeroTime, c)
	return nil
}

// zeroTime is no modification time: blobs are named by digest.
var zeroTime time.Time

// checkRanges refuses a Range header of more than one range, which
// ServeContent would answer with a multipart body of as many parts (a
// small request amplified into a large answer): 416 with the blob's size,
// as for any range berth does not serve. No registry client asks for more
// than one. A Range that If-Range makes ServeContent ignore is let through.
func checkRanges(w http.ResponseWriter, r *http.Request, d reference.Digest, size int64) error {
	spec, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	if !ok {
		return nil
	}
	if ir := r.Header.Get("If-Range"); ir != "" && ir != `"`+string(d)+`"` {
		return nil
	}
	n := 0
	for _, part := range strings.Split(spec, ",") {
		if strings.TrimSpace(part) != "" {
			n++
		}
	}
	if n <= 1 {
		return nil
	}
	w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
	return errcode.WithStatus(errcode.Unsupported, http.StatusRequestedRangeNotSatisfiable, "only one byte range per request is served, got %d", n)
}

// copyBufs are the buffers of bigCopies.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// bigCopies is a ResponseWriter whose ReadFrom copies through 1 MiB.
type bigCopies struct{ http.ResponseWriter }

// ReadFrom copies r to the response through a pooled 1 MiB buffer.
func (w bigCopies) ReadFrom(r io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{w.ResponseWriter}, r, *buf)
}

func (h *Handler) deleteBlob(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.svc.DeleteBlob(h.writeContext(r), rt.Name, rt.Digest); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
