package metadata_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// onBoth runs a test on a fresh SQLite store and a fresh PostgreSQL one.
func onBoth(t *testing.T, fn func(t *testing.T, s *metadata.SQL)) {
	t.Run("SQLite", func(t *testing.T) {
		s, err := metadata.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "berth.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		s, _ := openPG(t, 10)
		fn(t, s)
	})
}

func event(id, action, repo string) metadata.Event {
	ns, _, _ := strings.Cut(repo, "/")
	return metadata.Event{ID: id, Action: action, Namespace: ns, Repository: repo, Payload: []byte(`{"id":"` + id + `"}`)}
}

func addHook(t *testing.T, s *metadata.SQL, name, ns string, actions ...string) int64 {
	t.Helper()
	id, err := s.AddWebhook(context.Background(), metadata.WebhookEndpoint{Name: name, Namespace: ns, URL: "http://127.0.0.1:1/",
		Actions: actions, Format: "distribution", Secret: "0123456789abcdef", Timeout: time.Second, CreatedBy: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestOutboxEventsCommitWithTheirChange: events attached to a write exist
// exactly when the write committed, and reach only the endpoints whose
// namespace and actions match.
func TestOutboxEventsCommitWithTheirChange(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		global := addHook(t, s, "global", "", "push", "delete")
		team := addHook(t, s, "team", "team", "push")
		addHook(t, s, "other", "other", "push")
		addHook(t, s, "pulls", "", "pull")

		// A push whose blob is missing fails: no event.
		m := manifest("team/app", 1, "v1", false)
		m.Blobs = []metadata.Ref{{Digest: digest(99), Size: 1}}
		err := s.PutManifest(metadata.WithEvents(ctx, event("refused", "push", "team/app")), m)
		var missing *metadata.MissingReferenceError
		if !errors.As(err, &missing) {
			t.Fatalf("push with a missing blob: %v", err)
		}
		// A push that commits: its event goes to global and team.
		if err := s.PutManifest(metadata.WithEvents(ctx, event("ok", "push", "team/app")), manifest("team/app", 1, "v1", false)); err != nil {
			t.Fatal(err)
		}
		// A tag delete nobody subscribes to: no event row at all.
		if err := s.DeleteTag(metadata.WithEvents(ctx, event("untracked", "tag_delete", "team/app")), "team/app", "v1"); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			endpoint int64
			want     []string
		}{{global, []string{"ok"}}, {team, []string{"ok"}}} {
			ds, err := s.Deliveries(ctx, metadata.DeliveryFilter{EndpointID: c.endpoint, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range ds {
				got = append(got, d.Event.ID)
				if d.State != metadata.DeliveryPending || d.Attempts != 0 {
					t.Errorf("delivery %s: state %s, %d attempts", d.Event.ID, d.State, d.Attempts)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("endpoint %d: deliveries %v, want %v", c.endpoint, got, c.want)
			}
		}
		counts, err := s.DeliveryCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if counts[metadata.DeliveryPending] != 2 {
			t.Errorf("pending deliveries: %v, want 2 (global and team)", counts)
		}
	})
}

// TestClaimOrderAndExclusion: only the oldest pending delivery of each
// endpoint and repository is handed out, a claimed delivery is not handed
// out again until its lease ends, a stale claim cannot record an outcome,
// and dead deliveries stop blocking and can be redelivered.
func TestClaimOrderAndExclusion(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		hook := addHook(t, s, "h", "", "push")
		var evs []metadata.Event
		for i := range 3 {
			for _, repo := range []string{"a/x", "b/y"} {
				evs = append(evs, event(fmt.Sprintf("%s-%d", repo, i), "push", repo))
			}
		}
		if err := s.AppendEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		first, err := s.ClaimDeliveries(ctx, "c1", 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(first); got != "[a/x-0 b/y-0]" {
			t.Fatalf("first claim: %s, want the head of each repository", got)
		}
		again, err := s.ClaimDeliveries(ctx, "c2", 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(again) != 0 {
			t.Fatalf("second claim while the heads are leased: %s", ids(again))
		}
		// a/x-0 delivered, b/y-0 failed and retried later.
		if ok, err := s.FinishDelivery(ctx, &first[0], metadata.DeliveryOutcome{State: metadata.DeliveryDelivered, Status: 200}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		if ok, err := s.FinishDelivery(ctx, &first[1], metadata.DeliveryOutcome{State: metadata.DeliveryPending,
			Next: time.Now().Add(time.Hour), Status: 503, Error: "endpoint answered 503"}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		stale := first[0]
		if ok, err := s.FinishDelivery(ctx, &stale, metadata.DeliveryOutcome{State: metadata.DeliveryDead}); err != nil || ok {
			t.Fatalf("a finished claim recorded again: %v %v", ok, err)
		}
		next, err := s.ClaimDeliveries(ctx, "c3", 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(next); got != "[a/x-1]" {
			t.Fatalf("after a/x-0 delivered and b/y-0 backing off: %s, want [a/x-1] (b/y-1 waits for b/y-0)", got)
		}
		// b/y-0 dies: b/y-1 becomes due.
		if _, err := s.Redeliver(ctx, hook, []int64{first[1].ID}); err != nil {
			t.Fatal(err)
		}
		by0, err := s.ClaimDeliveries(ctx, "c4", 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(by0); got != "[b/y-0]" {
			t.Fatalf("after redelivering b/y-0 at once: %s", got)
		}
		if ok, err := s.FinishDelivery(ctx, &by0[0], metadata.DeliveryOutcome{State: metadata.DeliveryDead, Status: 500, Error: "gave up"}); err != nil || !ok {
			t.Fatal(ok, err)
		}
		by1, err := s.ClaimDeliveries(ctx, "c5", 10, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(by1); got != "[b/y-1]" {
			t.Fatalf("after b/y-0 died: %s, want [b/y-1]", got)
		}
		dead, err := s.Deliveries(ctx, metadata.DeliveryFilter{EndpointID: hook, State: metadata.DeliveryDead, Limit: 10})
		if err != nil || ids(dead) != "[b/y-0]" || dead[0].LastError != "gave up" || dead[0].Attempts != 1 {
			t.Fatalf("dead deliveries: %+v %v", dead, err)
		}
		n, err := s.Redeliver(ctx, hook, nil)
		if err != nil || n != 1 {
			t.Fatalf("redeliver dead: %d %v", n, err)
		}
	})
}

func ids(ds []metadata.Delivery) string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Event.ID)
	}
	return fmt.Sprint(out)
}

// TestConcurrentClaimsTakeEachDeliveryOnce: many claimers at once (as
// replicas would on PostgreSQL) never hand out one delivery twice while
// it is leased.
func TestConcurrentClaimsTakeEachDeliveryOnce(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		addHook(t, s, "h", "", "push")
		var evs []metadata.Event
		for i := range 200 {
			evs = append(evs, event(fmt.Sprint(i), "push", fmt.Sprintf("ns/r%d", i)))
		}
		if err := s.AppendEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var wg sync.WaitGroup
		for c := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ds, err := s.ClaimDeliveries(ctx, fmt.Sprintf("claimer-%d-%d", c, time.Now().UnixNano()), 7, time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if len(ds) == 0 {
						return
					}
					mu.Lock()
					for _, d := range ds {
						seen[d.Event.ID]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(seen) != 200 {
			t.Errorf("%d deliveries claimed, want 200", len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("delivery %s claimed %d times", id, n)
			}
		}
	})
}

// BenchmarkDeliverBacklog claims and finishes deliveries of one repository
// with 20000 more queued behind them, as when a receiver was down during
// a busy hour: a claim reads the due lanes, so its cost does not grow with
// the backlog (it once scanned every pending delivery).
func BenchmarkDeliverBacklog(b *testing.B) {
	s, err := metadata.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "berth.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.AddWebhook(ctx, metadata.WebhookEndpoint{Name: "h", URL: "http://127.0.0.1:1/", Actions: []string{"push"},
		Format: "distribution", Secret: "0123456789abcdef", Timeout: time.Second, CreatedBy: "bench"}); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 20000+b.N; i += 1000 {
		var evs []metadata.Event
		for j := i; j < i+1000; j++ {
			evs = append(evs, event(fmt.Sprint(j), "push", "team/app"))
		}
		if err := s.AppendEvents(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		ds, err := s.ClaimDeliveries(ctx, fmt.Sprint("c", i), 16, time.Minute)
		if err != nil || len(ds) != 1 {
			b.Fatalf("claim %d: %d deliveries, %v", i, len(ds), err)
		}
		if ok, err := s.FinishDelivery(ctx, &ds[0], metadata.DeliveryOutcome{State: metadata.DeliveryDelivered, Status: 204}); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
