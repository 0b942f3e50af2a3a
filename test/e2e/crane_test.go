package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCraneLifecycle pushes an image with `crane append` (a layer tarball
// built by the test on an empty base), checks its digest, manifest, config
// and layer bytes, reads the file back with `crane export` and `crane pull`,
// copies and tags it, lists tags and the catalog, deletes it by digest and
// checks it is gone while the copy in the other repository survives.
func TestCraneLifecycle(t *testing.T) {
	skipIfShort(t)
	crane := needTool(t, "crane")
	s := startBerth(t)

	cr := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(run(t, crane, append(args, "--insecure")...))
	}
	repo := s.Addr + "/e2e/crane"
	copyRepo := s.Addr + "/e2e/crane-copy"
	ref := repo + ":v1"

	payload := randomBytes(t, 512<<10)
	note := []byte("crane e2e " + randomHex(t, 8) + "\n")
	dir := t.TempDir()
	layerPath := filepath.Join(dir, "layer.tar")
	writeFile(t, layerPath, layerTar(t,
		testFile{Name: "data/payload.bin", Data: payload},
		testFile{Name: "data/note.txt", Data: note},
	))

	// crane append prints the pushed image's digest reference.
	appended := cr("append", "-f", layerPath, "-t", ref)
	dgst := cr("digest", ref)
	if !strings.HasPrefix(dgst, "sha256:") {
		t.Fatalf("crane digest %s = %q", ref, dgst)
	}
	if want := repo + "@" + dgst; appended != want {
		t.Errorf("crane append printed %q, want %q", appended, want)
	}

	// The manifest's bytes hash to the digest, and its config and layer
	// blobs hash to their descriptors.
	rawManifest := []byte(cr("manifest", ref))
	if got := sha256Digest(rawManifest); got != dgst {
		t.Errorf("crane manifest %s hashes to %s, crane digest says %s", ref, got, dgst)
	}
	if _, d := fetchManifest(t, s, "e2e/crane", "v1"); d != dgst {
		t.Errorf("registry serves e2e/crane:v1 as %s, crane digest says %s", d, dgst)
	}
	var man manifest
	mustUnmarshal(t, "manifest", rawManifest, &man)
	if len(man.Layers) != 1 {
		t.Fatalf("manifest has %d layers, want 1:\n%s", len(man.Layers), rawManifest)
	}
	if got := sha256Digest([]byte(cr("config", ref))); got != man.Config.Digest {
		t.Errorf("crane config hashes to %s, manifest config is %s", got, man.Config.Digest)
	}
	layer := run(t, crane, "blob", repo+"@"+man.Layers[0].Digest, "--insecure")
	if got := sha256Digest([]byte(layer)); got != man.Layers[0].Digest || int64(len(layer)) != man.Layers[0].Size {
		t.Errorf("crane blob %s: %d bytes hashing to %s, want %d bytes", man.Layers[0].Digest, len(layer), got, man.Layers[0].Size)
	}

	// File contents through the flattened filesystem.
	exportPath := filepath.Join(dir, "export.tar")
	cr("export", ref, exportPath)
	checkFiles(t, "crane export", exportPath, map[string][]byte{"data/payload.bin": payload, "data/note.txt": note})

	// crane pull into an OCI layout records the same manifest digest.
	layoutDir := filepath.Join(dir, "pulled")
	cr("pull", "--format", "oci", ref, layoutDir)
	idxData, err := os.ReadFile(filepath.Join(layoutDir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx index
	mustUnmarshal(t, "index.json", idxData, &idx)
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != dgst {
		t.Errorf("crane pull --format oci wrote index %s, want one manifest %s", idxData, dgst)
	}
	pulledLayer, err := os.ReadFile(filepath.Join(layoutDir, "blobs", "sha256", strings.TrimPrefix(man.Layers[0].Digest, "sha256:")))
	if err != nil || !bytes.Equal(pulledLayer, []byte(layer)) {
		t.Errorf("crane pull: layer blob differs from the registry's (err %v)", err)
	}

	// Copy to another repository and tag.
	cr("copy", ref, copyRepo+":v1")
	if got := cr("digest", copyRepo+":v1"); got != dgst {
		t.Errorf("copied image digest %s, want %s", got, dgst)
	}
	cr("tag", ref, "v2")
	if got := cr("digest", repo+":v2"); got != dgst {
		t.Errorf("tag v2 digest %s, want %s", got, dgst)
	}
	tags := lines(cr("ls", repo))
	slices.Sort(tags)
	if want := []string{"v1", "v2"}; !slices.Equal(tags, want) {
		t.Errorf("crane ls %s = %v, want %v", repo, tags, want)
	}
	catalog := lines(cr("catalog", s.Addr))
	for _, want := range []string{"e2e/crane", "e2e/crane-copy"} {
		if !slices.Contains(catalog, want) {
			t.Errorf("crane catalog = %v, missing %s", catalog, want)
		}
	}

	// Delete by digest: the manifest and the tags pointing at it are gone.
	cr("delete", repo+"@"+dgst)
	mustFail(t, crane, "manifest", repo+"@"+dgst, "--insecure")
	mustFail(t, crane, "manifest", ref, "--insecure")
	mustFail(t, crane, "manifest", repo+":v2", "--insecure")
	if tags := lines(strings.TrimSpace(execIn(t, "", nil, crane, "ls", repo, "--insecure").Stdout)); len(tags) != 0 {
		t.Errorf("crane ls %s after delete = %v, want no tags", repo, tags)
	}
	// The copy shares the blobs and must be intact.
	if got := cr("digest", copyRepo+":v1"); got != dgst {
		t.Errorf("copy digest after deleting the original = %s, want %s", got, dgst)
	}
	copyExport := filepath.Join(dir, "copy-export.tar")
	cr("export", copyRepo+":v1", copyExport)
	checkFiles(t, "crane export (copy)", copyExport, map[string][]byte{"data/payload.bin": payload, "data/note.txt": note})
}

// checkFiles asserts that the tar file at path holds files with exactly the
// wanted contents.
func checkFiles(t *testing.T, what, path string, want map[string][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := filesInTar(t, f)
	for name, data := range want {
		g, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: %s missing (have %d files)", what, name, len(got))
		case !bytes.Equal(g, data):
			t.Errorf("%s: %s is %d bytes hashing to %s, want %d bytes hashing to %s",
				what, name, len(g), sha256Digest(g), len(data), sha256Digest(data))
		}
	}
}
