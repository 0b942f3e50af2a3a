package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// skopeoInspect is the subset of `skopeo inspect` output the test reads.
type skopeoInspect struct {
	Name     string   `json:"Name"`
	Digest   string   `json:"Digest"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// TestSkopeoCopyInspect pushes an OCI layout built in the test to berth
// with skopeo, copies it between berth repositories, and checks manifest
// digests (sha256 of `skopeo inspect --raw` bytes), tag lists and layer
// contents on both sides.
func TestSkopeoCopyInspect(t *testing.T) {
	skipIfShort(t)
	skopeo := needTool(t, "skopeo")
	s := startBerth(t)

	img := newOCIImage(t,
		testFile{Name: "data/random.bin", Data: randomBytes(t, 300<<10)},
		testFile{Name: "data/hello.txt", Data: []byte("hello from skopeo " + randomHex(t, 8) + "\n")},
	)
	layout := filepath.Join(t.TempDir(), "layout")
	img.writeOCILayout(t, layout, "v1")

	// --insecure-policy: do not depend on /etc/containers/policy.json.
	sk := func(args ...string) string {
		t.Helper()
		return run(t, skopeo, append([]string{"--insecure-policy"}, args...)...)
	}
	tls := []string{"--src-tls-verify=false", "--dest-tls-verify=false"}
	src := "docker://" + s.Addr + "/e2e/skopeo-src"
	dst := "docker://" + s.Addr + "/e2e/skopeo-dst"

	// Upload: the OCI layout's manifest must arrive byte for byte.
	sk(append([]string{"copy", "--preserve-digests", "--dest-tls-verify=false"}, "oci:"+layout+":v1", src+":v1")...)
	raw := sk("inspect", "--raw", "--tls-verify=false", src+":v1")
	if got := sha256Digest([]byte(raw)); got != img.ManifestDigest {
		t.Fatalf("manifest of %s:v1 hashes to %s, pushed %s", src, got, img.ManifestDigest)
	}
	if _, d := fetchManifest(t, s, "e2e/skopeo-src", "v1"); d != img.ManifestDigest {
		t.Errorf("registry serves e2e/skopeo-src:v1 as %s, want %s", d, img.ManifestDigest)
	}

	// Registry to registry, to a new repository and a second tag there.
	sk(append(append([]string{"copy"}, tls...), src+":v1", dst+":v2")...)
	sk(append(append([]string{"copy"}, tls...), src+"@"+img.ManifestDigest, dst+":latest")...)
	for _, ref := range []string{dst + ":v2", dst + ":latest", dst + "@" + img.ManifestDigest} {
		raw := sk("inspect", "--raw", "--tls-verify=false", ref)
		if got := sha256Digest([]byte(raw)); got != img.ManifestDigest {
			t.Errorf("manifest of %s hashes to %s, source is %s", ref, got, img.ManifestDigest)
		}
	}

	var info skopeoInspect
	mustUnmarshal(t, "skopeo inspect", []byte(sk("inspect", "--tls-verify=false", dst+":v2")), &info)
	if info.Digest != img.ManifestDigest {
		t.Errorf("skopeo inspect %s: Digest %s, want %s", dst+":v2", info.Digest, img.ManifestDigest)
	}
	if !slices.Equal(info.Layers, []string{img.LayerDigest}) {
		t.Errorf("skopeo inspect %s: Layers %v, want [%s]", dst+":v2", info.Layers, img.LayerDigest)
	}
	tags := slices.Clone(info.RepoTags)
	slices.Sort(tags)
	if want := []string{"latest", "v2"}; !slices.Equal(tags, want) {
		t.Errorf("skopeo inspect %s: RepoTags %v, want %v", dst+":v2", info.RepoTags, want)
	}
	mustUnmarshal(t, "skopeo inspect", []byte(sk("inspect", "--tls-verify=false", src+":v1")), &info)
	if !slices.Equal(info.RepoTags, []string{"v1"}) {
		t.Errorf("skopeo inspect %s: RepoTags %v, want [v1]", src+":v1", info.RepoTags)
	}

	// Contents: copy back out to a directory and compare the blobs.
	out := filepath.Join(t.TempDir(), "out")
	sk("copy", "--src-tls-verify=false", dst+":latest", "dir:"+out)
	for dgst, want := range map[string][]byte{img.LayerDigest: img.Layer, img.ConfigDigest: img.Config} {
		got, err := os.ReadFile(filepath.Join(out, strings.TrimPrefix(dgst, "sha256:")))
		if err != nil {
			t.Errorf("blob %s not copied out: %v", dgst, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("blob %s: copied out %d bytes hashing to %s, want the %d pushed bytes", dgst, len(got), sha256Digest(got), len(want))
		}
	}
	if got, err := os.ReadFile(filepath.Join(out, "manifest.json")); err != nil || sha256Digest(got) != img.ManifestDigest {
		t.Errorf("manifest copied out to dir: hashes to %s (err %v), want %s", sha256Digest(got), err, img.ManifestDigest)
	}
}
