package api

import (
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/errcode"
	"github.com/berth-registry/berth/internal/reference"
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
