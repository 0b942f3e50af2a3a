package server

import (
	"encoding/json"
	"testing"
)

// TestPersonalTokenMountStaysInScope: a personal access token limited to
// team/app cannot mount (copy) a blob from a repository outside its
// scope, although its owner may pull there; a mount inside its scope
// works. (The mount source was once decided by the owner's rights.)
func TestPersonalTokenMountStaysInScope(t *testing.T) {
	ts, _ := authServer(t)
	u := ts.URL
	admin := map[string]string{"Authorization": basic("admin", adminPass)}
	expect(t, "make the admin's token", do(t, "POST", u+"/api/v1/tokens", admin, []byte(`{"name":"ci","scopes":["team/app"],"actions":["pull","push"]}`)), 201, "")
	r := do(t, "POST", u+"/api/v1/tokens", admin, []byte(`{"name":"ci2","scopes":["team/*"]}`))
	var pat struct{ Secret string }
	if err := json.Unmarshal(r.body, &pat); err != nil || pat.Secret == "" {
		t.Fatalf("create token: %d %s", r.status, r.body)
	}
	r = do(t, "GET", u+"/api/v1/tokens", admin, nil)
	var list []struct {
		Name string
		ID   int64
	}
	if err := json.Unmarshal(r.body, &list); err != nil || len(list) != 2 {
		t.Fatalf("list tokens: %d %s", r.status, r.body)
	}
	scoped := do(t, "POST", u+"/api/v1/tokens", admin, []byte(`{"name":"narrow","scopes":["team/app"]}`))
	var narrow struct{ Secret string }
	if err := json.Unmarshal(scoped.body, &narrow); err != nil || narrow.Secret == "" {
		t.Fatalf("create token: %d %s", scoped.status, scoped.body)
	}

	// A secret blob in secret/db, and one in team/lib (inside team/*).
	adm := tokenFor(t, u, "admin", adminPass, "repository:secret/db:pull,push", "repository:team/lib:pull,push")
	secret, shared := []byte("the database's secret layer"), []byte("a shared library layer")
	expect(t, "push secret/db's blob", do(t, "POST", u+"/v2/secret/db/blobs/uploads/?digest="+digestOf(secret), bearer(adm), secret), 201, "")
	expect(t, "push team/lib's blob", do(t, "POST", u+"/v2/team/lib/blobs/uploads/?digest="+digestOf(shared), bearer(adm), shared), 201, "")

	// The narrow token, as docker would ask: push on team/app, pull on the
	// mount's source.
	tok := tokenFor(t, u, "admin", narrow.Secret, "repository:team/app:pull,push", "repository:secret/db:pull")
	if c := claimsOf(t, tok); len(c.Access) != 1 || c.Access[0].Name != "team/app" {
		t.Fatalf("the narrow token was granted %+v, want team/app only", c.Access)
	}
	expect(t, "mount from secret/db with a token scoped to team/app",
		do(t, "POST", u+"/v2/team/app/blobs/uploads/?mount="+digestOf(secret)+"&from=secret/db", bearer(tok), nil), 202, "")
	expect(t, "mount without from, the blob only outside the scope",
		do(t, "POST", u+"/v2/team/app/blobs/uploads/?mount="+digestOf(secret), bearer(tok), nil), 202, "")
	expect(t, "GET the secret blob through team/app", do(t, "GET", u+"/v2/team/app/blobs/"+digestOf(secret), bearer(tok), nil), 404, "BLOB_UNKNOWN")

	// Inside the scope a mount works.
	wide := tokenFor(t, u, "admin", pat.Secret, "repository:team/app:pull,push", "repository:team/lib:pull")
	expect(t, "mount from team/lib with a token for team/*",
		do(t, "POST", u+"/v2/team/app/blobs/uploads/?mount="+digestOf(shared)+"&from=team/lib", bearer(wide), nil), 201, "")
}
