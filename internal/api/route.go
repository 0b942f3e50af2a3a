// Package api is the HTTP face of the registry: it parses each request's
// route once into a typed Route, calls the registry service and renders the
// answer. Handlers stay thin; the rules live in package registry.
package api

import (
	"strings"

	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/mirror"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/registry"
)

// Kind is the kind of endpoint a request addresses.
type Kind int

// The endpoints of the Distribution API.
const (
	KindBase        Kind = iota + 1 // /v2/
	KindCatalog                     // /v2/_catalog
	KindTags                        // /v2/<name>/tags/list
	KindManifest                    // /v2/<name>/manifests/<reference>
	KindBlob                        // /v2/<name>/blobs/<digest>
	KindUploadStart                 // /v2/<name>/blobs/uploads/
	KindUpload                      // /v2/<name>/blobs/uploads/<id>
	KindReferrers                   // /v2/<name>/referrers/<digest>
)

// Route is a parsed and validated Distribution API path.
type Route struct {
	Kind Kind
	// Name is the repository name (all kinds but base and catalog).
	Name string
	// Reference is a manifest's tag or digest, validated by the service.
	Reference string
	// Digest is a blob's or referrers subject's digest.
	Digest reference.Digest
	// UploadID names an upload session.
	UploadID string
	// Mirror is set when a mirror serves the repository (reads only); Name
	// is then the repository the mirror caches it under.
	Mirror *mirror.Target
}

var errNotFound = errcode.WithStatus(errcode.NameUnknown, 404, "no such endpoint")

// ParseRoute parses a URL path under /v2/. Names, digests and upload ids are
// validated here, so no handler ever sees a path it must check again.
func ParseRoute(path string) (Route, error) {
	sh, ok := shapeOf(path)
	if !ok {
		return Route{}, errNotFound
	}
	rt := Route{Kind: sh.kind, Name: sh.name}
	switch sh.kind {
	case KindBase, KindCatalog:
		return rt, nil
	case KindUpload:
		if !registry.ValidUploadID(sh.last) {
			return Route{}, errcode.New(errcode.BlobUploadUnknown, "upload unknown to registry")
		}
		rt.UploadID = sh.last
	case KindManifest:
		rt.Reference = sh.last
	case KindBlob, KindReferrers:
		d, err := reference.ParseDigest(sh.last)
		if err != nil {
			return Route{}, errcode.New(errcode.DigestInvalid, "%v", err)
		}
		rt.Digest = d
	}
	if err := reference.ValidateName(rt.Name); err != nil {
		return Route{}, errcode.New(errcode.NameInvalid, "%v", err).WithDetail(map[string]string{"name": truncate(rt.Name)})
	}
	return rt, nil
}

// KindOf returns the kind of endpoint path has the shape of, 0 for none,
// without validating its name, digest or upload id and without
// allocating: for metrics and logs, which label a request by its route
// kind whether or not the handler then accepts it.
func KindOf(path string) Kind {
	sh, _ := shapeOf(path)
	return sh.kind
}

// shape is what the last segments of a path under /v2/ say it addresses.
type shape struct {
	kind Kind
	// name is the repository name part of the path, unvalidated; last is
	// the path's last segment (reference, digest or upload id).
	name, last string
}

// shapeOf reads a path's shape from its last segments, as the
// Distribution API's routes are told apart: a repository name may itself
// contain "manifests" or "blobs" components, the endpoint part may not.
func shapeOf(path string) (shape, bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return shape{kind: KindBase}, true
		}
		return shape{}, false
	}
	switch rest {
	case "":
		return shape{kind: KindBase}, true
	case "_catalog":
		return shape{kind: KindCatalog}, true
	}
	// rest = head/seg2/seg1 (at least three segments for any route with a
	// name); head is the name, or the name and "blobs" for uploads.
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return shape{}, false
	}
	seg1 := rest[i+1:]
	j := strings.LastIndexByte(rest[:i], '/')
	if j < 0 {
		return shape{}, false
	}
	seg2, head := rest[j+1:i], rest[:j]
	switch {
	case seg2 == "tags" && seg1 == "list":
		return shape{kind: KindTags, name: head}, true
	case seg2 == "blobs" && seg1 == "uploads":
		return shape{kind: KindUploadStart, name: head}, true
	case seg2 == "uploads":
		if k := strings.LastIndexByte(head, '/'); k >= 0 && head[k+1:] == "blobs" {
			if seg1 == "" {
				return shape{kind: KindUploadStart, name: head[:k]}, true
			}
			return shape{kind: KindUpload, name: head[:k], last: seg1}, true
		}
	}
	switch seg2 {
	case "manifests":
		return shape{kind: KindManifest, name: head, last: seg1}, true
	case "blobs":
		return shape{kind: KindBlob, name: head, last: seg1}, true
	case "referrers":
		return shape{kind: KindReferrers, name: head, last: seg1}, true
	}
	return shape{}, false
}

func truncate(s string) string {
	if len(s) > 256 {
		return s[:256]
	}
	return s
}
