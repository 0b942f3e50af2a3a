package reference

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	good := []string{"a", "library/busybox", "a0/b-c/d__e", "a.b/c", "x--y", strings.Repeat("a", 255)}
	bad := []string{"", "A", "a/", "/a", "a//b", "..", "../a", "a/../b", "a/.", "a..b", "a___b", "-a", "a-", "a b", "a%2e", strings.Repeat("a", 256), "a/B"}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateName(n); !errors.Is(err, ErrNameInvalid) {
			t.Errorf("ValidateName(%q) = %v, want ErrNameInvalid", n, err)
		}
	}
}

func TestValidateTag(t *testing.T) {
	for _, tag := range []string{"latest", "v1.0", "_x", "A-b_c.d", strings.Repeat("a", 128)} {
		if err := ValidateTag(tag); err != nil {
			t.Errorf("ValidateTag(%q) = %v", tag, err)
		}
	}
	for _, tag := range []string{"", ".x", "-x", "a:b", "a/b", strings.Repeat("a", 129), "sha256:abc"} {
		if err := ValidateTag(tag); !errors.Is(err, ErrTagInvalid) {
			t.Errorf("ValidateTag(%q) = %v, want ErrTagInvalid", tag, err)
		}
	}
}

func TestParseDigest(t *testing.T) {
	d := SHA256.FromBytes([]byte("hello"))
	if got, err := ParseDigest(string(d)); err != nil || got != d {
		t.Fatalf("ParseDigest(%s) = %v, %v", d, got, err)
	}
	if d.Encoded() != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Fatalf("sha256(hello) = %s", d)
	}
	d512 := SHA512.FromBytes([]byte("hello"))
	if _, err := ParseDigest(string(d512)); err != nil || d512.Algorithm() != SHA512 || len(d512.Encoded()) != 128 {
		t.Fatalf("sha512 digest %s: %v", d512, err)
	}
	for _, s := range []string{"", "sha256", "sha256:", ":abc", "sha256:" + strings.Repeat("A", 64), "sha256:" + strings.Repeat("a", 63), "sha512:" + strings.Repeat("a", 64), "SHA256:" + strings.Repeat("a", 64)} {
		if _, err := ParseDigest(s); !errors.Is(err, ErrDigestInvalid) {
			t.Errorf("ParseDigest(%q) = %v, want ErrDigestInvalid", s, err)
		}
	}
	if _, err := ParseDigest("md5:" + strings.Repeat("a", 32)); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("md5 digest: %v, want ErrAlgorithm", err)
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
	f.Add("sha512:" + strings.Repeat("0", 128))
	f.Add("foo+bar:abc")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		if string(d) != s || d.Algorithm() != SHA256 && d.Algorithm() != SHA512 {
			t.Fatalf("accepted %q as %q", s, d)
		}
		if len(d.Encoded()) != hexLen[d.Algorithm()] {
			t.Fatalf("accepted %q with wrong length", s)
		}
	})
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"library/busybox", "..", "a/../b", "a%2e%2e", "a__b-c.d/e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateName(s) != nil {
			return
		}
		for _, part := range strings.Split(s, "/") {
			if part == "" || part == "." || part == ".." || strings.ContainsAny(part, "%\\ :@") {
				t.Fatalf("accepted unsafe name %q", s)
			}
		}
	})
}
