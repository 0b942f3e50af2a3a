package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAuthLongPushOutlastsToken checks that an upload may be continued and
// finished with the token that started it after that token expired, while
// the same expired token is refused for anything else.
//
// berth runs with --token-ttl 3s. A client gets one push token, starts an
// upload and PATCHes chunks one second apart with that same token; after
// every chunk it tries the token on a different request (listing the
// repository's tags). The chunks go on until that other request is
// refused (401), i.e. until the token is expired for berth itself, however
// much clock-skew leeway berth allows past the token's expires_in. Then it
// PATCHes once more and finishes with PUT, still with the expired token:
// 201, and the blob pulls back byte for byte. Finally the expired token
// must be refused for a new upload, a manifest, the blob, and for another
// upload session.
func TestAuthLongPushOutlastsToken(t *testing.T) {
	skipIfShort(t)
	const ttl = 3 * time.Second
	// maxGrace bounds how long past expires_in berth may accept a token
	// for other requests (clock-skew leeway).
	const maxGrace = 90 * time.Second
	b := startAuthBerth(t, "--token-ttl", ttl.String())
	pass := b.addUser(t, "alice", false)
	repo := "alice/app"
	scope := "repository:" + repo + ":pull,push"

	issued := time.Now()
	tok := b.token(t, "alice", pass, scope)
	if tok.ExpiresIn != int(ttl.Seconds()) {
		t.Errorf("token expires_in = %d, want %d (--token-ttl %s)", tok.ExpiresIn, int(ttl.Seconds()), ttl)
	}
	_, exp, access := tokenClaims(t, tok.Token)
	t.Logf("push token: exp %s (%s after issue), access %+v", time.Unix(exp, 0).UTC().Format(time.RFC3339), time.Unix(exp, 0).Sub(issued).Round(time.Second), access)

	// otherRequest uses the token for something other than the upload.
	otherRequest := func(token string) authResult {
		t.Helper()
		return authDo(t, http.MethodGet, b.URL+"/v2/"+repo+"/tags/list", nil, reqBearer(token))
	}
	if r := otherRequest(tok.Token); r.Status == http.StatusUnauthorized {
		t.Fatalf("a fresh token is refused: %s", r)
	}

	r := authDo(t, http.MethodPost, b.URL+"/v2/"+repo+"/blobs/uploads/", nil, reqBearer(tok.Token))
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST upload: %s", r)
	}
	loc := r.Header.Get("Location")
	if loc == "" {
		t.Fatal("POST upload: no Location")
	}
	abs := func(l string) string {
		if strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://") {
			return l
		}
		return b.URL + l
	}

	var blob []byte
	hash := sha256.New()
	patch := func(n int) {
		t.Helper()
		chunk := randomBytes(t, 32<<10+n)
		start := len(blob)
		r := authDo(t, http.MethodPatch, abs(loc), chunk, reqBearer(tok.Token),
			reqHeader("Content-Type", "application/octet-stream"),
			reqHeader("Content-Range", fmt.Sprintf("%d-%d", start, start+len(chunk)-1)))
		if r.Status != http.StatusAccepted {
			t.Fatalf("PATCH chunk %d (bytes %d-%d) with the upload's token, %s after it was issued (expires_in %ds): %s",
				n, start, start+len(chunk)-1, time.Since(issued).Round(time.Millisecond), tok.ExpiresIn, r)
		}
		if want := fmt.Sprintf("0-%d", start+len(chunk)-1); r.Header.Get("Range") != want {
			t.Errorf("PATCH chunk %d: Range %q, want %q", n, r.Header.Get("Range"), want)
		}
		if l := r.Header.Get("Location"); l != "" {
			loc = l
		}
		blob = append(blob, chunk...)
		hash.Write(chunk)
	}

	// Chunks a second apart, at least 6, until the token is refused
	// elsewhere.
	const minChunks = 6
	var refusedAt time.Duration
	var refusal authResult
	for n := 0; ; n++ {
		if n > 0 {
			time.Sleep(time.Second)
		}
		patch(n)
		other := otherRequest(tok.Token)
		switch {
		case other.Status == http.StatusUnauthorized && refusedAt == 0:
			refusedAt = time.Since(issued)
			refusal = other
		case other.Status == http.StatusUnauthorized:
		case refusedAt != 0:
			t.Fatalf("the token was refused for GET tags/list %s after issue, then accepted again: %s", refusedAt, other)
		case other.Status != http.StatusOK && other.Status != http.StatusNotFound:
			t.Fatalf("GET tags/list with the push token: %s", other)
		}
		if refusedAt != 0 && n+1 >= minChunks {
			break
		}
		if time.Since(issued) > ttl+maxGrace {
			t.Fatalf("the token (expires_in %ds) is still accepted for GET tags/list %s after it was issued",
				tok.ExpiresIn, time.Since(issued).Round(time.Second))
		}
	}
	t.Logf("the token (expires_in %ds) was first refused for another request %s after issue, i.e. %s past expires_in; %d bytes sent so far",
		tok.ExpiresIn, refusedAt.Round(time.Millisecond), (refusedAt - ttl).Round(time.Millisecond), len(blob))
	if refusedAt < ttl-time.Second {
		t.Errorf("the token was refused %s after issue, before its expires_in of %ds", refusedAt, tok.ExpiresIn)
	}
	if ch := refusal.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer ") {
		t.Errorf("refusal of the expired token: WWW-Authenticate %q, want a Bearer challenge", ch)
	}

	// The expired token still continues and finishes its own upload: one
	// more PATCH, and a PUT carrying a last chunk.
	patch(99)
	last := randomBytes(t, 1000)
	blob = append(blob, last...)
	hash.Write(last)
	digest := "sha256:" + hex.EncodeToString(hash.Sum(nil))
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	r = authDo(t, http.MethodPut, abs(loc)+sep+"digest="+digest, last, reqBearer(tok.Token),
		reqHeader("Content-Type", "application/octet-stream"))
	if r.Status != http.StatusCreated {
		t.Fatalf("PUT (finishing the upload) with its own token, %s after issue (refused elsewhere since %s): got %s, want 201",
			time.Since(issued).Round(time.Millisecond), refusedAt.Round(time.Millisecond), r)
	}
	if got := r.Header.Get("Docker-Content-Digest"); got != digest {
		t.Errorf("PUT: Docker-Content-Digest %q, want %s", got, digest)
	}
	t.Logf("upload of %d bytes finished with the expired token %s after issue: %s", len(blob), time.Since(issued).Round(time.Millisecond), digest)

	// The expired token is refused for anything else.
	refused := func(what string, r authResult) {
		t.Helper()
		if r.Status != http.StatusUnauthorized {
			t.Errorf("expired token, %s: got %s, want 401", what, r)
		} else if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("expired token, %s: 401 without a Bearer challenge (WWW-Authenticate %q)", what, r.Header.Get("WWW-Authenticate"))
		}
	}
	refused("POST a new upload", authDo(t, http.MethodPost, b.URL+"/v2/"+repo+"/blobs/uploads/", nil, reqBearer(tok.Token)))
	refused("GET a manifest", authDo(t, http.MethodGet, b.URL+"/v2/"+repo+"/manifests/v1", nil, reqBearer(tok.Token), reqHeader("Accept", allManifestTypes)))
	refused("GET the blob it uploaded", authDo(t, http.MethodGet, b.URL+"/v2/"+repo+"/blobs/"+digest, nil, reqBearer(tok.Token)))
	refused("PUT a manifest", authDo(t, http.MethodPut, b.URL+"/v2/"+repo+"/manifests/v1", []byte(`{}`), reqBearer(tok.Token),
		reqHeader("Content-Type", mediaTypeOCIManifest)))

	// Nor may it continue an upload another token started.
	fresh := b.token(t, "alice", pass, scope)
	r = authDo(t, http.MethodPost, b.URL+"/v2/"+repo+"/blobs/uploads/", nil, reqBearer(fresh.Token))
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST upload with a fresh token: %s", r)
	}
	other := abs(r.Header.Get("Location"))
	chunk := randomBytes(t, 1024)
	refused("PATCH an upload started by another token", authDo(t, http.MethodPatch, other, chunk, reqBearer(tok.Token),
		reqHeader("Content-Type", "application/octet-stream"), reqHeader("Content-Range", fmt.Sprintf("0-%d", len(chunk)-1))))
	if r := authDo(t, http.MethodPatch, other, chunk, reqBearer(fresh.Token),
		reqHeader("Content-Type", "application/octet-stream"), reqHeader("Content-Range", fmt.Sprintf("0-%d", len(chunk)-1))); r.Status != http.StatusAccepted {
		t.Errorf("PATCH with the token that started the upload: %s", r)
	}

	// The blob pulls back byte for byte with a current token.
	r = authDo(t, http.MethodGet, b.URL+"/v2/"+repo+"/blobs/"+digest, nil, reqBearer(fresh.Token))
	if r.Status != http.StatusOK || !bytes.Equal(r.Body, blob) {
		t.Fatalf("GET blob %s with a fresh token: %d, %d bytes (want 200 and the %d pushed bytes)", digest, r.Status, len(r.Body), len(blob))
	}
	// And a manifest using it can be pushed and pulled.
	cfg := []byte(`{}`)
	cfgDigest := sha256Digest(cfg)
	if r := authDo(t, http.MethodPost, b.URL+"/v2/"+repo+"/blobs/uploads/?digest="+cfgDigest, cfg, reqBearer(fresh.Token),
		reqHeader("Content-Type", "application/octet-stream")); r.Status != http.StatusCreated {
		t.Fatalf("upload of the empty config: %s", r)
	}
	man := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/x-long-push","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/octet-stream","digest":%q,"size":%d}]}`,
		mediaTypeOCIManifest, cfgDigest, len(cfg), digest, len(blob)))
	if r := authDo(t, http.MethodPut, b.URL+"/v2/"+repo+"/manifests/v1", man, reqBearer(fresh.Token),
		reqHeader("Content-Type", mediaTypeOCIManifest)); r.Status != http.StatusCreated {
		t.Fatalf("PUT manifest with a fresh token: %s", r)
	}
	if body, d := fetchManifestAs(t, b, "alice", pass, repo, "v1"); d != sha256Digest(man) {
		t.Errorf("manifest v1 pulls back as %s (%s), pushed %s", d, truncate(string(body), 200), sha256Digest(man))
	}
}
