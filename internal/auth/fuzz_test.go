package auth

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/berth-registry/berth/internal/reference"
)

// FuzzParseScopes: any scope parameter either parses into at most
// MaxScopes accesses on valid names or is refused; it never panics.
func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"repository:team/app:pull,push", "registry:catalog:*", "repository:a:pull repository:b:push",
		"repository:host:5000/a:pull", "repository::pull", ":::", strings.Repeat("repository:a:pull ", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseScopes([]string{s})
		if err != nil {
			return
		}
		if len(got) > MaxScopes {
			t.Fatalf("%d scopes accepted", len(got))
		}
		for _, a := range got {
			switch a.Type {
			case "repository":
				if reference.ValidateName(a.Name) != nil {
					t.Fatalf("invalid name %q accepted", a.Name)
				}
			case "registry":
				if a.Name != "catalog" {
					t.Fatalf("registry scope %q accepted", a.Name)
				}
			default:
				t.Fatalf("type %q accepted", a.Type)
			}
		}
	})
}

// FuzzCleanName: what is logged of a client's name is valid UTF-8 without
// control characters, and short.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"alice", "a\x00b", "\xff\xfe", strings.Repeat("é", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := cleanName(s)
		if !utf8.ValidString(c) || strings.ContainsFunc(c, unicode.IsControl) {
			t.Fatalf("cleanName(%q) = %q", s, c)
		}
		if len(c) > maxLoggedName+4+len("...(99999999999 bytes)") {
			t.Fatalf("cleanName of %d bytes is %d bytes", len(s), len(c))
		}
		if len(s) <= maxLoggedName && utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl) && c != s {
			t.Fatalf("clean name %q changed to %q", s, c)
		}
	})
}
