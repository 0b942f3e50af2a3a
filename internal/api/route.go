// Package api is the HTTP face of the registry: it parses each request's
// route once into a typed Route, calls the registry service and renders the
// answer. Handlers stay thin; the rules live in package registry.
package api

import (
	"strings"

	"github.com/berth-registry/berth/internal/errcode"
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
}

var errNotFound = errcode.WithStatus(errcode.NameUnknown, 404, "no such endpoint")

// ParseRoute parses a URL path under /v2/. Names, digests and upload ids are
// validated here, so no handler ever sees a path it must check again.
func ParseRoute(path string) (Route, error) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return Route{Kind: KindBase}, nil
		}
		return Route{}, errNotFound
	}
	switch rest {
	case "":
		return Route{Kind: KindBase}, nil
	case "_catalog":
		return Route{Kind: KindCatalog}, nil
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	var rt Route
	var nameSegs int
	switch {
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		rt, nameSegs = Route{Kind: KindTags}, n-2
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		rt, nameSegs = Route{Kind: KindUploadStart}, n-2
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads" && segs[n-1] == "":
		rt, nameSegs = Route{Kind: KindUploadStart}, n-3
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		if !registry.ValidUploadID(segs[n-1]) {
			return Route{}, errcode.New(errcode.BlobUploadUnknown, "upload unknown to registry")
		}
		rt, nameSegs = Route{Kind: KindUpload, UploadID: segs[n-1]}, n-3
	case n >= 3 && segs[n-2] == "manifests":
		rt, nameSegs = Route{Kind: KindManifest, Reference: segs[n-1]}, n-2
	case n >= 3 && (segs[n-2] == "blobs" || segs[n-2] == "referrers"):
		d, err := reference.ParseDigest(segs[n-1])
		if err != nil {
			return Route{}, errcode.New(errcode.DigestInvalid, "%v", err)
		}
		rt = Route{Kind: KindBlob, Digest: d}
		if segs[n-2] == "referrers" {
			rt.Kind = KindReferrers
		}
		nameSegs = n - 2
	default:
		return Route{}, errNotFound
	}
	rt.Name = strings.Join(segs[:nameSegs], "/")
	if err := reference.ValidateName(rt.Name); err != nil {
		return Route{}, errcode.New(errcode.NameInvalid, "%v", err).WithDetail(map[string]string{"name": truncate(rt.Name)})
	}
	return rt, nil
}

func truncate(s string) string {
	if len(s) > 256 {
		return s[:256]
	}
	return s
}
