package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startRawBerth starts berth on dataDir for a test that kills it with
// SIGKILL and starts it again on the same data.
func startRawBerth(t *testing.T, dataDir, logPath string) *proc {
	t.Helper()
	return start(t, launch{Args: []string{"--auth=none", "--log-level=warn"}, DataDir: dataDir, LogPath: logPath, Kill: true})
}

// pushed is content the registry acknowledged with 201.
type pushed struct {
	repo, tag      string
	blobDigest     string
	seed           uint64
	size           int
	manifestDigest string
	manifest       []byte
}

// content regenerates a blob from its seed, so the test keeps no copies.
func content(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func digestHex(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// pushOne uploads a blob in chunks, then a manifest that uses it, and
// reports what was acknowledged. Errors after the kill are expected.
func pushOne(ctx context.Context, c *http.Client, base string, p *pushed) (blobOK, manifestOK bool) {
	data := content(p.seed, p.size)
	p.blobDigest = digestHex(data)
	req := func(method, url, ctype string, body []byte, hdr ...string) (*http.Response, error) {
		r, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := c.Do(r)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		return res, err
	}
	res, err := req("POST", base+"/v2/"+p.repo+"/blobs/uploads/", "", nil)
	if err != nil || res.StatusCode != 202 {
		return false, false
	}
	loc := base + res.Header.Get("Location")
	const chunk = 256 << 10
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		res, err = req("PATCH", loc, "application/octet-stream", data[off:end], "Content-Range", fmt.Sprintf("%d-%d", off, end-1))
		if err != nil || res.StatusCode != 202 {
			return false, false
		}
		loc = base + res.Header.Get("Location")
	}
	res, err = req("PUT", loc+"?digest="+p.blobDigest, "", nil)
	if err != nil || res.StatusCode != 201 {
		return false, false
	}
	cfg := []byte(`{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}`)
	res, err = req("POST", base+"/v2/"+p.repo+"/blobs/uploads/?digest=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "", []byte("{}"))
	if err != nil || res.StatusCode != 201 {
		return true, false
	}
	p.manifest = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x-durability","config":%s,"layers":[{"mediaType":"application/octet-stream","digest":"%s","size":%d}]}`, cfg, p.blobDigest, p.size))
	p.manifestDigest = digestHex(p.manifest)
	res, err = req("PUT", base+"/v2/"+p.repo+"/manifests/"+p.tag, "application/vnd.oci.image.manifest.v1+json", p.manifest)
	return true, err == nil && res.StatusCode == 201
}

// TestDurabilityAfterSIGKILL kills berth with SIGKILL in the middle of
// concurrent pushes, restarts it on the same data directory, and checks that
// everything acknowledged pulls back byte for byte and that no blob on disk
// or served is incomplete.
func TestDurabilityAfterSIGKILL(t *testing.T) {
	root := t.TempDir()
	dataDir, logPath := filepath.Join(root, "data"), filepath.Join(root, "berth.log")
	b := startRawBerth(t, dataDir, logPath)

	const workers = 8
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var blobsAcked, manifestsAcked, attempted []pushed
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for i := 0; ctx.Err() == nil; i++ {
				p := pushed{repo: fmt.Sprintf("durability/w%d", w), tag: fmt.Sprintf("t%d", i), seed: rng.Uint64(), size: 1 + rng.IntN(3<<20)}
				blobOK, manOK := pushOne(ctx, client, b.server.URL, &p)
				mu.Lock()
				attempted = append(attempted, p)
				if blobOK {
					blobsAcked = append(blobsAcked, p)
				}
				if manOK {
					manifestsAcked = append(manifestsAcked, p)
				}
				mu.Unlock()
			}
		}(w)
	}
	// Kill once a fair number of pushes were acknowledged, mid-stream.
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := len(manifestsAcked)
		mu.Unlock()
		if n >= 40 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-b.done
	cancel()
	wg.Wait()
	t.Logf("killed berth after %d acknowledged blobs and %d acknowledged manifests (%d pushes attempted)", len(blobsAcked), len(manifestsAcked), len(attempted))
	if len(manifestsAcked) == 0 {
		t.Fatal("no push was acknowledged before the kill")
	}

	// Restart on the same data and check.
	b2 := startRawBerth(t, dataDir, logPath)
	get := func(path string) (int, []byte) {
		res, err := http.Get(b2.server.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, body
	}
	for _, p := range blobsAcked {
		status, body := get("/v2/" + p.repo + "/blobs/" + p.blobDigest)
		if status != 200 || !bytes.Equal(body, content(p.seed, p.size)) {
			t.Errorf("acknowledged blob %s in %s: status %d, %d bytes, want %d bytes of the pushed content", p.blobDigest, p.repo, status, len(body), p.size)
		}
	}
	for _, p := range manifestsAcked {
		status, body := get("/v2/" + p.repo + "/manifests/" + p.tag)
		if status != 200 || !bytes.Equal(body, p.manifest) {
			t.Errorf("acknowledged manifest %s:%s: status %d, body %q", p.repo, p.tag, status, truncate(string(body), 200))
		}
	}
	// Pushes that were cut off: whatever is served must be complete.
	for _, p := range attempted {
		if p.blobDigest == "" {
			continue
		}
		status, body := get("/v2/" + p.repo + "/blobs/" + p.blobDigest)
		if status == 200 && digestHex(body) != p.blobDigest {
			t.Errorf("served an incomplete blob %s (%d bytes)", p.blobDigest, len(body))
		}
	}
	// Every committed blob file hashes to its name.
	n := 0
	err := filepath.WalkDir(filepath.Join(dataDir, "blobs", "sha256"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if got := digestHex(data); got != "sha256:"+d.Name() {
			t.Errorf("blob file %s holds content hashing to %s", path, got)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verified %d acknowledged blobs, %d acknowledged manifests and %d blob files on disk", len(blobsAcked), len(manifestsAcked), n)

	// The restarted registry still takes pushes.
	p := pushed{repo: "durability/after", tag: "ok", seed: 42, size: 1000}
	if blobOK, manOK := pushOne(context.Background(), http.DefaultClient, b2.server.URL, &p); !blobOK || !manOK {
		t.Fatal("push after restart failed")
	}
}
