package auth

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Audit records that a client can cause at will (refused logins, denied
// scopes, logins) are limited per client address: a bucket of auditBurst
// records refilled at auditRate per second. Records over the limit are
// dropped and counted; the client's next record says how many
// ("suppressed"). Failed password checks are never dropped (the login
// limits bound them), nor are administrative changes.
const (
	auditBurst = 60
	auditRate  = 1.0
	// maxLoggedName is how much of a name presented by a client is logged.
	maxLoggedName = 128
	// maxDeniedListed is how many denied resources one record lists.
	maxDeniedListed = 10
)

// auditLog writes the audit log, limiting per client what unauthenticated
// requests can make it write.
type auditLog struct {
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*auditBucket
}

type auditBucket struct {
	tokens     float64
	at         time.Time
	suppressed int
}

// allow takes one record from client's bucket; it returns false when the
// bucket is empty, and else the number of records dropped before this one.
func (a *auditLog) allow(client string) (int, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	b := a.buckets[client]
	if b == nil {
		if len(a.buckets) > 100000 {
			for k, v := range a.buckets { // forget full buckets first
				if v.suppressed == 0 && now.Sub(v.at).Seconds()*auditRate+v.tokens >= auditBurst {
					delete(a.buckets, k)
				}
			}
		}
		b = &auditBucket{tokens: auditBurst, at: now}
		a.buckets[client] = b
	}
	b.tokens = min(auditBurst, b.tokens+now.Sub(b.at).Seconds()*auditRate)
	b.at = now
	if b.tokens < 1 {
		b.suppressed++
		return 0, false
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return n, true
}

// record writes one client-caused record, sanitizing the names in it; a
// limited record only if the client's budget allows.
func (a *auditLog) record(level slog.Level, limited bool, client, msg string, args ...any) {
	n := 0
	if limited {
		var ok bool
		if n, ok = a.allow(client); !ok {
			return
		}
	}
	for i := 1; i < len(args); i += 2 {
		if s, isStr := args[i].(string); isStr {
			args[i] = cleanName(s)
		}
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	a.log.Log(context.Background(), level, msg, args...)
}

// info and warn write records limited per client; failure writes the
// record of a failed password check, which the login limits bound.
func (a *auditLog) info(client, msg string, args ...any) {
	a.record(slog.LevelInfo, true, client, msg, args...)
}

func (a *auditLog) warn(client, msg string, args ...any) {
	a.record(slog.LevelWarn, true, client, msg, args...)
}

func (a *auditLog) failure(client, msg string, args ...any) {
	a.record(slog.LevelWarn, false, client, msg, args...)
}

// change writes the record of an administrative change (never dropped).
func (a *auditLog) change(msg string, args ...any) { a.log.Info(msg, args...) }

// cleanName makes a client-supplied string safe to log: control
// characters and invalid UTF-8 become '?', and it is cut to maxLoggedName
// bytes with its full length noted.
func cleanName(s string) string {
	clean := len(s) <= maxLoggedName
	for i := 0; clean && i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
		}
		i += size
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if i >= maxLoggedName {
			fmt.Fprintf(&b, "...(%d bytes)", len(s))
			break
		}
		if r == utf8.RuneError || unicode.IsControl(r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
