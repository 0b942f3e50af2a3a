package api

import (
	"fmt"
	"net/http"

	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/registry"
)

func uploadLocation(rt Route, id string) string {
	return "/v2/" + rt.Name + "/blobs/uploads/" + id
}

func blobLocation(name string, d reference.Digest) string {
	return "/v2/" + name + "/blobs/" + string(d)
}

// setUploadHeaders writes the headers that tell a client where an upload
// stands.
func setUploadHeaders(w http.ResponseWriter, rt Route, id string, size int64) {
	end := size - 1
	if end < 0 {
		end = 0
	}
	hd := w.Header()
	hd.Set("Location", uploadLocation(rt, id))
	hd.Set("Range", fmt.Sprintf("0-%d", end))
	hd.Set("Docker-Upload-UUID", id)
	hd.Set("Content-Length", "0")
}

func blobCreated(w http.ResponseWriter, rt Route, d reference.Digest) {
	hd := w.Header()
	hd.Set("Location", blobLocation(rt.Name, d))
	hd.Set("Docker-Content-Digest", string(d))
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func queryDigest(r *http.Request) (reference.Digest, error) {
	v := r.URL.Query().Get("digest")
	if v == "" {
		return "", errcode.New(errcode.DigestInvalid, "digest query parameter required")
	}
	d, err := reference.ParseDigest(v)
	if err != nil {
		return "", errcode.New(errcode.DigestInvalid, "%v", err)
	}
	return d, nil
}

// chunk describes the request body as an upload chunk, from Content-Range
// and Content-Length.
func chunk(r *http.Request) (registry.Chunk, error) {
	c := registry.Chunk{Body: r.Body, Start: -1, Length: r.ContentLength}
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, length, err := ParseContentRange(cr)
		if err != nil {
			return c, errcode.WithStatus(errcode.BlobUploadInvalid, http.StatusRequestedRangeNotSatisfiable, "%v: %q", err, cr)
		}
		if c.Length >= 0 && c.Length != length {
			return c, errcode.WithStatus(errcode.BlobUploadInvalid, http.StatusRequestedRangeNotSatisfiable, "Content-Range covers %d bytes but Content-Length is %d", length, c.Length)
		}
		c.Start, c.Length = start, length
	}
	return c, nil
}

func (h *Handler) startUpload(w http.ResponseWriter, r *http.Request, rt Route) error {
	ctx := h.withOrigin(r) // a quota refusal's event names who pushed
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := reference.ParseDigest(m)
		if err != nil {
			return errcode.New(errcode.DigestInvalid, "mount: %v", err)
		}
		from, err := h.mountSource(r, d, q.Get("from"))
		if err != nil {
			return err
		}
		if from != "-" {
			ok, err := h.svc.Mount(ctx, rt.Name, d, from)
			if err != nil {
				return err
			}
			if ok {
				blobCreated(w, rt, d)
				return nil
			}
		}
	}
	if q.Has("digest") {
		d, err := queryDigest(r)
		if err != nil {
			return err
		}
		c, err := chunk(r)
		if err != nil {
			return err
		}
		if err := h.svc.PutBlob(ctx, rt.Name, d, c, tokenID(r)); err != nil {
			return err
		}
		blobCreated(w, rt, d)
		return nil
	}
	id, err := h.svc.StartUpload(ctx, rt.Name, tokenID(r))
	if err != nil {
		return err
	}
	setUploadHeaders(w, rt, id, 0)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// mountSource picks the repository to mount a blob from: the requested one
// when the caller may pull it, or, without from, one holding the blob that
// the caller may pull. "-" means no mount; "" (open registry, no from)
// lets the service use any copy.
func (h *Handler) mountSource(r *http.Request, d reference.Digest, from string) (string, error) {
	if _, on := h.subject(r); !on {
		return from, nil
	}
	canPull, err := h.viewer(r)
	if err != nil {
		return "", err
	}
	if from != "" {
		if reference.ValidateName(from) != nil || !canPull(from) {
			return "-", nil
		}
		return from, nil
	}
	repos, err := h.svc.BlobRepositories(r.Context(), d, 100)
	if err != nil {
		return "", err
	}
	for _, repo := range repos {
		if canPull(repo) {
			return repo, nil
		}
	}
	return "-", nil
}

// rangeError adds the upload's current Range and Location to a 416, so that
// the client can resume from where the upload really stands.
func (h *Handler) rangeError(w http.ResponseWriter, r *http.Request, rt Route, err error) error {
	if errcode.As(err).Status == http.StatusRequestedRangeNotSatisfiable {
		if size, serr := h.svc.UploadStatus(r.Context(), rt.Name, rt.UploadID); serr == nil {
			setUploadHeaders(w, rt, rt.UploadID, size)
		}
	}
	return err
}

func (h *Handler) uploadStatus(w http.ResponseWriter, r *http.Request, rt Route) error {
	size, err := h.svc.UploadStatus(r.Context(), rt.Name, rt.UploadID)
	if err != nil {
		return err
	}
	setUploadHeaders(w, rt, rt.UploadID, size)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) patchUpload(w http.ResponseWriter, r *http.Request, rt Route) error {
	c, err := chunk(r)
	if err != nil {
		return h.rangeError(w, r, rt, err)
	}
	size, err := h.svc.AppendUpload(h.withOrigin(r), rt.Name, rt.UploadID, c)
	if err != nil {
		return h.rangeError(w, r, rt, err)
	}
	setUploadHeaders(w, rt, rt.UploadID, size)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (h *Handler) putUpload(w http.ResponseWriter, r *http.Request, rt Route) error {
	d, err := queryDigest(r)
	if err != nil {
		return err
	}
	var last *registry.Chunk
	if r.ContentLength != 0 {
		c, err := chunk(r)
		if err != nil {
			return h.rangeError(w, r, rt, err)
		}
		last = &c
	}
	if _, err := h.svc.FinishUpload(h.withOrigin(r), rt.Name, rt.UploadID, d, last); err != nil {
		return h.rangeError(w, r, rt, err)
	}
	blobCreated(w, rt, d)
	return nil
}

func (h *Handler) cancelUpload(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.svc.CancelUpload(r.Context(), rt.Name, rt.UploadID); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}
