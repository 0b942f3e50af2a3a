package registry

import (
	"context"
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

// maxPendingPullEvents bounds the pull events held in memory between two
// flushes; more are dropped (and counted in the log).
const maxPendingPullEvents = 10000

// pullEvents holds pull events until the next flush of pulls: a pull is no
// write, and writing its event alone would make every pull one.
type pullEvents struct {
	mu      sync.Mutex
	pending []metadata.Event
	dropped int
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
// next flush of pulls.
func (s *Service) NotePull(ctx context.Context, m *metadata.Manifest) {
	s.pullEvents.mu.Lock()
	full := len(s.pullEvents.pending) >= maxPendingPullEvents
	if full {
		s.pullEvents.dropped++
	}
	s.pullEvents.mu.Unlock()
	if full { // before building the event: a dropped one costs nothing
		return
	}
	ev := events.New(ctx, events.ActionPull, events.Target{MediaType: m.MediaType, Size: int64(len(m.Payload)),
		Length: int64(len(m.Payload)), Digest: string(m.Digest), Repository: m.Repository})
	s.pullEvents.mu.Lock()
	defer s.pullEvents.mu.Unlock()
	if len(s.pullEvents.pending) >= maxPendingPullEvents {
		s.pullEvents.dropped++
		return
	}
	s.pullEvents.pending = append(s.pullEvents.pending, ev)
}

// flushPullEvents writes the queued pull events.
func (s *Service) flushPullEvents(ctx context.Context) error {
	s.pullEvents.mu.Lock()
	evs, dropped := s.pullEvents.pending, s.pullEvents.dropped
	s.pullEvents.pending, s.pullEvents.dropped = nil, 0
	s.pullEvents.mu.Unlock()
	if dropped > 0 {
		s.log.Warn("pull events dropped: more pulls between two flushes than are held", "dropped", dropped, "held", maxPendingPullEvents)
	}
	if len(evs) == 0 {
		return nil
	}
	if err := s.meta.AppendEvents(ctx, evs); err != nil {
		return internal(err, "record pull events")
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
