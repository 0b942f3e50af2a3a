package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/blobstore"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// wantsPulls is a Notifier with a webhook subscribed to pull events.
type wantsPulls struct{}

func (wantsPulls) Committed(context.Context, []metadata.Event) {}
func (wantsPulls) WantsPull() bool                             { return true }

// TestPullEventsAreNeverDropped: more pulls between two flushes than the
// batch holds are all written, none dropped, and the pulls of one client
// in the order it made them (a full batch is written at once; pulls wait
// while the next one is full too).
func TestPullEventsAreNeverDropped(t *testing.T) {
	defer func(n int) { maxPendingPullEvents = n }(maxPendingPullEvents)
	maxPendingPullEvents = 7
	ctx := context.Background()
	dir := t.TempDir()
	blobs, err := blobstore.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := metadata.OpenSQLite(ctx, filepath.Join(dir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	hook, err := meta.AddWebhook(ctx, metadata.WebhookEndpoint{Name: "pulls", URL: "http://127.0.0.1:1/", Actions: []string{"pull"},
		Format: "distribution", Secret: "0123456789abcdef", Timeout: time.Second, CreatedBy: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	s := New(meta, blobs, Options{Events: wantsPulls{}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	pull := func(repo string, i int) {
		s.NotePull(ctx, &metadata.Manifest{Repository: repo, Digest: reference.Digest(fmt.Sprintf("sha256:%064d", i)),
			MediaType: "application/vnd.oci.image.manifest.v1+json", Payload: []byte("{}")})
	}
	const sequential, clients, each = 50, 20, 10
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				pull(fmt.Sprintf("busy/c%d", c), i)
			}
		}()
	}
	for i := range sequential {
		pull("team/app", i)
	}
	wg.Wait()
	if err := s.FlushPulls(ctx); err != nil {
		t.Fatal(err)
	}
	ds, err := meta.Deliveries(ctx, metadata.DeliveryFilter{EndpointID: hook, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != sequential+clients*each {
		t.Fatalf("%d pull events written, want %d", len(ds), sequential+clients*each)
	}
	var seq []int // team/app's pulls, newest first as Deliveries lists them
	for _, d := range ds {
		var ev struct {
			Target struct {
				Digest     string `json:"digest"`
				Repository string `json:"repository"`
			} `json:"target"`
		}
		if err := json.Unmarshal(d.Event.Payload, &ev); err != nil {
			t.Fatalf("event %s: %v", d.Event.ID, err)
		}
		if ev.Target.Repository == "team/app" {
			var i int
			fmt.Sscanf(ev.Target.Digest, "sha256:%d", &i)
			seq = append(seq, i)
		}
	}
	if len(seq) != sequential {
		t.Fatalf("team/app events: %v", seq)
	}
	for i := range seq {
		if seq[i] != sequential-1-i {
			t.Fatalf("one client's pull events out of order (newest first): %v", seq)
		}
	}
}
