// Package config loads berth's server configuration from, in rising order
// of precedence, built-in defaults, a YAML file, BERTH_* environment
// variables and command-line flags.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// LDAPConfig is the LDAP directory berth signs people in with (package
// ldapauth's Config, as settings).
type LDAPConfig struct {
	URL, CACertFile, BindDN, BindPassword string
	StartTLS                              bool
	UserBase, UserFilter, UserAttr        string
	GroupBase, GroupFilter, GroupAttr     string
}

// OIDCConfig is the OpenID Connect provider people sign in through
// (package oidcauth's Config, as settings).
type OIDCConfig struct {
	Issuer, ClientID, ClientSecret string
	// Scopes are space-separated.
	Scopes                     string
	UsernameClaim, GroupsClaim string
	CACertFile                 string
	// Name is what the sign-in page calls the provider.
	Name string
	// SessionTTL is the lifetime of `berth login --oidc` sessions.
	SessionTTL time.Duration
}

// Config is the server configuration.
type Config struct {
	Addr            string
	DataDir         string
	Auth            string
	LogLevel        string
	LogFormat       string
	MaxManifestSize int64
	UploadTTL       time.Duration
	ShutdownTimeout time.Duration
	ShutdownDelay   time.Duration
	// LDAP is single sign-on with a directory (empty URL: off).
	LDAP LDAPConfig
	// OIDC is single sign-on through an OpenID Connect provider (empty
	// issuer: off).
	OIDC OIDCConfig
	// SSORecheck is how often an identity provider is asked again about
	// a person whose credential does not go through it.
	SSORecheck time.Duration
	// LocalLogin is "all" or "admins" (local passwords of admins only,
	// when a directory is configured).
	LocalLogin     string
	DebugAddr      string
	BodyTimeout    time.Duration
	AdminPassword  string
	ExternalURL    string
	TrustedProxies string
	TokenTTL       time.Duration
	TLSCert        string
	TLSKey         string
	IdentityTokens bool
	GCInterval     time.Duration
	GCGrace        time.Duration
	KeysDir        string
	Storage        string
	S3Bucket       string
	S3Prefix       string
	S3Region       string
	S3Endpoint     string
	S3PathStyle    bool
	S3Redirect     bool
	Metadata       string
	PostgresDSN    string
	PostgresConns  int
	// PostgresCacheMiB is the budget of a replica's read cache of
	// manifests and blob links (metadata postgres); 0 turns it off.
	PostgresCacheMiB int

	// MaxUploadSessions bounds the open upload sessions per namespace.
	MaxUploadSessions int
	// MetricsAddr serves /metrics on a listener of its own, without
	// authentication; MetricsPublic serves /metrics on the main listener
	// without authentication (else it needs an admin's credentials).
	MetricsAddr   string
	MetricsPublic bool
	// ConsoleOff is the console setting negated: the web console is served
	// unless it is set.
	ConsoleOff bool
	// MetricsOff is the metrics setting negated (so that a Config built in
	// code serves metrics): no metrics middleware, no /metrics.
	MetricsOff bool
	// Tracing is "auto" (export spans when the OTEL_* environment says
	// where), "off", "otlp-http" or "otlp-grpc".
	Tracing string

	// AuditLog is where audit records go besides the metadata store:
	// "file" (<data_dir>/audit.log), "stdout" or "none". AuditRetention
	// is how long the store keeps them (0: forever).
	AuditLog       string
	AuditRetention time.Duration

	// WebhookAttempts is how many failed attempts make a webhook delivery
	// dead; WebhookBackoff and WebhookBackoffMax bound the wait between
	// attempts.
	WebhookAttempts   int
	WebhookBackoff    time.Duration
	WebhookBackoffMax time.Duration

	// Version is the binary's version (not a setting), for metrics.
	Version string
}

// Option is one configuration setting. Its key names it in YAML
// (data_dir), the environment (BERTH_DATA_DIR) and flags (--data-dir).
type Option struct {
	Key     string
	Default string
	Help    string
	set     func(*Config, string) error
}

// Env is the environment variable of the option.
func (o Option) Env() string { return "BERTH_" + strings.ToUpper(o.Key) }

// Flag is the command-line flag of the option.
func (o Option) Flag() string { return strings.ReplaceAll(o.Key, "_", "-") }

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func dur(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 30s or 24h, got %q", v)
		}
		*p(c) = d
		return nil
	}
}

// durOrZero is dur that also takes 0 (off).
func durOrZero(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("want a duration such as 5s, or 0s for none, got %q", v)
		}
		*p(c) = d
		return nil
	}
}

func positive(p func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("want a positive number, got %q", v)
		}
		*p(c) = n
		return nil
	}
}

func boolean(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		*p(c) = b
		return nil
	}
}

// negated reads a boolean setting into a field that holds its negation
// (an "Off" field, so that a Config built in code has the setting on).
func negated(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		*p(c) = !b
		return nil
	}
}

// age reads a duration that may be 0 (off) and may be given in days (90d).
func age(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		var d time.Duration
		var err error
		if n, ok := strings.CutSuffix(v, "d"); ok {
			var days int
			days, err = strconv.Atoi(n)
			d = time.Duration(days) * 24 * time.Hour
			if days < 0 || days > 36500 {
				err = fmt.Errorf("out of range")
			}
		} else {
			d, err = time.ParseDuration(v)
		}
		if err != nil || d < 0 {
			return fmt.Errorf("want a duration such as 90d or 720h, or 0 for forever, got %q", v)
		}
		*p(c) = d
		return nil
	}
}

func oneOf(p func(*Config) *string, allowed ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		for _, a := range allowed {
			if v == a {
				*p(c) = v
				return nil
			}
		}
		return fmt.Errorf("want one of %s, got %q", strings.Join(allowed, ", "), v)
	}
}

// Options lists every setting with its default.
var Options = []Option{
	{"addr", ":5000", "address to listen on (host:port)", str(func(c *Config) *string { return &c.Addr })},
	{"data_dir", "./data", "directory for blobs and the metadata database", str(func(c *Config) *string { return &c.DataDir })},
	{"auth", "token", "authentication: \"token\" (accounts and bearer tokens) or \"none\" (an open registry for local use)", oneOf(func(c *Config) *string { return &c.Auth }, "token", "none")},
	{"admin_password", "", "password of the admin user created on first start; empty generates one and logs it once", str(func(c *Config) *string { return &c.AdminPassword })},
	{"external_url", "", "URL clients reach berth at (e.g. https://registry.example.com), used in auth challenges; empty derives it from each request", str(func(c *Config) *string { return &c.ExternalURL })},
	{"trusted_proxies", "", "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-Proto/Host/For headers are believed", str(func(c *Config) *string { return &c.TrustedProxies })},
	{"token_ttl", "5m", "lifetime of access tokens", dur(func(c *Config) *time.Duration { return &c.TokenTTL })},
	{"identity_tokens", "false", "answer docker login's offline_token=true with a refresh token, which docker stores as identitytoken instead of the password; off by default because the kubelet cannot use identity tokens, so a pull Secret made from such a docker config fails", boolean(func(c *Config) *bool { return &c.IdentityTokens })},
	{"tls_cert", "", "TLS certificate file (PEM); with tls_key, berth serves HTTPS", str(func(c *Config) *string { return &c.TLSCert })},
	{"tls_key", "", "TLS private key file (PEM)", str(func(c *Config) *string { return &c.TLSKey })},
	{"log_level", "info", "log level: debug, info, warn or error", oneOf(func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error")},
	{"log_format", "text", "log format: text or json", oneOf(func(c *Config) *string { return &c.LogFormat }, "text", "json")},
	{"max_manifest_size", "4194304", "largest manifest accepted, in bytes", func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("want a positive number of bytes, got %q", v)
		}
		c.MaxManifestSize = n
		return nil
	}},
	{"upload_ttl", "24h", "how long an upload may sit idle before it is removed", dur(func(c *Config) *time.Duration { return &c.UploadTTL })},
	{"max_upload_sessions", "100", "open upload sessions per namespace; one more is refused with 429 until one ends or expires", positive(func(c *Config) *int { return &c.MaxUploadSessions })},
	{"webhook_attempts", "10", "failed attempts after which a webhook delivery is dead (listed by berth webhook deliveries --state dead, sent again by berth webhook redeliver)", positive(func(c *Config) *int { return &c.WebhookAttempts })},
	{"webhook_backoff", "1s", "wait after a webhook delivery's first failed attempt, doubled after each further one (with jitter)", dur(func(c *Config) *time.Duration { return &c.WebhookBackoff })},
	{"webhook_backoff_max", "5m", "longest wait between attempts at a webhook delivery", dur(func(c *Config) *time.Duration { return &c.WebhookBackoffMax })},
	{"body_timeout", "2m", "a request body that sends nothing for this long is cut off, freeing its connection and upload", dur(func(c *Config) *time.Duration { return &c.BodyTimeout })},
	{"gc_interval", "24h", "how often garbage collection runs while berth serves (also on demand: berth gc)", dur(func(c *Config) *time.Duration { return &c.GCInterval })},
	{"gc_grace", "1h", "content younger than this is never collected: blobs pushed for a manifest not pushed yet, manifests pushed before their index", dur(func(c *Config) *time.Duration { return &c.GCGrace })},
	{"metrics_addr", "", "address of a listener of its own serving Prometheus metrics at /metrics without authentication (e.g. 127.0.0.1:9090 or :9090 inside a pod); empty serves them only on the main listener", str(func(c *Config) *string { return &c.MetricsAddr })},
	{"metrics", "true", "count and time requests for Prometheus and serve them at /metrics; false drops the metrics middleware from every request and /metrics answers 404 (and metrics_addr is not served)", negated(func(c *Config) *bool { return &c.MetricsOff })},
	{"console", "true", "serve the web console at / on the main listener (sign-in with berth's accounts; false: / answers 404)", negated(func(c *Config) *bool { return &c.ConsoleOff })},
	{"metrics_public", "false", "serve /metrics on the main listener without authentication; else, with auth on, it needs an admin's Basic credentials", boolean(func(c *Config) *bool { return &c.MetricsPublic })},
	{"tracing", "auto", "OpenTelemetry tracing: \"auto\" exports spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp) is set, \"off\" never, \"otlp-http\" or \"otlp-grpc\" always (to the OTEL_EXPORTER_OTLP_* endpoint, else localhost)", oneOf(func(c *Config) *string { return &c.Tracing }, "auto", "off", "otlp-http", "otlp-grpc")},
	{"audit_log", "file", "where audit records go besides the metadata database (always, with auth on): \"file\" (<data_dir>/audit.log, JSON lines), \"stdout\" (JSON lines) or \"none\"", oneOf(func(c *Config) *string { return &c.AuditLog }, "file", "stdout", "none")},
	{"audit_retention", "90d", "how long the metadata database keeps audit entries (e.g. 90d or 720h); 0 keeps them forever", age(func(c *Config) *time.Duration { return &c.AuditRetention })},
	{"debug_addr", "", "address for Go profiling endpoints (/debug/pprof/); empty turns them off; keep it on loopback", str(func(c *Config) *string { return &c.DebugAddr })},
	{"keys_dir", "", "directory of the token signing keys (*.pem, ECDSA P-256; the name sorting last signs); empty is <data_dir>/keys. Replicas must share it (e.g. one Kubernetes Secret)", str(func(c *Config) *string { return &c.KeysDir })},
	{"storage", "filesystem", "where blobs live: \"filesystem\" (under data_dir) or \"s3\" (an S3-compatible bucket, for several replicas)", oneOf(func(c *Config) *string { return &c.Storage }, "filesystem", "s3")},
	{"s3_bucket", "", "S3 bucket for blobs (storage s3)", str(func(c *Config) *string { return &c.S3Bucket })},
	{"s3_prefix", "", "key prefix inside the bucket, e.g. berth/", str(func(c *Config) *string { return &c.S3Prefix })},
	{"s3_region", "us-east-1", "S3 region", str(func(c *Config) *string { return &c.S3Region })},
	{"s3_endpoint", "", "S3 endpoint URL for S3-compatible servers (empty: AWS); credentials come from the AWS SDK's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, shared config, IAM roles)", str(func(c *Config) *string { return &c.S3Endpoint })},
	{"s3_path_style", "false", "address the bucket in the path (endpoint/bucket/key) instead of the host name, as most S3-compatible servers want", boolean(func(c *Config) *bool { return &c.S3PathStyle })},
	{"s3_redirect", "false", "answer blob GETs with a redirect to a presigned S3 URL instead of streaming through berth", boolean(func(c *Config) *bool { return &c.S3Redirect })},
	{"metadata", "sqlite", "metadata database: \"sqlite\" (embedded, in data_dir) or \"postgres\" (shared by replicas)", oneOf(func(c *Config) *string { return &c.Metadata }, "sqlite", "postgres")},
	{"postgres_dsn", "", "PostgreSQL connection string (metadata postgres), e.g. postgres://berth:PASSWORD@db:5432/berth?sslmode=require; a secret: prefer the environment", str(func(c *Config) *string { return &c.PostgresDSN })},
	{"postgres_conns", "20", "largest number of PostgreSQL connections per replica for transactions (as many again are kept for digest locks)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("want a positive number, got %q", v)
		}
		c.PostgresConns = n
		return nil
	}},
	{"postgres_cache_mib", "64", "MiB of manifests and blob links a replica keeps in memory to answer manifest GETs and blob HEADs without asking PostgreSQL (kept coherent with LISTEN/NOTIFY; 0: off)", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a number of MiB, 0 or more, got %q", v)
		}
		c.PostgresCacheMiB = n
		return nil
	}},
	{"ldap_url", "", "single sign-on with an LDAP directory: ldap://host:port or ldaps://host:port (empty: off); people sign in with their directory name and password, and their groups map to roles (berth group-map); see docs/sso.md", str(func(c *Config) *string { return &c.LDAP.URL })},
	{"ldap_start_tls", "false", "upgrade the ldap:// connection with StartTLS", boolean(func(c *Config) *bool { return &c.LDAP.StartTLS })},
	{"ldap_ca_cert", "", "PEM file of the certificates that verify the directory (ldaps or StartTLS); empty: the system's", str(func(c *Config) *string { return &c.LDAP.CACertFile })},
	{"ldap_bind_dn", "", "the service account that searches the directory (empty: anonymous searches)", str(func(c *Config) *string { return &c.LDAP.BindDN })},
	{"ldap_bind_password", "", "the service account's password (a secret: give it as BERTH_LDAP_BIND_PASSWORD)", str(func(c *Config) *string { return &c.LDAP.BindPassword })},
	{"ldap_user_base", "", "where accounts are searched, e.g. ou=people,dc=example,dc=com", str(func(c *Config) *string { return &c.LDAP.UserBase })},
	{"ldap_user_filter", "(uid=%s)", "finds one account by name (%s is the name, escaped); leave disabled accounts out here, e.g. for Active Directory (&(sAMAccountName=%s)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))", str(func(c *Config) *string { return &c.LDAP.UserFilter })},
	{"ldap_user_attr", "uid", "the attribute holding an account's name (sAMAccountName for Active Directory)", str(func(c *Config) *string { return &c.LDAP.UserAttr })},
	{"ldap_group_base", "", "where groups are searched (empty: ldap_user_base)", str(func(c *Config) *string { return &c.LDAP.GroupBase })},
	{"ldap_group_filter", "(member=%s)", "finds an account's groups (%s is the account's DN, escaped); empty: no groups", str(func(c *Config) *string { return &c.LDAP.GroupFilter })},
	{"ldap_group_attr", "cn", "the attribute naming a group, as group mappings name it", str(func(c *Config) *string { return &c.LDAP.GroupAttr })},
	{"oidc_issuer", "", "single sign-on through an OpenID Connect provider: its issuer URL, e.g. https://login.example.com/realms/eng (empty: off); register berth's callback <external_url>/oidc/callback there; see docs/sso.md", str(func(c *Config) *string { return &c.OIDC.Issuer })},
	{"oidc_client_id", "", "berth's client id at the OpenID Connect provider", str(func(c *Config) *string { return &c.OIDC.ClientID })},
	{"oidc_client_secret", "", "berth's client secret there (a secret: give it as BERTH_OIDC_CLIENT_SECRET); it also keys what berth seals (sign-in cookies, the provider's refresh tokens), so changing it asks everyone signed in through OIDC to sign in again", str(func(c *Config) *string { return &c.OIDC.ClientSecret })},
	{"oidc_scopes", "openid profile offline_access", "scopes asked for, space-separated; offline_access (a refresh token) lets berth read people's groups again, and some providers need groups to send the groups claim", str(func(c *Config) *string { return &c.OIDC.Scopes })},
	{"oidc_username_claim", "preferred_username", "the ID token claim that names the berth account (lower-cased; it must be a valid account name)", str(func(c *Config) *string { return &c.OIDC.UsernameClaim })},
	{"oidc_groups_claim", "groups", "the ID token claim that lists the person's groups, as group mappings name them", str(func(c *Config) *string { return &c.OIDC.GroupsClaim })},
	{"oidc_ca_cert", "", "PEM file of the certificates that verify the provider (empty: the system's)", str(func(c *Config) *string { return &c.OIDC.CACertFile })},
	{"oidc_name", "single sign-on", "what the console's sign-in button calls the provider (\"Sign in with ...\")", str(func(c *Config) *string { return &c.OIDC.Name })},
	{"oidc_session_ttl", "12h", "lifetime of the session berth login --oidc stores (it stands for a password: the admin API, berth token create)", dur(func(c *Config) *time.Duration { return &c.OIDC.SessionTTL })},
	{"sso_recheck", "1m", "how often berth asks the directory or OpenID Connect provider again about a person using a personal access token, session or refresh token: removal from a group there takes effect within this time plus token_ttl", dur(func(c *Config) *time.Duration { return &c.SSORecheck })},
	{"local_login", "all", "with a directory or OpenID Connect provider configured: \"all\" (local accounts sign in with their passwords too) or \"admins\" (only admins do: break glass)", oneOf(func(c *Config) *string { return &c.LocalLogin }, "all", "admins")},
	{"shutdown_delay", "0s", "after SIGTERM, how long berth keeps serving (new connections too) while /readyz answers 503 and responses close their connections, before it stops accepting: the time a load balancer or a Kubernetes Service needs to stop sending it requests", durOrZero(func(c *Config) *time.Duration { return &c.ShutdownDelay })},
	{"shutdown_timeout", "30s", "how long in-flight requests may run after SIGTERM (after shutdown_delay)", dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
}

// RegisterFlags adds a flag per option, plus --config, to fs.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML configuration file (env BERTH_CONFIG)")
	for _, o := range Options {
		fs.String(o.Flag(), o.Default, o.Help+" (env "+o.Env()+")")
	}
}

// Load builds the configuration: defaults, then the YAML file named by
// --config or BERTH_CONFIG, then the environment, then flags set explicitly.
func Load(fs *pflag.FlagSet, getenv func(string) string) (*Config, error) {
	c := &Config{}
	byKey := map[string]Option{}
	for _, o := range Options {
		byKey[o.Key] = o
		if err := o.set(c, o.Default); err != nil {
			return nil, fmt.Errorf("default of %s: %w", o.Key, err)
		}
	}
	path := getenv("BERTH_CONFIG")
	if f := fs.Lookup("config"); f != nil && f.Changed {
		path = f.Value.String()
	}
	if path != "" {
		values, err := readFile(path)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(values))
		for k := range values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			o, ok := byKey[k]
			if !ok {
				return nil, fmt.Errorf("%s: unknown setting %q (see berth serve --help)", path, k)
			}
			if err := o.set(c, values[k]); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, k, err)
			}
		}
	}
	for _, o := range Options {
		if v := getenv(o.Env()); v != "" {
			if err := o.set(c, v); err != nil {
				return nil, fmt.Errorf("%s: %w", o.Env(), err)
			}
		}
	}
	for _, o := range Options {
		if f := fs.Lookup(o.Flag()); f != nil && f.Changed {
			if err := o.set(c, f.Value.String()); err != nil {
				return nil, fmt.Errorf("--%s: %w", o.Flag(), err)
			}
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, fmt.Errorf("tls_cert and tls_key go together: set both or neither")
	}
	if _, err := ParseProxies(c.TrustedProxies); err != nil {
		return nil, err
	}
	if c.Storage == "s3" && c.S3Bucket == "" {
		return nil, fmt.Errorf("storage s3 needs s3_bucket")
	}
	if c.Metadata == "postgres" && c.PostgresDSN == "" {
		return nil, fmt.Errorf("metadata postgres needs postgres_dsn (env BERTH_POSTGRES_DSN)")
	}
	if c.KeysDir == "" {
		c.KeysDir = filepath.Join(c.DataDir, "keys")
	}
	return c, nil
}

// ParseProxies parses the trusted_proxies setting.
func ParseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted_proxies: %q is not an address or CIDR", f)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies: %q is not an address or CIDR", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func readFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %w", path, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch v.(type) {
		case map[string]any, []any:
			return nil, fmt.Errorf("%s: %s: want a single value", path, k)
		}
		out[k] = fmt.Sprint(v)
	}
	return out, nil
}
