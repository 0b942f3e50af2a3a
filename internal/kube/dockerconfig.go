package kube

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// AuthEntry is one entry of a docker config's "auths".
type AuthEntry struct {
	Auth          string `json:"auth,omitempty"`
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	Email         string `json:"email,omitempty"`
}

// DockerConfig is ~/.docker/config.json, or the payload of a pull Secret.
type DockerConfig struct {
	Auths       map[string]AuthEntry `json:"auths"`
	CredsStore  string               `json:"credsStore,omitempty"`
	CredHelpers map[string]string    `json:"credHelpers,omitempty"`
}

// NewEntry returns an entry carrying user and password both ways the
// kubelet reads them.
func NewEntry(user, password string) AuthEntry {
	return AuthEntry{Username: user, Password: password, Auth: base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
}

// Errors of credential entries.
var (
	ErrAuthNotBase64   = errors.New(`"auth" is not base64`)
	ErrAuthNoColon     = errors.New(`"auth" does not decode to user:password`)
	ErrNoCredentials   = errors.New("entry has neither auth nor username and password")
	ErrIdentityOnly    = errors.New("entry holds only an identity token, which the kubelet cannot use")
	ErrHelperFailed    = errors.New("credential helper failed")
	ErrNoHelperEntries = errors.New("credential helper holds no credentials for the registry")
)

// Credentials returns the user name and password of an entry as the
// kubelet reads them: "auth" (base64 of user:password) wins over the
// username and password fields.
func (e AuthEntry) Credentials() (user, password string, err error) {
	if e.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return "", "", ErrAuthNotBase64
		}
		u, p, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "", ErrAuthNoColon
		}
		if p == "" && e.IdentityToken != "" {
			return "", "", ErrIdentityOnly
		}
		return u, p, nil
	}
	if e.Username != "" || e.Password != "" {
		return e.Username, e.Password, nil
	}
	if e.IdentityToken != "" {
		return "", "", ErrIdentityOnly
	}
	return "", "", ErrNoCredentials
}

// ParseDockerConfig parses a docker config file or Secret payload.
func ParseDockerConfig(b []byte) (*DockerConfig, error) {
	var c DockerConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("not a docker config (JSON with \"auths\"): %w", err)
	}
	return &c, nil
}

// Keys returns the auths keys in order.
func (c *DockerConfig) Keys() []string {
	keys := make([]string, 0, len(c.Auths))
	for k := range c.Auths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// HelperFunc asks a docker credential helper for the credentials of a
// registry.
type HelperFunc func(ctx context.Context, helper, server string) (user, secret string, err error)

// RunHelper runs docker-credential-<helper> get, as docker does.
func RunHelper(ctx context.Context, helper, server string) (string, string, error) {
	cmd := exec.CommandContext(ctx, "docker-credential-"+helper, "get")
	cmd.Stdin = strings.NewReader(server)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stdout.String() + " " + stderr.String())
		if strings.Contains(msg, "credentials not found") {
			return "", "", ErrNoHelperEntries
		}
		return "", "", fmt.Errorf("%w: docker-credential-%s get: %v %s", ErrHelperFailed, helper, err, msg)
	}
	var out struct{ Username, Secret string }
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return "", "", fmt.Errorf("%w: docker-credential-%s printed no JSON: %v", ErrHelperFailed, helper, err)
	}
	return out.Username, out.Secret, nil
}

// helperFor returns the credential helper that holds a registry's
// credentials, if any.
func (c *DockerConfig) helperFor(key string) string {
	if h, ok := c.CredHelpers[key]; ok {
		return h
	}
	if n, ok := KeyringKey(key); ok {
		if h, ok := c.CredHelpers[n]; ok {
			return h
		}
	}
	return c.CredsStore
}

// ForKubelet returns a docker config the kubelet can use: for each
// registry (all in the config when none are given), an entry with the real
// user name and password, fetched from the credential helper where the
// file keeps them there. The kubelet cannot run helpers, nor use identity
// tokens.
func (c *DockerConfig) ForKubelet(ctx context.Context, registries []string, helper HelperFunc) (*DockerConfig, error) {
	keys := registries
	if len(keys) == 0 {
		seen := map[string]bool{}
		for _, k := range c.Keys() {
			seen[k] = true
			keys = append(keys, k)
		}
		for k := range c.CredHelpers {
			if !seen[k] {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
	}
	out := &DockerConfig{Auths: map[string]AuthEntry{}}
	for _, key := range keys {
		entry, ok := c.Auths[key]
		user, pass, err := entry.Credentials()
		if !ok || errors.Is(err, ErrNoCredentials) {
			h := c.helperFor(key)
			if h == "" {
				return nil, fmt.Errorf("no credentials for %s in the docker config (run docker login %s)", key, key)
			}
			if user, pass, err = helper(ctx, h, key); err != nil {
				return nil, fmt.Errorf("credentials for %s from helper %q: %w", key, h, err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("entry %s: %w", key, err)
		}
		out.Auths[key] = NewEntry(user, pass)
	}
	if len(out.Auths) == 0 {
		return nil, errors.New("the docker config holds no credentials (run docker login first)")
	}
	return out, nil
}

// JSON encodes the config compactly, as a Secret's payload.
func (c *DockerConfig) JSON() ([]byte, error) {
	return json.Marshal(c)
}
