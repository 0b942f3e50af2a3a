package kube

import (
	"slices"
	"testing"
)

func TestKeyMatches(t *testing.T) {
	cases := []struct {
		key, image string
		want       bool
	}{
		{"reg.example.com", "reg.example.com/team/app", true},
		{"reg.example.com:5000", "reg.example.com:5000/team/app", true},
		{"reg.example.com:5000", "reg.example.com/team/app", false},  // ports must be equal
		{"reg.example.com", "reg.example.com:5000/team/app", false},  // both ways
		{"*.example.com", "reg.example.com/team/app", true},          // glob per label
		{"*.example.com", "a.b.example.com/team/app", false},         // same number of labels
		{"reg.example.com/team", "reg.example.com/team/app", true},   // path prefix
		{"reg.example.com/team", "reg.example.com/teamx/app", true},  // a plain string prefix
		{"reg.example.com/other", "reg.example.com/team/app", false}, // different path
		{"127.0.0.1:5000", "127.0.0.1:5000/team/app", true},
		{"localhost:5000", "127.0.0.1:5000/team/app", false},
	}
	for _, c := range cases {
		if got := KeyMatches(c.key, c.image); got != c.want {
			t.Errorf("KeyMatches(%q, %q) = %v, want %v", c.key, c.image, got, c.want)
		}
	}
}

func TestKeyringKey(t *testing.T) {
	for in, want := range map[string]string{
		"https://reg.example.com/v2/":      "reg.example.com",
		"http://reg.example.com:5000/v1/":  "reg.example.com:5000",
		"reg.example.com:5000":             "reg.example.com:5000",
		"https://index.docker.io/v1/":      "index.docker.io",
		"reg.example.com/team":             "reg.example.com/team",
		"https://reg.example.com/v2/team/": "reg.example.com/team/",
	} {
		if got, ok := KeyringKey(in); !ok || got != want {
			t.Errorf("KeyringKey(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestMatchingKeys(t *testing.T) {
	keys := []string{"https://index.docker.io/v1/", "reg:5000", "reg:5000/team", "reg"}
	if got := MatchingKeys(keys, "reg:5000/team/app:v1"); !slices.Equal(got, []string{"reg:5000/team", "reg:5000"}) {
		t.Errorf("reg:5000/team/app: %v", got)
	}
	if got := MatchingKeys(keys, "busybox:latest"); !slices.Equal(got, []string{"https://index.docker.io/v1/"}) {
		t.Errorf("busybox: %v", got)
	}
	if got := MatchingKeys([]string{"reg"}, "reg:5000/team/app"); len(got) != 0 {
		t.Errorf("port mismatch matched: %v", got)
	}
	for img, want := range map[string]string{
		"busybox":                   "docker.io/library/busybox",
		"team/app:v1":               "docker.io/team/app",
		"reg:5000/team/app:v1":      "reg:5000/team/app",
		"reg/team/app@sha256:abcd":  "docker.io/reg/team/app",
		"reg.io/team/app@sha256:ab": "reg.io/team/app",
		"localhost/app":             "localhost/app",
		"127.0.0.1:5000/a/b:c":      "127.0.0.1:5000/a/b",
	} {
		if got := ImageRepository(img); got != want {
			t.Errorf("ImageRepository(%q) = %q, want %q", img, got, want)
		}
	}
}
