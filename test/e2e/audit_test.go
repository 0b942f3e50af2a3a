package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// auditEntry is an entry of GET /api/v1/audit.
type auditEntry struct {
	ID        int64           `json:"id"`
	At        time.Time       `json:"at"`
	Actor     string          `json:"actor"`
	Address   string          `json:"address"`
	Action    string          `json:"action"`
	Namespace string          `json:"namespace"`
	Target    string          `json:"target"`
	Outcome   string          `json:"outcome"`
	Detail    json.RawMessage `json:"detail"`
	Replica   string          `json:"replica"`
}

type auditPage struct {
	Entries []auditEntry `json:"entries"`
	Next    string       `json:"next"`
}

// audit lists the audit log through b as admin with the query params; it
// returns the page and the raw body.
func (b *authBerth) audit(t *testing.T, params url.Values) (auditPage, []byte) {
	t.Helper()
	body := b.admin(t, http.MethodGet, "/api/v1/audit?"+params.Encode(), nil, http.StatusOK)
	var page auditPage
	mustUnmarshal(t, "audit page", body, &page)
	return page, body
}

// auditAll follows the next cursors from params and returns every entry,
// and every raw page body.
func (b *authBerth) auditAll(t *testing.T, params url.Values) ([]auditEntry, [][]byte) {
	t.Helper()
	var all []auditEntry
	var bodies [][]byte
	q := url.Values{}
	for k, v := range params {
		q[k] = v
	}
	for range 100 {
		page, body := b.audit(t, q)
		all, bodies = append(all, page.Entries...), append(bodies, body)
		if page.Next == "" {
			return all, bodies
		}
		q.Set("before", page.Next)
	}
	t.Fatal("audit paging did not end after 100 pages")
	return nil, nil
}

func ids(es []auditEntry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// findEntry returns the first entry with action and actor, or nil.
func findEntry(es []auditEntry, action, actor string) *auditEntry {
	for i := range es {
		if es[i].Action == action && es[i].Actor == actor {
			return &es[i]
		}
	}
	return nil
}

// TestAudit runs two replicas on one PostgreSQL database and S3 bucket:
// accounts are created and logins made through either, and the audit log
// then reads the same through both, filters and pages, and holds no
// password, secret or token; neither do the replicas' logs and audit
// files.
func TestAudit(t *testing.T) {
	rs := startReplicas(t, "--log-level", "debug")
	a, b := rs.a, rs.b
	start := time.Now().Add(-time.Second) // PostgreSQL's and our clocks are one

	// Accounts through both replicas; the secrets the test must not find.
	userPass := a.addUser(t, "carol", false)
	b.addNamespace(t, "audteam", false)
	a.setMember(t, "audteam", "carol", "reader")
	robot, robotSecret := b.addRobot(t, "audteam", "ci", []string{"audteam/*"}, []string{"pull", "push"}, "")
	wrongPass := "wrong-" + randomHex(t, 12)
	wrongSecret := "berth_" + randomHex(t, 20) + "XYZ"
	secrets := map[string]string{"admin password": rs.pass, "carol's password": userPass, "wrong password": wrongPass,
		"robot secret": robotSecret, "wrong robot secret": wrongSecret}

	// Logins at the token endpoint, right and wrong, on both replicas.
	secrets["carol's token"] = a.token(t, "carol", userPass, "repository:audteam/app:pull").Token
	if r := authDo(t, http.MethodGet, b.tokenURL("repository:audteam/app:pull"), nil, reqBasic("carol", wrongPass)); r.Status != http.StatusUnauthorized {
		t.Fatalf("token with a wrong password: %s", r)
	}
	secrets["robot's token"] = b.token(t, robot, robotSecret, "repository:audteam/app:pull,push").Token
	if r := authDo(t, http.MethodGet, a.tokenURL("repository:audteam/app:pull"), nil, reqBasic(robot, wrongSecret)); r.Status != http.StatusUnauthorized {
		t.Fatalf("token with a wrong robot secret: %s", r)
	}
	// Denied scopes, and a pull credential used to log in.
	if tok := b.token(t, "carol", userPass, "repository:audteam/app:push"); tok.Token == "" {
		t.Fatal("no token")
	}
	cred := authDo(t, http.MethodPost, a.URL+"/api/v1/pull-credentials", []byte(`{"ttl":"1h"}`), reqBasic("carol", userPass),
		reqHeader("Content-Type", "application/json"))
	var pc struct{ Username, Password string }
	if cred.Status != http.StatusCreated || json.Unmarshal(cred.Body, &pc) != nil || pc.Password == "" {
		t.Fatalf("pull credential: %s", cred)
	}
	secrets["pull credential"] = pc.Password
	secrets["pull credential's token"] = b.token(t, "carol", pc.Password, "repository:audteam/app:pull").Token

	// Wait until the last record is in the store, then cut the window:
	// every entry before the cut is written within a flush interval.
	window := url.Values{"since": {start.UTC().Format(time.RFC3339Nano)}, "limit": {"1000"}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		page, _ := a.audit(t, url.Values{"actor": {"carol"}, "since": window["since"], "limit": {"1000"}})
		if findEntry(page.Entries, "pull credential issued", "carol") != nil && len(page.Entries) >= 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol's entries did not all arrive: %+v", page.Entries)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cut := time.Now()
	time.Sleep(time.Second)
	window.Set("until", cut.UTC().Format(time.RFC3339Nano))

	// The same entries through either replica, in the same order.
	onA, _ := a.audit(t, window)
	onB, _ := b.audit(t, window)
	if len(onA.Entries) == 0 || !slices.Equal(ids(onA.Entries), ids(onB.Entries)) {
		t.Fatalf("replicas disagree:\nA: %v\nB: %v", ids(onA.Entries), ids(onB.Entries))
	}
	for i := range onA.Entries {
		ea, eb := onA.Entries[i], onB.Entries[i]
		if !ea.At.Equal(eb.At) || ea.Actor != eb.Actor || ea.Action != eb.Action || string(ea.Detail) != string(eb.Detail) || ea.Replica != eb.Replica {
			t.Fatalf("entry %d differs:\nA: %+v\nB: %+v", ea.ID, ea, eb)
		}
		if i > 0 && ea.ID >= onA.Entries[i-1].ID {
			t.Fatalf("entries not newest first: %v", ids(onA.Entries))
		}
	}
	es := onA.Entries
	for _, want := range []struct{ action, actor, namespace, target, outcome string }{
		{"user created", "admin", "", "carol", "success"},
		{"namespace created", "admin", "audteam", "", "success"},
		{"member set", "admin", "audteam", "carol", "success"},
		{"robot created", "admin", "audteam", robot, "success"},
		{"login", "carol", "", "", "success"},
		{"login failed", "carol", "", "", "failure"},
		{"login", robot, "audteam", "", "success"},
		{"login failed", robot, "audteam", "", "failure"},
		{"access denied", "carol", "", "", "denied"},
		{"pull credential issued", "carol", "", "", "success"},
	} {
		e := findEntry(es, want.action, want.actor)
		if e == nil {
			t.Errorf("no %q entry of %s in %+v", want.action, want.actor, es)
			continue
		}
		if e.Namespace != want.namespace || e.Target != want.target || e.Outcome != want.outcome || e.Replica == "" {
			t.Errorf("%q of %s: %+v, want namespace %q, target %q, outcome %q", want.action, want.actor, e, want.namespace, want.target, want.outcome)
		}
		if strings.HasPrefix(want.action, "login") && e.Address != "127.0.0.1" {
			t.Errorf("%q of %s from %q, want 127.0.0.1", want.action, want.actor, e.Address)
		}
	}

	// Filters, through both replicas.
	filtered := func(k, v string) []auditEntry {
		t.Helper()
		q := url.Values{k: {v}, "since": window["since"], "until": window["until"], "limit": {"1000"}}
		fa, _ := a.audit(t, q)
		fb, _ := b.audit(t, q)
		if !slices.Equal(ids(fa.Entries), ids(fb.Entries)) {
			t.Errorf("%s=%s: A %v, B %v", k, v, ids(fa.Entries), ids(fb.Entries))
		}
		return fa.Entries
	}
	check := func(k, v string, got []auditEntry, field func(auditEntry) string, wantActions ...string) {
		t.Helper()
		var n int
		for _, e := range es {
			if field(e) == v {
				n++
			}
		}
		if len(got) != n || n == 0 {
			t.Errorf("%s=%s: %d entries, want the window's %d", k, v, len(got), n)
		}
		var actions []string
		for _, e := range got {
			if field(e) != v {
				t.Errorf("%s=%s returned %+v", k, v, e)
			}
			actions = append(actions, e.Action)
		}
		for _, w := range wantActions {
			if !slices.Contains(actions, w) {
				t.Errorf("%s=%s: no %q among %v", k, v, w, actions)
			}
		}
	}
	check("actor", "carol", filtered("actor", "carol"), func(e auditEntry) string { return e.Actor },
		"login", "login failed", "access denied", "pull credential issued")
	check("namespace", "audteam", filtered("namespace", "audteam"), func(e auditEntry) string { return e.Namespace },
		"namespace created", "member set", "robot created", "login", "login failed")
	check("action", "login failed", filtered("action", "login failed"), func(e auditEntry) string { return e.Action }, "login failed")
	if got := filtered("actor", "nobody"); len(got) != 0 {
		t.Errorf("actor=nobody: %d entries", len(got))
	}
	// since alone: the window's entries and later ones (the listings'
	// own admin logins), all at or after it.
	later, _ := b.audit(t, url.Values{"since": {cut.UTC().Format(time.RFC3339Nano)}, "limit": {"1000"}})
	for _, e := range later.Entries {
		if e.At.Before(cut) {
			t.Errorf("since=%s returned an entry at %s", cut, e.At)
		}
		if slices.Contains(ids(es), e.ID) {
			t.Errorf("since=cut returned entry %d of the window before it", e.ID)
		}
	}
	if len(later.Entries) == 0 {
		t.Error("since=cut returned none of the listings' own logins")
	}
	if recent, _ := a.audit(t, url.Values{"since": {"1h"}, "limit": {"1000"}}); len(recent.Entries) < len(es) {
		t.Errorf("since=1h: %d entries, fewer than the window's %d", len(recent.Entries), len(es))
	}

	// Paging, alternating replicas: every entry of the window once, in order.
	var paged []auditEntry
	q := url.Values{"since": window["since"], "until": window["until"], "limit": {"3"}}
	for page := 0; ; page++ {
		if page > len(es) {
			t.Fatal("paging does not end")
		}
		via := []*authBerth{a, b}[page%2]
		p, _ := via.audit(t, q)
		paged = append(paged, p.Entries...)
		if p.Next == "" {
			break
		}
		q.Set("before", p.Next)
	}
	if !slices.Equal(ids(paged), ids(es)) {
		t.Errorf("paging gave %v, want %v", ids(paged), ids(es))
	}
	if r := a.adminAPI(t, "admin", rs.pass, http.MethodGet, "/api/v1/audit?limit=0", nil); r.Status != http.StatusBadRequest {
		t.Errorf("limit=0: %s, want 400", r)
	}
	if r := b.adminAPI(t, "carol", userPass, http.MethodGet, "/api/v1/audit", nil); r.Status != http.StatusForbidden {
		t.Errorf("audit as a non-admin: %s, want 403", r)
	}

	// berth audit.
	cli := &berthCLI{t: t, config: t.TempDir(), env: []string{"BERTH_USERNAME=admin", "BERTH_PASSWORD=" + rs.pass}}
	out := cli.must("", "audit", "--registry", b.URL, "--actor", robot, "--since", "1h", "-o", "json")
	var cliPage auditPage
	mustUnmarshal(t, "berth audit -o json", []byte(out), &cliPage)
	if findEntry(cliPage.Entries, "login failed", robot) == nil || findEntry(cliPage.Entries, "login", robot) == nil {
		t.Errorf("berth audit --actor %s: %s", robot, truncate(out, 2000))
	}
	table := cli.must("", "audit", "--registry", a.URL, "--action", "login failed", "--since", "1h", "--limit", "1")
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 3 || !strings.Contains(lines[0], "OUTCOME") ||
		!strings.Contains(lines[1], "failure") || !strings.Contains(lines[2], "--before") {
		t.Errorf("berth audit table of one entry:\n%s", table)
	}

	// No secret anywhere: every entry (all pages, both replicas), both
	// logs, both audit files.
	places := map[string][]byte{}
	for name, r := range map[string]*authBerth{"A": a, "B": b} {
		_, bodies := r.auditAll(t, url.Values{"limit": {"50"}})
		places["audit entries through "+name] = slices.Concat(bodies...)
		logData, err := os.ReadFile(r.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		places["log of "+name] = logData
		file, err := os.ReadFile(filepath.Join(r.DataDir, "audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(file), `"msg":"login failed"`) {
			t.Errorf("audit.log of %s has no failed login:\n%s", name, truncate(string(file), 2000))
		}
		places["audit.log of "+name] = file
	}
	for what, data := range places {
		// A control: the search reads what was written.
		control := "carol"
		if strings.HasPrefix(what, "log of") {
			control = "/api/v1/audit" // a request line
		}
		if !strings.Contains(string(data), control) {
			t.Errorf("%s does not mention %q: the search would prove nothing", what, control)
		}
		for name, s := range secrets {
			if s == "" {
				t.Fatalf("%s is empty", name)
			}
			if strings.Contains(string(data), s) {
				t.Errorf("the %s is in the %s", name, what)
			}
		}
	}
}
