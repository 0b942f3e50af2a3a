package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/berth-registry/berth/internal/events"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/registry"
)

func (h *Handler) getManifest(w http.ResponseWriter, r *http.Request, rt Route) error {
	var m *metadata.Manifest
	var err error
	if rt.Mirror != nil {
		m, err = h.mirrors.Manifest(r.Context(), *rt.Mirror, rt.Reference)
	} else {
		m, err = h.svc.GetManifest(r.Context(), rt.Name, rt.Reference)
	}
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
	if r.Method == http.MethodGet && h.svc.PullEventsWanted() {
		h.svc.NotePull(h.withOrigin(r), m)
	}
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

// writeContext returns the context of a write: it carries who made the
// request and from where (for its events), and marks an admin caller.
func (h *Handler) writeContext(r *http.Request) context.Context {
	ctx := h.withOrigin(r)
	if sub, on := h.subject(r); on && sub != "" && h.guard.IsAdmin(r.Context(), sub) {
		return registry.AsAdmin(ctx)
	}
	return ctx
}

// withOrigin returns the request's context carrying its origin for events.
func (h *Handler) withOrigin(r *http.Request) context.Context {
	sub, _ := h.subject(r)
	addr := events.RemoteHost(r.RemoteAddr)
	if h.guard != nil {
		addr = h.guard.ClientIP(r)
	}
	return events.WithOrigin(r.Context(), events.Origin{Actor: sub, Request: events.Request{
		Addr: addr, Host: r.Host, Method: r.Method, UserAgent: r.UserAgent()}})
}

func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, rt Route) error {
	res, err := h.svc.PutManifest(h.writeContext(r), rt.Name, rt.Reference, r.Header.Get("Content-Type"), r.Body, r.URL.Query()["tag"])
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
	if err := h.svc.DeleteManifest(h.writeContext(r), rt.Name, rt.Reference); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
