// Package reference validates repository names, tags and digests by the
// grammar of the OCI Distribution Specification.
package reference

import (
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"strings"
)

// MaxNameLength bounds a repository name; with a host name in front it must
// still fit the 255 characters that clients accept.
const MaxNameLength = 255

var (
	nameComponent = `[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*`
	nameRE        = regexp.MustCompile(`^` + nameComponent + `(?:/` + nameComponent + `)*$`)
	tagRE         = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	algorithmRE   = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*$`)
)

// Errors returned by the validators.
var (
	ErrNameInvalid   = errors.New("invalid repository name")
	ErrTagInvalid    = errors.New("invalid tag")
	ErrDigestInvalid = errors.New("invalid digest")
	ErrAlgorithm     = errors.New("unsupported digest algorithm")
)

// ValidateName reports whether name is a valid repository name.
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLength || !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %q", ErrNameInvalid, truncate(name))
	}
	return nil
}

// ValidateTag reports whether tag is a valid tag.
func ValidateTag(tag string) error {
	if !tagRE.MatchString(tag) {
		return fmt.Errorf("%w: %q", ErrTagInvalid, truncate(tag))
	}
	return nil
}

// Digest is a validated content digest such as "sha256:<64 hex>".
type Digest string

// Algorithm is a supported digest algorithm.
type Algorithm string

// The supported digest algorithms.
const (
	SHA256 Algorithm = "sha256"
	SHA512 Algorithm = "sha512"
)

// hexLen is the length of an encoded digest of each algorithm.
var hexLen = map[Algorithm]int{SHA256: 64, SHA512: 128}

// New returns a hash of the algorithm.
func (a Algorithm) New() hash.Hash {
	if a == SHA512 {
		return sha512.New()
	}
	return sha256.New()
}

// FromHash returns the digest of what h has hashed.
func (a Algorithm) FromHash(h hash.Hash) Digest {
	return Digest(string(a) + ":" + fmt.Sprintf("%x", h.Sum(nil)))
}

// FromBytes returns the digest of b.
func (a Algorithm) FromBytes(b []byte) Digest {
	h := a.New()
	h.Write(b)
	return a.FromHash(h)
}

// ParseDigest validates s as a digest of a supported algorithm.
func ParseDigest(s string) (Digest, error) {
	alg, enc, ok := strings.Cut(s, ":")
	if !ok || alg == "" || enc == "" {
		return "", fmt.Errorf("%w: %q", ErrDigestInvalid, truncate(s))
	}
	n, known := hexLen[Algorithm(alg)]
	if !known {
		if !algorithmRE.MatchString(alg) {
			return "", fmt.Errorf("%w: %q", ErrDigestInvalid, truncate(s))
		}
		return "", fmt.Errorf("%w: %q", ErrAlgorithm, truncate(alg))
	}
	if len(enc) != n || !IsLowerHex(enc) {
		return "", fmt.Errorf("%w: %q", ErrDigestInvalid, truncate(s))
	}
	return Digest(s), nil
}

// Algorithm returns the digest's algorithm.
func (d Digest) Algorithm() Algorithm {
	alg, _, _ := strings.Cut(string(d), ":")
	return Algorithm(alg)
}

// Encoded returns the hex part of the digest.
func (d Digest) Encoded() string {
	_, enc, _ := strings.Cut(string(d), ":")
	return enc
}

func (d Digest) String() string { return string(d) }

// IsDigest reports whether a manifest reference is meant as a digest rather
// than a tag: tags never contain a colon.
func IsDigest(ref string) bool { return strings.Contains(ref, ":") }

// IsLowerHex reports whether s is made only of 0-9 and a-f.
func IsLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// ValidatePattern checks a repository pattern as rules use them: one
// repository ("team/app") or everything under a prefix ("team/*").
func ValidatePattern(pattern string) error {
	if err := ValidateName(strings.TrimSuffix(pattern, "/*")); err != nil {
		return fmt.Errorf("repositories %q: want team/* or team/app: %w", pattern, err)
	}
	return nil
}

// Covers reports whether a repository pattern covers repo.
func Covers(pattern, repo string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "/*"); ok {
		return strings.HasPrefix(repo, prefix+"/")
	}
	return pattern == repo
}
