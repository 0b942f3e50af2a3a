package console

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/manifest"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// Page sizes.
const (
	reposPerPage = 50
	tagsPerPage  = 100
	// catalogBatch is how many repository names one catalog read takes
	// while a page is filled (names the viewer may not pull, or that do
	// not match the search, are skipped).
	catalogBatch = 500
	// maxConfigSize bounds the image config the image page reads.
	maxConfigSize = 4 << 20
)

// repoList is the repository list page.
type repoList struct {
	Query string
	Repos []string
	// Next is the cursor of the next page ("" on the last).
	Next string
	// Digest is set when the search is a digest: the repositories the
	// viewer may pull that hold it, as a manifest or as a blob.
	Digest     string
	AsManifest []string
	AsBlob     []string
}

// maxHolders bounds "where is this digest?".
const maxHolders = 200

// repositories lists the repositories the viewer may pull, whose names
// contain the search text q, 50 a page after the cursor "after".
func (h *Handler) repositories(w http.ResponseWriter, r *http.Request, v *viewer) error {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q")))
	last := r.URL.Query().Get("after")
	if len(q) > 256 || len(last) > 512 {
		return errorf(http.StatusBadRequest, "The search text or cursor is too long.")
	}
	list := repoList{Query: q}
	if d, err := reference.ParseDigest(q); err == nil && last == "" {
		return h.digestHolders(w, r, v, list, d)
	}
	repos, err := h.opts.Registry.CatalogWhere(r.Context(), last, reposPerPage+1, catalogBatch, func(n string) (bool, error) {
		if !strings.Contains(n, q) {
			return false, nil
		}
		return h.can(r, v, n, auth.Pull)
	})
	if err != nil {
		return err
	}
	list.Repos = repos
	if len(list.Repos) > reposPerPage {
		list.Repos = list.Repos[:reposPerPage]
		list.Next = list.Repos[reposPerPage-1]
	}
	return h.render(w, r, "repositories", http.StatusOK, page{Title: "Repositories", Viewer: v, Data: list})
}

// digestHolders answers "where is this digest?": the repositories the
// viewer may pull that hold it.
func (h *Handler) digestHolders(w http.ResponseWriter, r *http.Request, v *viewer, list repoList, d reference.Digest) error {
	manifests, blobs, err := h.opts.Registry.Holders(r.Context(), d, maxHolders)
	if err != nil {
		return err
	}
	list.Digest = string(d)
	for _, set := range []struct {
		in  []string
		out *[]string
	}{{manifests, &list.AsManifest}, {blobs, &list.AsBlob}} {
		for _, repo := range set.in {
			ok, err := h.can(r, v, repo, auth.Pull)
			if err != nil {
				return err
			}
			if ok {
				*set.out = append(*set.out, repo)
			}
		}
	}
	return h.render(w, r, "repositories", http.StatusOK, page{Title: "Where is " + shortDigest(d) + "?", Viewer: v, Data: list})
}

// tagRow is one tag on a repository page.
type tagRow struct {
	metadata.TagInfo
	Immutable bool
	// Size is the image's size (manifest, config and layers; for an index,
	// the index and its manifests as listed), -1 if unknown.
	Size int64
	// Platforms are an index's platforms (os/arch[/variant]).
	Platforms []string
}

// repoPage is a repository's page.
type repoPage struct {
	Name string
	// CanDelete shows the delete controls (the API's rule: delete access).
	CanDelete bool
	// CanPullSecret offers "Pull from Kubernetes" (admins and owners
	// make robots).
	CanPullSecret bool
	Notice        string
	Tags          []tagRow
	Total         int
	Sort          string
	Page, Last    int
}

// repository shows a repository's tags, newest first (sort=pushed) or by
// name, 100 a page.
func (h *Handler) repository(w http.ResponseWriter, r *http.Request, v *viewer) error {
	name, err := h.readableRepo(r, v)
	if err != nil {
		return err
	}
	infos, err := h.opts.Store.TagInfos(r.Context(), name)
	if err != nil {
		return err
	}
	sortBy := r.URL.Query().Get("sort")
	if sortBy == "name" {
		slices.SortFunc(infos, func(a, b metadata.TagInfo) int { return strings.Compare(a.Name, b.Name) })
	} else {
		sortBy = "pushed" // TagInfos' own order, newest first
	}
	pg, _ := strconv.Atoi(r.URL.Query().Get("page"))
	lastPage := max(0, (len(infos)-1)/tagsPerPage)
	pg = min(max(pg, 0), lastPage)
	shown := infos[min(pg*tagsPerPage, len(infos)):min((pg+1)*tagsPerPage, len(infos))]
	names := make([]string, len(shown))
	for i, t := range shown {
		names[i] = t.Name
	}
	immutable, err := h.opts.Registry.ImmutableTags(r.Context(), name, names)
	if err != nil {
		return err
	}
	canDelete, err := h.can(r, v, name, auth.Delete)
	if err != nil {
		return err
	}
	rp := repoPage{Name: name, Total: len(infos), Sort: sortBy, Page: pg, Last: lastPage, CanDelete: canDelete,
		Notice: noticeText(r.URL.Query().Get("notice"))}
	if v.SignedIn() {
		rp.CanPullSecret = h.opts.Accounts.RequireOwner(r.Context(), v.p, auth.Namespace(name)) == nil
	}
	described := map[reference.Digest]tagRow{} // tags of one manifest read it once
	for _, t := range shown {
		d, seen := described[t.Digest]
		if !seen {
			d = tagRow{Size: -1}
			if err := h.describeTag(r, name, t.Digest, &d); err != nil {
				return err
			}
			described[t.Digest] = d
		}
		rp.Tags = append(rp.Tags, tagRow{TagInfo: t, Immutable: slices.Contains(immutable, t.Name), Size: d.Size, Platforms: d.Platforms})
	}
	return h.render(w, r, "repository", http.StatusOK, page{Title: name, Viewer: v, Data: rp})
}

// describeTag fills in a tag row's size and platforms from the manifest
// d (one indexed read per manifest of the page).
func (h *Handler) describeTag(r *http.Request, repo string, d reference.Digest, row *tagRow) error {
	m, err := h.opts.Registry.GetManifest(r.Context(), repo, string(d))
	if err != nil {
		if errcode.As(err).Status == http.StatusNotFound {
			return nil // deleted meanwhile
		}
		return err
	}
	parsed, err := manifest.Parse(m.MediaType, m.Payload)
	if err != nil {
		return nil // shown without size
	}
	row.Size = int64(len(m.Payload))
	for _, b := range parsed.Blobs {
		row.Size += b.Size
	}
	for _, c := range parsed.Children {
		row.Size += c.Size
		if p := c.Platform; p != nil && p.OS != "unknown" {
			pl := p.OS + "/" + p.Architecture
			if p.Variant != "" {
				pl += "/" + p.Variant
			}
			row.Platforms = append(row.Platforms, pl)
		}
	}
	return nil
}

// readableRepo returns the repository named by the query, if it is a
// valid name the viewer may pull; an unknown one and one the viewer may
// not see answer alike (404), so that the page tells nothing of it.
func (h *Handler) readableRepo(r *http.Request, v *viewer) (string, error) {
	name := r.URL.Query().Get("name")
	if err := reference.ValidateName(name); err != nil {
		return "", errorf(http.StatusBadRequest, "Not a repository name: "+err.Error())
	}
	ok, err := h.can(r, v, name, auth.Pull)
	if err != nil {
		return "", err
	}
	if !ok {
		if !v.SignedIn() && !v.AuthOff() {
			return "", errorf(http.StatusNotFound, "No repository "+name+" that you may see; sign in to see more.")
		}
		return "", errorf(http.StatusNotFound, "No repository "+name+" that you may see.")
	}
	return name, nil
}

// imagePage is a manifest's page.
type imagePage struct {
	Repo, Ref string
	Manifest  *metadata.Manifest
	// Index lists the manifests of an index, with their platforms.
	Index []manifest.Descriptor
	// Config is the image's config (nil for an index or an artifact).
	Config *imageConfig
	Layers []manifest.Descriptor
	// Total is the manifest, config and layers' size.
	Total     int64
	Referrers []referrerGroup
	// PullRef is the reference to pull by: repo@digest.
	PullRef string
	// CanDelete offers deleting the manifest (delete access).
	CanDelete bool
}

// referrerGroup are the referrers of one artifact type.
type referrerGroup struct {
	ArtifactType string
	Items        []metadata.Descriptor
}

// imageConfig is what the image page shows of an OCI or Docker image
// config.
type imageConfig struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
	Created      string `json:"created"`
	Config       struct {
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		Env        []string          `json:"Env"`
		WorkingDir string            `json:"WorkingDir"`
		User       string            `json:"User"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
	History []struct {
		Created    string `json:"created"`
		CreatedBy  string `json:"created_by"`
		EmptyLayer bool   `json:"empty_layer"`
		Comment    string `json:"comment"`
	} `json:"history"`
}

// image shows a manifest: an index's platforms, or an image's config,
// layers and referrers.
func (h *Handler) image(w http.ResponseWriter, r *http.Request, v *viewer) error {
	name, err := h.readableRepo(r, v)
	if err != nil {
		return err
	}
	ref := r.URL.Query().Get("ref")
	if ref == "" || len(ref) > 256 {
		return errorf(http.StatusBadRequest, "Name a tag or digest (ref=).")
	}
	m, err := h.opts.Registry.GetManifest(r.Context(), name, ref)
	if err != nil {
		if e := errcode.As(err); e.Status == http.StatusNotFound || e.Status == http.StatusBadRequest {
			return errorf(e.Status, fmt.Sprintf("No manifest %s in %s.", ref, name))
		}
		return err
	}
	parsed, err := manifest.Parse(m.MediaType, m.Payload)
	if err != nil {
		return fmt.Errorf("parse stored manifest %s@%s: %w", name, m.Digest, err)
	}
	ip := imagePage{Repo: name, Ref: ref, Manifest: m, Index: parsed.Children, Total: int64(len(m.Payload)),
		PullRef: name + "@" + string(m.Digest)}
	if len(parsed.Blobs) > 0 {
		ip.Layers = parsed.Blobs[1:]
		for _, b := range parsed.Blobs {
			ip.Total += b.Size
		}
		if cfg := parsed.Blobs[0]; isImageConfig(cfg.MediaType) {
			if ip.Config, err = h.readConfig(r, name, cfg); err != nil {
				return err
			}
		} else {
			ip.Layers = parsed.Blobs
		}
	}
	if ip.CanDelete, err = h.can(r, v, name, auth.Delete); err != nil {
		return err
	}
	refs, err := h.opts.Registry.Referrers(r.Context(), name, m.Digest, "")
	if err != nil {
		return err
	}
	for _, d := range refs {
		at := d.ArtifactType
		if at == "" {
			at = d.MediaType
		}
		i := slices.IndexFunc(ip.Referrers, func(g referrerGroup) bool { return g.ArtifactType == at })
		if i < 0 {
			ip.Referrers = append(ip.Referrers, referrerGroup{ArtifactType: at})
			i = len(ip.Referrers) - 1
		}
		ip.Referrers[i].Items = append(ip.Referrers[i].Items, d)
	}
	return h.render(w, r, "image", http.StatusOK, page{Title: name + ":" + ref, Viewer: v, Data: ip})
}

func isImageConfig(mediaType string) bool {
	return mediaType == "application/vnd.oci.image.config.v1+json" || mediaType == "application/vnd.docker.container.image.v1+json"
}

// readConfig reads and decodes an image config blob (at most
// maxConfigSize bytes).
func (h *Handler) readConfig(r *http.Request, repo string, d manifest.Descriptor) (*imageConfig, error) {
	if d.Size > maxConfigSize {
		return nil, nil
	}
	c, _, err := h.opts.Registry.OpenBlob(r.Context(), repo, reference.Digest(d.Digest))
	if err != nil {
		if e := errcode.As(err); e.Status == http.StatusNotFound {
			return nil, nil // a config not stored here: show the rest
		}
		return nil, err
	}
	defer c.Close()
	var cfg imageConfig
	if err := json.NewDecoder(io.LimitReader(c, maxConfigSize)).Decode(&cfg); err != nil {
		return nil, nil // not JSON: nothing to show
	}
	return &cfg, nil
}

// humanSize renders a byte count for people.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ago renders a time as its age ("never" for zero).
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + " min ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " h ago"
	}
	return strconv.Itoa(int(d.Hours()/24)) + " days ago"
}

// shortDigest renders a digest's algorithm and first 12 hex digits.
func shortDigest(d reference.Digest) string {
	s := string(d)
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}
