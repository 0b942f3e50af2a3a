package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/berth-registry/berth/internal/adminapi"
	"github.com/berth-registry/berth/internal/audit"
	"github.com/berth-registry/berth/internal/auditapi"
	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/gc"
	"github.com/berth-registry/berth/internal/ldapauth"
	"github.com/berth-registry/berth/internal/oidcauth"
	"github.com/berth-registry/berth/internal/ssoapi"
	"github.com/berth-registry/berth/internal/token"
	"github.com/berth-registry/berth/internal/tokenapi"
)

// origin works out how clients reach this server: the configured external
// URL, or the request's scheme and host, taking X-Forwarded-* headers only
// from trusted proxies.
type origin struct {
	external string
	trusted  []netip.Prefix
}

func (o *origin) fromProxy(r *http.Request) bool {
	if len(o.trusted) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return o.trustedAddr(a.Unmap())
}

func (o *origin) trustedAddr(a netip.Addr) bool {
	for _, p := range o.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// baseURL is scheme://host of the server as the client sees it.
func (o *origin) baseURL(r *http.Request) string {
	if o.external != "" {
		return strings.TrimSuffix(o.external, "/")
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if o.fromProxy(r) {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
			scheme = p
		}
		if h := r.Header.Get("X-Forwarded-Host"); h != "" && !strings.ContainsAny(h, "\"/ \\,") {
			host = h
		}
	}
	return scheme + "://" + host
}

// clientIP is the address failed logins are counted against: the peer, or
// behind trusted proxies the nearest untrusted address in X-Forwarded-For.
// When every hop is trusted (clients inside the trusted ranges, such as
// nodes behind an ingress), it is the first hop, the client itself, not
// the proxy: clients behind one proxy must not share one limit.
func (o *origin) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !o.fromProxy(r) {
		return host
	}
	hops := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	first := host
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if !o.trustedAddr(a.Unmap()) {
			return a.String()
		}
		first = a.String()
	}
	return first
}

// guard adapts the auth service to what the registry API needs.
type guard struct {
	auth   *auth.Service
	origin *origin
	// audit is the audit log, for other records than the auth service's
	// (audit.Log.Record).
	audit *audit.Log
	// oidc is the OpenID Connect provider (nil: none configured).
	oidc *oidcauth.Provider
}

func (g *guard) Verify(ctx context.Context, tok string) (*token.Claims, error) {
	return g.auth.Verify(ctx, tok)
}

func (g *guard) Challenge(r *http.Request) (string, string) {
	return g.origin.baseURL(r) + "/token", g.auth.ServiceName()
}

func (g *guard) ClientIP(r *http.Request) string { return g.origin.clientIP(r) }

func (g *guard) IsAdmin(ctx context.Context, subject string) bool {
	p, err := g.auth.Principal(ctx, subject)
	return err == nil && p.Kind == auth.UserKind && p.Admin
}

func (g *guard) Viewer(ctx context.Context, subject string) (func(string) bool, error) {
	p, err := g.auth.Principal(ctx, subject)
	if err != nil {
		return func(string) bool { return false }, nil // deleted or revoked since the token
	}
	roles, err := g.auth.Roles(ctx, p)
	if err != nil {
		return nil, err
	}
	return func(repo string) bool { return g.auth.CanPull(ctx, p, repo, roles) }, nil
}

// setupAuth creates the auth service (keys, audit log, first admin),
// registers the token endpoints on mux and returns the admin API, for the
// caller to add the routes of other packages to and register.
func setupAuth(ctx context.Context, cfg *config.Config, acc auth.Store, log *slog.Logger, mux *http.ServeMux, runGC func(context.Context, gc.Options) (*gc.Report, error)) (*guard, *adminapi.Handler, func() error, error) {
	trusted, err := config.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, nil, nil, err
	}
	keysDir := cfg.KeysDir
	if keysDir == "" {
		keysDir = filepath.Join(cfg.DataDir, "keys")
	}
	keys, err := token.LoadKeys(keysDir)
	if err != nil {
		return nil, nil, nil, err
	}
	auditLog, auditStore, closeAudit, err := openAudit(cfg, acc, log)
	if err != nil {
		return nil, nil, nil, err
	}
	opts := auth.Options{Issuer: "berth", Service: "berth", TokenTTL: cfg.TokenTTL, IdentityTokens: cfg.IdentityTokens,
		SharedLimits: cfg.Metadata == "postgres", LocalLoginAdminOnly: cfg.LocalLogin == "admins"}
	if opts.Directory, err = directory(cfg); err != nil {
		closeAudit()
		return nil, nil, nil, err
	}
	oidc, err := oidcProvider(cfg, acc)
	if err != nil {
		closeAudit()
		return nil, nil, nil, err
	}
	if oidc != nil {
		opts.OIDC = oidc
	}
	opts.Recheck, opts.SessionTTL = cfg.SSORecheck, cfg.OIDC.SessionTTL
	if strings.HasPrefix(cfg.LDAP.URL, "ldap://") && !cfg.LDAP.StartTLS {
		log.Warn("ldap_url is plain ldap:// without ldap_start_tls: people's passwords and the service password cross the network unencrypted")
	}
	svc := auth.New(acc, keys, opts, slog.New(auditLog.Handler()))
	generated, err := svc.Bootstrap(ctx, cfg.AdminPassword)
	if err != nil {
		closeAudit()
		return nil, nil, nil, err
	}
	if generated != "" {
		// Shown once so the operator can log in; it is not stored anywhere
		// but as a bcrypt hash. Change it with: berth user passwd admin.
		log.Warn("created the first user: admin; this password is not shown again", "user", "admin", "password", generated)
	}
	o := &origin{external: cfg.ExternalURL, trusted: trusted}
	tokenapi.New(svc, log, o.clientIP).Register(mux)
	admin := adminapi.New(svc, log, o.clientIP)
	admin.GC = runGC
	auditapi.New(auditStore).Register(admin)
	ssoapi.New(svc).Register(admin)
	return &guard{auth: svc, origin: o, audit: auditLog, oidc: oidc}, admin, closeAudit, nil
}

// directory returns the configured identity directory, or nil.
func directory(cfg *config.Config) (auth.Directory, error) {
	l := cfg.LDAP
	if l.URL == "" {
		return nil, nil
	}
	d, err := ldapauth.New(ldapauth.Config{URL: l.URL, StartTLS: l.StartTLS, CACertFile: l.CACertFile, BindDN: l.BindDN, BindPassword: l.BindPassword,
		UserBase: l.UserBase, UserFilter: l.UserFilter, UserAttr: l.UserAttr, GroupBase: l.GroupBase, GroupFilter: l.GroupFilter, GroupAttr: l.GroupAttr})
	if err != nil {
		return nil, fmt.Errorf("ldap: %w", err)
	}
	return d, nil
}
