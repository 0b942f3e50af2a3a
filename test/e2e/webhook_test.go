package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/webhook"
)

// hookReceiver is a webhook endpoint that checks every delivery's
// signature and records, in arrival order, the events it got; it notes
// when one event is being delivered twice at the same time.
type hookReceiver struct {
	t      *testing.T
	secret string
	addr   string
	srv    *http.Server

	mu       sync.Mutex
	arrivals []hookArrival
	badSig   []string
	inflight map[string]int
	overlaps []string
}

type hookArrival struct {
	id, action, repo, tag, digest string
}

// newHookReceiver reserves a loopback port for a receiver that is not
// listening yet (deliveries to it are refused until up).
func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &hookReceiver{t: t, secret: secret, addr: addr, inflight: map[string]int{}}
	h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	t.Cleanup(func() { h.srv.Close() })
	return h
}

// up starts listening.
func (h *hookReceiver) up() {
	ln, err := net.Listen("tcp", h.addr)
	if err != nil {
		h.t.Errorf("webhook receiver cannot listen on %s again: %v", h.addr, err)
		return
	}
	go h.srv.Serve(ln)
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Header.Get(webhook.EventHeader)
	h.mu.Lock()
	h.inflight[id]++
	if h.inflight[id] > 1 {
		h.overlaps = append(h.overlaps, id)
	}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.inflight[id]--
		h.mu.Unlock()
	}()
	time.Sleep(5 * time.Millisecond) // widen the window in which a second sender would overlap
	if err := webhook.Verify(h.secret, r.Header.Get(webhook.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil ||
		r.Header.Get("Content-Type") != webhook.DistributionMediaType {
		h.mu.Lock()
		h.badSig = append(h.badSig, fmt.Sprintf("%s (%s): %v", id, r.Header.Get("Content-Type"), err))
		h.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var env struct {
		Events []struct {
			ID     string `json:"id"`
			Action string `json:"action"`
			Target struct {
				Repository string `json:"repository"`
				Tag        string `json:"tag"`
				Digest     string `json:"digest"`
			} `json:"target"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &env); err != nil || len(env.Events) != 1 || env.Events[0].ID != id {
		h.t.Errorf("delivery %s: not one Distribution event: %v: %s", id, err, truncate(string(body), 300))
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	e := env.Events[0]
	h.mu.Lock()
	h.arrivals = append(h.arrivals, hookArrival{id: e.ID, action: e.Action, repo: e.Target.Repository, tag: e.Target.Tag, digest: e.Target.Digest})
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// hookPush is one push of the scenario.
type hookPush struct {
	repo, tag string
	img       *testImage
	// refused pushes name a blob that was never uploaded.
	refused bool
	acked   bool
}

// hookCluster is what the scenario runs on: one berth or two replicas.
type hookCluster struct {
	admin *authBerth
	// urls returns the current base URL of each process pushes go to.
	urls func() []string
	// crash SIGKILLs one process and starts it again.
	crash func()
}

const (
	hookRepos    = 50
	hookPerRepo  = 10
	hookDownTime = 30 * time.Second
)

// runWebhookScenario pushes hookRepos x hookPerRepo images (and one
// refused push per repository) concurrently, each repository's in order,
// while the receiver is down for hookDownTime and one berth process is
// SIGKILLed and restarted in the middle; then it checks that every
// acknowledged push was delivered at least once, signed, in order per
// repository, and that nothing refused was announced.
func runWebhookScenario(t *testing.T, c *hookCluster) {
	secret := "hook-secret-" + randomHex(t, 16)
	rcv := newHookReceiver(t, secret)
	c.admin.admin(t, http.MethodPost, "/api/v1/webhooks", map[string]any{"name": "ci", "url": "http://" + rcv.addr + "/hook",
		"namespace": "admin", "events": []string{"push", "delete", "tag_delete"}, "secret": secret, "timeout": "2s"}, http.StatusCreated)
	var scopes []string
	for r := range hookRepos {
		scopes = append(scopes, fmt.Sprintf("repository:admin/hook%d:pull,push", r))
	}
	tok := c.admin.token(t, "admin", c.admin.AdminPassword, scopes...).Token

	pushes := make([][]*hookPush, hookRepos)
	for r := range hookRepos {
		for i := range hookPerRepo + 1 {
			seed := uint64(r*1000 + i + 1)
			p := &hookPush{repo: fmt.Sprintf("admin/hook%d", r), tag: fmt.Sprintf("v%d", i),
				img: newTestImage(seededBytes(seed, 64), seededBytes(seed<<20, 512))}
			if i == hookPerRepo/2 { // one refused push in the middle of each repository's
				p.tag, p.refused = fmt.Sprintf("refused%d", i), true
				p.img = newTestImage(seededBytes(seed, 64), seededBytes(seed<<20, 512), seededBytes(seed<<30, 16))
			}
			pushes[r] = append(pushes[r], p)
		}
	}
	start := time.Now()
	receiverUp := time.AfterFunc(hookDownTime, rcv.up)
	defer receiverUp.Stop()

	var acked atomic.Int64
	crashed := make(chan struct{})
	go func() {
		defer close(crashed)
		for acked.Load() < hookRepos*hookPerRepo/2 {
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("SIGKILL after %d acknowledged pushes (%s)", acked.Load(), time.Since(start).Round(time.Millisecond))
		c.crash()
	}()
	var wg sync.WaitGroup
	for r := range hookRepos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range pushes[r] {
				if err := hookPushOne(c, r, tok, p); err != nil {
					t.Error(err)
					return
				}
				if p.acked {
					acked.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	<-crashed
	t.Logf("%d pushes acknowledged in %s", acked.Load(), time.Since(start).Round(time.Millisecond))
	if t.Failed() {
		return
	}

	// Every acknowledged push arrives; give the retries time.
	want := map[string]*hookPush{}
	for _, ps := range pushes {
		for _, p := range ps {
			if p.acked {
				want[p.repo+":"+p.tag] = p
			}
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		missing := 0
		rcv.mu.Lock()
		got := map[string]bool{}
		for _, a := range rcv.arrivals {
			got[a.repo+":"+a.tag] = true
		}
		rcv.mu.Unlock()
		for k := range want {
			if !got[k] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged pushes were never delivered", missing, len(want))
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let late duplicates or strays arrive before the checks
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	t.Logf("%d deliveries received for %d acknowledged pushes, %s after the first push", len(rcv.arrivals), len(want), time.Since(start).Round(time.Second))
	if len(rcv.badSig) > 0 {
		t.Errorf("%d deliveries failed the signature check, e.g. %s", len(rcv.badSig), rcv.badSig[0])
	}
	if len(rcv.overlaps) > 0 {
		t.Errorf("%d events were being delivered twice at the same time, e.g. %s", len(rcv.overlaps), rcv.overlaps[0])
	}
	firstIndex := map[string]int{}
	for i, a := range rcv.arrivals {
		k := a.repo + ":" + a.tag
		p := want[k]
		switch {
		case a.action != "push":
			t.Errorf("event %s: action %q, want push", a.id, a.action)
		case p == nil:
			t.Errorf("event %s announces %s, which was never acknowledged (refused: a manifest naming a missing blob)", a.id, k)
		case a.digest != p.img.digest:
			t.Errorf("event %s for %s: digest %s, want %s", a.id, k, a.digest, p.img.digest)
		}
		if _, seen := firstIndex[k]; !seen {
			firstIndex[k] = i
		}
	}
	for _, ps := range pushes {
		last, lastTag := -1, ""
		for _, p := range ps {
			if !p.acked {
				continue
			}
			i := firstIndex[p.repo+":"+p.tag]
			if i < last {
				t.Errorf("%s: the event of %s arrived before that of %s, pushed earlier", p.repo, lastTag, p.tag)
			}
			last, lastTag = i, p.tag
		}
	}
}

// hookPushOne pushes until the push is acknowledged or refused, retrying
// through whatever process serves repository r when a process is down.
func hookPushOne(c *hookCluster, r int, tok string, p *hookPush) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		urls := c.urls()
		client := newRegistryClient(urls[r%len(urls)], tok)
		var err error
		if p.refused {
			for _, b := range [][]byte{p.img.config, p.img.layers[0]} {
				if err = client.pushBlob(p.repo, b); err != nil {
					break
				}
			}
			if err == nil {
				var resp *gcsResp
				resp, err = client.do(http.MethodPut, "/v2/"+p.repo+"/manifests/"+p.tag, p.img.manifest, "Content-Type", mediaTypeOCIManifest)
				if err == nil {
					if resp.status != http.StatusBadRequest || resp.errCode() != "MANIFEST_BLOB_UNKNOWN" {
						return fmt.Errorf("refused push %s:%s: %s, want 400 MANIFEST_BLOB_UNKNOWN", p.repo, p.tag, resp)
					}
					return nil
				}
			}
		} else if _, err = client.pushImage(p.repo, p.tag, p.img); err == nil {
			p.acked = true
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("push %s:%s: %v", p.repo, p.tag, err)
		}
		time.Sleep(100 * time.Millisecond) // a process is down: try again
	}
}

var hookArgs = []string{"--webhook-backoff", "200ms", "--webhook-backoff-max", "2s", "--webhook-attempts", "1000"}

// TestWebhooksSurviveCrashAndDowntime runs the webhook scenario on one
// berth (SQLite, filesystem) that is SIGKILLed and restarted on its data.
func TestWebhooksSurviveCrashAndDowntime(t *testing.T) {
	pass := "admin-" + randomHex(t, 12)
	l := launch{Args: append([]string{"--log-level", "warn"}, hookArgs...), Env: []string{"BERTH_ADMIN_PASSWORD=" + pass},
		DataDir: t.TempDir(), Kill: true}
	var mu sync.Mutex
	b := &authBerth{proc: start(t, l), AdminPassword: pass}
	c := &hookCluster{admin: b}
	c.urls = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return []string{b.URL}
	}
	c.crash = func() {
		mu.Lock()
		old := b.proc
		mu.Unlock()
		old.kill()
		p := start(t, l)
		mu.Lock()
		b.proc = p
		mu.Unlock()
	}
	runWebhookScenario(t, c)
}

// TestWebhooksAcrossReplicas runs it on two replicas sharing PostgreSQL and
// S3, pushing through both, with replica A SIGKILLed and restarted: both
// deliver, and no event is sent by both at the same time.
func TestWebhooksAcrossReplicas(t *testing.T) {
	rs := startReplicas(t, append([]string{"--gc-interval", "1h"}, hookArgs...)...)
	var mu sync.Mutex
	c := &hookCluster{admin: rs.b}
	c.urls = func() []string {
		mu.Lock()
		defer mu.Unlock()
		return []string{rs.a.URL, rs.b.URL}
	}
	c.crash = func() {
		mu.Lock()
		old := rs.a.proc
		mu.Unlock()
		old.kill()
		p := start(t, rs.launch)
		mu.Lock()
		rs.a.proc = p
		mu.Unlock()
	}
	runWebhookScenario(t, c)
}
