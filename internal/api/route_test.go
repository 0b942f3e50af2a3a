package api

import (
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/reference"
	"github.com/berth-registry/berth/internal/registry"
)

func TestParseRoute(t *testing.T) {
	dg := "sha256:" + strings.Repeat("a", 64)
	id := strings.Repeat("0f", 16)
	cases := []struct {
		path string
		want Route
	}{
		{"/v2/", Route{Kind: KindBase}},
		{"/v2/_catalog", Route{Kind: KindCatalog}},
		{"/v2/a/b/tags/list", Route{Kind: KindTags, Name: "a/b"}},
		{"/v2/a/manifests/latest", Route{Kind: KindManifest, Name: "a", Reference: "latest"}},
		{"/v2/a/b/c/manifests/" + dg, Route{Kind: KindManifest, Name: "a/b/c", Reference: dg}},
		{"/v2/a/blobs/" + dg, Route{Kind: KindBlob, Name: "a", Digest: reference.Digest(dg)}},
		{"/v2/a/blobs/uploads/", Route{Kind: KindUploadStart, Name: "a"}},
		{"/v2/a/blobs/uploads", Route{Kind: KindUploadStart, Name: "a"}},
		{"/v2/a/blobs/uploads/" + id, Route{Kind: KindUpload, Name: "a", UploadID: id}},
		{"/v2/a/referrers/" + dg, Route{Kind: KindReferrers, Name: "a", Digest: reference.Digest(dg)}},
		{"/v2/blobs/manifests/x", Route{Kind: KindManifest, Name: "blobs", Reference: "x"}},
	}
	for _, c := range cases {
		got, err := ParseRoute(c.path)
		if err != nil || got != c.want {
			t.Errorf("ParseRoute(%q) = %+v, %v; want %+v", c.path, got, err, c.want)
		}
	}
	bad := map[string]errcode.Code{
		"/v2/../etc/manifests/x":          errcode.NameInvalid,
		"/v2/a/../../b/manifests/x":       errcode.NameInvalid,
		"/v2/A/manifests/x":               errcode.NameInvalid,
		"/v2/a/blobs/sha256:zz":           errcode.DigestInvalid,
		"/v2/a/blobs/uploads/../../x":     errcode.NameUnknown,
		"/v2/a/blobs/uploads/x/../..":     errcode.NameUnknown,
		"/v2/a/blobs/uploads/" + id + "x": errcode.BlobUploadUnknown,
		"/v2/a/nothing":                   errcode.NameUnknown,
		"/v3/":                            errcode.NameUnknown,
	}
	for path, code := range bad {
		_, err := ParseRoute(path)
		if err == nil || errcode.As(err).Code != code {
			t.Errorf("ParseRoute(%q) = %v, want %s", path, err, code)
		}
	}
}

func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/a/b/manifests/latest", "/v2/a/blobs/uploads/", "/v2/../x/tags/list", "/v2/_catalog"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt, err := ParseRoute(path)
		if err != nil || rt.Kind == KindBase || rt.Kind == KindCatalog {
			return
		}
		for _, part := range strings.Split(rt.Name, "/") {
			if part == "" || part == "." || part == ".." {
				t.Fatalf("%q: accepted unsafe name %q", path, rt.Name)
			}
		}
		if strings.ContainsAny(rt.UploadID, "/.") {
			t.Fatalf("%q: accepted unsafe upload id %q", path, rt.UploadID)
		}
	})
}

// FuzzKindOf: KindOf, which metrics label requests with, names the kind
// ParseRoute parses for every path it accepts, and ParseRoute answers
// exactly as the segment-splitting parser it replaced did.
func FuzzKindOf(f *testing.F) {
	for _, s := range []string{"/v2/a/b/manifests/latest", "/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/" + strings.Repeat("0f", 16),
		"/v2//blobs/uploads/", "/v2/blobs/uploads/x", "/v2/a/tags/list", "/v2/a/referrers/sha256:" + strings.Repeat("a", 64), "/v2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt, err := ParseRoute(path)
		old, oldErr := splitParseRoute(path)
		if rt != old || (err == nil) != (oldErr == nil) || (err != nil && errcode.As(err).Code != errcode.As(oldErr).Code) {
			t.Fatalf("%q: ParseRoute = %+v, %v; the splitting parser: %+v, %v", path, rt, err, old, oldErr)
		}
		if err == nil && KindOf(path) != rt.Kind {
			t.Fatalf("%q: KindOf = %v, ParseRoute's kind %v", path, KindOf(path), rt.Kind)
		}
	})
}

// splitParseRoute is ParseRoute as it was before shapeOf: the reference
// for FuzzKindOf.
func splitParseRoute(path string) (Route, error) {
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
		return Route{}, errcode.New(errcode.NameInvalid, "%v", err)
	}
	return rt, nil
}

func TestParseContentRange(t *testing.T) {
	good := map[string][2]int64{"0-9": {0, 10}, "10-10": {10, 1}, "bytes 5-6": {5, 2}, "bytes=0-0": {0, 1}, "0-99/100": {0, 100}}
	for s, want := range good {
		start, n, err := ParseContentRange(s)
		if err != nil || start != want[0] || n != want[1] {
			t.Errorf("ParseContentRange(%q) = %d, %d, %v; want %v", s, start, n, err, want)
		}
	}
	for _, s := range []string{"", "-", "5", "9-0", "-1-3", "a-b", "0--1", "+1-2", "1-+2", "99999999999999999999-1"} {
		if _, _, err := ParseContentRange(s); err == nil {
			t.Errorf("ParseContentRange(%q) accepted", s)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"0-9", "bytes 5-6", "0-99/100", "9-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, n, err := ParseContentRange(s)
		if err == nil && (start < 0 || n <= 0) {
			t.Fatalf("%q: start %d length %d", s, start, n)
		}
	})
}
