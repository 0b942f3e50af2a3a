package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

// This file is the harness of the mirror tests: upstream registries (a
// berth with auth, Debian's Distribution 2.8), a link between berth and an
// upstream that can be slowed down or made to misbehave, and a second
// Docker Engine configured with registry-mirrors.

// distribution is a running Distribution 2.8 (docker-registry), with its
// access log on.
type distribution struct{ *testserver.Registry }

// startDistribution runs Debian's docker-registry on a free loopback port
// and stops it at cleanup.
func startDistribution(t *testing.T) *distribution {
	t.Helper()
	skipIfShort(t)
	return &distribution{testserver.Distribution(t)}
}

func (d *distribution) stop() { _ = d.Stop() }

// blobGETs counts the GETs of blob digest in the registry's access log.
func (d *distribution) blobGETs(t *testing.T, digest string) int {
	t.Helper()
	n, err := d.BlobGETs(digest)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pushOpen pushes img as repo:tag to an open registry (no auth), with a
// POST and a PUT per blob, which every registry accepts.
func pushOpen(t *testing.T, base, repo, tag string, img *ociImage) {
	t.Helper()
	pushWith(t, base, "", repo, tag, img.Manifest, map[string][]byte{img.ConfigDigest: img.Config, img.LayerDigest: img.Layer})
}

// pushWith pushes blobs and a manifest to repo:tag with an optional bearer
// token.
func pushWith(t *testing.T, base, token, repo, tag string, man []byte, blobs map[string][]byte) {
	t.Helper()
	for digest, data := range blobs {
		r := authDo(t, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil, reqBearer(token))
		if r.Status != http.StatusAccepted {
			t.Fatalf("start upload to %s: %s", repo, r)
		}
		if r := authDo(t, http.MethodPut, finishURL(t, base, r.Header.Get("Location"), digest), data, reqBearer(token), reqHeader("Content-Type", "application/octet-stream")); r.Status != http.StatusCreated {
			t.Fatalf("upload %s to %s: %s", digest, repo, r)
		}
	}
	if r := authDo(t, http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, man, reqBearer(token), reqHeader("Content-Type", mediaTypeOCIManifest)); r.Status != http.StatusCreated {
		t.Fatalf("PUT manifest %s:%s: %s", repo, tag, r)
	}
}

// finishURL is the URL of the PUT that finishes an upload: its Location
// (relative or absolute, with a query or not) with the digest added.
func finishURL(t *testing.T, base, location, digest string) string {
	t.Helper()
	loc, err := url.Parse(location)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(base)
	loc = u.ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	return loc.String()
}

// bigBlob is a large random blob generated from a seed, never held whole
// in memory.
type bigBlob struct {
	seed   uint64
	size   int64
	Digest string
}

func newBigBlob(seed uint64, size int64) *bigBlob {
	b := &bigBlob{seed: seed, size: size}
	h := sha256.New()
	if _, err := io.Copy(h, b.reader()); err != nil {
		panic(err)
	}
	b.Digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return b
}

func (b *bigBlob) reader() io.Reader {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(b.seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(key), b.size)
}

// pushBigImage pushes an image whose one layer is b (streamed) to an open
// registry, and returns the manifest's digest.
func pushBigImage(t *testing.T, base, repo, tag string, b *bigBlob) string {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["` + b.Digest + `"]}}`)
	cfgDigest := sha256Digest(cfg)
	upload := func(digest string, size int64, body io.Reader) {
		resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start upload to %s: %s", repo, resp.Status)
		}
		req, _ := http.NewRequest(http.MethodPut, finishURL(t, base, resp.Header.Get("Location"), digest), body)
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("upload %s to %s: %s", digest, repo, resp.Status)
		}
	}
	upload(cfgDigest, int64(len(cfg)), bytes.NewReader(cfg))
	upload(b.Digest, b.size, b.reader())
	m := mustJSON(t, manifest{SchemaVersion: 2, MediaType: mediaTypeOCIManifest,
		Config: descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cfgDigest, Size: int64(len(cfg))},
		Layers: []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: b.Digest, Size: b.size}}})
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(m))
	req.Header.Set("Content-Type", mediaTypeOCIManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT manifest %s:%s: %s", repo, tag, resp.Status)
	}
	return sha256Digest(m)
}

// Link modes: how the link between berth and an upstream behaves for
// blob GETs.
const (
	linkPass     int32 = iota // as the upstream answers
	linkCorrupt               // one byte of the body changed
	linkTruncate              // the connection dropped half-way
	linkFail                  // 500 instead of the blob
)

// link is a network link between berth and an upstream registry: a
// reverse proxy on loopback that can be slowed to a rate (bytes per
// second) and made to damage blob bodies, as a bad network or a broken
// upstream would. It records when each blob body finished.
type link struct {
	URL  string
	mode atomic.Int32
	rate atomic.Int64 // bytes per second; 0 unlimited
	mu   sync.Mutex
	// finished is when the last blob body went through.
	finished time.Time
	blobGETs atomic.Int64
	target   atomic.Pointer[url.URL]
}

// retarget sends the link's traffic to another upstream address (an
// upstream restarted on another port).
func (l *link) retarget(t *testing.T, upstream string) {
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	l.target.Store(u)
}

func startLink(t *testing.T, upstream string) *link {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	l := &link{}
	l.target.Store(target)
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(l.target.Load())
		r.Out.Host = r.In.Host
	}}
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodGet || !strings.Contains(resp.Request.URL.Path, "/blobs/sha256:") || resp.StatusCode != http.StatusOK {
			return nil
		}
		l.blobGETs.Add(1)
		switch l.mode.Load() {
		case linkFail:
			resp.Body.Close()
			resp.StatusCode, resp.Status = http.StatusInternalServerError, "500 Internal Server Error"
			resp.Body = io.NopCloser(strings.NewReader(`{"errors":[{"code":"UNKNOWN","message":"upstream broke"}]}`))
			resp.ContentLength = -1
			resp.Header.Del("Content-Length")
			return nil
		case linkCorrupt:
			resp.Body = &damaged{ReadCloser: resp.Body, at: resp.ContentLength / 2, corrupt: true}
		case linkTruncate:
			resp.Body = &damaged{ReadCloser: resp.Body, at: resp.ContentLength / 2}
		}
		resp.Body = &paced{ReadCloser: resp.Body, l: l, start: time.Now()}
		return nil
	}
	rp.ErrorLog = nil
	srv := &http.Server{Handler: rp}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	l.URL = "http://" + ln.Addr().String()
	return l
}

// finishedAt returns when the last blob body finished going through.
func (l *link) finishedAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.finished
}

// damaged changes one byte at offset at, or fails there (truncate).
type damaged struct {
	io.ReadCloser
	at, off int64
	corrupt bool
}

func (d *damaged) Read(p []byte) (int, error) {
	if !d.corrupt && d.off >= d.at {
		return 0, io.ErrUnexpectedEOF
	}
	if !d.corrupt {
		p = p[:min(int64(len(p)), d.at-d.off)]
	}
	n, err := d.ReadCloser.Read(p)
	if d.corrupt && d.off <= d.at && d.at < d.off+int64(n) {
		p[d.at-d.off] ^= 0xff
	}
	d.off += int64(n)
	return n, err
}

// paced limits a body to the link's rate and records when it ends.
type paced struct {
	io.ReadCloser
	l     *link
	start time.Time
	n     int64
}

func (p *paced) Read(b []byte) (int, error) {
	if len(b) > 256<<10 {
		b = b[:256<<10]
	}
	n, err := p.ReadCloser.Read(b)
	p.n += int64(n)
	if rate := p.l.rate.Load(); rate > 0 {
		if due := p.start.Add(time.Duration(float64(p.n) / float64(rate) * float64(time.Second))); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
	}
	if err == io.EOF {
		p.l.mu.Lock()
		p.l.finished = time.Now()
		p.l.mu.Unlock()
	}
	return n, err
}

// addMirror adds a mirror to an open berth through the admin API.
func addMirror(t *testing.T, s *server, body map[string]any) {
	t.Helper()
	r := authDo(t, http.MethodPost, s.URL+"/api/v1/mirrors", mustJSON(t, body), reqHeader("Content-Type", "application/json"))
	if r.Status != http.StatusCreated {
		t.Fatalf("add mirror %v: %s", body["name"], r)
	}
}

// blobFile is where an FS blob store keeps a blob.
func blobFile(dataDir, digest string) string {
	hexPart := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(dataDir, "blobs", "sha256", hexPart[:2], hexPart)
}

// getBlob GETs a blob and returns the status, the body's digest and length
// and the error that ended the body, if any.
func getBlob(client *http.Client, u string) (status int, digest string, n int64, err error) {
	resp, err := client.Get(u)
	if err != nil {
		return 0, "", 0, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err = io.Copy(h, resp.Body)
	return resp.StatusCode, "sha256:" + hex.EncodeToString(h.Sum(nil)), n, err
}

// hashWriter hashes what is written to it.
type hashWriter struct{ h hash.Hash }

func newHashWriter() *hashWriter                      { return &hashWriter{sha256.New()} }
func (w *hashWriter) Write(p []byte)                  { w.h.Write(p) }
func (w *hashWriter) digest() string                  { return "sha256:" + hex.EncodeToString(w.h.Sum(nil)) }
func (w *hashWriter) copy(r io.Reader) (int64, error) { return io.Copy(w.h, r) }

// dockerEngine is a second Docker Engine, started for one test with its
// own data, sockets and daemon options.
type dockerEngine struct {
	Host string // DOCKER_HOST value
	dir  string
	log  string
}

// startDockerEngine starts dockerd with extra options (e.g.
// --registry-mirror) beside the shared engine, and stops it at cleanup.
func startDockerEngine(t *testing.T, opts ...string) *dockerEngine {
	t.Helper()
	needDocker(t)
	bin := needTool(t, "dockerd")
	if os.Geteuid() != 0 {
		missing(t, "dockerd needs root")
	}
	dir, err := os.MkdirTemp("", "berth-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	e := &dockerEngine{Host: "unix://" + filepath.Join(dir, "docker.sock"), dir: dir, log: filepath.Join(dir, "dockerd.log")}
	args := append([]string{"--iptables=false", "--bridge=none", "--data-root", filepath.Join(dir, "root"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"), "-H", e.Host}, opts...)
	d := startDaemon(t, "dockerd", dir, e.log, []string{"root", "exec"}, bin, args...)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if e.docker(t, "info").Err == nil {
			break
		}
		select {
		case <-d.exited:
			t.Fatalf("dockerd exited at start: %v\n%s", d.err, tailFile(e.log, 40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within a minute:\n%s", tailFile(e.log, 40))
		}
	}
	return e
}

// docker runs the docker CLI against the engine.
func (e *dockerEngine) docker(t *testing.T, args ...string) cmdResult {
	t.Helper()
	return execIn(t, "", append(isolatedHome(t), "DOCKER_HOST="+e.Host), "docker", args...)
}
