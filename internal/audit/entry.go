// Package audit keeps the audit log: who did what to what, from where, and
// with what outcome. Entries go to the metadata store, which replicas
// share, in batches written in the background, and optionally to a file
// or stdout as JSON lines. The auth service writes its records through a
// log/slog handler (Log.Handler); other code calls Log.Record. No secret
// gets into an entry: attributes whose key names one are dropped, and
// values shaped like berth's secrets or tokens are redacted.
package audit

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/berth-registry/berth/internal/metadata"
)

// Outcomes of an entry.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
)

// Entry is one audit record as its writer describes it.
type Entry struct {
	// At is when it happened; zero is now.
	At time.Time
	// Actor is the account (user or robot) that acted or tried to.
	Actor string
	// Address is the client's address.
	Address string
	// Action says what happened, e.g. "login failed" or "robot created".
	Action string
	// Namespace is the namespace acted on, if any.
	Namespace string
	// Target is what was acted on: a user, robot, repository, rule id.
	Target string
	// Outcome is OutcomeSuccess, OutcomeFailure or OutcomeDenied; empty
	// is success.
	Outcome string
	// Detail holds anything else (never a secret: see Redacted).
	Detail map[string]any
}

// Bounds on what one entry stores.
const (
	maxField  = 256
	maxDetail = 8 << 10
)

// Redacted replaces a value shaped like a secret.
const Redacted = "[redacted]"

// secretWords are parts of attribute keys that name secrets; such
// attributes never reach an entry or the file.
var secretWords = []string{"password", "passwd", "secret", "token", "authorization", "cookie", "credential"}

// SecretKey reports whether an attribute key names a secret.
func SecretKey(key string) bool {
	k := strings.ToLower(key)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// secretPrefixes start the secrets berth issues: robot secrets, refresh
// tokens and pull credentials. The random part that follows is base64url.
var secretPrefixes = []string{"berth-refresh-", "berth-pull-", "berth_"}

// SecretValue reports whether s has the shape of a secret berth issues
// (a robot secret, refresh token or pull credential: a prefix then at
// least 32 random characters with upper-case letters, which names never
// have) or of a JWT (three base64url parts, the first a JSON object).
func SecretValue(s string) bool {
	for _, p := range secretPrefixes {
		if rest, ok := strings.CutPrefix(s, p); ok && len(rest) >= 32 && strings.IndexFunc(rest, unicode.IsUpper) >= 0 {
			return true
		}
	}
	if i := strings.Index(s, "eyJ"); i >= 0 && strings.Count(s[i:], ".") >= 2 {
		parts := strings.Split(strings.Fields(s[i:])[0], ".")
		return len(parts) >= 3 && len(parts[0]) >= 10 && len(parts[1]) >= 10
	}
	return false
}

// clean makes a string field safe to store: redacted if it looks like a
// secret, cut to maxField bytes.
func clean(s string) string {
	if SecretValue(s) {
		return Redacted
	}
	if len(s) > maxField {
		s = strings.ToValidUTF8(s[:maxField], "") + "..."
	}
	return s
}

// row is e as the store keeps it, with secrets removed.
func (e Entry) row(replica string) metadata.AuditEntry {
	at := e.At
	if at.IsZero() {
		at = time.Now()
	}
	outcome := e.Outcome
	if outcome == "" {
		outcome = OutcomeSuccess
	}
	return metadata.AuditEntry{At: at, Actor: clean(e.Actor), Address: clean(e.Address), Action: clean(e.Action),
		Namespace: clean(e.Namespace), Target: clean(e.Target), Outcome: clean(outcome), Detail: detailJSON(e.Detail), Replica: replica}
}

// detailJSON encodes detail, without secret keys or values, as a JSON
// object of at most maxDetail bytes.
func detailJSON(detail map[string]any) string {
	if len(detail) == 0 {
		return "{}"
	}
	b, err := json.Marshal(scrubMap(detail))
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": "detail not encodable: " + err.Error()})
	}
	if len(b) > maxDetail {
		b, _ = json.Marshal(map[string]any{"truncated": true, "bytes": len(b)})
	}
	return string(b)
}

// scrubMap copies m without secret keys, redacting secret-shaped strings.
func scrubMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if SecretKey(k) {
			continue
		}
		out[k] = scrubValue(v)
	}
	return out
}

func scrubValue(v any) any {
	switch v := v.(type) {
	case string:
		if SecretValue(v) {
			return Redacted
		}
		return v
	case []string:
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = scrubValue(s).(string)
		}
		return out
	case map[string]any:
		return scrubMap(v)
	case error:
		return scrubValue(v.Error())
	case fmt.Stringer:
		return scrubValue(v.String())
	}
	return v
}

// fromRecord maps a log record (its attributes after the handler's own)
// to an entry: the message is the action; actor is the "actor"
// attribute, else "user", else "subject"; address is "client"; namespace
// is "namespace", else the namespace of a robot named or acting, or of a
// repository named; target is the first of robot, user (when not the
// actor), repository, id and kid; the outcome follows the message
// (denied, refused, failed) and level; everything else goes to the
// detail.
func fromRecord(at time.Time, level slog.Level, msg string, attrs []slog.Attr) Entry {
	vals := map[string]any{}
	var order []string
	for _, a := range attrs {
		if a.Key == "" {
			continue
		}
		if _, seen := vals[a.Key]; !seen {
			order = append(order, a.Key)
		}
		vals[a.Key] = attrValue(a.Value)
	}
	str := func(k string) string {
		s, _ := vals[k].(string)
		return s
	}
	e := Entry{At: at, Action: msg, Detail: map[string]any{}}
	used := map[string]bool{}
	take := func(keys ...string) string {
		for _, k := range keys {
			if s := str(k); s != "" && !used[k] {
				used[k] = true
				return s
			}
		}
		return ""
	}
	e.Actor = take("actor", "user", "subject")
	e.Address = take("client")
	e.Namespace = take("namespace")
	e.Target = take("robot", "user", "repository", "id", "kid")
	if e.Target == "" {
		if id, ok := vals["id"]; ok && !used["id"] {
			used["id"] = true
			e.Target = fmt.Sprint(id)
		}
	}
	if e.Namespace == "" {
		robot := str("robot")
		if robot == "" && strings.Contains(e.Actor, "+") {
			robot = e.Actor // a robot acting: its namespace
		}
		e.Namespace = namespaceOf(robot, str("repository"), str("repositories"))
	}
	e.Outcome = outcomeOf(msg, level, str("reason") != "")
	for _, k := range order {
		if !used[k] && !SecretKey(k) {
			e.Detail[k] = vals[k]
		}
	}
	return e
}

// namespaceOf finds a namespace in a robot's full name (team+ci) or a
// repository name or pattern (team/app, team/*).
func namespaceOf(robot string, repos ...string) string {
	if ns, _, ok := strings.Cut(robot, "+"); ok {
		return ns
	}
	for _, r := range repos {
		if ns, _, ok := strings.Cut(r, "/"); ok && ns != "" && !strings.ContainsAny(ns, "*?[") {
			return ns
		}
	}
	return ""
}

// outcomeOf derives an outcome from a record's message and level.
func outcomeOf(msg string, level slog.Level, reason bool) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "denied") || strings.Contains(m, "refused"):
		return OutcomeDenied
	case strings.Contains(m, "failed") || level >= slog.LevelError || (reason && level >= slog.LevelWarn):
		return OutcomeFailure
	}
	return OutcomeSuccess
}

// attrValue converts a log value to what the detail JSON holds; groups
// become objects without their secret keys.
func attrValue(v slog.Value) any {
	v = v.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindInt64:
		return v.Int64()
	case slog.KindUint64:
		return v.Uint64()
	case slog.KindFloat64:
		return v.Float64()
	case slog.KindBool:
		return v.Bool()
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindTime:
		return v.Time().UTC().Format(time.RFC3339Nano)
	case slog.KindGroup:
		m := map[string]any{}
		for _, a := range v.Group() {
			if !SecretKey(a.Key) {
				m[a.Key] = attrValue(a.Value)
			}
		}
		return m
	}
	switch x := v.Any().(type) {
	case error:
		return x.Error()
	case fmt.Stringer:
		return x.String()
	case []string:
		return x
	}
	return fmt.Sprint(v.Any())
}

// scrubAttrs returns attrs without secret keys (also inside groups) and
// with secret-shaped strings redacted, for the file output.
func scrubAttrs(attrs []slog.Attr) []slog.Attr {
	out := attrs[:0:0]
	for _, a := range attrs {
		if SecretKey(a.Key) {
			continue
		}
		v := a.Value.Resolve()
		switch v.Kind() {
		case slog.KindString:
			if SecretValue(v.String()) {
				v = slog.StringValue(Redacted)
			}
		case slog.KindGroup:
			v = slog.GroupValue(scrubAttrs(v.Group())...)
		case slog.KindAny:
			if s, ok := scrubValue(v.Any()).(string); ok && s == Redacted {
				v = slog.StringValue(Redacted)
			}
		}
		out = append(out, slog.Attr{Key: a.Key, Value: v})
	}
	return out
}

// attrsOf writes an entry as log attributes, for the file output of
// Record: the named fields, then the detail sorted by key.
func attrsOf(e Entry) []slog.Attr {
	var out []slog.Attr
	for _, f := range []struct{ k, v string }{{"actor", e.Actor}, {"client", e.Address}, {"namespace", e.Namespace},
		{"target", e.Target}, {"outcome", e.Outcome}} {
		if f.v != "" {
			out = append(out, slog.String(f.k, f.v))
		}
	}
	detail := scrubMap(e.Detail)
	keys := make([]string, 0, len(detail))
	for k := range detail {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, slog.Any(k, detail[k]))
	}
	return scrubAttrs(out)
}
