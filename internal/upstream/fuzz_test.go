package upstream

import (
	"strings"
	"testing"
)

// FuzzParseChallenges: any WWW-Authenticate value parses without panicking
// or looping, into challenges whose schemes are lower-case tokens and
// whose parameter names are lower-case.
func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{
		`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`,
		`Basic realm="x, \"quoted\""`, `bearer Realm=https://h/t , Service=s`, `Bearer realm="unterminated`, ``, `,,,`, `Bearer ="x"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, c := range parseChallenges([]string{v, v}) {
			if c.scheme == "" || c.scheme != strings.ToLower(c.scheme) {
				t.Fatalf("scheme %q from %q", c.scheme, v)
			}
			for k := range c.params {
				if k != strings.ToLower(k) {
					t.Fatalf("parameter %q from %q", k, v)
				}
			}
		}
	})
}

// FuzzNextLink: any Link value parses without panicking or looping, and a
// next link found is a substring of the value.
func FuzzNextLink(f *testing.F) {
	for _, s := range []string{`</v2/a/tags/list?n=2&last=b>; rel="next"`, `</prev>; rel="prev", </next>; type="x"; rel="other next"`, `garbage`, `<`, `<>; rel=next`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if got := nextLink([]string{v}); got != "" && !strings.Contains(v, got) {
			t.Fatalf("nextLink(%q) = %q, not in the value", v, got)
		}
	})
}
