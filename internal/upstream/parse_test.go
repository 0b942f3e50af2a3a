package upstream

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/reference"
)

func TestParseChallenges(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []challenge
	}{
		{[]string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`},
			[]challenge{{"bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/busybox:pull"}}}},
		{[]string{`Basic realm="x, \"quoted\""`, `bearer Realm=https://h/t , Service=s`},
			[]challenge{{"basic", map[string]string{"realm": `x, "quoted"`}}, {"bearer", map[string]string{"realm": "https://h/t", "service": "s"}}}},
		{[]string{`Basic realm="a", Bearer realm="b",scope="x y"`},
			[]challenge{{"basic", map[string]string{"realm": "a"}}, {"bearer", map[string]string{"realm": "b", "scope": "x y"}}}},
		{[]string{`Bearer realm="unterminated`}, []challenge{{"bearer", map[string]string{}}}},
		{[]string{``}, nil},
	} {
		if got := parseChallenges(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseChallenges(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestNextLink(t *testing.T) {
	for in, want := range map[string]string{
		`</v2/a/tags/list?n=2&last=b>; rel="next"`:                 "/v2/a/tags/list?n=2&last=b",
		`<https://h/v2/_catalog?last=x&n=2>; rel=next`:             "https://h/v2/_catalog?last=x&n=2",
		`</prev>; rel="prev", </next>; type="x"; rel="other next"`: "/next",
		`</prev>; rel="prev"`:                                      "",
		``:                                                         "",
		`garbage`:                                                  "",
	} {
		if got := nextLink([]string{in}); got != want {
			t.Errorf("nextLink(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReferrersTag(t *testing.T) {
	d := reference.SHA256.FromBytes([]byte("x"))
	if got := referrersTag(d); got != "sha256-"+d.Encoded() || reference.ValidateTag(got) != nil {
		t.Errorf("referrersTag(%s) = %q", d, got)
	}
	d512 := reference.SHA512.FromBytes([]byte("x"))
	if got := referrersTag(d512); got != "sha512-"+d512.Encoded()[:64] || reference.ValidateTag(got) != nil {
		t.Errorf("referrersTag(%s) = %q", d512, got)
	}
}

// TestStatusErrorClean: messages from the registry lose control
// characters, the password and the credential sent, and are cut short.
func TestStatusErrorClean(t *testing.T) {
	c, err := New(Options{URL: "http://h", Username: "u", Password: "Hunter2-secret"})
	if err != nil {
		t.Fatal(err)
	}
	msg := c.clean("bad\r\nlogin Hunter2-secret with tok-abcdef "+strings.Repeat("é", 200), "Bearer tok-abcdef")
	if strings.ContainsAny(msg, "\r\n") || strings.Contains(msg, "Hunter2") || strings.Contains(msg, "tok-abcdef") || len(msg) > maxMessage+3 {
		t.Errorf("clean = %q", msg)
	}
	if !strings.HasSuffix(msg, "é...") {
		t.Errorf("clean cut a character in two: %q", msg)
	}
	e := &StatusError{Status: http.StatusNotFound, Code: "MANIFEST_UNKNOWN", Message: "manifest unknown"}
	if e.Error() != "404 Not Found: MANIFEST_UNKNOWN: manifest unknown" {
		t.Errorf("Error() = %q", e.Error())
	}
}
