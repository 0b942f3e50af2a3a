package server

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
)

// retentionEnv pushes small manifests as bob and runs admin requests.
type retentionEnv struct {
	t     *testing.T
	u     string
	admin map[string]string
	oci   map[string]string
	cfg   []byte
	pulls map[string]string
}

func newRetentionEnv(t *testing.T) *retentionEnv {
	ts, _ := authServer(t, func(c *config.Config) { c.GCGrace = time.Millisecond })
	u := ts.URL
	tok := tokenFor(t, u, "admin", adminPass, "repository:team/app:pull,push,delete", "repository:team/pulls:pull,push",
		"repository:team/keep:pull,push", "repository:team/gone:pull,push")
	e := &retentionEnv{t: t, u: u, admin: map[string]string{"Authorization": basic("admin", adminPass)},
		oci: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Authorization": "Bearer " + tok},
		cfg: []byte("{}"), pulls: bearer(tok)}
	for _, repo := range []string{"team/app", "team/pulls", "team/keep", "team/gone"} {
		expect(t, "config", do(t, "POST", u+"/v2/"+repo+"/blobs/uploads/?digest="+digestOf(e.cfg), e.pulls, e.cfg), 201, "")
	}
	return e
}

func (e *retentionEnv) manifest(note string) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"annotations":{"n":"%s"}}`, digestOf(e.cfg), note))
}

// push pushes a manifest of its own under ref (a tag, or "" for by digest)
// and returns its digest.
func (e *retentionEnv) push(repo, ref string) string {
	body := e.manifest(repo + ":" + ref + ":" + time.Now().String())
	d := digestOf(body)
	if ref == "" {
		ref = d
	}
	expect(e.t, "push "+repo+":"+ref, do(e.t, "PUT", e.u+"/v2/"+repo+"/manifests/"+ref, e.oci, body), 201, "")
	return d
}

func (e *retentionEnv) tags(repo string) []string {
	r := do(e.t, "GET", e.u+"/v2/"+repo+"/tags/list", e.pulls, nil)
	var out struct {
		Tags []string `json:"tags"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &out) != nil {
		e.t.Fatalf("tags of %s: %d %s", repo, r.status, r.body)
	}
	sort.Strings(out.Tags)
	return out.Tags
}

type gcOutcome struct {
	Tags []struct {
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
		Digest     string `json:"digest"`
		Reason     string `json:"reason"`
		PolicyID   int64  `json:"policy_id"`
	} `json:"tags"`
	Manifests []struct {
		Repository string `json:"repository"`
		Digest     string `json:"digest"`
	} `json:"manifests"`
}

func (o gcOutcome) tagNames() []string {
	var out []string
	for _, t := range o.Tags {
		out = append(out, t.Repository+":"+t.Tag)
	}
	sort.Strings(out)
	return out
}

func (o gcOutcome) hasManifest(repo, d string) bool {
	return slices.ContainsFunc(o.Manifests, func(m struct {
		Repository string `json:"repository"`
		Digest     string `json:"digest"`
	}) bool {
		return m.Repository == repo && m.Digest == d
	})
}

// call runs an admin request and decodes its JSON answer.
func (e *retentionEnv) call(method, path, body string, status int) gcOutcome {
	e.t.Helper()
	r := do(e.t, method, e.u+path, e.admin, []byte(body))
	if r.status != status {
		e.t.Fatalf("%s %s %s: %d %s, want %d", method, path, body, r.status, r.body, status)
	}
	var o gcOutcome
	if len(r.body) > 0 {
		_ = json.Unmarshal(r.body, &o)
	}
	return o
}

func TestRetentionPolicies(t *testing.T) {
	e := newRetentionEnv(t)
	u := e.u
	// Pushed oldest first: v1, dev-1, dev-2, dev-3, latest; one untagged.
	digests := map[string]string{}
	for _, tag := range []string{"v1", "dev-1", "dev-2", "dev-3", "latest"} {
		digests[tag] = e.push("team/app", tag)
	}
	untagged := e.push("team/app", "")

	// Only admins and namespace owners manage policies; bad ones are
	// refused with a reason.
	bob := map[string]string{"Authorization": basic("bob", "bob-pass-1")}
	if r := do(t, "POST", u+"/api/v1/retention-policies", bob, []byte(`{"repositories":"team/app","keep_last":1}`)); r.status != 403 {
		t.Fatalf("writer adds a policy: %d %s, want 403", r.status, r.body)
	}
	for _, bad := range []string{
		`{"repositories":"Team/*","keep_last":1}`,
		`{"repositories":"team/app","keep_tags":["["],"keep_last":1}`,
		`{"repositories":"team/app"}`,
		`{"repositories":"team/app","keep_last":-1}`,
		`{"repositories":"team/app","unpulled_for":"3x"}`,
		`{"repositories":"team/app","keep_last":1,"extra":1}`,
	} {
		r := do(t, "POST", u+"/api/v1/retention-policies", e.admin, []byte(bad))
		if r.status != 400 || !strings.Contains(string(r.body), "error") {
			t.Errorf("policy %s: %d %s, want 400 with a reason", bad, r.status, r.body)
		}
	}

	// A dry run of a policy shows what it would delete, and stores nothing.
	policy := `{"repositories":"team/app","keep_last":2,"keep_tags":["v*","latest"]}`
	dry := e.call("POST", "/api/v1/retention-policies?dry_run=true", policy, 200)
	if got := dry.tagNames(); !slices.Equal(got, []string{"team/app:dev-1"}) || !strings.Contains(dry.Tags[0].Reason, "newest 2") {
		t.Fatalf("dry run deletes tags %v (%+v), want team/app:dev-1 beyond the newest 2", got, dry.Tags)
	}
	if !dry.hasManifest("team/app", digests["dev-1"]) || !dry.hasManifest("team/app", untagged) || len(dry.Manifests) != 2 {
		t.Fatalf("dry run deletes manifests %+v, want dev-1's and the untagged one", dry.Manifests)
	}
	if r := do(t, "GET", u+"/api/v1/retention-policies", e.admin, nil); r.status != 200 || string(r.body) != "[]" {
		t.Fatalf("a dry run stored the policy: %d %s", r.status, r.body)
	}
	if got := e.tags("team/app"); len(got) != 5 {
		t.Fatalf("a dry run deleted tags: %v", got)
	}

	// Saved with keep_last 1, an immutable dev-2 stays.
	e.call("POST", "/api/v1/immutable-rules", `{"repositories":"team/app","tags":"dev-2"}`, 201)
	e.call("POST", "/api/v1/retention-policies", `{"repositories":"team/app","keep_last":1,"keep_tags":["v*","latest"]}`, 201)
	e.call("POST", "/api/v1/retention-policies", `{"repositories":"team/app","keep_last":5}`, 409)
	run := e.call("POST", "/api/v1/gc", "", 200)
	if got := run.tagNames(); !slices.Equal(got, []string{"team/app:dev-1"}) {
		t.Fatalf("gc applied retention to %v, want only team/app:dev-1 (dev-2 is immutable)", got)
	}
	if got, want := e.tags("team/app"), []string{"dev-2", "dev-3", "latest", "v1"}; !slices.Equal(got, want) {
		t.Fatalf("tags after retention = %v, want %v", got, want)
	}
	expect(t, "dev-1's manifest collected", do(t, "GET", u+"/v2/team/app/manifests/"+digests["dev-1"], e.pulls, nil), 404, "MANIFEST_UNKNOWN")
	expect(t, "v1 kept", do(t, "GET", u+"/v2/team/app/manifests/v1", e.pulls, nil), 200, "")
	if again := e.call("POST", "/api/v1/gc?dry_run=true", "", 200); len(again.Tags)+len(again.Manifests) != 0 {
		t.Fatalf("a second run still finds work: %+v", again)
	}
}

func TestRetentionUnpulledAndUntagged(t *testing.T) {
	e := newRetentionEnv(t)
	u := e.u
	e.call("POST", "/api/v1/retention-policies", `{"repositories":"team/pulls","unpulled_for":"2s"}`, 201)
	e.push("team/pulls", "pulled")
	e.push("team/pulls", "headed")
	e.push("team/pulls", "idle")
	// Untagged manifests: team/keep's policy keeps them for a day, while
	// team/gone has none and the grace period is 1 ms.
	e.call("POST", "/api/v1/retention-policies", `{"repositories":"team/keep","untagged_after":"1d"}`, 201)
	keep := e.push("team/keep", "")
	gone := e.push("team/gone", "")
	time.Sleep(2100 * time.Millisecond)
	// A GET is a pull, and so is a HEAD (how clients resolve a tag they
	// hold); a push is a use too.
	expect(t, "pull", do(t, "GET", u+"/v2/team/pulls/manifests/pulled", e.pulls, nil), 200, "")
	expect(t, "head", do(t, "HEAD", u+"/v2/team/pulls/manifests/headed", e.pulls, nil), 200, "")
	e.push("team/pulls", "fresh")
	dry := e.call("POST", "/api/v1/gc?dry_run=true", "", 200)
	if got, want := dry.tagNames(), []string{"team/pulls:idle"}; !slices.Equal(got, want) {
		t.Fatalf("unpulled_for 2s deletes %v, want %v", got, want)
	}
	for _, tg := range dry.Tags {
		if !strings.Contains(tg.Reason, "not pulled for 2s") {
			t.Errorf("reason for %s: %q", tg.Tag, tg.Reason)
		}
	}
	if dry.hasManifest("team/keep", keep) || !dry.hasManifest("team/gone", gone) {
		t.Fatalf("untagged: dry run removes %+v; want team/gone's and not team/keep's (kept 1d)", dry.Manifests)
	}
	e.call("POST", "/api/v1/gc", "", 200)
	if got, want := e.tags("team/pulls"), []string{"fresh", "headed", "pulled"}; !slices.Equal(got, want) {
		t.Fatalf("tags after gc = %v, want %v", got, want)
	}
	expect(t, "untagged kept by policy", do(t, "GET", u+"/v2/team/keep/manifests/"+keep, e.pulls, nil), 200, "")
	expect(t, "untagged without policy collected", do(t, "GET", u+"/v2/team/gone/manifests/"+gone, e.pulls, nil), 404, "MANIFEST_UNKNOWN")

	// Listing and removal.
	r := do(t, "GET", u+"/api/v1/retention-policies", e.admin, nil)
	var ps []struct {
		ID            int64  `json:"id"`
		Repositories  string `json:"repositories"`
		UntaggedAfter string `json:"untagged_after"`
		UnpulledFor   string `json:"unpulled_for"`
	}
	if json.Unmarshal(r.body, &ps) != nil || len(ps) != 2 || ps[0].UnpulledFor != "2s" || ps[1].UntaggedAfter != "1d" {
		t.Fatalf("policies = %s", r.body)
	}
	e.call("DELETE", fmt.Sprintf("/api/v1/retention-policies/%d", ps[1].ID), "", 204)
	e.call("DELETE", fmt.Sprintf("/api/v1/retention-policies/%d", ps[1].ID), "", 404)
	if dry := e.call("POST", "/api/v1/gc?dry_run=true", "", 200); !dry.hasManifest("team/keep", keep) {
		t.Fatalf("without its policy the untagged manifest of team/keep is not garbage: %+v", dry.Manifests)
	}
}
