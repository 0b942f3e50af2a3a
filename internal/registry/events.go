package registry

import (
	"context"
	"fmt"
	"sync"

	"github.com/berth-registry/berth/internal/events"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/reference"
)

// Notifier is told of the events committed to the outbox (the webhook
// dispatcher wakes, the audit log records the changes), with the context
// of the request that caused them, and says whether pull events are
// wanted.
type Notifier interface {
	Committed(ctx context.Context, evs []metadata.Event)
	WantsPull() bool
}

// maxPendingPullEvents is how many pull events are held in memory between
// two flushes of pulls; a pull that fills the batch writes it at once,
// and pulls wait while a full batch waits for an earlier one to be
// written. A variable for tests.
var maxPendingPullEvents = 10000

// pullEvents holds pull events until the next flush of pulls: a pull is no
// write, and writing its event alone would make every pull one. No event
// is dropped: a full batch is written at once, and pulls wait (their
// answers are held) while the outbox cannot take them as fast as they
// come.
type pullEvents struct {
	mu      sync.Mutex
	pending []metadata.Event
	// drained is closed when a writer takes the pending events (nil when
	// nobody waits for that).
	drained chan struct{}
	// write serialises writers, so that batches are committed in the
	// order they were taken: the outbox order is the pulls' order.
	write sync.Mutex
}

// pushEvents are the events of a manifest push: one per tag it set, or
// one without a tag.
func pushEvents(ctx context.Context, rec *metadata.PutManifest) []metadata.Event {
	t := events.Target{MediaType: rec.MediaType, Size: int64(len(rec.Payload)), Length: int64(len(rec.Payload)),
		Digest: string(rec.Digest), Repository: rec.Repository}
	if len(rec.Tags) == 0 {
		return []metadata.Event{events.New(ctx, events.ActionPush, t)}
	}
	evs := make([]metadata.Event, 0, len(rec.Tags))
	for _, tag := range rec.Tags {
		t.Tag = tag
		evs = append(evs, events.New(ctx, events.ActionPush, t))
	}
	return evs
}

// committed tells the notifier that events were committed.
func (s *Service) committed(ctx context.Context, evs []metadata.Event) {
	if s.opts.Events != nil {
		s.opts.Events.Committed(ctx, evs)
	}
}

// PullEventsWanted reports whether some webhook wants pull events.
func (s *Service) PullEventsWanted() bool {
	return s.opts.Events != nil && s.opts.Events.WantsPull()
}

// NotePull queues the event of a manifest pull; it is written with the
// next flush of pulls, or at once when it fills the batch. While a full
// batch waits to be written, NotePull waits (or until ctx ends: the
// request is gone, and the pull with it).
func (s *Service) NotePull(ctx context.Context, m *metadata.Manifest) {
	ev := events.New(ctx, events.ActionPull, events.Target{MediaType: m.MediaType, Size: int64(len(m.Payload)),
		Length: int64(len(m.Payload)), Digest: string(m.Digest), Repository: m.Repository})
	p := &s.pullEvents
	for {
		p.mu.Lock()
		if n := len(p.pending); n < maxPendingPullEvents {
			p.pending = append(p.pending, ev)
			p.mu.Unlock()
			if n+1 == maxPendingPullEvents {
				go func() {
					if err := s.flushPullEvents(context.WithoutCancel(ctx)); err != nil {
						s.log.Error("recording pull events failed", "err", err)
					}
				}()
			}
			return
		}
		if p.drained == nil {
			p.drained = make(chan struct{})
		}
		wait := p.drained
		p.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return
		}
	}
}

// flushPullEvents writes the queued pull events.
func (s *Service) flushPullEvents(ctx context.Context) error {
	p := &s.pullEvents
	p.write.Lock()
	defer p.write.Unlock()
	p.mu.Lock()
	evs := p.pending
	p.pending = nil
	if p.drained != nil {
		close(p.drained)
		p.drained = nil
	}
	p.mu.Unlock()
	if len(evs) == 0 {
		return nil
	}
	if err := s.meta.AppendEvents(ctx, evs); err != nil {
		return internal(err, fmt.Sprintf("record %d pull events", len(evs)))
	}
	s.committed(ctx, evs)
	return nil
}

// quotaExceeded records the event of a push refused by a quota; failing
// to record it does not change the refusal.
func (s *Service) quotaExceeded(ctx context.Context, repo string, used, quota int64, what string) {
	if s.opts.Events == nil {
		return
	}
	ev := events.NewDetail(ctx, events.ActionQuotaExceeded, namespaceOf(repo), map[string]any{
		"repository": repo, "used": used, "quota": quota, "refused": what})
	evs := []metadata.Event{ev}
	if err := s.meta.AppendEvents(context.WithoutCancel(ctx), evs); err != nil {
		s.log.Error("recording a quota event failed", "err", err)
		return
	}
	s.committed(ctx, evs)
}

// deleteEvent is the event of a manifest's or a tag's deletion.
func deleteEvent(ctx context.Context, repo, ref string) metadata.Event {
	if reference.IsDigest(ref) {
		return events.New(ctx, events.ActionDelete, events.Target{Digest: ref, Repository: repo})
	}
	return events.New(ctx, events.ActionTagDelete, events.Target{Tag: ref, Repository: repo})
}
