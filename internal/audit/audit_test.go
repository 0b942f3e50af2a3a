package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/metadata"
)

// fakeStore records what is written; block, when set, holds every write
// until it is closed, and fail makes writes fail.
type fakeStore struct {
	mu      sync.Mutex
	batches [][]metadata.AuditEntry
	prunes  []time.Time
	block   chan struct{}
	fail    error
}

func (s *fakeStore) AppendAudit(_ context.Context, es []metadata.AuditEntry) error {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.batches = append(s.batches, append([]metadata.AuditEntry(nil), es...))
	return nil
}

func (s *fakeStore) PruneAudit(_ context.Context, before time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prunes = append(s.prunes, before)
	return 0, nil
}

func (s *fakeStore) entries() []metadata.AuditEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []metadata.AuditEntry
	for _, b := range s.batches {
		out = append(out, b...)
	}
	return out
}

// TestMapping logs the auth service's records through the handler and
// checks each entry's fields.
func TestMapping(t *testing.T) {
	st := &fakeStore{}
	var file bytes.Buffer
	l := New(st, Options{Replica: "r1", Out: slog.NewJSONHandler(&file, nil).WithAttrs([]slog.Attr{slog.String("log", "audit")})})
	lg := slog.New(l.Handler())
	lg.Info("user created", "actor", "admin", "user", "alice", "admin", false)
	lg.Warn("login failed", "user", "bob", "client", "10.1.2.3", "reason", "invalid user name or password")
	lg.Info("login", "user", "team+ci", "client", "10.1.2.4")
	lg.Info("robot created", "actor", "admin", "robot", "team+ci", "scopes", "team/*", "actions", "pull")
	lg.Info("access denied", "subject", "bob", "client", "10.1.2.3", "denied", 1, "resources", "repository:x/y:push")
	lg.Warn("login refused", "user", "bob", "client", "10.1.2.3", "reason", "rate limited")
	lg.Info("member set", "actor", "admin", "namespace", "team", "user", "carol", "role", "owner")
	lg.Info("immutable rule added", "actor", "admin", "id", int64(7), "repositories", "team/*", "tags", "v*")
	lg.Info("retention policy added", "actor", "admin", "id", int64(8), "repositories", "*/ci")
	lg.Warn("refresh failed", "client", "10.1.2.5", "reason", "not a refresh token")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := st.entries()
	want := []metadata.AuditEntry{
		{Action: "user created", Actor: "admin", Target: "alice", Outcome: "success", Detail: `{"admin":false}`},
		{Action: "login failed", Actor: "bob", Address: "10.1.2.3", Outcome: "failure", Detail: `{"reason":"invalid user name or password"}`},
		{Action: "login", Actor: "team+ci", Address: "10.1.2.4", Namespace: "team", Outcome: "success", Detail: `{}`},
		{Action: "robot created", Actor: "admin", Namespace: "team", Target: "team+ci", Outcome: "success", Detail: `{"actions":"pull","scopes":"team/*"}`},
		{Action: "access denied", Actor: "bob", Address: "10.1.2.3", Outcome: "denied", Detail: `{"denied":1,"resources":"repository:x/y:push"}`},
		{Action: "login refused", Actor: "bob", Address: "10.1.2.3", Outcome: "denied", Detail: `{"reason":"rate limited"}`},
		{Action: "member set", Actor: "admin", Namespace: "team", Target: "carol", Outcome: "success", Detail: `{"role":"owner"}`},
		{Action: "immutable rule added", Actor: "admin", Namespace: "team", Target: "7", Outcome: "success", Detail: `{"repositories":"team/*","tags":"v*"}`},
		{Action: "retention policy added", Actor: "admin", Target: "8", Outcome: "success", Detail: `{"repositories":"*/ci"}`},
		{Action: "refresh failed", Address: "10.1.2.5", Outcome: "failure", Detail: `{"reason":"not a refresh token"}`},
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.At.IsZero() || g.Replica != "r1" {
			t.Errorf("entry %d: time %v, replica %q", i, g.At, g.Replica)
		}
		g.At, g.Replica = time.Time{}, ""
		if g != w {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	// The file output has every record, as the JSON handler writes it.
	lines := strings.Split(strings.TrimSpace(file.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("file has %d lines, want %d:\n%s", len(lines), len(want), file.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["msg"] != "user created" || first["log"] != "audit" || first["actor"] != "admin" || first["user"] != "alice" {
		t.Errorf("file line %s", lines[0])
	}
}

// TestNoSecrets: attributes whose key names a secret and values shaped
// like berth's secrets or tokens reach neither the store nor the file,
// through the handler (with attrs and groups) or Record.
func TestNoSecrets(t *testing.T) {
	robotSecret := "berth_" + "Xk2P9qLmN4vR7tY1wZ3aB5cD8eF0gH6jK2lM4nO"
	refresh := "berth-refresh-" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_xy"
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MX0.c2lnbmF0dXJlc2lnbmF0dXJl"
	secrets := []string{"hunter2-password", "s3cr3t-value", "tok-value", robotSecret, refresh, jwt}
	st := &fakeStore{}
	var file bytes.Buffer
	l := New(st, Options{Out: slog.NewJSONHandler(&file, nil)})
	lg := slog.New(l.Handler()).With("token", "tok-value", "kept", "yes")
	lg.Info("user created", "actor", "admin", "user", "alice", "password", "hunter2-password", "Client_Secret", "s3cr3t-value")
	lg.Info("login failed", "user", robotSecret, "reason", "bad", "authorization", "Bearer "+jwt,
		slog.Group("creds", "refresh_token", refresh, "name", "n"))
	lg.WithGroup("req").Info("request", "password", "hunter2-password", "header", jwt, "name", "n2")
	lg.Info("login", "user", "alice", "note", jwt, "err", errors.New(refresh))
	l.Record(Entry{Actor: "alice", Action: "manifest pushed", Target: jwt, Detail: map[string]any{
		"password": "hunter2-password", "digest": "sha256:abc", "nested": map[string]any{"secret": "s3cr3t-value", "ok": 1},
		"list": []string{robotSecret, "x"}}})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	entries := st.entries()
	if len(entries) != 5 {
		t.Fatalf("%d entries, want 5", len(entries))
	}
	all, _ := json.Marshal(entries)
	for _, s := range secrets {
		if strings.Contains(string(all), s) {
			t.Errorf("secret %q is in the entries: %s", s, all)
		}
		if strings.Contains(file.String(), s) {
			t.Errorf("secret %q is in the file output:\n%s", s, file.String())
		}
	}
	for _, kept := range []string{`"kept":"yes"`, `"digest":"sha256:abc"`, `"ok":1`, `"name":"n"`, `"name":"n2"`} {
		if !strings.Contains(string(all), strings.ReplaceAll(kept, `"`, `\"`)) {
			t.Errorf("%s is missing from the entries: %s", kept, all)
		}
	}
	if entries[1].Actor != Redacted || entries[4].Target != Redacted {
		t.Errorf("secret-shaped actor or target not redacted: %+v", entries)
	}
	for _, name := range []string{"alice", "berth_ci", "team+berth_robot", "berth-pull-lowercasename-but-long-enough-to-match"} {
		if SecretValue(name) {
			t.Errorf("SecretValue(%q) = true for a name", name)
		}
	}
}

// TestBatching: entries are written together within the flush interval,
// a store that hangs never blocks a caller, a full queue drops and
// counts, and Close writes what is left.
func TestBatching(t *testing.T) {
	t.Run("flush", func(t *testing.T) {
		st := &fakeStore{}
		l := New(st, Options{FlushInterval: 50 * time.Millisecond})
		defer l.Close()
		for i := range 100 {
			l.Record(Entry{Action: "a", Actor: "x", Detail: map[string]any{"i": i}})
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(st.entries()) < 100 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := len(st.entries()); n != 100 {
			t.Fatalf("%d entries written after the flush interval, want 100", n)
		}
		st.mu.Lock()
		batches := len(st.batches)
		st.mu.Unlock()
		if batches > 3 {
			t.Errorf("100 entries recorded at once took %d transactions", batches)
		}
	})
	t.Run("hung store", func(t *testing.T) {
		st := &fakeStore{block: make(chan struct{})}
		var errs bytes.Buffer
		l := New(st, Options{FlushInterval: 10 * time.Millisecond, QueueSize: 10, Log: slog.New(slog.NewTextHandler(&errs, nil))})
		lg := slog.New(l.Handler())
		start := time.Now()
		for range 1000 {
			lg.Info("login", "user", "x")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("1000 records with a hung store took %s", d)
		}
		close(st.block) // the store answers again
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		got := st.entries()
		if len(got) < 2 || len(got) > 22 {
			t.Fatalf("%d entries written, want the queue's worth and the drop report", len(got))
		}
		var report *metadata.AuditEntry
		for i := range got {
			if got[i].Action == "audit entries dropped" {
				report = &got[i]
			}
		}
		if report == nil || report.Outcome != OutcomeFailure || !strings.Contains(report.Detail, `"count":`) {
			t.Fatalf("no report of the dropped entries in %+v", got)
		}
		if !strings.Contains(errs.String(), "audit entries dropped") {
			t.Errorf("the drop was not logged: %s", errs.String())
		}
	})
	t.Run("failing store retries", func(t *testing.T) {
		st := &fakeStore{fail: errors.New("database down")}
		var errs bytes.Buffer
		l := New(st, Options{FlushInterval: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&errs, nil))})
		l.Record(Entry{Action: "a"})
		time.Sleep(100 * time.Millisecond)
		st.mu.Lock()
		st.fail = nil
		st.mu.Unlock()
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := len(st.entries()); n != 1 {
			t.Fatalf("%d entries after the store came back, want 1", n)
		}
		if c := strings.Count(errs.String(), "writing audit entries failed"); c != 1 {
			t.Errorf("the failure was logged %d times, want once:\n%s", c, errs.String())
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("close", func(t *testing.T) {
		st := &fakeStore{}
		l := New(st, Options{FlushInterval: time.Hour})
		for range 1200 {
			l.Record(Entry{Action: "a"})
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if n := len(st.entries()); n != 1200 {
			t.Fatalf("%d entries after Close, want 1200", n)
		}
		l.Record(Entry{Action: "late"}) // dropped, no panic
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRetention prunes at start and every interval with the cutoff of the
// retention period, and not at all without one.
func TestRetention(t *testing.T) {
	st := &fakeStore{}
	l := New(st, Options{Retention: 90 * 24 * time.Hour, PruneInterval: 20 * time.Millisecond})
	time.Sleep(100 * time.Millisecond)
	l.Close()
	st.mu.Lock()
	prunes := append([]time.Time(nil), st.prunes...)
	st.mu.Unlock()
	if len(prunes) < 2 {
		t.Fatalf("%d prunes in 100ms every 20ms", len(prunes))
	}
	if age := time.Since(prunes[0]); age < 90*24*time.Hour || age > 90*24*time.Hour+time.Minute {
		t.Errorf("pruned before %v, %s ago; want 90 days", prunes[0], age)
	}
	st2 := &fakeStore{}
	l2 := New(st2, Options{PruneInterval: 10 * time.Millisecond})
	time.Sleep(50 * time.Millisecond)
	l2.Close()
	if len(st2.prunes) != 0 {
		t.Errorf("pruned %d times with retention 0", len(st2.prunes))
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-01-02T15:04:05Z":      time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
		"2026-01-02T15:04:05+02:00": time.Date(2026, 1, 2, 13, 4, 5, 0, time.UTC),
		"1h":                        now.Add(-time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"0s":                        now,
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-1h", "2026-01-02", "1w", "-3d"} {
		if _, err := ParseTime(bad, now); err == nil {
			t.Errorf("ParseTime(%q) succeeded", bad)
		}
	}
}
