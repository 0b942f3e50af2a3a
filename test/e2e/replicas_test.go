package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/testserver"
)

// replicaSet is two berth replicas sharing one S3 bucket (versitygw) and
// one PostgreSQL database, each with its own data directory, and the
// signing keys in one directory (as one Kubernetes Secret would be).
type replicaSet struct {
	a, b *authBerth
	pass string
	// launch starts one more replica like a and b.
	launch launch
}

func startReplicas(t *testing.T, extra ...string) *replicaSet {
	t.Helper()
	skipIfShort(t)
	return startReplicasOn(t, testserver.S3(t), extra...)
}

// startReplicasOn is startReplicas on a given S3 server.
func startReplicasOn(t *testing.T, s3 *testserver.S3Server, extra ...string) *replicaSet {
	t.Helper()
	dsn := testserver.PostgresDSN(t)
	keys := t.TempDir()
	pass := "admin-" + randomHex(t, 12)
	args := append([]string{"--storage", "s3", "--s3-bucket", s3.Bucket, "--s3-endpoint", s3.Endpoint, "--s3-region", s3.Region,
		"--s3-path-style=true", "--metadata", "postgres", "--keys-dir", keys, "--log-level", "warn"}, extra...)
	env := []string{"BERTH_POSTGRES_DSN=" + dsn, "AWS_ACCESS_KEY_ID=" + s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3.SecretKey,
		"BERTH_ADMIN_PASSWORD=" + pass}
	// One after the other: the first creates the signing key and the
	// admin; a Helm install provides both instead.
	l := launch{Args: args, Env: env}
	a := start(t, l)
	b := start(t, l)
	return &replicaSet{a: &authBerth{proc: a, AdminPassword: pass}, b: &authBerth{proc: b, AdminPassword: pass}, pass: pass, launch: l}
}

// registryClient pushes and pulls with a bearer token; it never fails the
// test, so goroutines may use it.
type registryClient struct {
	api   *gcsAPI
	token string
}

func newRegistryClient(base, token string) *registryClient {
	return &registryClient{api: &gcsAPI{base: base, client: &http.Client{Timeout: time.Minute}}, token: token}
}

func (c *registryClient) do(method, target string, body []byte, hdr ...string) (*gcsResp, error) {
	return c.api.do(method, target, body, append([]string{"Authorization", "Bearer " + c.token}, hdr...)...)
}

// pushBlob uploads a blob monolithically.
func (c *registryClient) pushBlob(repo string, data []byte) error {
	r, err := c.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+sha256Digest(data), data, "Content-Type", "application/octet-stream")
	if err != nil {
		return err
	}
	if r.status != http.StatusCreated {
		return fmt.Errorf("push blob: %s", r)
	}
	return nil
}

// pushImage pushes the blobs then the manifest and returns its digest.
func (c *registryClient) pushImage(repo, tag string, img *testImage) (string, error) {
	for _, b := range append([][]byte{img.config}, img.layers...) {
		if err := c.pushBlob(repo, b); err != nil {
			return "", err
		}
	}
	r, err := c.do(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, img.manifest, "Content-Type", mediaTypeOCIManifest)
	if err != nil {
		return "", err
	}
	if r.status != http.StatusCreated {
		return "", fmt.Errorf("put manifest %s:%s: %s", repo, tag, r)
	}
	if d := r.header.Get("Docker-Content-Digest"); d != img.digest {
		return "", fmt.Errorf("put manifest %s:%s: digest %q, want %s", repo, tag, d, img.digest)
	}
	return img.digest, nil
}

// pullImage fetches ref's manifest and every blob it names, verifying each
// digest, and returns the manifest's digest.
func (c *registryClient) pullImage(repo, ref string) (string, error) {
	r, err := c.do(http.MethodGet, "/v2/"+repo+"/manifests/"+ref, nil, "Accept", mediaTypeOCIManifest)
	if err != nil {
		return "", err
	}
	if r.status != http.StatusOK {
		return "", fmt.Errorf("get manifest %s:%s: %s", repo, ref, r)
	}
	d := sha256Digest(r.body)
	if got := r.header.Get("Docker-Content-Digest"); got != d {
		return "", fmt.Errorf("manifest %s:%s: header digest %s, body hashes to %s", repo, ref, got, d)
	}
	var m struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(r.body, &m); err != nil {
		return "", fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	digests := []string{m.Config.Digest}
	for _, l := range m.Layers {
		digests = append(digests, l.Digest)
	}
	for _, bd := range digests {
		br, err := c.do(http.MethodGet, "/v2/"+repo+"/blobs/"+bd, nil)
		if err != nil {
			return "", err
		}
		if br.status != http.StatusOK {
			return "", fmt.Errorf("blob %s of %s:%s: %s", bd, repo, ref, br)
		}
		if got := sha256Digest(br.body); got != bd {
			return "", fmt.Errorf("blob %s of %s:%s hashes to %s", bd, repo, ref, got)
		}
	}
	return d, nil
}

// tags lists a repository's tags.
func (c *registryClient) tags(repo string) ([]string, error) {
	r, err := c.do(http.MethodGet, "/v2/"+repo+"/tags/list?n=1000", nil)
	if err != nil {
		return nil, err
	}
	var out struct {
		Tags []string `json:"tags"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
		return nil, fmt.Errorf("tags of %s: %s", repo, r)
	}
	sort.Strings(out.Tags)
	return out.Tags, nil
}

// testImage is an OCI image of raw layers (content is not a tar: the
// registry does not look inside).
type testImage struct {
	config   []byte
	layers   [][]byte
	manifest []byte
	digest   string
}

func newTestImage(config []byte, layers ...[]byte) *testImage {
	img := &testImage{config: config, layers: layers}
	var ls []string
	for _, l := range layers {
		ls = append(ls, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}`, sha256Digest(l), len(l)))
	}
	img.manifest = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[%s]}`,
		mediaTypeOCIManifest, sha256Digest(config), len(config), strings.Join(ls, ",")))
	img.digest = sha256Digest(img.manifest)
	return img
}

func seededBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed*7+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestReplicas runs two replicas on one S3 bucket (versitygw, then MinIO)
// and one PostgreSQL database: the conformance suite on A, content pushed through one replica
// pulled through the other, an upload moving between them, concurrent
// pushers spread over both, and garbage collection on A while B takes
// pushes.
func TestReplicas(t *testing.T) {
	skipIfShort(t)
	testserver.EachS3(t, func(t *testing.T, srv *testserver.S3Server) {
		replicasScenario(t, startReplicasOn(t, srv, "--gc-grace", "3s", "--gc-interval", "1h"))
	})
}

// replicasScenario is TestReplicas on one S3 implementation.
func replicasScenario(t *testing.T, rs *replicaSet) {
	scopes := []string{"repository:team/app0:pull,push,delete", "repository:team/app1:pull,push,delete", "repository:team/app2:pull,push,delete",
		"repository:team/move:pull,push", "repository:team/gc:pull,push"}
	tok := rs.a.token(t, "admin", rs.pass, scopes...).Token
	onA, onB := newRegistryClient(rs.a.URL, tok), newRegistryClient(rs.b.URL, tok) // a token of A works on B: shared keys

	t.Run("conformance-on-A", func(t *testing.T) {
		runConformanceAgainst(t, rs.a.server, []string{"OCI_USERNAME=admin", "OCI_PASSWORD=" + rs.pass})
	})

	t.Run("push-A-pull-B", func(t *testing.T) {
		img := newTestImage([]byte(`{"architecture":"amd64","os":"linux"}`), seededBytes(1, 300<<10), seededBytes(2, 7<<20))
		if _, err := onA.pushImage("team/app0", "v1", img); err != nil {
			t.Fatal(err)
		}
		got, err := onB.pullImage("team/app0", "v1")
		if err != nil || got != img.digest {
			t.Fatalf("pull through B: %s, %v; want %s", got, err, img.digest)
		}
	})

	t.Run("upload-moves-between-replicas", func(t *testing.T) {
		data := seededBytes(3, 9<<20)
		parts := [][]byte{data[:3<<20], data[3<<20 : 8<<20], data[8<<20:]}
		r, err := onA.do(http.MethodPost, "/v2/team/move/blobs/uploads/", nil)
		if err != nil || r.status != http.StatusAccepted {
			t.Fatalf("start upload on A: %v %s", err, r)
		}
		loc := r.header.Get("Location")
		offset := 0
		for i, p := range parts[:2] {
			c := []*registryClient{onB, onA}[i]
			u := locationOn(t, c, loc)
			r, err := c.do(http.MethodPatch, u, p, "Content-Type", "application/octet-stream",
				"Content-Range", fmt.Sprintf("%d-%d", offset, offset+len(p)-1))
			if err != nil || r.status != http.StatusAccepted {
				t.Fatalf("chunk %d on replica %d: %v %s", i, i%2, err, r)
			}
			offset += len(p)
			if got := r.header.Get("Range"); got != fmt.Sprintf("0-%d", offset-1) {
				t.Fatalf("chunk %d: Range %q, want 0-%d", i, got, offset-1)
			}
			loc = r.header.Get("Location")
		}
		d := sha256Digest(data)
		r, err = onB.do(http.MethodPut, onB.api.withDigest(locationOn(t, onB, loc), d), parts[2], "Content-Type", "application/octet-stream")
		if err != nil || r.status != http.StatusCreated {
			t.Fatalf("finish on B: %v %s", err, r)
		}
		r, err = onA.do(http.MethodGet, "/v2/team/move/blobs/"+d, nil)
		if err != nil || r.status != http.StatusOK || sha256Digest(r.body) != d {
			t.Fatalf("blob through A after the moving upload: %v %s", err, r)
		}
	})

	t.Run("concurrent-pushers-on-both", func(t *testing.T) {
		// Shared layers, overlapping tags: 8 pushers, half on each replica.
		shared := make([][]byte, 5)
		for i := range shared {
			shared[i] = seededBytes(uint64(100+i), (64+i*50)<<10)
		}
		tags := []string{"latest", "stable", "v1", "v2", "v3"}
		var wg sync.WaitGroup
		var failures atomic.Int64
		errs := make(chan error, 64)
		for p := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := []*registryClient{onA, onB}[p%2]
				r := rand.New(rand.NewPCG(uint64(p), 42))
				for i := range 6 {
					img := newTestImage([]byte(fmt.Sprintf(`{"os":"linux","pusher":%d,"n":%d}`, p, i)),
						shared[r.IntN(len(shared))], shared[r.IntN(len(shared))], seededBytes(uint64(1000*p+i), 32<<10))
					repo := fmt.Sprintf("team/app%d", r.IntN(3))
					if _, err := c.pushImage(repo, tags[r.IntN(len(tags))], img); err != nil {
						failures.Add(1)
						select {
						case errs <- fmt.Errorf("pusher %d: %w", p, err):
						default:
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// Both replicas see the same tags, and every tag pulls in full
		// through each, to the same digest.
		checked := 0
		for i := range 3 {
			repo := fmt.Sprintf("team/app%d", i)
			ta, errA := onA.tags(repo)
			tb, errB := onB.tags(repo)
			if errA != nil || errB != nil || !slices.Equal(ta, tb) {
				t.Fatalf("%s: tags through A %v (%v), through B %v (%v)", repo, ta, errA, tb, errB)
			}
			for _, tag := range ta {
				da, errA := onA.pullImage(repo, tag)
				db, errB := onB.pullImage(repo, tag)
				if errA != nil || errB != nil || da != db {
					t.Errorf("%s:%s: through A %s (%v), through B %s (%v)", repo, tag, da, errA, db, errB)
				}
				checked++
			}
		}
		t.Logf("8 pushers, %d failed pushes; %d tags consistent on both replicas", failures.Load(), checked)
	})

	t.Run("login-limits-span-replicas", func(t *testing.T) {
		// 5 failures per account per minute, counted in PostgreSQL: three
		// on A and two on B block the account on both.
		pass := rs.a.addUser(t, "carol", false)
		for i, b := range []*authBerth{rs.a, rs.a, rs.a, rs.b, rs.b} {
			if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("carol", "wrong")); r.Status != http.StatusUnauthorized {
				t.Fatalf("failure %d: %s, want 401", i+1, r)
			}
		}
		for _, b := range []*authBerth{rs.a, rs.b} {
			if r := authDo(t, http.MethodGet, b.tokenURL(), nil, reqBasic("carol", pass)); r.Status != http.StatusTooManyRequests {
				t.Fatalf("right password after 5 failures spread over both replicas: %s, want 429", r)
			}
		}
	})

	t.Run("gc-on-A-while-B-takes-pushes", func(t *testing.T) {
		admin := &gcsAPI{base: rs.a.URL, client: &http.Client{Timeout: 2 * time.Minute}}
		basic := "Basic " + basicAuth("admin", rs.pass)
		type acked struct{ tag, digest string }
		var mu sync.Mutex
		var got []acked
		var pushErrs []error
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for p := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					// A tagged image, and an untagged one that becomes garbage.
					layer := seededBytes(uint64(5000+100*p+i), 16<<10)
					img := newTestImage([]byte(fmt.Sprintf(`{"gc":%d,"n":%d}`, p, i)), layer)
					tag := fmt.Sprintf("p%d-%d", p, i)
					d, err := onB.pushImage("team/gc", tag, img)
					junk := newTestImage([]byte(fmt.Sprintf(`{"junk":%d,"n":%d}`, p, i)), seededBytes(uint64(9000+100*p+i), 8<<10))
					_, jerr := onB.pushImage("team/gc", junk.digest, junk)
					mu.Lock()
					if err == nil {
						got = append(got, acked{tag, d})
					} else {
						pushErrs = append(pushErrs, err)
					}
					if jerr != nil {
						pushErrs = append(pushErrs, jerr)
					}
					mu.Unlock()
				}
			}()
		}
		runs, removed := 0, 0
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			r, err := admin.do(http.MethodPost, "/api/v1/gc", nil, "Authorization", basic)
			if err != nil || r.status != http.StatusOK {
				t.Errorf("gc on A: %v %s", err, r)
				break
			}
			var rep gc.Report
			_ = json.Unmarshal(r.body, &rep)
			runs++
			removed += len(rep.Manifests)
			time.Sleep(500 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		for _, err := range pushErrs {
			t.Errorf("push to B during gc: %v", err)
		}
		// Past the grace period, with the pushes stopped: one more run.
		time.Sleep(3500 * time.Millisecond)
		if r, err := admin.do(http.MethodPost, "/api/v1/gc", nil, "Authorization", basic); err != nil || r.status != http.StatusOK {
			t.Fatalf("final gc: %v %s", err, r)
		}
		lost := 0
		for _, a := range got {
			for _, c := range []*registryClient{onA, onB} {
				if d, err := c.pullImage("team/gc", a.tag); err != nil || d != a.digest {
					lost++
					t.Errorf("acknowledged team/gc:%s (%s): %s, %v", a.tag, a.digest, d, err)
				}
			}
		}
		if runs < 3 || removed == 0 {
			t.Errorf("%d gc runs removed %d manifests: the collection did not overlap the pushes", runs, removed)
		}
		t.Logf("%d gc runs on A removed %d untagged manifests while B acknowledged %d tagged pushes; %d lost", runs, removed, len(got), lost)
	})
}

// locationOn makes an upload Location (relative, as berth sends it, or
// absolute) a URL on c's replica.
func locationOn(t *testing.T, c *registryClient, loc string) string {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return c.api.base + u.RequestURI()
}

func basicAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// TestReplicasDocker: Docker Engine logs in, pushes and pulls through a
// proxy that sends each request to the other replica in turn, with blob
// GETs redirected to presigned S3 URLs (s3_redirect).
func TestReplicasDocker(t *testing.T) {
	docker := needDocker(t)
	needStaticBusybox(t)
	rs := startReplicas(t, "--s3-redirect=true")
	// A blob GET answers 307 to the S3 server; the URL needs no credentials.
	tok := rs.a.token(t, "admin", rs.pass, "repository:team/redirect:pull,push").Token
	c := newRegistryClient(rs.b.URL, tok)
	blob := seededBytes(77, 100<<10)
	if err := c.pushBlob("team/redirect", blob); err != nil {
		t.Fatal(err)
	}
	c.api.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r, err := c.do(http.MethodGet, "/v2/team/redirect/blobs/"+sha256Digest(blob), nil)
	if err != nil || r.status != http.StatusTemporaryRedirect {
		t.Fatalf("blob GET with s3_redirect: %v %s, want 307", err, r)
	}
	loc := r.header.Get("Location")
	res, err := http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || sha256Digest(got) != sha256Digest(blob) {
		t.Fatalf("GET of the presigned URL %s: %d, %d bytes, want the blob", loc, res.StatusCode, len(got))
	}

	var n atomic.Int64
	var seen [2]atomic.Int64
	targets := []*url.URL{mustURL(t, rs.a.URL), mustURL(t, rs.b.URL)}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			i := n.Add(1) % 2
			seen[i].Add(1)
			r.SetURL(targets[i])
			r.Out.Host = r.In.Host // berth builds the token realm from the Host clients use
		},
		FlushInterval: -1,
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	host := strings.TrimPrefix(front.URL, "http://")
	d := newDockerClient(t, docker, host)
	d.mustLogin("admin", rs.pass)
	ref := d.ref("team/app:replicated")
	d.buildImage(ref, "replicas "+randomHex(t, 8))
	pushed := d.push(ref)
	pulled := d.pull(ref)
	if pulled != pushed {
		t.Fatalf("pulled %s through the replicas, pushed %s", pulled, pushed)
	}
	if out := d.run("run", "--rm", "--network", "none", ref); !strings.Contains(out, "replicas ") {
		t.Fatalf("the pulled image ran and printed %q", out)
	}
	if seen[0].Load() < 5 || seen[1].Load() < 5 {
		t.Fatalf("requests per replica: A %d, B %d; the proxy did not alternate", seen[0].Load(), seen[1].Load())
	}
	t.Logf("docker pushed and pulled %s through both replicas (requests: A %d, B %d)", pushed, seen[0].Load(), seen[1].Load())
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
