package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// This file is the contract of replication (docs/replication.md): push
// rules copy every acknowledged push to another registry, across a
// SIGKILL of the source and an outage of the target; pull rules copy what
// their globs select of another registry into berth.

// replImage is an image the test pushed: its manifest (an image manifest,
// an index or a referrer) and what must arrive with it.
type replImage struct {
	repo, tag string // tag "" for a push by digest (a referrer)
	mediaType string
	body      []byte
	digest    string
	// blobs are pushed before the manifest; children (of an index) are
	// pushed by digest before it.
	blobs    map[string][]byte
	children []*replImage
	// subject is set for a referrer: the digest it refers to.
	subject string
	// referrerFirst pushes a referrer before its subject.
	referrerFirst bool
}

// replBlob makes a random blob.
func replBlob(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// replManifest makes a single-platform OCI image manifest with a random
// config and layer.
func replManifest(t *testing.T, repo, tag, arch string) *replImage {
	t.Helper()
	cfg := mustJSON(t, map[string]any{"architecture": arch, "os": "linux", "nonce": randomHex(t, 8),
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}}})
	layer := replBlob(512 + int(replBlob(1)[0])*8)
	m := manifest{SchemaVersion: 2, MediaType: mediaTypeOCIManifest,
		Config: descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: sha256Digest(cfg), Size: int64(len(cfg))},
		Layers: []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: sha256Digest(layer), Size: int64(len(layer))}}}
	body := mustJSON(t, m)
	return &replImage{repo: repo, tag: tag, mediaType: mediaTypeOCIManifest, body: body, digest: sha256Digest(body),
		blobs: map[string][]byte{sha256Digest(cfg): cfg, sha256Digest(layer): layer}}
}

// replIndex makes a two-platform OCI index.
func replIndex(t *testing.T, repo, tag string) *replImage {
	t.Helper()
	a, b := replManifest(t, repo, "", "amd64"), replManifest(t, repo, "", "arm64")
	type platformDesc struct {
		descriptor
		Platform map[string]string `json:"platform"`
	}
	body := mustJSON(t, struct {
		SchemaVersion int            `json:"schemaVersion"`
		MediaType     string         `json:"mediaType"`
		Manifests     []platformDesc `json:"manifests"`
	}{2, mediaTypeOCIIndex, []platformDesc{
		{descriptor{MediaType: mediaTypeOCIManifest, Digest: a.digest, Size: int64(len(a.body))}, map[string]string{"architecture": "amd64", "os": "linux"}},
		{descriptor{MediaType: mediaTypeOCIManifest, Digest: b.digest, Size: int64(len(b.body))}, map[string]string{"architecture": "arm64", "os": "linux"}},
	}})
	return &replImage{repo: repo, tag: tag, mediaType: mediaTypeOCIIndex, body: body, digest: sha256Digest(body), children: []*replImage{a, b}}
}

// replReferrer makes an artifact manifest (a signature) whose subject is
// img, pushed by digest.
func replReferrer(t *testing.T, img *replImage) *replImage {
	t.Helper()
	sig := []byte("signature of " + img.digest + " " + randomHex(t, 8))
	empty := []byte("{}")
	m := manifest{SchemaVersion: 2, MediaType: mediaTypeOCIManifest, ArtifactType: "application/vnd.example.signature",
		Config:  descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: sha256Digest(empty), Size: 2},
		Layers:  []descriptor{{MediaType: "application/vnd.example.signature.v1", Digest: sha256Digest(sig), Size: int64(len(sig))}},
		Subject: &descriptor{MediaType: img.mediaType, Digest: img.digest, Size: int64(len(img.body))}}
	body := mustJSON(t, m)
	return &replImage{repo: img.repo, mediaType: mediaTypeOCIManifest, body: body, digest: sha256Digest(body),
		blobs: map[string][]byte{sha256Digest(empty): empty, sha256Digest(sig): sig}, subject: img.digest}
}

// replProxy is a reverse proxy on a fixed loopback address in front of a
// registry that may move (restarted on another port) or be down (502).
type replProxy struct {
	URL    string
	target atomic.Pointer[url.URL]
}

func startReplProxy(t *testing.T, upstream string) *replProxy {
	t.Helper()
	p := &replProxy{}
	p.retarget(t, upstream)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(p.target.Load()); r.Out.Host = r.In.Host },
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			http.Error(w, "the registry is down", http.StatusBadGateway)
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *replProxy) retarget(t *testing.T, upstream string) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p.target.Store(u)
}

var replHTTP = &http.Client{Timeout: 20 * time.Second}

// replDo sends one request and returns the status, headers and body; an
// error only when the request could not be made.
func replDo(method, u, token, ctype string, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if method == http.MethodGet || method == http.MethodHead {
		req.Header.Set("Accept", allManifestTypes)
	}
	resp, err := replHTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data, err
}

// replPush pushes an image (children and blobs first) to an open
// registry and returns an error instead of failing: a push may meet a
// killed server.
func replPush(base string, img *replImage) error {
	for _, c := range img.children {
		if err := replPush(base, c); err != nil {
			return err
		}
	}
	digests := make([]string, 0, len(img.blobs))
	for d := range img.blobs {
		digests = append(digests, d)
	}
	slices.Sort(digests)
	for _, d := range digests {
		// A POST and a PUT, which every registry takes.
		st, h, body, err := replDo(http.MethodPost, base+"/v2/"+img.repo+"/blobs/uploads/", "", "", nil)
		if err != nil {
			return err
		}
		if st != http.StatusAccepted {
			return fmt.Errorf("start upload to %s: %d %s", img.repo, st, truncate(string(body), 200))
		}
		loc, err := url.Parse(h.Get("Location"))
		if err != nil {
			return err
		}
		u, _ := url.Parse(base)
		loc = u.ResolveReference(loc)
		q := loc.Query()
		q.Set("digest", d)
		loc.RawQuery = q.Encode()
		st, _, body, err = replDo(http.MethodPut, loc.String(), "", "application/octet-stream", img.blobs[d])
		if err != nil {
			return err
		}
		if st != http.StatusCreated {
			return fmt.Errorf("upload %s to %s: %d %s", d, img.repo, st, truncate(string(body), 200))
		}
	}
	ref := img.tag
	if ref == "" {
		ref = img.digest
	}
	st, h, body, err := replDo(http.MethodPut, base+"/v2/"+img.repo+"/manifests/"+ref, "", img.mediaType, img.body)
	if err != nil {
		return err
	}
	if st != http.StatusCreated || h.Get("Docker-Content-Digest") != img.digest {
		return fmt.Errorf("PUT manifest %s:%s: %d %s %s", img.repo, ref, st, h.Get("Docker-Content-Digest"), truncate(string(body), 200))
	}
	return nil
}

// replMissing says what of img the registry at base lacks or holds
// differently ("" when it has it all, byte for byte).
func replMissing(base, token string, img *replImage, checkBlobs bool) string {
	ref := img.tag
	if ref == "" {
		ref = img.digest
	}
	st, h, body, err := replDo(http.MethodGet, base+"/v2/"+img.repo+"/manifests/"+ref, token, "", nil)
	switch {
	case err != nil:
		return err.Error()
	case st != http.StatusOK:
		return fmt.Sprintf("%s:%s answers %d", img.repo, ref, st)
	case h.Get("Docker-Content-Digest") != img.digest || !bytes.Equal(body, img.body):
		return fmt.Sprintf("%s:%s is %s (%d bytes), want %s (%d bytes)", img.repo, ref, h.Get("Docker-Content-Digest"), len(body), img.digest, len(img.body))
	}
	for _, c := range img.children {
		if m := replMissing(base, token, c, checkBlobs); m != "" {
			return "child of " + img.repo + ":" + ref + ": " + m
		}
	}
	if checkBlobs {
		for d, want := range img.blobs {
			st, _, got, err := replDo(http.MethodGet, base+"/v2/"+img.repo+"/blobs/"+d, token, "", nil)
			if err != nil || st != http.StatusOK || !bytes.Equal(got, want) {
				return fmt.Sprintf("blob %s of %s: %d %v (%d bytes, want %d)", d, img.repo, st, err, len(got), len(want))
			}
		}
	}
	if img.subject != "" {
		st, _, body, err := replDo(http.MethodGet, base+"/v2/"+img.repo+"/referrers/"+img.subject, token, "", nil)
		if err != nil || st != http.StatusOK {
			return fmt.Sprintf("referrers of %s@%s: %d %v", img.repo, img.subject, st, err)
		}
		var idx index
		if json.Unmarshal(body, &idx) != nil || !slices.ContainsFunc(idx.Manifests, func(d descriptor) bool { return d.Digest == img.digest }) {
			return fmt.Sprintf("referrers of %s@%s do not list %s: %s", img.repo, img.subject, img.digest, truncate(string(body), 300))
		}
	}
	return ""
}

// replicationRules reads berth replicate list -o json.
func replicationRules(t *testing.T, registry string) []map[string]any {
	t.Helper()
	out := mustSucceed(t, "berth replicate list", execIn(t, "", nil, berthBin, "replicate", "list", "--registry", registry, "-o", "json"))
	var rules []map[string]any
	mustUnmarshal(t, "replicate list", []byte(out), &rules)
	return rules
}

// TestReplicatePush pushes 200 images (some multi-platform indexes, some
// with a signature, some signatures pushed before their image) to an open
// berth with a push rule to a berth with auth, SIGKILLs the source once
// in the middle of a push and stops the target for 20 s, and checks that
// every acknowledged push arrives byte for byte.
func TestReplicatePush(t *testing.T) {
	root := t.TempDir()
	// The target: auth on, a namespace and a robot that may push to it.
	targetDir := filepath.Join(root, "target")
	adminPass := "admin-" + randomHex(t, 12)
	targetLaunch := launch{DataDir: targetDir, Env: []string{"BERTH_ADMIN_PASSWORD=" + adminPass}}
	target := &authBerth{proc: start(t, targetLaunch), AdminPassword: adminPass}
	target.addNamespace(t, "team", false)
	robot, secret := target.addRobot(t, "team", "replica", []string{"team/*"}, []string{"pull", "push"}, "")
	lk := startReplProxy(t, target.URL)

	// Replication rules are no webhooks: refused as one, not listed as one.
	r := target.adminAPI(t, "admin", adminPass, http.MethodPost, "/api/v1/webhooks",
		map[string]any{"name": "sneaky", "url": "http://127.0.0.1:9/", "format": "replicate"})
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "berth replicate") {
		t.Errorf("POST /api/v1/webhooks with format replicate: %s, want 400 naming berth replicate", r)
	}
	target.admin(t, http.MethodPost, "/api/v1/replication", map[string]any{"name": "probe", "direction": "pull",
		"url": "http://127.0.0.1:9", "username": "u", "password": "probe-Secret-1", "every": "720h"}, http.StatusCreated)
	if hooks := target.admin(t, http.MethodGet, "/api/v1/webhooks", nil, http.StatusOK); strings.Contains(string(hooks), "probe") {
		t.Errorf("GET /api/v1/webhooks lists the replication rule: %s", hooks)
	}
	if rules := target.admin(t, http.MethodGet, "/api/v1/replication", nil, http.StatusOK); !strings.Contains(string(rules), `"probe"`) ||
		strings.Contains(string(rules), "probe-Secret-1") || !strings.Contains(string(rules), `"has_password":true`) {
		t.Errorf("GET /api/v1/replication: %s", rules)
	}
	if r := target.adminAPI(t, "admin", adminPass, http.MethodDelete, "/api/v1/webhooks/probe", nil); r.Status != http.StatusNotFound {
		t.Errorf("DELETE /api/v1/webhooks/probe (a replication rule): %s, want 404", r)
	}
	target.admin(t, http.MethodDelete, "/api/v1/replication/probe", nil, http.StatusNoContent)

	// The source: open, retries soon after a failure.
	srcDir := filepath.Join(root, "source")
	srcLaunch := launch{DataDir: srcDir, Args: []string{"--auth=none", "--webhook-backoff=200ms", "--webhook-backoff-max=2s", "--webhook-attempts=1000"}, Kill: true}
	src := start(t, srcLaunch)
	add := execStdin(t, nil, secret+"\n", berthBin, "replicate", "add", "dr", "--to", lk.URL, "--filter", "team/*",
		"--username", robot, "--password-stdin", "--registry", src.URL)
	if out := mustSucceed(t, "berth replicate add", add); !strings.Contains(out, lk.URL) || strings.Contains(add.combined(), secret) {
		t.Fatalf("berth replicate add answered %q", add.combined())
	}
	mustFailWith(t, "berth replicate add with --to and --from", execIn(t, "", nil, berthBin, "replicate", "add", "x", "--to", lk.URL,
		"--from", lk.URL, "--registry", src.URL), "not both")

	// Not replicated: outside the filter.
	other := replManifest(t, "other/app", "v1", "amd64")
	if err := replPush(src.URL, other); err != nil {
		t.Fatal(err)
	}

	const n = 200
	const killAt, targetDownAt = 60, 120
	var acked []*replImage
	var targetDown time.Time
	restarts := 0
	begin := time.Now()
	for i := range n {
		repo := fmt.Sprintf("team/app%d", i%10)
		var img *replImage
		if i%5 == 0 {
			img = replIndex(t, repo, fmt.Sprintf("v%d", i))
		} else {
			img = replManifest(t, repo, fmt.Sprintf("v%d", i), "amd64")
		}
		var sig *replImage
		if i%7 == 0 {
			sig = replReferrer(t, img)
			sig.referrerFirst = i%2 == 0
		}
		if i == killAt {
			p := src
			go func() { time.Sleep(20 * time.Millisecond); p.kill() }()
		}
		if i == targetDownAt {
			target.stop(t)
			targetDown = time.Now()
			t.Logf("target stopped after %d pushes", i)
		}
		order := []*replImage{img}
		if sig != nil {
			order = append(order, sig)
			if sig.referrerFirst {
				order = []*replImage{sig, img}
			}
		}
		for _, x := range order {
			for attempt := 0; ; attempt++ {
				err := replPush(src.URL, x)
				if err == nil {
					acked = append(acked, x)
					break
				}
				select {
				case <-src.done:
				case <-time.After(5 * time.Second):
					t.Fatalf("push %d failed while the source runs: %v", i, err)
				}
				if attempt > 0 {
					t.Fatalf("push %d failed after a restart: %v", i, err)
				}
				t.Logf("push %d failed (%v): the source was killed; restarting it", i, err)
				src = start(t, srcLaunch)
				restarts++
			}
		}
	}
	t.Logf("%d pushes acknowledged in %s, %d source restarts", len(acked), time.Since(begin).Round(time.Millisecond), restarts)
	if restarts != 1 {
		t.Fatalf("the source restarted %d times, want 1", restarts)
	}
	// Pushes go on meanwhile; the target comes back after 20 s.
	time.Sleep(time.Until(targetDown.Add(20 * time.Second)))
	if rules := replicationRules(t, src.URL); len(rules) != 1 || rules[0]["pending"].(float64) == 0 || rules[0]["last_error"] == nil {
		t.Errorf("while the target is down, berth replicate list shows no pending copies nor error: %v", rules)
	} else {
		t.Logf("while the target is down: %v pending, last error %q", rules[0]["pending"], rules[0]["last_error"])
	}
	target = &authBerth{proc: start(t, targetLaunch), AdminPassword: adminPass}
	lk.retarget(t, target.URL)
	t.Logf("target back after %s", time.Since(targetDown).Round(time.Millisecond))

	// Every acknowledged push arrives, byte for byte.
	scopes := []string{}
	for i := range 10 {
		scopes = append(scopes, fmt.Sprintf("repository:team/app%d:pull", i))
	}
	waitStart := time.Now()
	deadline := waitStart.Add(3 * time.Minute)
	for {
		tok := target.token(t, "admin", adminPass, scopes...).Token
		missing, first := 0, ""
		for _, img := range acked {
			if m := replMissing(target.URL, tok, img, false); m != "" {
				if missing++; first == "" {
					first = m
				}
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, %d of %d pushes are not on the target, first: %s; rules: %v", time.Since(waitStart).Round(time.Second),
				missing, len(acked), first, replicationRules(t, src.URL))
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("all %d pushes replicated %s after the target came back", len(acked), time.Since(waitStart).Round(time.Millisecond))
	tok := target.token(t, "admin", adminPass, scopes...).Token
	for i, img := range acked {
		if i%10 == 0 || img.subject != "" || len(img.children) > 0 {
			if m := replMissing(target.URL, tok, img, true); m != "" {
				t.Errorf("on the target: %s", m)
			}
		}
	}
	// Nothing outside the filter.
	otherTok := target.token(t, "admin", adminPass, "repository:other/app:pull").Token
	if st, _, _, _ := replDo(http.MethodGet, target.URL+"/v2/other/app/manifests/v1", otherTok, "", nil); st != http.StatusNotFound {
		t.Errorf("other/app:v1 (outside the filter) on the target: %d, want 404", st)
	}
	// The queue is empty, nothing was given up, and no password shows.
	rules := replicationRules(t, src.URL)
	if len(rules) != 1 || rules[0]["name"] != "dr" || rules[0]["pending"].(float64) != 0 || rules[0]["dead"].(float64) != 0 ||
		rules[0]["has_password"] != true || rules[0]["username"] != robot {
		t.Errorf("berth replicate list: %v", rules)
	}
	list := mustSucceed(t, "berth replicate list", execIn(t, "", nil, berthBin, "replicate", "list", "--registry", src.URL))
	if !strings.Contains(list, "dr") || !strings.Contains(list, "PENDING") || strings.Contains(list, secret) {
		t.Errorf("berth replicate list:\n%s", list)
	}
	if log := tailFile(src.LogPath, 100000); strings.Contains(log, secret) {
		t.Errorf("the source's log holds the robot's secret")
	}
	mustSucceed(t, "berth replicate remove", execIn(t, "", nil, berthBin, "replicate", "remove", "dr", "--registry", src.URL))
	if rules := replicationRules(t, src.URL); len(rules) != 0 {
		t.Errorf("after remove: %v", rules)
	}
}

// TestReplicatePull copies a filtered subset of a Distribution 2.8
// registry into berth with a pull rule, and checks berth holds exactly
// that subset, digest for digest.
func TestReplicatePull(t *testing.T) {
	dist := startDistribution(t)
	type want struct {
		img  *replImage
		pull bool
	}
	var all []want
	for _, repo := range []string{"lib/alpha", "lib/beta", "lib/gamma", "tools/delta", "tools/eps", "zeta"} {
		for _, tag := range []string{"v1.0", "dev"} {
			var img *replImage
			if repo == "lib/beta" && tag == "v1.0" {
				img = replIndex(t, repo, tag)
			} else {
				img = replManifest(t, repo, tag, "amd64")
			}
			if err := replPush(dist.URL, img); err != nil {
				t.Fatal(err)
			}
			all = append(all, want{img, strings.HasPrefix(repo, "lib/") && strings.HasPrefix(tag, "v")})
		}
	}
	b := start(t, launch{Args: []string{"--auth=none"}})
	mustSucceed(t, "berth replicate add --from", execIn(t, "", nil, berthBin, "replicate", "add", "up", "--from", dist.URL,
		"--filter", "lib/*", "--tags", "v*", "--every", "2s", "--registry", b.URL))
	deadline := time.Now().Add(time.Minute)
	for {
		missing := ""
		for _, w := range all {
			if m := replMissing(b.URL, "", w.img, true); w.pull && m != "" {
				missing = m
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth lacks what the pull rule selects: %s; rules: %v", missing, replicationRules(t, b.URL))
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Exactly the selected repositories and tags, nothing else.
	st, _, body, err := replDo(http.MethodGet, b.URL+"/v2/_catalog", "", "", nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("catalog: %d %v", st, err)
	}
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	mustUnmarshal(t, "catalog", body, &cat)
	if want := []string{"lib/alpha", "lib/beta", "lib/gamma"}; !slices.Equal(cat.Repositories, want) {
		t.Errorf("berth's catalog = %v, want %v", cat.Repositories, want)
	}
	for _, repo := range cat.Repositories {
		_, _, body, _ := replDo(http.MethodGet, b.URL+"/v2/"+repo+"/tags/list", "", "", nil)
		var tags struct {
			Tags []string `json:"tags"`
		}
		mustUnmarshal(t, "tags", body, &tags)
		if !slices.Equal(tags.Tags, []string{"v1.0"}) {
			t.Errorf("tags of %s = %v, want [v1.0]", repo, tags.Tags)
		}
	}
	// A run now finds everything there.
	out := mustSucceed(t, "berth replicate run", execIn(t, "", nil, berthBin, "replicate", "run", "up", "--registry", b.URL))
	if !strings.Contains(out, "0 copied, 3 skipped") {
		t.Errorf("berth replicate run: %q, want 0 copied, 3 skipped", out)
	}
	rules := replicationRules(t, b.URL)
	if len(rules) != 1 || rules[0]["direction"] != "pull" || rules[0]["last_run"] == nil {
		t.Errorf("berth replicate list: %v", rules)
	}
	list := mustSucceed(t, "berth replicate list", execIn(t, "", nil, berthBin, "replicate", "list", "--registry", b.URL))
	if !strings.Contains(list, "LAST-RUN") || !strings.Contains(list, "0 copied, 3 skipped, 0 failed") {
		t.Errorf("berth replicate list:\n%s", list)
	}
}
