package e2e

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

const (
	orasArtifactType   = "application/vnd.berth.e2e.artifact"
	orasReferrerType   = "application/vnd.berth.e2e.signature"
	orasFileMediaType  = "application/vnd.berth.e2e.file"
	orasReferrerMedium = "application/vnd.berth.e2e.signature.v1+json"
)

// orasDescriptor is the JSON that `oras push|attach --format json` print.
type orasDescriptor struct {
	Reference    string `json:"reference"`
	MediaType    string `json:"mediaType"`
	Digest       string `json:"digest"`
	Size         int64  `json:"size"`
	ArtifactType string `json:"artifactType"`
}

// TestOrasArtifactsAndReferrers pushes an artifact with oras, pulls it back
// byte for byte, attaches a referrer, and checks `oras discover` and the
// registry's referrers API (with and without the artifactType filter)
// report it.
func TestOrasArtifactsAndReferrers(t *testing.T) {
	skipIfShort(t)
	oras := needTool(t, "oras")
	s := startBerth(t)

	repo := s.Addr + "/e2e/oras"
	ref := repo + ":v1"
	work := t.TempDir()
	payload := randomBytes(t, 200<<10)
	writeFile(t, filepath.Join(work, "payload.bin"), payload)
	sig := []byte(`{"signed":"` + randomHex(t, 16) + `"}`)
	writeFile(t, filepath.Join(work, "sig.json"), sig)

	// Push, run in the work directory so oras records a relative file name.
	var pushed orasDescriptor
	mustUnmarshal(t, "oras push output", []byte(runIn(t, work, oras, "push", "--plain-http", "--format", "json",
		"--artifact-type", orasArtifactType, ref, "payload.bin:"+orasFileMediaType)), &pushed)
	if pushed.ArtifactType != orasArtifactType {
		t.Errorf("oras push: artifactType %q, want %q", pushed.ArtifactType, orasArtifactType)
	}
	body, dgst := fetchManifest(t, s, "e2e/oras", "v1")
	if dgst != pushed.Digest {
		t.Fatalf("registry serves e2e/oras:v1 as %s, oras pushed %s", dgst, pushed.Digest)
	}
	if fetched := run(t, oras, "manifest", "fetch", "--plain-http", ref); sha256Digest([]byte(fetched)) != dgst {
		t.Errorf("oras manifest fetch %s hashes to %s, want %s", ref, sha256Digest([]byte(fetched)), dgst)
	}
	var man manifest
	mustUnmarshal(t, "artifact manifest", body, &man)
	if man.ArtifactType != orasArtifactType {
		t.Errorf("manifest artifactType %q, want %q", man.ArtifactType, orasArtifactType)
	}
	if len(man.Layers) != 1 || man.Layers[0].Digest != sha256Digest(payload) || man.Layers[0].MediaType != orasFileMediaType {
		t.Errorf("manifest layers %+v, want one %s layer %s", man.Layers, orasFileMediaType, sha256Digest(payload))
	}

	// Pull into an empty directory and compare bytes.
	out := filepath.Join(t.TempDir(), "out")
	run(t, oras, "pull", "--plain-http", "-o", out, ref)
	if got, err := os.ReadFile(filepath.Join(out, "payload.bin")); err != nil || !bytes.Equal(got, payload) {
		t.Errorf("oras pull: payload.bin differs (err %v, %d bytes hashing to %s, want %s)", err, len(got), sha256Digest(got), sha256Digest(payload))
	}

	// Attach a referrer to the artifact.
	var attached orasDescriptor
	mustUnmarshal(t, "oras attach output", []byte(runIn(t, work, oras, "attach", "--plain-http", "--format", "json",
		"--artifact-type", orasReferrerType, ref, "sig.json:"+orasReferrerMedium)), &attached)
	if attached.Digest == "" || attached.ArtifactType != orasReferrerType {
		t.Fatalf("oras attach printed %+v", attached)
	}
	refBody, refDigest := fetchManifest(t, s, "e2e/oras", attached.Digest)
	if refDigest != attached.Digest {
		t.Errorf("referrer manifest hashes to %s, oras attached %s", refDigest, attached.Digest)
	}
	var refMan manifest
	mustUnmarshal(t, "referrer manifest", refBody, &refMan)
	if refMan.Subject == nil || refMan.Subject.Digest != dgst {
		t.Errorf("referrer subject %+v, want digest %s", refMan.Subject, dgst)
	}

	// oras discover lists it.
	var tree any
	mustUnmarshal(t, "oras discover output", []byte(run(t, oras, "discover", "--plain-http", "--format", "json", ref)), &tree)
	if !hasReferrer(tree, attached.Digest, orasReferrerType) {
		t.Errorf("oras discover %s does not list referrer %s (%s):\n%s", ref, attached.Digest, orasReferrerType, mustJSON(t, tree))
	}

	// The referrers API itself, unfiltered and filtered.
	checkReferrers := func(query string, want bool) {
		t.Helper()
		u := s.URL + "/v2/e2e/oras/referrers/" + dgst + query
		status, hdr, data := httpGet(t, u, nil)
		if status != http.StatusOK {
			t.Errorf("GET %s: status %d: %s", u, status, truncate(string(data), 300))
			return
		}
		if ct := hdr.Get("Content-Type"); ct != mediaTypeOCIIndex {
			t.Errorf("GET %s: Content-Type %q, want %q", u, ct, mediaTypeOCIIndex)
		}
		var idx index
		mustUnmarshal(t, "referrers response", data, &idx)
		found := false
		for _, d := range idx.Manifests {
			if d.Digest == attached.Digest {
				found = true
				if d.ArtifactType != orasReferrerType || d.Size != int64(len(refBody)) {
					t.Errorf("GET %s: referrer descriptor %+v, want artifactType %s size %d", u, d, orasReferrerType, len(refBody))
				}
			}
		}
		if found != want {
			t.Errorf("GET %s: referrer %s listed = %v, want %v:\n%s", u, attached.Digest, found, want, data)
		}
	}
	checkReferrers("", true)
	checkReferrers("?artifactType="+url.QueryEscape(orasReferrerType), true)
	checkReferrers("?artifactType="+url.QueryEscape("application/vnd.berth.e2e.other"), false)

	// The referrer's own content round-trips.
	sigOut := filepath.Join(t.TempDir(), "sig")
	run(t, oras, "pull", "--plain-http", "-o", sigOut, repo+"@"+attached.Digest)
	if got, err := os.ReadFile(filepath.Join(sigOut, "sig.json")); err != nil || !bytes.Equal(got, sig) {
		t.Errorf("oras pull of the referrer: sig.json = %q (err %v), want %q", got, err, sig)
	}
}

// hasReferrer walks `oras discover --format json` output (whose layout has
// changed between oras versions: "referrers" or "manifests" lists, possibly
// nested) looking for a descriptor with the digest and artifact type.
func hasReferrer(v any, dgst, artifactType string) bool {
	switch x := v.(type) {
	case map[string]any:
		if x["digest"] == dgst && x["artifactType"] == artifactType {
			// The root object is the subject, not a referrer, but it has
			// a different digest, so matching it is not a concern.
			return true
		}
		for _, child := range x {
			if hasReferrer(child, dgst, artifactType) {
				return true
			}
		}
	case []any:
		for _, child := range x {
			if hasReferrer(child, dgst, artifactType) {
				return true
			}
		}
	}
	return false
}
