// Package events defines the events berth announces to webhooks (package
// webhook delivers them) and builds their outbox records: the events a
// change produces are written to the outbox in the metadata store in the
// change's own transaction (metadata.WithEvents).
package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// Event actions an endpoint can subscribe to.
const (
	ActionPush          = "push"
	ActionPull          = "pull"
	ActionDelete        = "delete"
	ActionTagDelete     = "tag_delete"
	ActionQuotaExceeded = "quota_exceeded"
	ActionGC            = "gc"
	ActionAccount       = "account"
	// ActionPing is sent by `berth webhook test` only.
	ActionPing = "ping"
)

// Actions lists the actions endpoints can subscribe to.
var Actions = []string{ActionPush, ActionPull, ActionDelete, ActionTagDelete, ActionQuotaExceeded, ActionGC, ActionAccount}

// DefaultActions are what an endpoint gets when it names none.
var DefaultActions = []string{ActionPush, ActionDelete, ActionTagDelete}

// Event is an event as stored in the outbox: the fields of CNCF
// Distribution's notification event, plus Detail for events that are not
// about repository content.
type Event struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    *Target   `json:"target,omitempty"`
	Request   Request   `json:"request"`
	Actor     Actor     `json:"actor"`
	Source    Source    `json:"source"`
	// Detail describes events without a target (quota, GC, accounts).
	Detail map[string]any `json:"detail,omitempty"`
}

// Target is what an event is about.
type Target struct {
	MediaType  string `json:"mediaType,omitempty"`
	Size       int64  `json:"size,omitempty"`
	Digest     string `json:"digest,omitempty"`
	Length     int64  `json:"length,omitempty"`
	Repository string `json:"repository"`
	URL        string `json:"url,omitempty"`
	Tag        string `json:"tag,omitempty"`
}

// Request describes the request that caused an event.
type Request struct {
	ID        string `json:"id,omitempty"`
	Addr      string `json:"addr,omitempty"`
	Host      string `json:"host,omitempty"`
	Method    string `json:"method,omitempty"`
	UserAgent string `json:"useragent,omitempty"`
}

// Actor is who caused an event.
type Actor struct {
	Name string `json:"name,omitempty"`
}

// Source is the replica that recorded an event.
type Source struct {
	Addr       string `json:"addr,omitempty"`
	InstanceID string `json:"instanceID,omitempty"`
}

// Origin is who made a request and from where, as the HTTP layer knows it.
type Origin struct {
	Actor   string
	Request Request
}

type originKey struct{}

// WithOrigin returns a context carrying the origin of the events a request
// causes.
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, &o)
}

// OriginOf returns the origin a context carries (empty when none).
func OriginOf(ctx context.Context) Origin { return *originOf(ctx) }

func originOf(ctx context.Context) *Origin {
	o, _ := ctx.Value(originKey{}).(*Origin)
	if o == nil {
		return &Origin{}
	}
	return o
}

// source identifies this process in events.
var source = func() Source {
	host, _ := os.Hostname()
	return Source{Addr: host, InstanceID: NewID()}
}()

// NewID returns a random identifier (events, claims, secrets).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Namespace returns the namespace of a repository: its first component.
func Namespace(repo string) string {
	ns, _, _ := strings.Cut(repo, "/")
	return ns
}

// New returns the outbox record of an event about a repository's content,
// with the origin the context carries.
func New(ctx context.Context, action string, t Target) metadata.Event {
	return build(ctx, action, Namespace(t.Repository), t.Repository, &t, nil)
}

// NewDetail returns the outbox record of an event without a target: ns ""
// reaches global endpoints only.
func NewDetail(ctx context.Context, action, ns string, detail map[string]any) metadata.Event {
	return build(ctx, action, ns, "", nil, detail)
}

func build(ctx context.Context, action, ns, repo string, t *Target, detail map[string]any) metadata.Event {
	o := originOf(ctx)
	ev := Event{ID: NewID(), Timestamp: time.Now().UTC(), Action: action, Target: t, Request: o.Request,
		Actor: Actor{Name: o.Actor}, Source: source, Detail: detail}
	payload, err := json.Marshal(ev)
	if err != nil { // only plain values: cannot happen
		panic(fmt.Sprintf("encode event: %v", err))
	}
	return metadata.Event{ID: ev.ID, Action: action, Namespace: ns, Repository: repo, Payload: payload, Created: ev.Timestamp}
}

// RemoteHost returns the host of a RemoteAddr.
func RemoteHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
