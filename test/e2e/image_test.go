package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testFile is a regular file to put into a layer.
type testFile struct {
	Name string // path inside the layer, without a leading slash
	Data []byte
}

// layerTar returns an uncompressed tar archive holding files (with their
// parent directories), with fixed timestamps so the same input always gives
// the same bytes.
func layerTar(t *testing.T, files ...testFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	dirs := map[string]bool{}
	for _, f := range files {
		var parts []string
		for _, p := range strings.Split(filepath.Dir(f.Name), "/") {
			if p == "." || p == "" {
				continue
			}
			parts = append(parts, p)
			d := strings.Join(parts, "/") + "/"
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime}); err != nil {
				t.Fatal(err)
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Mode: 0o644, Size: int64(len(f.Data)), ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzipBytes compresses b.
func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// filesInTar reads every regular file of a tar stream into a map.
func filesInTar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s from tar: %v", hdr.Name, err)
		}
		out[strings.TrimPrefix(hdr.Name, "/")] = data
	}
}

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// manifest is the subset of an OCI/Docker image manifest the tests read.
type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	ArtifactType  string       `json:"artifactType,omitempty"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
	Subject       *descriptor  `json:"subject,omitempty"`
}

// index is an OCI image index (also the referrers API response).
type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Manifests     []descriptor `json:"manifests"`
}

// ociImage is a single-layer OCI image built in memory.
type ociImage struct {
	Files          []testFile
	Layer          []byte // gzip-compressed layer blob
	Config         []byte
	Manifest       []byte
	LayerDigest    string
	ConfigDigest   string
	ManifestDigest string
}

// newOCIImage builds a linux/amd64 OCI image with one gzip layer holding
// files. All digests are computed from the bytes.
func newOCIImage(t *testing.T, files ...testFile) *ociImage {
	t.Helper()
	raw := layerTar(t, files...)
	img := &ociImage{Files: files, Layer: gzipBytes(t, raw)}
	img.LayerDigest = sha256Digest(img.Layer)
	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{sha256Digest(raw)}},
	}
	img.Config = mustJSON(t, cfg)
	img.ConfigDigest = sha256Digest(img.Config)
	m := manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeOCIManifest,
		Config:        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: img.ConfigDigest, Size: int64(len(img.Config))},
		Layers:        []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: img.LayerDigest, Size: int64(len(img.Layer))}},
	}
	img.Manifest = mustJSON(t, m)
	img.ManifestDigest = sha256Digest(img.Manifest)
	return img
}

// writeOCILayout writes img as an OCI image layout in dir, tagged tag (the
// org.opencontainers.image.ref.name annotation that oci: transports read).
func (img *ociImage) writeOCILayout(t *testing.T, dir, tag string) {
	t.Helper()
	blob := func(dgst string, data []byte) {
		writeFile(t, filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(dgst, "sha256:")), data)
	}
	blob(img.LayerDigest, img.Layer)
	blob(img.ConfigDigest, img.Config)
	blob(img.ManifestDigest, img.Manifest)
	writeFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	idx := index{SchemaVersion: 2, MediaType: mediaTypeOCIIndex, Manifests: []descriptor{{
		MediaType:   mediaTypeOCIManifest,
		Digest:      img.ManifestDigest,
		Size:        int64(len(img.Manifest)),
		Annotations: map[string]string{"org.opencontainers.image.ref.name": tag},
	}}}
	writeFile(t, filepath.Join(dir, "index.json"), mustJSON(t, idx))
}

// mustJSON marshals v or fails the test.
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustUnmarshal unmarshals JSON data into v or fails the test.
func mustUnmarshal(t *testing.T, what string, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("parsing %s: %v\n%s", what, err, truncate(string(data), 2000))
	}
}
