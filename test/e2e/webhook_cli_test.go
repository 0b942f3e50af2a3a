package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/webhook"
)

// recordingReceiver keeps every request it gets, per path, and answers
// failStatus while it is set.
type recordingReceiver struct {
	*httptest.Server
	mu         sync.Mutex
	got        map[string][]recorded
	failStatus atomic.Int32
}

type recorded struct {
	header http.Header
	body   []byte
}

func newRecordingReceiver(t *testing.T) *recordingReceiver {
	r := &recordingReceiver{got: map[string][]recorded{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if s := r.failStatus.Load(); s != 0 && req.URL.Path == "/down" {
			w.WriteHeader(int(s))
			return
		}
		r.mu.Lock()
		r.got[req.URL.Path] = append(r.got[req.URL.Path], recorded{req.Header.Clone(), body})
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.Close)
	return r
}

// waitFor waits until path has received a delivery whose body contains
// all of want, and returns it.
func (r *recordingReceiver) waitFor(t *testing.T, path string, want ...string) recorded {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.mu.Lock()
		for _, d := range r.got[path] {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(string(d.body), w)
			}
			if ok {
				r.mu.Unlock()
				return d
			}
		}
		n := len(r.got[path])
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no delivery to %s containing %q among %d received", path, want, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWebhookCommands drives `berth webhook` end to end: who may add
// what, both formats, the event kinds, a test ping, a dead delivery
// listed and redelivered, and removal.
func TestWebhookCommands(t *testing.T) {
	b := startAuthBerth(t, "--webhook-backoff", "100ms", "--webhook-backoff-max", "200ms", "--webhook-attempts", "3")
	rcv := newRecordingReceiver(t)
	cli := &berthCLI{t: t, config: t.TempDir()}
	cli.must(b.AdminPassword+"\n", "login", b.URL, "--username", "admin", "--password-stdin")
	cli.must("", "namespace", "create", "team")
	const secret = "a-shared-secret-of-some-length"

	cli.must("", "webhook", "add", "dist", "--url", rcv.URL+"/dist", "--secret", secret,
		"--events", "push,tag_delete,quota_exceeded,account")
	out := cli.must("", "webhook", "add", "ce", "--url", rcv.URL+"/ce", "--namespace", "team", "--format", "cloudevents", "-o", "json")
	var ce struct{ Secret string }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &ce); err != nil || len(ce.Secret) < 32 {
		t.Fatalf("add ce: generated secret not shown: %q", out)
	}
	if out, err := cli.run("", "webhook", "add", "bad", "--url", "ftp://example/"); err == nil || !strings.Contains(out, "http://") {
		t.Fatalf("an ftp URL: err %v, %q", err, out)
	}
	if out, err := cli.run("", "webhook", "add", "dist", "--url", rcv.URL+"/x"); err == nil || !strings.Contains(out, "exists") {
		t.Fatalf("a taken name: err %v, %q", err, out)
	}

	// An owner of team manages team's webhooks only.
	alicePass := b.addUser(t, "alice", false)
	b.setMember(t, "team", "alice", "owner")
	alice := &berthCLI{t: t, config: t.TempDir()}
	alice.must(alicePass+"\n", "login", b.URL, "--username", "alice", "--password-stdin")
	if out, err := alice.run("", "webhook", "add", "mine", "--url", rcv.URL+"/mine"); err == nil || !strings.Contains(out, "admins") {
		t.Fatalf("a non-admin adding a global webhook: err %v, %q", err, out)
	}
	if out := alice.must("", "webhook", "list"); !strings.Contains(out, "ce") || strings.Contains(out, "dist") {
		t.Fatalf("alice's webhook list: %q", out)
	}
	if out, err := alice.run("", "webhook", "remove", "dist"); err == nil || !strings.Contains(out, "no webhook dist") {
		t.Fatalf("alice removing a global webhook: err %v, %q", err, out)
	}

	// Account changes, a push, a tag deletion and a quota refusal.
	rcv.waitFor(t, "/dist", `"action":"account"`, `"change":"member set"`, `"user":"alice"`)
	tok := b.token(t, "admin", b.AdminPassword, "repository:team/app:pull,push,delete").Token
	c := newRegistryClient(b.URL, tok)
	img := newTestImage(seededBytes(1, 100), seededBytes(2, 1000))
	if _, err := c.pushImage("team/app", "v1", img); err != nil {
		t.Fatal(err)
	}
	d := rcv.waitFor(t, "/dist", `"action":"push"`, `"tag":"v1"`, img.digest)
	if err := webhook.Verify(secret, d.header.Get(webhook.SignatureHeader), d.body, time.Now(), time.Minute); err != nil {
		t.Errorf("push delivery signature: %v", err)
	}
	if ct := d.header.Get("Content-Type"); ct != webhook.DistributionMediaType {
		t.Errorf("distribution delivery Content-Type %q", ct)
	}
	cev := rcv.waitFor(t, "/ce", `"type":"io.berth.push"`, `"subject":"team/app:v1"`)
	if err := webhook.Verify(ce.Secret, cev.header.Get(webhook.SignatureHeader), cev.body, time.Now(), time.Minute); err != nil ||
		!strings.HasPrefix(cev.header.Get("Content-Type"), "application/cloudevents+json") {
		t.Errorf("cloudevents delivery: %v, Content-Type %q", err, cev.header.Get("Content-Type"))
	}
	if r, err := c.do(http.MethodDelete, "/v2/team/app/manifests/v1", nil); err != nil || r.status != http.StatusAccepted {
		t.Fatalf("delete tag: %v %v", r, err)
	}
	rcv.waitFor(t, "/dist", `"action":"delete"`, `"tag":"v1"`) // tag_delete, as Distribution names it
	cli.must("", "quota", "set", "team", "2KiB")
	big := newTestImage(seededBytes(3, 100), seededBytes(4, 4000))
	if _, err := c.pushImage("team/app", "big", big); err == nil {
		t.Fatal("a push over the quota was accepted")
	}
	rcv.waitFor(t, "/dist", `"action":"quota_exceeded"`, `"repository":"team/app"`)

	// test: a ping now.
	if out := cli.must("", "webhook", "test", "dist"); !strings.Contains(out, "answered 200") {
		t.Fatalf("webhook test: %q", out)
	}
	rcv.waitFor(t, "/dist", `"action":"ping"`)

	// A delivery that fails three times is dead until redelivered.
	rcv.failStatus.Store(http.StatusServiceUnavailable)
	cli.must("", "webhook", "add", "down", "--url", rcv.URL+"/down", "--namespace", "team", "--events", "push")
	if _, err := c.pushImage("team/app", "v2", img); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(cli.must("", "webhook", "deliveries", "down", "--state", "dead"), "team/app") {
		if time.Now().After(deadline) {
			t.Fatal("the failing delivery never became dead")
		}
		time.Sleep(200 * time.Millisecond)
	}
	var dead []struct {
		Attempts   int    `json:"attempts"`
		LastStatus int    `json:"last_status"`
		State      string `json:"state"`
	}
	out = cli.must("", "webhook", "deliveries", "down", "--state", "dead", "-o", "json")
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &dead); err != nil || len(dead) != 1 || dead[0].Attempts != 3 || dead[0].LastStatus != 503 {
		t.Fatalf("dead deliveries: %v %q", err, out)
	}
	rcv.failStatus.Store(0)
	if out := cli.must("", "webhook", "redeliver", "down"); !strings.Contains(out, "1 deliveries queued") {
		t.Fatalf("redeliver: %q", out)
	}
	rcv.waitFor(t, "/down", `"tag":"v2"`)

	// The registry's writes are in the audit log too.
	for _, want := range []struct{ action, outcome, tag, ns, target string }{
		{"manifest pushed", "success", "v1", "team", "team/app"}, {"tag deleted", "success", "v1", "team", "team/app"},
		{"push refused by quota", "denied", "", "team", "team/app"}, {"webhook added", "success", "", "team", "ce"},
		{"webhook deliveries requeued", "success", "", "team", "down"}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var page struct {
				Entries []struct {
					Actor, Action, Namespace, Target, Outcome string
					Detail                                    map[string]any
				}
			}
			mustUnmarshal(t, "audit page", b.admin(t, http.MethodGet, "/api/v1/audit?action="+url.QueryEscape(want.action), nil, http.StatusOK), &page)
			found := false
			for _, e := range page.Entries {
				found = found || e.Actor == "admin" && e.Namespace == want.ns && e.Target == want.target && e.Outcome == want.outcome &&
					(want.tag == "" || e.Detail["tag"] == want.tag)
			}
			if found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no audit entry %+v among %+v", want, page.Entries)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	cli.must("", "webhook", "remove", "down")
	if out := cli.must("", "webhook", "list"); strings.Contains(out, "down") || !strings.Contains(out, "dist") {
		t.Fatalf("list after remove: %q", out)
	}
	if out, err := cli.run("", "webhook", "deliveries", "down"); err == nil || !strings.Contains(out, "no webhook down") {
		t.Fatalf("deliveries of a removed webhook: err %v, %q", err, out)
	}
}
