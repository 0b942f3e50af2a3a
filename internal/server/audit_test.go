package server

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/auditapi"
	"github.com/berth-registry/berth/internal/config"
)

// auditPage lists the audit log through the API as admin, waiting up to
// 5 seconds for an entry that match accepts (entries are written in the
// background).
func auditPage(t *testing.T, base, query string, match func(auditapi.EntryJSON) bool) auditapi.PageJSON {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := do(t, "GET", base+"/api/v1/audit"+query, adminHdr(), nil)
		if r.status != 200 {
			t.Fatalf("GET /api/v1/audit%s: %d %s", query, r.status, r.body)
		}
		var page auditapi.PageJSON
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Entries {
			if match(e) {
				return page
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no such entry in %s", r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAuditLogInTheStore: the auth service's records reach the metadata
// store and the API, with the file output as before; without it (none)
// no file is written and the store still has them.
func TestAuditLogInTheStore(t *testing.T) {
	for _, output := range []string{"file", "none"} {
		t.Run(output, func(t *testing.T) {
			ts, dir := authServer(t, func(c *config.Config) { c.AuditLog = output })
			if _, r := getToken(t, ts.URL, "alice", "wrong-password-1", "repository:team/app:pull"); r.status != 401 {
				t.Fatalf("wrong password: %d", r.status)
			}
			page := auditPage(t, ts.URL, "?action="+url.QueryEscape("login failed"), func(e auditapi.EntryJSON) bool { return e.Actor == "alice" })
			e := page.Entries[0]
			if e.Outcome != "failure" || e.Address != "127.0.0.1" || e.Replica == "" || !strings.Contains(string(e.Detail), "reason") {
				t.Errorf("failed login entry %+v", e)
			}
			page = auditPage(t, ts.URL, "?actor=admin&action="+url.QueryEscape("member set"), func(e auditapi.EntryJSON) bool { return e.Target == "bob" })
			if len(page.Entries) != 2 || page.Entries[0].Namespace != "team" || page.Entries[0].Target != "bob" || page.Entries[1].Target != "alice" {
				t.Errorf("member entries %+v", page.Entries)
			}
			for _, e := range auditPage(t, ts.URL, "?limit=1000", func(auditapi.EntryJSON) bool { return true }).Entries {
				if strings.Contains(string(e.Detail)+e.Actor+e.Target, "wrong-password-1") ||
					strings.Contains(string(e.Detail)+e.Actor+e.Target, "alice-pass-1") {
					t.Errorf("a password is in entry %+v", e)
				}
			}
			_, err := os.Stat(filepath.Join(dir, "audit.log"))
			if output == "file" && err != nil {
				t.Errorf("audit_log file: %v", err)
			}
			if output == "none" && !os.IsNotExist(err) {
				t.Errorf("audit_log none wrote audit.log (%v)", err)
			}
			if output == "file" {
				var sawFailure bool
				for _, rec := range auditRecords(t, dir) {
					if rec["msg"] == "login failed" && rec["user"] == "alice" && rec["log"] == "audit" {
						sawFailure = true
					}
				}
				if !sawFailure {
					t.Error("the file has no record of the failed login")
				}
			}
		})
	}
}
