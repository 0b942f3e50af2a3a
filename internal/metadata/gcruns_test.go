package metadata_test

import (
	"context"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// TestGCRunHistory: runs come back newest first, with every field.
func TestGCRunHistory(t *testing.T) {
	onBoth(t, func(t *testing.T, s *metadata.SQL) {
		ctx := context.Background()
		t0 := time.Unix(1700000000, 123)
		for i := range 3 {
			if err := s.RecordGCRun(ctx, metadata.GCRun{Started: t0.Add(time.Duration(i) * time.Hour), Duration: time.Duration(i+1) * time.Second,
				Actor: []string{"", "admin", "alice"}[i], Tags: i, Manifests: 2 * i, Unlinked: 3 * i, Blobs: 4 * i, Bytes: int64(1000 * i)}); err != nil {
				t.Fatal(err)
			}
		}
		runs, err := s.GCRuns(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 2 || runs[0].Actor != "alice" || runs[1].Actor != "admin" {
			t.Fatalf("runs %+v", runs)
		}
		r := runs[0]
		if !r.Started.Equal(t0.Add(2*time.Hour)) || r.Duration != 3*time.Second || r.Tags != 2 || r.Manifests != 4 || r.Unlinked != 6 || r.Blobs != 8 || r.Bytes != 2000 {
			t.Errorf("newest run %+v", r)
		}
	})
}
