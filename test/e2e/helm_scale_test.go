package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// registryTraffic pushes small images and pulls back earlier ones through
// one address, continuously, counting what fails: the client of an
// upgrade or a scale that must not notice it.
type registryTraffic struct {
	c    *registryClient
	repo string
	stop chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	pushed map[string]string // tag -> manifest digest, once acknowledged
	tags   []string
	// pushes counts acknowledged pushes; pushErrors failed push attempts
	// that a retry then completed; lostPushes pushes no retry completed.
	pushes, pushErrors, lostPushes int
	// pulls counts pulls; pullErrors failed pulls (no retries).
	pulls, pullErrors int
	errs              []string
}

// pushAttempts is how often the traffic tries one push before counting it
// lost.
const pushAttempts = 5

func startTraffic(base, token, repo string) *registryTraffic {
	tr := &registryTraffic{c: newRegistryClient(base, token), repo: repo, stop: make(chan struct{}), pushed: map[string]string{}}
	tr.wg.Add(2)
	go tr.pusher()
	go tr.puller()
	return tr
}

func (tr *registryTraffic) note(format string, args ...any) {
	if len(tr.errs) < 20 {
		tr.errs = append(tr.errs, time.Now().UTC().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

func (tr *registryTraffic) stopped() bool {
	select {
	case <-tr.stop:
		return true
	default:
		return false
	}
}

func (tr *registryTraffic) pusher() {
	defer tr.wg.Done()
	for i := uint64(1); !tr.stopped(); i++ {
		seed := rand.Uint64()
		img := newTestImage([]byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","seed":%d}`, seed)), seededBytes(seed, 48<<10))
		tag := fmt.Sprintf("t%d", i)
		for attempt := 1; ; attempt++ {
			d, err := tr.c.pushImage(tr.repo, tag, img)
			tr.mu.Lock()
			if err == nil {
				tr.pushes++
				tr.pushed[tag] = d
				tr.tags = append(tr.tags, tag)
				tr.mu.Unlock()
				break
			}
			tr.pushErrors++
			tr.note("push %s (attempt %d): %v", tag, attempt, err)
			if attempt == pushAttempts {
				tr.lostPushes++
				tr.mu.Unlock()
				break
			}
			tr.mu.Unlock()
			time.Sleep(time.Second)
		}
	}
}

func (tr *registryTraffic) puller() {
	defer tr.wg.Done()
	for !tr.stopped() {
		tr.mu.Lock()
		var tag, want string
		if len(tr.tags) > 0 {
			tag = tr.tags[rand.IntN(len(tr.tags))]
			want = tr.pushed[tag]
		}
		tr.mu.Unlock()
		if tag == "" {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		got, err := tr.c.pullImage(tr.repo, tag)
		tr.mu.Lock()
		tr.pulls++
		if err == nil && got != want {
			err = fmt.Errorf("manifest digest %s, pushed %s", got, want)
		}
		if err != nil {
			tr.pullErrors++
			tr.note("pull %s: %v", tag, err)
		}
		tr.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// finish stops the traffic and checks that every acknowledged push pulls
// back identical (pullImage verifies every digest), and that nothing was
// lost or failed to pull.
func (tr *registryTraffic) finish(t *testing.T) {
	t.Helper()
	close(tr.stop)
	tr.wg.Wait()
	for _, tag := range tr.tags {
		got, err := tr.c.pullImage(tr.repo, tag)
		if err != nil || got != tr.pushed[tag] {
			t.Errorf("acknowledged push %s:%s (%s) does not pull back: %s %v", tr.repo, tag, tr.pushed[tag], got, err)
		}
	}
	t.Logf("traffic: %d pushes acknowledged (all %d pulled back identical afterwards), %d failed push attempts retried to success, %d pushes lost; %d pulls, %d failed",
		tr.pushes, len(tr.tags), tr.pushErrors, tr.lostPushes, tr.pulls, tr.pullErrors)
	for _, e := range tr.errs {
		t.Logf("  %s", e)
	}
	if tr.lostPushes > 0 || tr.pullErrors > 0 {
		t.Errorf("the client noticed: %d pushes lost after %d attempts each, %d pulls failed", tr.lostPushes, pushAttempts, tr.pullErrors)
	}
	if tr.pushes < 20 || tr.pulls < 20 {
		t.Errorf("too little traffic to show anything: %d pushes, %d pulls", tr.pushes, tr.pulls)
	}
}

// berthPods returns the names of the release's Pods that are not being
// deleted, and the images they run.
func (r *chartRelease) berthPods(t *testing.T) (names, images []string) {
	t.Helper()
	out := r.c.kubectl(t, "get", "pods", "-n", r.Namespace, "-l", "app.kubernetes.io/instance="+r.Name,
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.metadata.deletionTimestamp}{"\n"}{end}`)
	for _, l := range lines(out) {
		if f := strings.Fields(l); len(f) == 2 { // no deletionTimestamp
			names = append(names, f[0])
			images = append(images, f[1])
		}
	}
	return names, images
}

// waitBerthPods waits until exactly n Pods of the release exist (none
// terminating) and all are Ready.
func (r *chartRelease) waitBerthPods(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := r.c.kubectl(t, "get", "pods", "-n", r.Namespace, "-l", "app.kubernetes.io/instance="+r.Name,
			"-o", `jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		ready, all := 0, 0
		for _, l := range lines(out) {
			all++
			if f := strings.Fields(l); len(f) == 2 && f[1] == "True" {
				ready++
			}
		}
		if all == n && ready == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: pods of %s:\n%s\nwant exactly %d, all Ready", timeout, r.Name, out, n)
		}
		time.Sleep(time.Second)
	}
}

// TestHelmS3PostgresUpgradeAndScale (issue 15, items 2 and 3): the chart
// in s3-postgres mode, 2 replicas on MinIO and PostgreSQL Pods. A client
// pushes and pulls through the Service throughout `helm upgrade` to a new
// image and `kubectl scale` to 3 and back to 2: every acknowledged push
// pulls back identical, no pull fails, no push is lost. Then a replica is
// killed (--force --grace-period=0) in the middle of a 512 MiB chunked
// upload: the client resumes it through the Service on the other replica
// and the blob's digest is verified.
func TestHelmS3PostgresUpgradeAndScale(t *testing.T) {
	skipIfShort(t)
	docker := needDocker(t)
	helm := needHelm(t)
	needStaticBusybox(t)
	c := startCluster(t)
	img := publishBerthImage(t, c, docker)
	const ns = "registry"
	prepareNamespace(t, c, img, ns)
	storage := deployStorageServices(t, c, img, ns)
	rel := installChart(t, c, helm, img, ns, "berth", 0, storage.chartValues(),
		"mode=s3-postgres", "replicaCount=2", "podDisruptionBudget.enabled=true", "config.token_ttl=30m")
	rel.waitBerthPods(t, 2, 3*time.Minute)
	b := rel.Berth
	createNamespace(t, b, "team")
	tok := b.token(t, "admin", rel.AdminPassword, "repository:team/load:pull,push", "repository:team/big:pull,push").Token

	tr := startTraffic(b.URL, tok, "team/load")
	time.Sleep(5 * time.Second)
	v2 := img.newVersion(t)
	start := time.Now()
	mustSucceed(t, "helm upgrade", execIn(t, "", nil, helm, "upgrade", rel.Name, chartDir(t), "--namespace", ns,
		"--kubeconfig", c.Kubeconfig, "--reuse-values", "--set", "image.tag="+v2, "--wait", "--timeout", chartInstallTimeout.String()))
	rel.waitBerthPods(t, 2, 3*time.Minute)
	_, images := rel.berthPods(t)
	for _, im := range images {
		if im != img.Repository+":"+v2 {
			t.Errorf("after helm upgrade a Pod runs %s, want %s:%s", im, img.Repository, v2)
		}
	}
	t.Logf("helm upgrade to %s done in %s", v2, time.Since(start).Round(time.Millisecond))
	deploy := strings.TrimPrefix(strings.TrimSpace(c.kubectl(t, "get", "deployment", "-n", ns, "-l", "app.kubernetes.io/instance="+rel.Name, "-o", "name")), "deployment.apps/")
	for _, n := range []int{3, 2} {
		start := time.Now()
		c.kubectl(t, "scale", "deployment", deploy, "-n", ns, fmt.Sprintf("--replicas=%d", n))
		rel.waitBerthPods(t, n, 3*time.Minute)
		t.Logf("scaled to %d in %s", n, time.Since(start).Round(time.Millisecond))
		time.Sleep(3 * time.Second)
	}
	tr.finish(t)

	killDuringChunkedPush(t, rel, tok)
}

// bigChunk is the chunk size of the 512 MiB upload.
const bigChunk = 16 << 20

// bigBlobChunk returns chunk i of the 512 MiB blob (deterministic, so that
// a resumed upload can send any part again).
func bigBlobChunk(i int) []byte { return seededBytes(uint64(0xb16b10b)+uint64(i), bigChunk) }

// killDuringChunkedPush uploads a 512 MiB blob in 16 MiB PATCHes through
// the Service. At 64 MiB it force-deletes the Pod serving the upload
// (found in the Pods' request logs) with `kubectl delete pod --force
// --grace-period=0`, which berth answers by draining (shutdown_delay);
// at 256 MiB it crashes the berth process now serving it (SIGKILL, no
// draining) while a PATCH is under way. The client retries what failed:
// it asks where the upload stands (GET of the upload: Range) and goes on
// from there, on whichever replica the Service picks; it completes the
// upload and pulls the blob back.
func killDuringChunkedPush(t *testing.T, r *chartRelease, token string) {
	t.Helper()
	const chunks = 32
	cl := newRegistryClient(r.Berth.URL, token)
	h := sha256.New()
	for i := 0; i < chunks; i++ {
		h.Write(bigBlobChunk(i))
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))

	res, err := cl.do(http.MethodPost, "/v2/team/big/blobs/uploads/", nil)
	if err != nil || res.status != http.StatusAccepted {
		t.Fatalf("POST upload: %v %s", err, res)
	}
	loc := res.header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	if i := strings.IndexByte(id, '?'); i >= 0 {
		id = id[:i]
	}
	var offset int64
	deleted, crashed, retries, retriesAfterDelete := "", "", 0, 0
	start := time.Now()
	for offset < chunks*bigChunk {
		if deleted == "" && offset >= 4*bigChunk {
			deleted = r.podServing(t, id)
			r.c.kubectl(t, "delete", "pod", deleted, "-n", r.Namespace, "--grace-period=0", "--force")
			t.Logf("deleted Pod %s (it served upload %s) at offset %d MiB", deleted, id, offset>>20)
		}
		i := int(offset / bigChunk)
		body := bigBlobChunk(i)[offset%bigChunk:]
		var res *gcsResp
		var err error
		if crashed == "" && offset >= 16*bigChunk {
			retriesAfterDelete = retries
			crashed = r.podServing(t, id)
			res, err = r.patchDuringCrash(t, cl, loc, offset, body, crashed)
			t.Logf("killed berth in Pod %s (it served upload %s) with SIGKILL halfway through the PATCH at %d MiB", crashed, id, offset>>20)
		} else {
			res, err = cl.do(http.MethodPatch, loc, body, "Content-Type", "application/octet-stream",
				"Content-Range", fmt.Sprintf("%d-%d", offset, offset+int64(len(body))-1))
		}
		if err == nil && res.status == http.StatusAccepted {
			loc = res.header.Get("Location")
			offset += int64(len(body))
			continue
		}
		// The retry a client makes: ask where the upload stands, go on
		// from there.
		retries++
		t.Logf("PATCH at %d MiB failed (%v %s); asking the upload's state", offset>>20, err, res)
		if retries > 20 {
			t.Fatalf("the upload does not go on after %d retries", retries)
		}
		wait := time.Second
		if res != nil && res.header.Get("Retry-After") != "" {
			// Another request's claim on the chunk (the dead replica's):
			// berth says when it lapses.
			secs, err := strconv.Atoi(res.header.Get("Retry-After"))
			if err != nil || secs <= 0 || secs > 20 {
				t.Fatalf("Retry-After %q: want 1 to 20 seconds (the writer claim's lease)", res.header.Get("Retry-After"))
			}
			wait = time.Duration(secs) * time.Second
		}
		time.Sleep(wait)
		st, err := cl.do(http.MethodGet, loc, nil)
		if err != nil || st.status != http.StatusNoContent {
			t.Logf("GET upload state: %v %s", err, st)
			continue
		}
		var last int64
		if _, err := fmt.Sscanf(st.header.Get("Range"), "0-%d", &last); err != nil {
			t.Fatalf("upload state Range %q: %v", st.header.Get("Range"), err)
		}
		offset = last + 1
		if l := st.header.Get("Location"); l != "" {
			loc = l
		}
		t.Logf("the upload stands at %d MiB; going on", offset>>20)
	}
	res, err = cl.do(http.MethodPut, cl.api.withDigest(loc, digest), nil)
	if err != nil || res.status != http.StatusCreated {
		t.Fatalf("PUT ?digest=%s: %v %s", digest, err, res)
	}
	t.Logf("512 MiB chunked upload through the Service: %s in %s; %d failed requests retried after the Pod's forced deletion, %d after the crash",
		digest, time.Since(start).Round(time.Millisecond), retriesAfterDelete, retries-retriesAfterDelete)
	if crashed == "" || retries == retriesAfterDelete {
		t.Errorf("the crash did not interrupt the upload (Pod %q, %d retries after it): the test shows nothing", crashed, retries-retriesAfterDelete)
	}

	// The blob pulls back whole, hashed as it streams.
	req, err := http.NewRequest(http.MethodGet, r.Berth.URL+"/v2/team/big/blobs/"+digest, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h.Reset()
	n, err := io.Copy(h, resp.Body)
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); resp.StatusCode != http.StatusOK || err != nil || n != chunks*bigChunk || got != digest {
		t.Errorf("GET the blob: %d, %d bytes hashing to %s (%v); want 200, %d bytes, %s", resp.StatusCode, n, got, err, chunks*bigChunk, digest)
	}
}

// patchDuringCrash sends a PATCH of body at offset on the client's
// connection (the one to the Pod serving the upload), and kills berth in
// that Pod with SIGKILL when half the body is sent; the rest cannot
// follow. It returns what the client sees.
func (r *chartRelease) patchDuringCrash(t *testing.T, cl *registryClient, loc string, offset int64, body []byte, pod string) (*gcsResp, error) {
	t.Helper()
	half, resume := make(chan struct{}), make(chan struct{})
	u := loc
	if strings.HasPrefix(u, "/") {
		u = cl.api.base + u
	}
	req, err := http.NewRequest(http.MethodPatch, u, &haltingReader{data: body, at: len(body) / 2, half: half, resume: resume})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Authorization", "Bearer "+cl.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", offset, offset+int64(len(body))-1))
	type answer struct {
		res *gcsResp
		err error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := cl.api.client.Do(req)
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- answer{res: &gcsResp{method: http.MethodPatch, url: u, status: resp.StatusCode, header: resp.Header, body: b}}
	}()
	select {
	case <-half:
	case a := <-done:
		t.Fatalf("the PATCH ended before half its body was sent: %v %s", a.err, a.res)
	}
	r.killBerthProcess(t, pod)
	time.Sleep(500 * time.Millisecond) // the kernel resets the connection
	close(resume)
	a := <-done
	return a.res, a.err
}

// haltingReader reads data, stopping at offset at until resume is closed
// (half is closed when it gets there).
type haltingReader struct {
	data         []byte
	at, off      int
	half, resume chan struct{}
	halted       bool
}

func (h *haltingReader) Read(p []byte) (int, error) {
	if h.off == h.at && !h.halted {
		h.halted = true
		close(h.half)
		<-h.resume
	}
	if h.off >= len(h.data) {
		return 0, io.EOF
	}
	end := len(h.data)
	if h.off < h.at {
		end = h.at
	}
	n := copy(p, h.data[h.off:end])
	h.off += n
	return n, nil
}

// killBerthProcess kills berth in Pod pod with SIGKILL: a crash, without
// the draining a deletion gets. The node's containerd says which process.
func (r *chartRelease) killBerthProcess(t *testing.T, pod string) {
	t.Helper()
	crictl := needTool(t, "crictl")
	cri := []string{"--runtime-endpoint", "unix://" + r.c.ContainerdSocket, "--timeout", "20s"}
	id := strings.TrimSpace(run(t, crictl, append(cri, "ps", "-q", "--name", "berth", "--label", "io.kubernetes.pod.name="+pod)...))
	if id == "" || strings.Contains(id, "\n") {
		t.Fatalf("crictl ps for Pod %s: %q, want one container", pod, id)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(run(t, crictl, append(cri, "inspect", "-o", "go-template", "--template", "{{.info.pid}}", id)...)))
	if err != nil || pid <= 1 {
		t.Fatalf("crictl inspect %s: pid %d (%v)", id, pid, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (berth in Pod %s): %v", pid, pod, err)
	}
}

// podServing returns the release's Pod whose request log names upload id.
func (r *chartRelease) podServing(t *testing.T, id string) string {
	t.Helper()
	names, _ := r.berthPods(t)
	for _, p := range names {
		if strings.Contains(r.c.kubectl(t, "logs", "-n", r.Namespace, p), id) {
			return p
		}
	}
	t.Fatalf("no Pod of %v logged upload %s", names, id)
	return ""
}
