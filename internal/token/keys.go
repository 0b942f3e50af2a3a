package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

var randReader = rand.Reader

// Keys is the set of signing keys: the newest signs, all verify, so that
// tokens issued before a rotation stay valid until they expire. Keys live
// as PEM files named <unix time>-<kid>.pem in one directory.
type Keys struct {
	dir string

	mu      sync.RWMutex
	keys    map[string]*ecdsa.PrivateKey
	signing string
}

// LoadKeys reads the keys in dir, creating the directory and a first key
// when there is none.
func LoadKeys(dir string) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	k := &Keys{dir: dir, keys: map[string]*ecdsa.PrivateKey{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read key directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".pem") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // oldest first: the name starts with the time
	for _, n := range names {
		key, err := readKey(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		kid := KeyID(&key.PublicKey)
		k.keys[kid] = key
		k.signing = kid
	}
	if k.signing == "" {
		if _, err := k.Rotate(); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("key %s: no PEM block", path)
	}
	var parsed any
	if blk.Type == "EC PRIVATE KEY" { // SEC 1, as openssl ecparam and Helm's genPrivateKey write it
		parsed, err = x509.ParseECPrivateKey(blk.Bytes)
	} else {
		parsed, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key %s: want an ECDSA P-256 key", path)
	}
	return key, nil
}

// KeyID names a public key: the first 16 hex digits of the SHA-256 of its
// DER encoding.
func KeyID(pub *ecdsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}

// Rotate creates a new key that signs from now on and returns its kid.
func (k *Keys) Rotate() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), randReader)
	if err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("encode key: %w", err)
	}
	kid := KeyID(&key.PublicKey)
	name := fmt.Sprintf("%020d-%s.pem", time.Now().UnixNano(), kid)
	tmp := filepath.Join(k.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", fmt.Errorf("write key: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, name)); err != nil {
		return "", fmt.Errorf("write key: %w", err)
	}
	k.mu.Lock()
	k.keys[kid] = key
	k.signing = kid
	k.mu.Unlock()
	return kid, nil
}

// Sign issues a token for the claims with the current signing key.
func (k *Keys) Sign(c *Claims) (string, error) {
	k.mu.RLock()
	kid := k.signing
	key := k.keys[kid]
	k.mu.RUnlock()
	return sign(key, kid, c)
}

// Verify checks a token's signature against the known keys and returns its
// claims; the caller validates time, issuer and audience.
func (k *Keys) Verify(tok string) (*Claims, error) {
	return parse(tok, func(kid string) *ecdsa.PublicKey {
		k.mu.RLock()
		defer k.mu.RUnlock()
		if key := k.keys[kid]; key != nil {
			return &key.PublicKey
		}
		return nil
	})
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// JWKS returns the public keys as a JSON Web Key Set.
func (k *Keys) JWKS() ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	kids := make([]string, 0, len(k.keys))
	for kid := range k.keys {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	for _, kid := range kids {
		pub := k.keys[kid].PublicKey
		x, y := make([]byte, 32), make([]byte, 32)
		pub.X.FillBytes(x)
		pub.Y.FillBytes(y)
		set.Keys = append(set.Keys, jwk{Kty: "EC", Crv: "P-256", Kid: kid, Use: "sig", Alg: "ES256", X: b64.EncodeToString(x), Y: b64.EncodeToString(y)})
	}
	return json.Marshal(set)
}
