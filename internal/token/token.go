// Package token issues and verifies the registry's bearer tokens: JWTs
// signed with ES256 by keys kept in the data directory, in the claim format
// of the distribution project's token authentication specification.
package token

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Access is one grant in a token: a resource and the actions allowed on it,
// e.g. {repository team/app [pull push]}.
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Claims are the claims of a registry token.
type Claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  string   `json:"aud"`
	Expiry    int64    `json:"exp"`
	NotBefore int64    `json:"nbf"`
	IssuedAt  int64    `json:"iat"`
	ID        string   `json:"jti"`
	Access    []Access `json:"access"`
	// Revocation is the subject's revocation epoch at issue: the token is
	// refused once the subject's epoch has gone up (berth's own claim).
	Revocation int64 `json:"rev,omitempty"`
	// Limited marks a token whose credential grants less than its
	// subject may do (a personal access token, a pull credential): what
	// the registry decides from the subject's rights (a mount's source)
	// must go by the token's Access instead (berth's own claim).
	Limited bool `json:"lim,omitempty"`
}

// Allows reports whether the claims grant action on the resource.
func (c *Claims) Allows(typ, name, action string) bool {
	for _, a := range c.Access {
		if a.Type != typ || a.Name != name {
			continue
		}
		for _, x := range a.Actions {
			if x == action || x == "*" {
				return true
			}
		}
	}
	return false
}

// Verification errors.
var (
	ErrMalformed  = errors.New("malformed token")
	ErrSignature  = errors.New("token signature invalid")
	ErrUnknownKey = errors.New("token signed by an unknown key")
	// ErrExpired is returned with the claims of a token whose signature is
	// valid but whose lifetime is over.
	ErrExpired  = errors.New("token expired")
	ErrNotYet   = errors.New("token not valid yet")
	ErrAudience = errors.New("token issued for another service")
	ErrIssuer   = errors.New("token issued by another issuer")
)

// leeway tolerates clock differences between issuer and verifier; small,
// because it also delays the effect of a revocation.
const leeway = 5 * time.Second

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

var b64 = base64.RawURLEncoding

// sign produces a compact JWS of claims with key.
func sign(key *ecdsa.PrivateKey, kid string, c *Claims) (string, error) {
	h, err := json.Marshal(header{Alg: "ES256", Typ: "JWT", Kid: kid})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(randReader, key, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig), nil
}

// parse splits and verifies a compact JWS; lookup finds the public key of
// a kid. The claims are returned only when the signature is valid.
func parse(tok string, lookup func(kid string) *ecdsa.PublicKey) (*Claims, error) {
	if len(tok) > 16<<10 {
		return nil, ErrMalformed
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, ErrMalformed
	}
	hb, err1 := b64.DecodeString(parts[0])
	pb, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, ErrMalformed
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, ErrMalformed
	}
	if h.Alg != "ES256" {
		return nil, fmt.Errorf("%w: algorithm %q", ErrSignature, h.Alg)
	}
	pub := lookup(h.Kid)
	if pub == nil {
		return nil, ErrUnknownKey
	}
	if len(sig) != 64 {
		return nil, ErrSignature
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, sum[:], r, s) {
		return nil, ErrSignature
	}
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(pb))
	if err := dec.Decode(&c); err != nil {
		return nil, ErrMalformed
	}
	return &c, nil
}

// Validate checks the time window, audience and issuer of verified claims.
// An expired token yields ErrExpired (the caller still has the claims).
func (c *Claims) Validate(now time.Time, issuer, audience string) error {
	if c.Issuer != issuer {
		return ErrIssuer
	}
	if c.Audience != audience {
		return ErrAudience
	}
	if c.NotBefore != 0 && now.Add(leeway).Unix() < c.NotBefore {
		return ErrNotYet
	}
	if now.Add(-leeway).Unix() >= c.Expiry {
		return ErrExpired
	}
	return nil
}
