package adminclient

import (
	"context"
	"net/http"
	"testing"
)

func TestMirrorRequests(t *testing.T) {
	ctx := context.Background()
	yes, no := true, false
	cases := []struct {
		name, method, path, body string
		call                     func(c *Client) error
	}{
		{"add", "POST", "/api/v1/mirrors", `{"name":"hub","upstream":"https://registry-1.docker.io","username":"ci","password":"pw","tag_ttl":"1h0m0s","docker_hub":true}`, func(c *Client) error {
			_, _, err := c.AddMirror(ctx, MirrorRequest{Name: "hub", Upstream: "https://registry-1.docker.io", Username: "ci", Password: "pw", TagTTL: "1h0m0s", DockerHub: &yes})
			return err
		}},
		{"add with hosts", "POST", "/api/v1/mirrors", `{"name":"ghcr","namespace":"gh","upstream":"https://ghcr.io","hosts":["ghcr.example.com"]}`, func(c *Client) error {
			_, _, err := c.AddMirror(ctx, MirrorRequest{Name: "ghcr", Namespace: "gh", Upstream: "https://ghcr.io", Hosts: []string{"ghcr.example.com"}})
			return err
		}},
		{"list", "GET", "/api/v1/mirrors", "", func(c *Client) error { _, _, err := c.Mirrors(ctx); return err }},
		{"update keeps hosts", "PATCH", "/api/v1/mirrors/hub", `{"docker_hub":false,"clear_credentials":true}`, func(c *Client) error {
			_, _, err := c.UpdateMirror(ctx, "hub", MirrorRequest{Name: "ignored", DockerHub: &no, ClearCredentials: true})
			return err
		}},
		{"update clears hosts", "PATCH", "/api/v1/mirrors/ghcr", `{"hosts":[]}`, func(c *Client) error {
			_, _, err := c.UpdateMirror(ctx, "ghcr", MirrorRequest{Hosts: []string{}})
			return err
		}},
		{"remove", "DELETE", "/api/v1/mirrors/a%2Fb", "", func(c *Client) error { return c.RemoveMirror(ctx, "a/b") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := http.StatusOK, `{"name":"hub","namespace":"hub","upstream":"https://registry-1.docker.io","username":"ci","has_password":true,"tag_ttl":"10m0s","docker_hub":true,"hosts":[],"created_at":"2025-01-02T03:04:05Z"}`
			switch tc.method {
			case "DELETE":
				status, resp = http.StatusNoContent, ""
			case "GET":
				resp = "[" + resp + "]"
			}
			srv, rec := fakeServer(t, status, resp)
			if err := tc.call(newTestClient(t, srv.URL)); err != nil {
				t.Fatalf("call: %v", err)
			}
			if rec.method != tc.method || rec.rawPath != tc.path {
				t.Errorf("request = %s %s, want %s %s", rec.method, rec.rawPath, tc.method, tc.path)
			}
			if tc.body == "" {
				if rec.body != "" {
					t.Errorf("unexpected body %q", rec.body)
				}
				return
			}
			if !jsonEqual(t, rec.body, tc.body) {
				t.Errorf("body = %s, want %s", rec.body, tc.body)
			}
		})
	}

	srv, _ := fakeServer(t, http.StatusOK, `[{"name":"hub","namespace":"hub","upstream":"https://registry-1.docker.io","username":"ci","has_password":true,"tag_ttl":"10m0s","docker_hub":true,"hosts":["docker.example.com"],"created_at":"2025-01-02T03:04:05Z"}]`)
	ms, _, err := newTestClient(t, srv.URL).Mirrors(ctx)
	if err != nil || len(ms) != 1 {
		t.Fatalf("mirrors = %+v, %v", ms, err)
	}
	if m := ms[0]; m.Name != "hub" || !m.DockerHub || !m.HasPassword || m.Username != "ci" || m.TagTTL != "10m0s" || len(m.Hosts) != 1 || m.CreatedAt == "" {
		t.Errorf("mirror = %+v", m)
	}
}
