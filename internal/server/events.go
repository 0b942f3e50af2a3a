package server

import (
	"context"
	"encoding/json"
	"time"

	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/events"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/webhook"
)

// notifier hears of the events the registry commits: it wakes the webhook
// dispatcher and records the changes in the audit log.
type notifier struct {
	hooks *webhook.Dispatcher
	// audit is nil without auth (no audit log).
	audit *audit.Log
}

// auditActions names the audit entry of each event action; pulls are not
// audited (their volume would drown the rest).
var auditActions = map[string]string{
	events.ActionPush:          "manifest pushed",
	events.ActionDelete:        "manifest deleted",
	events.ActionTagDelete:     "tag deleted",
	events.ActionQuotaExceeded: "push refused by quota",
}

// Committed implements registry.Notifier.
func (n *notifier) Committed(ctx context.Context, evs []metadata.Event) {
	n.hooks.Wake()
	if n.audit == nil {
		return
	}
	o := events.OriginOf(ctx)
	for _, ev := range evs {
		action, ok := auditActions[ev.Action]
		if !ok {
			continue
		}
		e := audit.Entry{At: ev.Created, Actor: o.Actor, Address: o.Request.Addr, Action: action, Namespace: ev.Namespace,
			Target: ev.Repository, Detail: map[string]any{"event": ev.ID}}
		var full events.Event
		if json.Unmarshal(ev.Payload, &full) == nil {
			if t := full.Target; t != nil {
				e.Detail["tag"], e.Detail["digest"] = t.Tag, t.Digest
			}
			if full.Detail != nil {
				e.Target, _ = full.Detail["repository"].(string)
				e.Detail["refused"] = full.Detail["refused"]
			}
		}
		if ev.Action == events.ActionQuotaExceeded {
			e.Outcome = audit.OutcomeDenied
		}
		n.audit.Record(e)
	}
}

// WantsPull implements registry.Notifier.
func (n *notifier) WantsPull() bool { return n.hooks.WantsPull() }

// gcEvent records the webhook event of a garbage collection run.
func (s *Server) gcEvent(ctx context.Context, r *gc.Report) {
	run := metadata.GCRun{Started: time.Now().Add(-r.Duration), Duration: r.Duration, Actor: events.OriginOf(ctx).Actor,
		Tags: len(r.Tags), Manifests: len(r.Manifests), Unlinked: r.Unlinked, Blobs: r.Blobs, Bytes: r.Bytes}
	if err := s.meta.RecordGCRun(context.WithoutCancel(ctx), run); err != nil {
		s.log.Error("recording the garbage collection run failed", "err", err)
	}
	s.appendEvent(context.WithoutCancel(ctx), "garbage collection", events.NewDetail(ctx, events.ActionGC, "", map[string]any{
		"tags": len(r.Tags), "manifests": len(r.Manifests), "blob_links": r.Unlinked, "blobs": r.Blobs, "bytes": r.Bytes,
		"duration_seconds": r.Duration.Seconds()}))
}

// accountEvent records the webhook event of an administrative change
// (users, namespaces, members, robots, policies): written just after the
// change, in a transaction of its own.
func (s *Server) accountEvent(actor, msg string, attrs []any) {
	detail := map[string]any{"change": msg}
	ns := ""
	for i := 0; i+1 < len(attrs); i += 2 {
		k, _ := attrs[i].(string)
		detail[k] = attrs[i+1]
		if k == "namespace" {
			ns, _ = attrs[i+1].(string)
		}
	}
	ctx, cancel := context.WithTimeout(events.WithOrigin(context.Background(), events.Origin{Actor: actor}), 10*time.Second)
	defer cancel()
	s.appendEvent(ctx, "account", events.NewDetail(ctx, events.ActionAccount, ns, detail))
}

// appendEvent writes an event that is no metadata write's in a
// transaction of its own and tells the notifier; a failure is logged.
func (s *Server) appendEvent(ctx context.Context, what string, ev metadata.Event) {
	evs := []metadata.Event{ev}
	if err := s.meta.AppendEvents(ctx, evs); err != nil {
		s.log.Error("recording the "+what+" event failed", "err", err)
		return
	}
	s.notifier.Committed(ctx, evs)
}
