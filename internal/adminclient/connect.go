package adminclient

import (
	"errors"
	"fmt"
	"strings"
)

// Target says which server a CLI command talks to and how. Empty fields
// fall back to the environment and the config file; see Connect.
type Target struct {
	// Registry is the --registry flag.
	Registry string
	// CACertFile is the --ca-cert flag.
	CACertFile string
	// InsecureSkipTLSVerify is the --insecure-skip-tls-verify flag.
	InsecureSkipTLSVerify bool
	// Username and Password, when Username is set, are used as they are
	// (berth login); otherwise credentials are looked up.
	Username, Password string
	// ConfigPath is the credentials file; empty means DefaultConfigPath.
	ConfigPath string
	// Getenv reads the environment (os.Getenv outside tests).
	Getenv func(string) string
	// UserAgent is sent with every request.
	UserAgent string
}

// NotLoggedInError says there are no credentials for a server.
type NotLoggedInError struct {
	URL string
}

// Error renders the error with the command that fixes it.
func (e *NotLoggedInError) Error() string {
	return fmt.Sprintf("not logged in to %s (run: berth login %s)", e.URL, e.URL)
}

// ConfigFile returns the path of the credentials file for t.
func (t Target) ConfigFile() (string, error) {
	if t.ConfigPath != "" {
		return t.ConfigPath, nil
	}
	return DefaultConfigPath(t.getenv)
}

func (t Target) getenv(k string) string {
	if t.Getenv == nil {
		return ""
	}
	return t.Getenv(k)
}

// ResolveURL returns the normalized server URL: the Registry field, else
// $BERTH_REGISTRY, else the config file's current server.
func (t Target) ResolveURL() (string, error) {
	raw := t.Registry
	if raw == "" {
		raw = t.getenv("BERTH_REGISTRY")
	}
	if raw != "" {
		return NormalizeURL(raw)
	}
	path, err := t.ConfigFile()
	if err != nil {
		return "", err
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		return "", err
	}
	if cfg.Current == "" {
		return "", errors.New("no registry selected (run: berth login URL, or pass --registry URL)")
	}
	return cfg.Current, nil
}

// Connect resolves the server URL and the credentials and returns a
// Client. Credentials are Username/Password when Username is set, else
// $BERTH_USERNAME and $BERTH_PASSWORD when set, else the config file's
// entry for the URL, else none (an open registry's admin API needs none;
// another answers 401, returned as *NotLoggedInError). The CA bundle is CACertFile, else $BERTH_CA_CERT.
func Connect(t Target) (*Client, error) {
	base, err := t.ResolveURL()
	if err != nil {
		return nil, err
	}
	opts := Options{
		URL:                   base,
		CACertFile:            t.CACertFile,
		InsecureSkipTLSVerify: t.InsecureSkipTLSVerify,
		UserAgent:             t.UserAgent,
		Username:              t.Username,
		Password:              t.Password,
	}
	if opts.CACertFile == "" {
		opts.CACertFile = t.getenv("BERTH_CA_CERT")
	}
	envUser, envPass := t.getenv("BERTH_USERNAME"), t.getenv("BERTH_PASSWORD")
	switch {
	case t.Username != "":
		// Given explicitly (berth login): a 401 needs no hint.
	case envUser != "" && envPass != "":
		opts.Username, opts.Password = envUser, envPass
		opts.AuthHint = "check BERTH_USERNAME and BERTH_PASSWORD"
	case envUser != "" || envPass != "":
		return nil, errors.New("set both BERTH_USERNAME and BERTH_PASSWORD, or neither to use the credentials of berth login")
	default:
		path, err := t.ConfigFile()
		if err != nil {
			return nil, err
		}
		cfg, err := LoadConfig(path)
		if err != nil {
			return nil, err
		}
		user, pass, ok, err := cfg.Credentials(base)
		if err != nil {
			return nil, err
		}
		if !ok {
			// None stored: go without, as to an open registry (auth
			// off); a server that wants them answers NotLoggedInError.
			return New(opts)
		}
		opts.Username, opts.Password = user, pass
		opts.AuthHint = "run: berth login " + base
		if strings.HasPrefix(pass, "berth-session-") {
			// A single sign-on session (berth login --oidc): it expired
			// or the person's access changed.
			opts.AuthHint = "sign in again: berth login --oidc " + base
		}
	}
	return New(opts)
}
