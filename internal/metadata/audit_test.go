package metadata_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// TestAuditLog appends, filters, pages and prunes audit entries on SQLite
// and PostgreSQL.
func TestAuditLog(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		s, err := metadata.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "berth.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		testAuditLog(t, s)
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		s, _ := openPG(t, 4)
		testAuditLog(t, s)
	})
}

func testAuditLog(t *testing.T, s *metadata.SQL) {
	ctx := context.Background()
	base := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	var batch []metadata.AuditEntry
	for i := range 30 {
		batch = append(batch, metadata.AuditEntry{
			At:        base.Add(time.Duration(i) * time.Minute),
			Actor:     []string{"alice", "bob", "carol"}[i%3],
			Address:   "10.0.0.1",
			Action:    []string{"login", "login failed"}[i%2],
			Namespace: []string{"team", "other", ""}[i%3],
			Target:    fmt.Sprint("t", i),
			Outcome:   "success",
			Detail:    fmt.Sprintf(`{"i":%d}`, i),
			Replica:   "r1",
		})
	}
	if err := s.AppendAudit(ctx, batch[:10]); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, batch[10:]); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, nil); err != nil {
		t.Fatal(err)
	}

	all, err := s.ListAudit(ctx, metadata.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 30 {
		t.Fatalf("listed %d entries, want 30", len(all))
	}
	for i, e := range all {
		want := batch[29-i] // newest first
		if e.Target != want.Target || e.Actor != want.Actor || e.Action != want.Action || e.Namespace != want.Namespace ||
			e.Detail != want.Detail || e.Replica != "r1" || e.Address != "10.0.0.1" || e.Outcome != "success" || !e.At.Equal(want.At) {
			t.Fatalf("entry %d = %+v, want %+v", i, e, want)
		}
		if i > 0 && e.ID >= all[i-1].ID {
			t.Fatalf("entries not in descending id order: %d after %d", e.ID, all[i-1].ID)
		}
	}

	check := func(name string, f metadata.AuditFilter, want func(i int) bool) {
		t.Helper()
		got, err := s.ListAudit(ctx, f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var wantTargets, gotTargets []string
		for i := 29; i >= 0; i-- {
			if want(i) {
				wantTargets = append(wantTargets, batch[i].Target)
			}
		}
		for _, e := range got {
			gotTargets = append(gotTargets, e.Target)
		}
		if fmt.Sprint(gotTargets) != fmt.Sprint(wantTargets) {
			t.Errorf("%s: got %v, want %v", name, gotTargets, wantTargets)
		}
	}
	check("actor", metadata.AuditFilter{Actor: "bob"}, func(i int) bool { return i%3 == 1 })
	check("namespace", metadata.AuditFilter{Namespace: "team"}, func(i int) bool { return i%3 == 0 })
	check("action", metadata.AuditFilter{Action: "login failed"}, func(i int) bool { return i%2 == 1 })
	check("actor and action", metadata.AuditFilter{Actor: "alice", Action: "login"}, func(i int) bool { return i%6 == 0 })
	check("since", metadata.AuditFilter{Since: base.Add(25 * time.Minute)}, func(i int) bool { return i >= 25 })
	check("until", metadata.AuditFilter{Until: base.Add(3 * time.Minute)}, func(i int) bool { return i < 3 })
	check("since and until", metadata.AuditFilter{Since: base.Add(10 * time.Minute), Until: base.Add(12 * time.Minute)},
		func(i int) bool { return i == 10 || i == 11 })
	check("nothing", metadata.AuditFilter{Actor: "nobody"}, func(int) bool { return false })

	// Paging: 7 at a time, cursor on the last id, gives every entry once.
	var paged []metadata.AuditEntry
	var before int64
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		page, err := s.ListAudit(ctx, metadata.AuditFilter{Limit: 7, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, page...)
		if len(page) < 7 {
			break
		}
		before = page[len(page)-1].ID
	}
	if len(paged) != 30 {
		t.Fatalf("paging gave %d entries, want 30", len(paged))
	}
	for i := range paged {
		if paged[i].ID != all[i].ID {
			t.Fatalf("page entry %d has id %d, want %d", i, paged[i].ID, all[i].ID)
		}
	}
	// A page of a filtered listing.
	check("paged filter", metadata.AuditFilter{Actor: "carol", Before: all[10].ID, Limit: 2}, func(i int) bool {
		return i%3 == 2 && i < 19 && i >= 14
	})

	// Limits: the default and the cap.
	more := make([]metadata.AuditEntry, 1100)
	for i := range more {
		more[i] = metadata.AuditEntry{At: base.Add(time.Hour), Actor: "bulk", Action: "x", Outcome: "success"}
	}
	if err := s.AppendAudit(ctx, more); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ limit, want int }{{0, metadata.DefaultAuditLimit}, {5000, metadata.MaxAuditLimit}, {3, 3}} {
		got, err := s.ListAudit(ctx, metadata.AuditFilter{Actor: "bulk", Limit: c.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != c.want {
			t.Errorf("limit %d: %d entries, want %d", c.limit, len(got), c.want)
		}
		if got[0].Detail != "{}" {
			t.Errorf("empty detail stored as %q, want {}", got[0].Detail)
		}
	}

	// Pruning removes what is older than the cutoff, and again nothing.
	n, err := s.PruneAudit(ctx, base.Add(20*time.Minute))
	if err != nil || n != 20 {
		t.Fatalf("prune: %d, %v; want 20 deleted", n, err)
	}
	if n, err := s.PruneAudit(ctx, base.Add(20*time.Minute)); err != nil || n != 0 {
		t.Fatalf("second prune: %d, %v; want 0 deleted", n, err)
	}
	check("after prune", metadata.AuditFilter{Until: base.Add(time.Hour)}, func(i int) bool { return i >= 20 })
	n, err = s.PruneAudit(ctx, base.Add(2*time.Hour))
	if err != nil || n != 1110 {
		t.Fatalf("prune all: %d, %v; want 1110 deleted", n, err)
	}
	if left, _ := s.ListAudit(ctx, metadata.AuditFilter{}); len(left) != 0 {
		t.Fatalf("%d entries left after pruning all", len(left))
	}
}
