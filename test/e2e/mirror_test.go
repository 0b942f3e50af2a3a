package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMirrorSharedDownload: 32 clients pull the same uncached 256 MiB
// layer through a mirror of Distribution 2.8 reached over a slowed link.
// Every client gets the right bytes, the upstream's access log shows one
// GET of the blob, and the first byte reaches a client well before the
// download ends. The blob is then kept: a pull with the upstream stopped
// is served from the cache.
func TestMirrorSharedDownload(t *testing.T) {
	skipIfShort(t)
	up := startDistribution(t)
	big := newBigBlob(13, 256<<20)
	pushBigImage(t, up.URL, "team/big", "v1", big)
	lk := startLink(t, up.URL)
	lk.rate.Store(128 << 20) // 128 MiB/s: the download takes 2 s
	b := start(t, launch{Args: []string{"--auth=none"}})
	addMirror(t, b.server, map[string]any{"name": "dist", "upstream": lk.URL})

	// The manifest first, as a client would.
	body, digest := fetchManifest(t, b.server, "dist/team/big", "v1")
	if !strings.Contains(string(body), big.Digest) {
		t.Fatalf("mirrored manifest %s does not name the layer %s", digest, big.Digest)
	}

	const clients = 32
	blobURL := b.URL + "/v2/dist/team/big/blobs/" + big.Digest
	client := &http.Client{Timeout: 5 * time.Minute}
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstByte time.Time
	type result struct {
		status int
		digest string
		n      int64
		err    error
	}
	results := make([]result, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(blobURL)
			if err != nil {
				results[i].err = err
				return
			}
			defer resp.Body.Close()
			one := make([]byte, 1)
			if _, err := resp.Body.Read(one); err == nil {
				mu.Lock()
				if firstByte.IsZero() {
					firstByte = time.Now()
				}
				mu.Unlock()
			}
			h := newHashWriter()
			h.Write(one)
			n, err := h.copy(resp.Body)
			results[i] = result{resp.StatusCode, h.digest(), n + 1, err}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.status != http.StatusOK || r.digest != big.Digest || r.n != 256<<20 {
			t.Errorf("client %d: status %d, %d bytes, digest %s, err %v; want 200, %d bytes, %s", i, r.status, r.n, r.digest, r.err, 256<<20, big.Digest)
		}
	}
	finished := lk.finishedAt()
	t.Logf("first byte after %s, upstream body finished after %s", firstByte.Sub(start), finished.Sub(start))
	if firstByte.IsZero() || !firstByte.Before(finished) {
		t.Errorf("the first byte (%s) did not reach a client before the download finished (%s)", firstByte.Sub(start), finished.Sub(start))
	}
	if n := up.blobGETs(t, big.Digest); n != 1 {
		t.Errorf("upstream access log shows %d GETs of the blob, want exactly 1", n)
	}
	if n := lk.blobGETs.Load(); n != 1 {
		t.Errorf("the link carried %d blob GETs, want 1", n)
	}

	// Kept: served with the upstream gone.
	up.stop()
	waitFor(t, "the blob kept in berth's store", func() bool { return fileExists(blobFile(b.DataDir, big.Digest)) })
	if status, d, n, err := getBlob(client, blobURL); err != nil || status != 200 || d != big.Digest || n != 256<<20 {
		t.Errorf("pull from the cache with the upstream stopped: %d, %s, %d bytes, %v", status, d, n, err)
	}
}

// TestMirrorUpstreamFaults: an upstream link that changes a byte of a
// blob, drops the connection half-way, or answers 500: the client's pull
// fails, nothing is kept, and the next pull, over a healed link, goes to
// the upstream again and succeeds.
func TestMirrorUpstreamFaults(t *testing.T) {
	skipIfShort(t)
	up := startDistribution(t)
	big := newBigBlob(7, 8<<20)
	pushBigImage(t, up.URL, "team/app", "v1", big)
	lk := startLink(t, up.URL)
	b := start(t, launch{Args: []string{"--auth=none"}})
	addMirror(t, b.server, map[string]any{"name": "dist", "upstream": lk.URL})
	fetchManifest(t, b.server, "dist/team/app", "v1")
	blobURL := b.URL + "/v2/dist/team/app/blobs/" + big.Digest
	client := &http.Client{Timeout: time.Minute}

	for _, c := range []struct {
		name string
		mode int32
	}{{"wrong bytes", linkCorrupt}, {"truncated body", linkTruncate}, {"500", linkFail}} {
		lk.mode.Store(c.mode)
		before := lk.blobGETs.Load()
		status, d, n, err := getBlob(client, blobURL)
		if err == nil && status == http.StatusOK && d == big.Digest {
			t.Errorf("%s: the pull succeeded (%d bytes)", c.name, n)
		}
		if status == http.StatusOK && err == nil {
			t.Errorf("%s: a complete 200 answer of %d bytes (digest %s): a client could take it for the blob", c.name, n, d)
		}
		t.Logf("%s: status %d, %d bytes, err %v", c.name, status, n, err)
		if got := lk.blobGETs.Load() - before; got != 1 {
			t.Errorf("%s: %d upstream GETs, want 1", c.name, got)
		}
		time.Sleep(200 * time.Millisecond) // a failed download cleans up after its readers
		if fileExists(blobFile(b.DataDir, big.Digest)) {
			t.Fatalf("%s: the blob was kept", c.name)
		}
		if r := authDo(t, http.MethodGet, b.URL+"/v2/dist/team/app/tags/list", nil); r.Status != 200 {
			t.Errorf("%s: tags list %s", c.name, r)
		}
	}
	lk.mode.Store(linkPass)
	before := lk.blobGETs.Load()
	if status, d, n, err := getBlob(client, blobURL); err != nil || status != 200 || d != big.Digest || n != 8<<20 {
		t.Fatalf("pull over the healed link: %d, %s, %d bytes, %v", status, d, n, err)
	}
	if got := lk.blobGETs.Load() - before; got != 1 {
		t.Errorf("pull over the healed link made %d upstream GETs, want 1 (nothing was cached before)", got)
	}
	waitFor(t, "the blob kept", func() bool { return fileExists(blobFile(b.DataDir, big.Digest)) })
}

// TestMirrorReadOnly: a mirror's namespace refuses pushes with DENIED.
func TestMirrorReadOnly(t *testing.T) {
	skipIfShort(t)
	up := startDistribution(t)
	b := start(t, launch{Args: []string{"--auth=none"}})
	addMirror(t, b.server, map[string]any{"name": "dist", "upstream": up.URL})
	r := authDo(t, http.MethodPost, b.URL+"/v2/dist/team/app/blobs/uploads/", nil)
	if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), `"DENIED"`) || !strings.Contains(string(r.Body), "mirror") {
		t.Errorf("upload into a mirror: %s, want 403 DENIED naming the mirror", r)
	}
	img := newOCIImage(t, testFile{Name: "a", Data: []byte("a")})
	r = authDo(t, http.MethodPut, b.URL+"/v2/dist/team/app/manifests/v1", img.Manifest, reqHeader("Content-Type", mediaTypeOCIManifest))
	if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), `"DENIED"`) {
		t.Errorf("manifest into a mirror: %s, want 403 DENIED", r)
	}
	// Elsewhere pushes work.
	pushOpen(t, b.URL, "team/app", "v1", img)
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestMirrorDockerEngine: a Docker Engine whose registry-mirrors names
// berth pulls busybox:latest, which berth's Docker Hub mirror fetches from
// an upstream berth (with auth: the mirror holds a pull robot's secret).
// A second pull, with the upstream stopped, comes from the cache; once the
// tag's TTL has passed, still from the cache (stale); and when the
// upstream is back with the tag moved, the new image arrives after the
// TTL.
func TestMirrorDockerEngine(t *testing.T) {
	skipIfShort(t)
	needDocker(t)
	pass := "admin-" + randomHex(t, 12)
	up := &authBerth{proc: start(t, launch{Env: []string{"BERTH_ADMIN_PASSWORD=" + pass}}), AdminPassword: pass}
	up.addNamespace(t, "library", false)
	robot, secret := up.addRobot(t, "library", "mirror", []string{"library/*"}, []string{"pull"}, "")
	v1 := newOCIImage(t, testFile{Name: "etc/release", Data: []byte("v1 " + randomHex(t, 8))})
	up.pushImageAs(t, "admin", pass, "library/busybox", "latest", v1)
	lk := startLink(t, up.URL)

	b := start(t, launch{Args: []string{"--auth=none"}})
	const ttl = 4 * time.Second
	r := execStdin(t, nil, secret+"\n", berthBin, "mirror", "add", "hub", "--upstream", lk.URL, "--docker-hub",
		"--username", robot, "--password-stdin", "--tag-ttl", ttl.String(), "--registry", b.URL)
	mustSucceed(t, "berth mirror add", r)
	list := mustSucceed(t, "berth mirror list", execIn(t, "", nil, berthBin, "mirror", "list", "--registry", b.URL, "-o", "json"))
	var mirrors []struct {
		Name        string `json:"name"`
		Username    string `json:"username"`
		HasPassword bool   `json:"has_password"`
		DockerHub   bool   `json:"docker_hub"`
	}
	mustUnmarshal(t, "berth mirror list -o json", []byte(list), &mirrors)
	if strings.Contains(list, secret) || len(mirrors) != 1 || !mirrors[0].HasPassword || mirrors[0].Username != robot || !mirrors[0].DockerHub {
		t.Errorf("mirror list shows the password, or not the mirror as added:\n%s", list)
	}

	eng := startDockerEngine(t, "--registry-mirror", b.URL)
	pull := func(what string) string {
		t.Helper()
		eng.docker(t, "rmi", "-f", "busybox:latest")
		out := mustSucceed(t, what, eng.docker(t, "pull", "busybox:latest"))
		m := pullDigestRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s: no digest in the output:\n%s", what, out)
		}
		return m[1]
	}
	if d := pull("first pull"); d != v1.ManifestDigest {
		t.Fatalf("first pull got %s, the upstream holds %s", d, v1.ManifestDigest)
	}
	if r := authDo(t, http.MethodGet, b.URL+"/v2/hub/library/busybox/tags/list", nil); r.Status != 200 || !strings.Contains(string(r.Body), "latest") {
		t.Errorf("berth does not list the cached tag: %s", r)
	}

	up.stop(t)
	if d := pull("pull with the upstream stopped"); d != v1.ManifestDigest {
		t.Errorf("pull with the upstream stopped got %s, want %s", d, v1.ManifestDigest)
	}
	time.Sleep(ttl + time.Second)
	if d := pull("pull after the TTL with the upstream stopped (stale)"); d != v1.ManifestDigest {
		t.Errorf("stale pull got %s, want %s", d, v1.ManifestDigest)
	}
	if !strings.Contains(tailFile(b.LogPath, 200), "stale") {
		t.Errorf("no log line says a stale tag was served:\n%s", tailFile(b.LogPath, 30))
	}

	// Back, with latest moved.
	up2 := &authBerth{proc: start(t, launch{DataDir: up.DataDir, Env: []string{"BERTH_ADMIN_PASSWORD=" + pass}}), AdminPassword: pass}
	lk.retarget(t, up2.URL)
	v2 := newOCIImage(t, testFile{Name: "etc/release", Data: []byte("v2 " + randomHex(t, 8))})
	up2.pushImageAs(t, "admin", pass, "library/busybox", "latest", v2)
	time.Sleep(ttl + time.Second)
	if d := pull("pull after the upstream moved the tag"); d != v2.ManifestDigest {
		t.Errorf("after the TTL with the upstream back, pull got %s, want the moved tag's %s", d, v2.ManifestDigest)
	}
}

// TestMirrorDockerEngineWithAuth: berth with token auth as Docker Hub's
// mirror. Docker Engine asks for tokens for library/busybox, the name it
// knows; berth grants them for what that name resolves to. With the
// mirror's namespace public an anonymous pull works; private, it is
// refused (and Docker's fallback to Docker Hub finds no network).
func TestMirrorDockerEngineWithAuth(t *testing.T) {
	skipIfShort(t)
	needDocker(t)
	hub := startBerth(t)
	img := newOCIImage(t, testFile{Name: "etc/release", Data: []byte("auth " + randomHex(t, 8))})
	pushOpen(t, hub.URL, "library/busybox", "latest", img)

	b := startAuthBerth(t)
	mustSucceed(t, "berth mirror add", execIn(t, "", b.adminEnv(), berthBin, "mirror", "add", "hub", "--upstream", hub.URL, "--docker-hub"))
	// The namespace exists now, private.
	eng := startDockerEngine(t, "--registry-mirror", b.URL)
	eng.docker(t, "rmi", "-f", "busybox:latest")
	if r := eng.docker(t, "pull", "busybox:latest"); r.Err == nil {
		t.Fatalf("an anonymous pull from a private mirror namespace succeeded:\n%s", r.combined())
	}
	b.setPublic(t, "hub", true)
	out := mustSucceed(t, "docker pull through a public mirror", eng.docker(t, "pull", "busybox:latest"))
	if m := pullDigestRE.FindStringSubmatch(out); m == nil || m[1] != img.ManifestDigest {
		t.Errorf("pull through the mirror with auth: %q, want %s", out, img.ManifestDigest)
	}
	// A token asked for the Docker Hub name grants pull on the mirror's
	// name for it, never push (an admin's neither: a mirror takes no
	// pushes), and nothing under the asked name, which a local push
	// could later take.
	for _, who := range [][2]string{{"", ""}, {"admin", b.AdminPassword}} {
		tok := b.token(t, who[0], who[1], "repository:library/busybox:pull,push")
		_, _, access := tokenClaims(t, tok.Token)
		if len(access) != 1 || access[0].Name != "hub/library/busybox" || strings.Join(access[0].Actions, ",") != "pull" {
			t.Errorf("token of %q for library/busybox pull,push grants %+v, want pull on hub/library/busybox", who[0], access)
		}
	}
}

// pullAll pulls repo:tag from base as a client would (the manifest, then
// its config and layers, every byte) and checks each blob's digest.
func pullAll(t *testing.T, base, token, repo, tag string) string {
	t.Helper()
	r := authDo(t, http.MethodGet, base+"/v2/"+repo+"/manifests/"+tag, nil, reqBearer(token), reqHeader("Accept", mediaTypeOCIManifest))
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s:%s: %s", repo, tag, r)
	}
	var m manifest
	mustUnmarshal(t, "manifest", r.Body, &m)
	for _, d := range append([]descriptor{m.Config}, m.Layers...) {
		b := authDo(t, http.MethodGet, base+"/v2/"+repo+"/blobs/"+d.Digest, nil, reqBearer(token))
		if b.Status != http.StatusOK || sha256Digest(b.Body) != d.Digest {
			t.Fatalf("GET blob %s of %s:%s: %d, %d bytes hashing to %s", d.Digest, repo, tag, b.Status, len(b.Body), sha256Digest(b.Body))
		}
	}
	return sha256Digest(r.Body)
}

// TestMirrorRetentionAndQuota: what a mirror caches counts towards its
// namespace's usage, and retention and garbage collection remove it as
// they remove pushed content; what was removed is fetched again on the
// next pull.
func TestMirrorRetentionAndQuota(t *testing.T) {
	skipIfShort(t)
	up := startBerth(t)
	var imgs []*ociImage
	var total int64
	for i, tag := range []string{"v1", "v2", "v3"} {
		img := newOCIImage(t, testFile{Name: "f", Data: randomBytes(t, 64<<10+i)})
		pushOpen(t, up.URL, "library/app", tag, img)
		imgs = append(imgs, img)
		total += int64(len(img.Config) + len(img.Layer) + len(img.Manifest))
	}
	b := startAuthBerth(t, "--gc-grace=1s")
	env := b.adminEnv()
	mustSucceed(t, "berth mirror add", execIn(t, "", env, berthBin, "mirror", "add", "hub", "--upstream", up.URL, "--docker-hub"))
	b.setPublic(t, "hub", true)
	tok := b.token(t, "", "", "repository:hub/library/app:pull").Token
	for i, tag := range []string{"v1", "v2", "v3"} {
		if d := pullAll(t, b.URL, tok, "hub/library/app", tag); d != imgs[i].ManifestDigest {
			t.Fatalf("pull of %s through the mirror: %s, want %s", tag, d, imgs[i].ManifestDigest)
		}
		time.Sleep(20 * time.Millisecond) // distinct cache times
	}
	var usage struct {
		Used int64 `json:"used_bytes"`
	}
	mustUnmarshal(t, "usage", b.admin(t, http.MethodGet, "/api/v1/namespaces/hub/usage", nil, http.StatusOK), &usage)
	if usage.Used != total {
		t.Errorf("namespace hub uses %d bytes, want the %d bytes of the manifests and blobs it cached", usage.Used, total)
	}

	mustSucceed(t, "berth retention add", execIn(t, "", env, berthBin, "retention", "add", "hub/library/app", "--keep-last", "1"))
	time.Sleep(1500 * time.Millisecond) // past the grace
	mustSucceed(t, "berth gc", execIn(t, "", env, berthBin, "gc"))
	time.Sleep(1500 * time.Millisecond)
	mustSucceed(t, "berth gc", execIn(t, "", env, berthBin, "gc"))
	r := authDo(t, http.MethodGet, b.URL+"/v2/hub/library/app/tags/list", nil, reqBearer(tok))
	if !strings.Contains(string(r.Body), `"v3"`) || strings.Contains(string(r.Body), `"v1"`) || strings.Contains(string(r.Body), `"v2"`) {
		t.Errorf("after retention (keep the newest 1) the cached tags are %s, want only v3", r.Body)
	}
	for _, img := range imgs[:2] {
		if fileExists(blobFile(b.DataDir, img.LayerDigest)) {
			t.Errorf("the layer %s of a tag retention deleted is still stored after gc", img.LayerDigest)
		}
	}
	if !fileExists(blobFile(b.DataDir, imgs[2].LayerDigest)) {
		t.Errorf("the layer of the kept tag is gone")
	}
	// Fetched again on the next pull.
	if d := pullAll(t, b.URL, tok, "hub/library/app", "v1"); d != imgs[0].ManifestDigest {
		t.Errorf("v1 pulled again through the mirror: %s, want %s", d, imgs[0].ManifestDigest)
	}
}
