package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/testserver"
)

// berth-observed is berth in embedded mode as an operator runs it: metrics
// on (the default), served on a --metrics-addr of its own that the
// benchmark scrapes every second, tracing off, and one global webhook
// endpoint subscribed to hookEvents (-hook-events; by default the events a
// webhook gets when it names none: push, delete, tag_delete), pointing at a
// receiver the benchmark runs on loopback. The berth kind runs with
// --metrics=false, so that the two differ exactly by metrics and webhooks.

// observed is what the benchmark runs beside a berth-observed: the
// scraper of its metrics and the receiver of its webhook deliveries.
type observed struct {
	metricsURL string
	hooks      *hookReceiver
	// Scrapes of /metrics: answered 200, and failed (another status or a
	// transport error; the first failure is kept).
	scrapes, scrapeFailures atomic.Int64
	firstScrapeErr          atomic.Value // string
	stopScraper             func()
}

// hookReceiver is the webhook endpoint of berth-observed: it answers 204
// to every delivery and counts them by event action.
type hookReceiver struct {
	srv        *httptest.Server
	deliveries atomic.Int64
	mu         sync.Mutex
	byAction   map[string]int64
	bad        int64 // bodies that are not a Distribution envelope of one event
}

// newHookReceiver starts a receiver on a loopback port.
func newHookReceiver() *hookReceiver {
	h := &hookReceiver{byAction: map[string]int64{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct {
			Events []struct {
				Action string `json:"action"`
			} `json:"events"`
		}
		err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&env)
		h.deliveries.Add(1)
		h.mu.Lock()
		if err != nil || len(env.Events) != 1 || r.Header.Get("Berth-Signature") == "" {
			h.bad++
		}
		for _, e := range env.Events {
			h.byAction[e.Action]++
		}
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	atExit(h.srv.Close)
	return h
}

// summary renders the deliveries received so far, by action.
func (h *hookReceiver) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var parts []string
	for _, a := range slices.Sorted(func(yield func(string) bool) {
		for a := range h.byAction {
			if !yield(a) {
				return
			}
		}
	}) {
		parts = append(parts, fmt.Sprintf("%s %d", a, h.byAction[a]))
	}
	s := fmt.Sprintf("%d webhook deliveries received", h.deliveries.Load())
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	if h.bad > 0 {
		s += fmt.Sprintf(", %d of them not a signed Distribution envelope of one event", h.bad)
	}
	return s
}

// hookSecret signs the benchmark's deliveries (the receiver does not
// check signatures, only that one is sent).
const hookSecret = "berth-bench-webhook-secret-0123456789abcdef"

// hookEvents are the events berth-observed's webhook subscribes to
// (-hook-events).
var hookEvents = []string{"push", "delete", "tag_delete"}

// sameAsBerth runs berth-observed exactly as berth (-same-as-berth): an
// A/A check of the comparison's own bias between the two columns.
var sameAsBerth bool

// prepareDataDir creates the metadata database of a data directory that
// no berth uses yet and, if hookURL is not "", registers in it one global
// webhook endpoint at hookURL for the hookEvents events, in Distribution's
// format. berth and berth-observed both start on
// a database made this way, so that their databases differ only by the
// webhook: one that berth creates itself keeps all its pages in the
// write-ahead log (no checkpoint before 1000 pages are written), one the
// benchmark creates and closes is checkpointed into the database file.
//
// The benchmark's copy of internal/metadata runs the schema migrations,
// so the berth it starts must be built from the same tree (as go run
// ./bench does; mind -berth).
func prepareDataDir(dataDir, hookURL string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := metadata.OpenSQLite(ctx, filepath.Join(dataDir, "berth.db"))
	if err != nil {
		return fmt.Errorf("create the database in %s: %w", dataDir, err)
	}
	if hookURL != "" {
		_, err = db.AddWebhook(ctx, metadata.WebhookEndpoint{Name: "bench", Namespace: "", URL: hookURL,
			Actions: hookEvents, Format: "distribution", Secret: hookSecret,
			Timeout: 5 * time.Second, CreatedBy: "bench"})
		if err != nil {
			err = fmt.Errorf("register the webhook in %s: %w", dataDir, err)
		}
	}
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close the database in %s: %w", dataDir, cerr)
	}
	return err
}

// startBerthObserved runs berth-observed on a free port with dataDir: a
// webhook endpoint at the new receiver hooks, metrics on a metrics
// address of its own, scraped every second until the benchmark ends.
func startBerthObserved(bin, dataDir, logPath string, conns int) (*server, *observed, error) {
	hooks := newHookReceiver()
	hookURL := hooks.srv.URL + "/hook"
	if sameAsBerth {
		hookURL = ""
	}
	if err := prepareDataDir(dataDir, hookURL); err != nil {
		return nil, nil, err
	}
	port, err := testserver.FreePort()
	if err != nil {
		return nil, nil, err
	}
	mport, err := testserver.FreePort()
	if err != nil {
		return nil, nil, err
	}
	args := []string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--data-dir", dataDir, "--auth=none", "--log-level=warn", "--tracing=off",
		"--metrics=true", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", mport)}
	if sameAsBerth {
		args = args[:len(args)-3]
		args = append(args, "--metrics=false")
	}
	args = append(args, benchTLS.berthArgs()...)
	s, err := start("berth-observed", bin, args, environWithout("OTEL_"), port, "/healthz", logPath, conns, benchTLS)
	if err != nil {
		return nil, nil, err
	}
	o := &observed{metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", mport), hooks: hooks}
	if sameAsBerth {
		o.stopScraper = func() {}
		return s, o, nil
	}
	if err := o.scrape(context.Background()); err != nil { // the listener starts beside the main one
		time.Sleep(200 * time.Millisecond)
		if err := o.scrape(context.Background()); err != nil {
			return nil, nil, fmt.Errorf("berth-observed: %v", err)
		}
	}
	o.startScraper()
	return s, o, nil
}

// scrapeClient is the scraper's HTTP client, like Prometheus' (one kept
// connection).
var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// scrape GETs /metrics once and reads the whole answer.
func (o *observed) scrape(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.metricsURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return fmt.Errorf("scrape %s: %v", o.metricsURL, err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return fmt.Errorf("scrape %s: reading the answer: %v", o.metricsURL, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("scrape %s: %s", o.metricsURL, resp.Status)
	case n == 0:
		return fmt.Errorf("scrape %s: empty answer", o.metricsURL)
	}
	o.scrapes.Add(1)
	return nil
}

// startScraper scrapes every second, as Prometheus with
// scrape_interval: 1s would, until the benchmark ends.
func (o *observed) startScraper() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := o.scrape(ctx); err != nil && ctx.Err() == nil {
				if o.scrapeFailures.Add(1) == 1 {
					o.firstScrapeErr.Store(err.Error())
				}
			}
		}
	}()
	var once sync.Once
	o.stopScraper = func() { once.Do(func() { cancel(); <-done }) }
	atExit(o.stopScraper)
}

// summary renders what the scraper saw.
func (o *observed) summary() string {
	s := fmt.Sprintf("%d scrapes of /metrics on --metrics-addr, one a second, answered 200", o.scrapes.Load())
	if n := o.scrapeFailures.Load(); n > 0 {
		s += fmt.Sprintf("; %d FAILED, first: %v", n, o.firstScrapeErr.Load())
	}
	return s
}
