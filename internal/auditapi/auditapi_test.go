package auditapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/adminapi"
	"github.com/berth-registry/berth/internal/auditapi"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/metadata"
	"github.com/berth-registry/berth/internal/token"
)

const adminPass = "admin-password-for-tests"

// setup serves the admin API with the audit endpoint on a real SQLite
// store holding 40 entries (one a minute, from an hour ago), and a
// non-admin user bob.
func setup(t *testing.T) (*httptest.Server, []metadata.AuditEntry) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := metadata.OpenSQLite(ctx, filepath.Join(dir, "berth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	keys, err := token.LoadKeys(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	discard := slog.New(slog.DiscardHandler) // the auth service's own records stay out of the store
	svc := auth.New(store, keys, auth.Options{Issuer: "berth", Service: "berth"}, discard)
	if _, err := svc.Bootstrap(ctx, adminPass); err != nil {
		t.Fatal(err)
	}
	admin, err := svc.Login(ctx, "admin", adminPass, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateUser(ctx, admin, "bob", "bob-password-1", false); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Hour).Truncate(time.Minute)
	var entries []metadata.AuditEntry
	for i := range 40 {
		entries = append(entries, metadata.AuditEntry{At: start.Add(time.Duration(i) * time.Minute),
			Actor: []string{"alice", "bob"}[i%2], Address: "10.0.0.9", Action: []string{"login", "login failed", "robot created", "user created"}[i%4],
			Namespace: []string{"team", "", "ops"}[i%3], Target: fmt.Sprint("t", i), Outcome: "success", Detail: fmt.Sprintf(`{"i":%d}`, i), Replica: "r"})
	}
	if err := store.AppendAudit(ctx, entries); err != nil {
		t.Fatal(err)
	}
	api := adminapi.New(svc, discard, func(r *http.Request) string { return "127.0.0.1" })
	auditapi.New(store).Register(api)
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, entries
}

func get(t *testing.T, srv *httptest.Server, user, pass, query string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/audit"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func list(t *testing.T, srv *httptest.Server, query string) auditapi.PageJSON {
	t.Helper()
	status, body := get(t, srv, "admin", adminPass, query)
	if status != http.StatusOK {
		t.Fatalf("GET /api/v1/audit%s: %d %s", query, status, body)
	}
	var page auditapi.PageJSON
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("GET /api/v1/audit%s: %v: %s", query, err, body)
	}
	return page
}

// targets lists the entries' targets; want lists those of the test
// entries that keep selects, newest first.
func targets(page auditapi.PageJSON) string {
	var out []string
	for _, e := range page.Entries {
		out = append(out, e.Target)
	}
	return strings.Join(out, " ")
}

func want(entries []metadata.AuditEntry, keep func(i int) bool) string {
	var out []string
	for i := len(entries) - 1; i >= 0; i-- {
		if keep(i) {
			out = append(out, entries[i].Target)
		}
	}
	return strings.Join(out, " ")
}

func TestListFilters(t *testing.T) {
	srv, entries := setup(t)
	all := list(t, srv, "")
	if got := targets(all); got != want(entries, func(int) bool { return true }) {
		t.Fatalf("all entries: %s", got)
	}
	if all.Next != "" {
		t.Errorf("next %q on a page that is not full", all.Next)
	}
	e := all.Entries[0]
	if e.Actor != "bob" || e.Address != "10.0.0.9" || e.Action != "user created" || e.Outcome != "success" || e.Replica != "r" ||
		string(e.Detail) != `{"i":39}` || e.ID == 0 {
		t.Errorf("newest entry %+v", e)
	}
	if at, err := time.Parse(time.RFC3339Nano, e.At); err != nil || !at.Equal(entries[39].At) {
		t.Errorf("time %q, want %s", e.At, entries[39].At)
	}
	start := entries[0].At
	for _, c := range []struct {
		query string
		keep  func(i int) bool
	}{
		{"?actor=alice", func(i int) bool { return i%2 == 0 }},
		{"?namespace=ops", func(i int) bool { return i%3 == 2 }},
		{"?action=" + url.QueryEscape("login failed"), func(i int) bool { return i%4 == 1 }},
		{"?actor=bob&namespace=team", func(i int) bool { return i%2 == 1 && i%3 == 0 }},
		{"?since=" + start.Add(30*time.Minute).UTC().Format(time.RFC3339), func(i int) bool { return i >= 30 }},
		{"?until=" + url.QueryEscape(start.Add(5*time.Minute).Format(time.RFC3339)), func(i int) bool { return i < 5 }},
		{"?since=" + start.Add(10*time.Minute).UTC().Format(time.RFC3339) + "&until=" + start.Add(13*time.Minute).UTC().Format(time.RFC3339),
			func(i int) bool { return i >= 10 && i < 13 }},
		{"?since=2h", func(int) bool { return true }},
		{"?until=2h", func(int) bool { return false }},
		{"?actor=nobody", func(int) bool { return false }},
	} {
		if got, w := targets(list(t, srv, c.query)), want(entries, c.keep); got != w {
			t.Errorf("%s: got [%s], want [%s]", c.query, got, w)
		}
	}
	// An age reaches back from the server's now, which lies between
	// before and after: every entry at or after after-30m is in, every
	// entry before before-30m is out, and what is in is the newest ones.
	before := time.Now()
	recent := list(t, srv, "?since=30m")
	after := time.Now()
	least, most := 0, 0
	for _, e := range entries {
		if !e.At.Before(after.Add(-30 * time.Minute)) {
			least++
		}
		if !e.At.Before(before.Add(-30 * time.Minute)) {
			most++
		}
	}
	n := len(recent.Entries)
	if n < least || n > most || n == 0 {
		t.Fatalf("since=30m: %d entries, want %d to %d", n, least, most)
	}
	if got, w := targets(recent), want(entries, func(i int) bool { return i >= len(entries)-n }); got != w {
		t.Errorf("since=30m: got [%s], want the newest %d [%s]", got, n, w)
	}
}

func TestListPaging(t *testing.T) {
	srv, entries := setup(t)
	var got []string
	query := "?limit=7&actor=alice"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		page := list(t, srv, query)
		if len(page.Entries) > 7 {
			t.Fatalf("page of %d entries with limit 7", len(page.Entries))
		}
		for _, e := range page.Entries {
			got = append(got, e.Target)
		}
		if page.Next == "" {
			break
		}
		if len(page.Entries) != 7 {
			t.Fatalf("next %q on a page of %d entries", page.Next, len(page.Entries))
		}
		query = "?limit=7&actor=alice&before=" + page.Next
	}
	if w := want(entries, func(i int) bool { return i%2 == 0 }); strings.Join(got, " ") != w {
		t.Fatalf("pages gave [%s], want [%s]", strings.Join(got, " "), w)
	}
	// A full last page has a next cursor whose page is empty.
	page := list(t, srv, "?limit=20&actor=alice")
	if page.Next == "" {
		t.Fatal("no next cursor on a full page")
	}
	if rest := list(t, srv, "?limit=20&actor=alice&before="+page.Next); len(rest.Entries) != 0 || rest.Next != "" {
		t.Fatalf("page after the last: %+v", rest)
	}
}

func TestListRefusals(t *testing.T) {
	srv, _ := setup(t)
	if status, _ := get(t, srv, "", "", ""); status != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", status)
	}
	if status, body := get(t, srv, "bob", "bob-password-1", ""); status != http.StatusForbidden {
		t.Errorf("as a non-admin: %d %s, want 403", status, body)
	}
	for _, q := range []string{"?limit=0", "?limit=abc", "?limit=1001", "?limit=-3", "?before=0", "?before=x", "?since=yesterday",
		"?until=2026-13-01T00:00:00Z", "?since=1h&until=2h", "?user=alice", "?actor=a&actor=b", "?since=-1h"} {
		status, body := get(t, srv, "admin", adminPass, q)
		if status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, status, body)
			continue
		}
		var e struct{ Error string }
		if err := json.Unmarshal(body, &e); err != nil || e.Error == "" || strings.Contains(e.Error, "\n") {
			t.Errorf("%s: error body %s, want one line", q, body)
		}
	}
}
