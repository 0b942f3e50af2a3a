package adminclient

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Config is the CLI credentials file: the server commands talk to by
// default and, for each server URL, the base64 of "user:password" the way
// docker keeps them.
type Config struct {
	Current string                 `json:"current,omitempty"`
	Servers map[string]ServerEntry `json:"servers"`
}

// ServerEntry holds the stored credentials of one server.
type ServerEntry struct {
	Auth string `json:"auth"`
}

// DefaultConfigPath returns $BERTH_CONFIG_DIR/config.json, or else
// berth/config.json under os.UserConfigDir().
func DefaultConfigPath(getenv func(string) string) (string, error) {
	if dir := getenv("BERTH_CONFIG_DIR"); dir != "" {
		return filepath.Join(dir, "config.json"), nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("cannot find a config directory: %v (set BERTH_CONFIG_DIR)", err)
	}
	return filepath.Join(dir, "berth", "config.json"), nil
}

// LoadConfig reads the config file at path. A missing file is an empty
// config, not an error.
func LoadConfig(path string) (*Config, error) {
	cfg := &Config{Servers: map[string]ServerEntry{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if err := json.Unmarshal(data, cfg); err != nil {
		return nil, fmt.Errorf("%s is not a valid berth config file: %v", path, err)
	}
	if cfg.Servers == nil {
		cfg.Servers = map[string]ServerEntry{}
	}
	return cfg, nil
}

// Save writes the config to path atomically with mode 0600. A directory
// it has to create gets mode 0700; an existing one is left as it is.
func (c *Config) Save(path string) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// SetCredentials stores user and password for the server at serverURL,
// which must already be normalized (see NormalizeURL).
func (c *Config) SetCredentials(serverURL, user, password string) {
	if c.Servers == nil {
		c.Servers = map[string]ServerEntry{}
	}
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	c.Servers[serverURL] = ServerEntry{Auth: auth}
}

// Credentials returns the stored user and password for serverURL; ok is
// false when there are none.
func (c *Config) Credentials(serverURL string) (user, password string, ok bool, err error) {
	e, found := c.Servers[serverURL]
	if !found || e.Auth == "" {
		return "", "", false, nil
	}
	raw, err := base64.StdEncoding.DecodeString(e.Auth)
	if err != nil {
		return "", "", false, fmt.Errorf("stored credentials for %s are corrupt (run: berth login %s)", serverURL, serverURL)
	}
	user, password, found = strings.Cut(string(raw), ":")
	if !found || user == "" {
		return "", "", false, fmt.Errorf("stored credentials for %s are corrupt (run: berth login %s)", serverURL, serverURL)
	}
	return user, password, true, nil
}

// Remove forgets the credentials of serverURL and, if it was the current
// server, clears Current. It reports whether there was anything to forget.
func (c *Config) Remove(serverURL string) bool {
	_, found := c.Servers[serverURL]
	delete(c.Servers, serverURL)
	if c.Current == serverURL {
		c.Current = ""
		found = true
	}
	return found
}

// NormalizeURL turns a registry address as typed by a user into the form
// used as the key of the config file: scheme://host[:port], lower case,
// https:// when no scheme is given, without a default port or trailing
// slash. Paths, queries and credentials in the URL are rejected.
func NormalizeURL(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", errors.New("registry URL is empty")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		if strings.Contains(raw, "@") {
			return "", errors.New("invalid registry URL")
		}
		return "", fmt.Errorf("invalid registry URL %q", raw)
	}
	if u.User != nil {
		return "", errors.New("registry URL must not contain credentials (use berth login)")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", fmt.Errorf("unsupported URL scheme %q in %q (use https:// or http://)", u.Scheme, raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("registry URL %q must not have a path (use scheme://host[:port])", raw)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Host), ":")
	if scheme == "https" {
		host = strings.TrimSuffix(host, ":443")
	} else {
		host = strings.TrimSuffix(host, ":80")
	}
	return scheme + "://" + host, nil
}
