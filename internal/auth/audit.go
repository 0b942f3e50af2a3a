package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Audit records that a client can cause at will (refused logins, denied
// scopes, logins) are limited per client (an IPv4 address or an IPv6 /64:
// see clientKey): a bucket of auditBurst records refilled at auditRate per
// second. On top of that, every record a client causes, failed password
// checks included, comes out of one registry-wide bucket (globalBurst,
// globalRate), so that many addresses together cannot grow the log without
// bound either. Records over a limit are dropped and counted; the next
// record written says how many ("suppressed" for the client's,
// "suppressed_all" for the registry's). Administrative changes are never
// dropped.
const (
	auditBurst  = 60
	auditRate   = 1.0
	globalBurst = 2000
	globalRate  = 50.0
	// maxLoggedName is how much of a name presented by a client is logged.
	maxLoggedName = 128
	// maxDeniedListed is how many denied resources one record lists.
	maxDeniedListed = 10
)

// auditLog writes the audit log, limiting what unauthenticated requests
// can make it write.
type auditLog struct {
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	global  bucket
}

// bucket is a token bucket that counts what it refused.
type bucket struct {
	tokens     float64
	at         time.Time
	suppressed int
}

// take takes one token at now from a bucket of burst tokens refilled at
// rate per second; it returns false when it is empty, and else the number
// of refusals since the last token taken.
func (b *bucket) take(now time.Time, burst, rate float64) (int, bool) {
	if b.at.IsZero() {
		b.tokens, b.at = burst, now
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*rate)
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

// allow takes one record from the registry's bucket and, for a limited
// record, from client's; it returns false when either is empty, and else
// the numbers of records dropped before this one.
func (a *auditLog) allow(client string, limited bool) (mine, all int, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if limited {
		key := clientKey(client)
		b := a.buckets[key]
		if b == nil {
			if len(a.buckets) > 100000 {
				for k, v := range a.buckets { // forget full buckets first
					if v.suppressed == 0 && now.Sub(v.at).Seconds()*auditRate+v.tokens >= auditBurst {
						delete(a.buckets, k)
					}
				}
			}
			b = &bucket{}
			a.buckets[key] = b
		}
		if mine, ok = b.take(now, auditBurst, auditRate); !ok {
			return 0, 0, false
		}
	}
	if all, ok = a.global.take(now, globalBurst, globalRate); !ok {
		return 0, 0, false
	}
	return mine, all, true
}

// record writes one client-caused record, sanitizing the names in it, if
// the budgets allow.
func (a *auditLog) record(level slog.Level, limited bool, client, msg string, args ...any) {
	mine, all, ok := a.allow(client, limited)
	if !ok {
		return
	}
	for i := 1; i < len(args); i += 2 {
		if s, isStr := args[i].(string); isStr {
			args[i] = cleanName(s)
		}
	}
	if mine > 0 {
		args = append(args, "suppressed", mine)
	}
	if all > 0 {
		args = append(args, "suppressed_all", all)
	}
	a.log.Log(context.Background(), level, msg, args...)
}

// info and warn write records limited per client; failure writes the
// record of a failed password check, which the login limits bound per
// client.
func (a *auditLog) info(client, msg string, args ...any) {
	a.record(slog.LevelInfo, true, client, msg, args...)
}

func (a *auditLog) warn(client, msg string, args ...any) {
	a.record(slog.LevelWarn, true, client, msg, args...)
}

func (a *auditLog) failure(client, msg string, args ...any) {
	a.record(slog.LevelWarn, false, client, msg, args...)
}

// clientKey is what limits count a client address under: the address, or
// for IPv6 its /64, which one host can rotate through at will.
func clientKey(client string) string {
	a, err := netip.ParseAddr(client)
	if err != nil || !a.Is6() || a.Is4In6() {
		return client
	}
	p, err := a.Prefix(64)
	if err != nil {
		return client
	}
	return p.String()
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
