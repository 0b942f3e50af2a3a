package oidcauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// sealer encrypts and authenticates what berth gives browsers (the sign-in
// state cookie, the CLI's one-time code) and what it keeps in the
// database (the provider's refresh tokens): AES-256-GCM under keys derived
// from the client secret, which the database does not hold. Each use has
// its own key and binds the sealed text to its context (AAD), so that a
// sealed value cannot be moved from one use, or one person, to another.
type sealer struct{ secret []byte }

// errUnsealed is any sealed text that does not open: forged, damaged,
// sealed for another use or under another client secret.
var errUnsealed = errors.New("sealed value does not open")

func (s sealer) aead(purpose string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, s.secret, []byte("berth oidcauth v1"), purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal returns v as JSON, encrypted for purpose and bound to context,
// base64url.
func (s sealer) seal(purpose, context string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	a, err := s.aead(purpose)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(a.Seal(nonce, nonce, plain, []byte(context))), nil
}

// open decrypts what seal made for purpose and context into v.
func (s sealer) open(purpose, context, sealed string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil {
		return errUnsealed
	}
	a, err := s.aead(purpose)
	if err != nil {
		return err
	}
	if len(raw) < a.NonceSize() {
		return errUnsealed
	}
	plain, err := a.Open(nil, raw[:a.NonceSize()], raw[a.NonceSize():], []byte(context))
	if err != nil {
		return errUnsealed
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return errUnsealed
	}
	return nil
}
