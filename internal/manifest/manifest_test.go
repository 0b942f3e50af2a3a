package manifest

import (
	"errors"
	"strings"
	"testing"
)

const (
	dA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	dC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

func TestParseImage(t *testing.T) {
	body := `{"schemaVersion":2,"mediaType":"` + OCIManifest + `",
		"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + dA + `","size":10},
		"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + dB + `","size":20},
		          {"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"` + dC + `","size":30,"urls":["https://example.com/l"]}],
		"subject":{"mediaType":"` + OCIManifest + `","digest":"` + dC + `","size":5}}`
	m, err := Parse(OCIManifest, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Blobs) != 2 || m.Blobs[0].Digest != dA || m.Blobs[1].Digest != dB {
		t.Fatalf("blobs = %+v, want config and the one distributable layer", m.Blobs)
	}
	if m.Subject == nil || m.Subject.Digest != dC {
		t.Fatalf("subject = %+v", m.Subject)
	}
	if m.ArtifactType != "application/vnd.oci.image.config.v1+json" {
		t.Fatalf("artifactType = %q, want the config media type", m.ArtifactType)
	}
}

func TestParseIndexAndArtifact(t *testing.T) {
	idx := `{"schemaVersion":2,"mediaType":"` + OCIIndex + `","artifactType":"application/x-sbom",
		"manifests":[{"mediaType":"` + OCIManifest + `","digest":"` + dA + `","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}`
	m, err := Parse("", []byte(idx))
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != OCIIndex || len(m.Children) != 1 || len(m.Blobs) != 0 || m.ArtifactType != "application/x-sbom" {
		t.Fatalf("index parsed as %+v", m)
	}
	docker := `{"schemaVersion":2,"mediaType":"` + DockerManifest + `","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` + dA + `","size":1},"layers":[]}`
	if m, err := Parse(DockerManifest, []byte(docker)); err != nil || m.ArtifactType != "" {
		t.Fatalf("docker manifest: %+v %v", m, err)
	}
}

func TestParseRejects(t *testing.T) {
	cfg := `"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + dA + `","size":10}`
	cases := map[string]struct {
		ct, body string
		want     error
	}{
		"not json":          {OCIManifest, `{"schemaVersion":2`, ErrInvalid},
		"no schema":         {OCIManifest, `{` + cfg + `}`, ErrInvalid},
		"schema 1":          {OCIManifest, `{"schemaVersion":1,` + cfg + `}`, ErrInvalid},
		"unknown type":      {"application/x-foo", `{"schemaVersion":2,` + cfg + `}`, ErrUnknownMediaType},
		"schema1 docker":    {"application/vnd.docker.distribution.manifest.v1+prettyjws", `{"schemaVersion":1}`, ErrUnknownMediaType},
		"no type":           {"", `{"schemaVersion":2,` + cfg + `}`, ErrUnknownMediaType},
		"type mismatch":     {OCIIndex, `{"schemaVersion":2,"mediaType":"` + OCIManifest + `",` + cfg + `}`, ErrInvalid},
		"no config":         {OCIManifest, `{"schemaVersion":2,"layers":[]}`, ErrInvalid},
		"bad layer digest":  {OCIManifest, `{"schemaVersion":2,` + cfg + `,"layers":[{"mediaType":"x","digest":"sha256:zz","size":1}]}`, ErrInvalid},
		"negative size":     {OCIManifest, `{"schemaVersion":2,` + cfg + `,"layers":[{"mediaType":"x","digest":"` + dB + `","size":-1}]}`, ErrInvalid},
		"index with config": {OCIIndex, `{"schemaVersion":2,` + cfg + `,"manifests":[]}`, ErrInvalid},
		"bad subject":       {OCIManifest, `{"schemaVersion":2,` + cfg + `,"subject":{"mediaType":"x","digest":"nope","size":1}}`, ErrInvalid},
	}
	for name, c := range cases {
		if _, err := Parse(c.ct, []byte(c.body)); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(OCIManifest, `{"schemaVersion":2,"config":{"mediaType":"a","digest":"`+dA+`","size":1},"layers":[]}`)
	f.Add(OCIIndex, `{"schemaVersion":2,"manifests":[{"mediaType":"a","digest":"`+dA+`","size":1}]}`)
	f.Add("", `{"schemaVersion":2,"mediaType":"`+DockerManifestList+`","manifests":[]}`)
	f.Fuzz(func(t *testing.T, ct, body string) {
		m, err := Parse(ct, []byte(body))
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnknownMediaType) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if !Known(m.MediaType) {
			t.Fatalf("accepted unknown media type %q", m.MediaType)
		}
		for _, d := range append(append([]Descriptor{}, m.Blobs...), m.Children...) {
			if !strings.HasPrefix(d.Digest, "sha256:") && !strings.HasPrefix(d.Digest, "sha512:") || d.Size < 0 {
				t.Fatalf("accepted bad descriptor %+v", d)
			}
		}
	})
}
