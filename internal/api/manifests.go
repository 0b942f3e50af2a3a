package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/berth-registry/berth/internal/registry"
)

func (h *Handler) getManifest(w http.ResponseWriter, r *http.Request, rt Route) error {
	m, err := h.svc.GetManifest(r.Context(), rt.Name, rt.Reference)
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", m.MediaType)
	hd.Set("Content-Length", strconv.Itoa(len(m.Payload)))
	setDigest(hd, m.Digest)
	// A use, for retention's "not pulled for": a HEAD too, since clients
	// resolve a tag with HEAD and skip the GET when they have the content.
	h.svc.RecordPull(rt.Name, m.Digest)
	if match := r.Header.Get("If-None-Match"); match != "" && (match == `"`+string(m.Digest)+`"` || match == string(m.Digest)) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(m.Payload)
	}
	return nil
}

// asAdmin marks the request's context when the caller is an admin.
func (h *Handler) asAdmin(r *http.Request) context.Context {
	if sub, on := h.subject(r); on && sub != "" && h.guard.IsAdmin(r.Context(), sub) {
		return registry.AsAdmin(r.Context())
	}
	return r.Context()
}

func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, rt Route) error {
	res, err := h.svc.PutManifest(h.asAdmin(r), rt.Name, rt.Reference, r.Header.Get("Content-Type"), r.Body, r.URL.Query()["tag"])
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Location", "/v2/"+rt.Name+"/manifests/"+string(res.Digest))
	hd.Set("Docker-Content-Digest", string(res.Digest))
	for _, t := range res.Tags {
		hd.Add("OCI-Tag", t)
	}
	if res.Subject != "" {
		hd.Set("OCI-Subject", string(res.Subject))
	}
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (h *Handler) deleteManifest(w http.ResponseWriter, r *http.Request, rt Route) error {
	if err := h.svc.DeleteManifest(h.asAdmin(r), rt.Name, rt.Reference); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
