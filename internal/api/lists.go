package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/manifest"
)

// MaxPageSize caps the entries of one tags or catalog page.
const MaxPageSize = 1000

// page reads the n and last pagination parameters.
func page(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = MaxPageSize
	if v := q.Get("n"); v != "" {
		n, err = strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, "", errcode.New(errcode.PaginationNumberInvalid, "n must be a non-negative integer")
		}
		n = min(n, MaxPageSize)
	}
	return n, q.Get("last"), nil
}

// writeJSON writes v with status 200.
func writeJSON(w http.ResponseWriter, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return errcode.Wrap(err, "encoding response failed")
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// paginate trims a list fetched with one extra entry and sets the Link
// header when a next page exists.
func paginate(w http.ResponseWriter, path string, items []string, n int) []string {
	if len(items) > n {
		items = items[:n]
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {items[n-1]}}
		w.Header().Set("Link", "<"+path+"?"+next.Encode()+`>; rel="next"`)
	}
	return items
}

func (h *Handler) tags(w http.ResponseWriter, r *http.Request, rt Route) error {
	n, last, err := page(r)
	if err != nil {
		return err
	}
	tags, err := h.svc.Tags(r.Context(), rt.Name, last, n+1)
	if err != nil {
		return err
	}
	if n == 0 {
		tags = []string{}
	}
	tags = paginate(w, "/v2/"+rt.Name+"/tags/list", tags, n)
	return writeJSON(w, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.Name, tags})
}

func (h *Handler) catalog(w http.ResponseWriter, r *http.Request, _ Route) error {
	n, last, err := page(r)
	if err != nil {
		return err
	}
	canPull, err := h.viewer(r)
	if err != nil {
		return err
	}
	repos := []string{}
	if n > 0 {
		// Only what the caller may pull is listed: read on until the page
		// is full (plus one, to know whether there is a next page).
		found, err := h.svc.CatalogWhere(r.Context(), last, n+1, n+1, func(repo string) (bool, error) { return canPull(repo), nil })
		if err != nil {
			return err
		}
		repos = append(repos, found...)
	}
	repos = paginate(w, "/v2/_catalog", repos, n)
	return writeJSON(w, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
}

type referrerDescriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

func (h *Handler) referrers(w http.ResponseWriter, r *http.Request, rt Route) error {
	artifactType := r.URL.Query().Get("artifactType")
	refs, err := h.svc.Referrers(r.Context(), rt.Name, rt.Digest, artifactType)
	if err != nil {
		return err
	}
	list := make([]referrerDescriptor, 0, len(refs))
	for _, d := range refs {
		list = append(list, referrerDescriptor{d.MediaType, string(d.Digest), d.Size, d.ArtifactType, d.Annotations})
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, manifest.OCIIndex, struct {
		SchemaVersion int                  `json:"schemaVersion"`
		MediaType     string               `json:"mediaType"`
		Manifests     []referrerDescriptor `json:"manifests"`
	}{2, manifest.OCIIndex, list})
}
