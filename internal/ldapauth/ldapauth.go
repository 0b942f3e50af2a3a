// Package ldapauth signs people in against an LDAP directory (OpenLDAP,
// Active Directory): it finds the account with a search, checks the
// password with a bind as that account, and reads the account's groups.
// berth never stores the password. It implements auth.Directory and knows
// nothing of HTTP or SQL.
package ldapauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/tlscert"
)

// Source is the users' source recorded for the people this package signs
// in (metadata.SourceLDAP).
const Source = "ldap"

// Config is how to reach and search the directory.
type Config struct {
	// URL is ldap://host:port or ldaps://host:port.
	URL string
	// StartTLS upgrades an ldap:// connection with StartTLS.
	StartTLS bool
	// CACertFile holds the PEM certificates that verify the server (ldaps
	// or StartTLS); empty: the system's roots.
	CACertFile string
	// BindDN and BindPassword are the service account that searches;
	// empty BindDN: anonymous searches.
	BindDN, BindPassword string
	// UserBase is where accounts are searched; UserFilter finds one by
	// name (%s is the name, escaped), e.g. (uid=%s) or, for Active
	// Directory, (&(sAMAccountName=%s)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))
	// to leave out disabled accounts; UserAttr holds the account's name.
	UserBase, UserFilter, UserAttr string
	// GroupBase is where groups are searched; GroupFilter finds the
	// account's groups (%s is the account's DN, escaped), e.g.
	// (member=%s); GroupAttr names a group. Empty GroupFilter: no groups.
	GroupBase, GroupFilter, GroupAttr string
	// Timeout bounds each connection and request (default 10 s).
	Timeout time.Duration
}

// Directory is an LDAP directory as an auth.Directory.
type Directory struct {
	cfg Config
	tls *tls.Config
}

// New checks cfg and returns the directory. It does not connect.
func New(cfg Config) (*Directory, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		return nil, fmt.Errorf("ldap_url %q: want ldap://host:port or ldaps://host:port", cfg.URL)
	}
	if cfg.StartTLS && u.Scheme == "ldaps" {
		return nil, errors.New("ldap_start_tls is for ldap:// URLs; ldaps:// is TLS already")
	}
	if cfg.UserBase == "" {
		return nil, errors.New("ldap_user_base is required")
	}
	if strings.Count(cfg.UserFilter, "%s") != 1 {
		return nil, fmt.Errorf("ldap_user_filter %q must hold %%s (the name) once", cfg.UserFilter)
	}
	if cfg.GroupFilter != "" && strings.Count(cfg.GroupFilter, "%s") != 1 {
		return nil, fmt.Errorf("ldap_group_filter %q must hold %%s (the account's DN) once", cfg.GroupFilter)
	}
	if cfg.UserAttr == "" {
		cfg.UserAttr = "uid"
	}
	if cfg.GroupAttr == "" {
		cfg.GroupAttr = "cn"
	}
	if cfg.GroupBase == "" {
		cfg.GroupBase = cfg.UserBase
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	d := &Directory{cfg: cfg, tls: &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}}
	if cfg.CACertFile != "" {
		pool, err := tlscert.CAPool(cfg.CACertFile, nil)
		if err != nil {
			return nil, fmt.Errorf("ldap_ca_cert: %w", err)
		}
		d.tls.RootCAs = pool
	}
	return d, nil
}

// Source implements auth.Directory.
func (d *Directory) Source() string { return Source }

// Authenticate implements auth.Directory.
func (d *Directory) Authenticate(ctx context.Context, name, password string) (*auth.Identity, error) {
	if password == "" || name == "" {
		// An empty password would be an unauthenticated bind, which
		// servers accept without checking anything.
		return nil, auth.ErrBadCredentials
	}
	return d.identify(ctx, name, func(conn *ldap.Conn, dn string) error {
		if err := conn.Bind(dn, password); err != nil {
			if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
				return auth.ErrBadCredentials
			}
			return fmt.Errorf("ldap: bind as the account: %w", err)
		}
		return nil
	})
}

// Lookup implements auth.Directory: the account and its groups as the
// service account sees them now.
func (d *Directory) Lookup(ctx context.Context, name string) (*auth.Identity, error) {
	if name == "" {
		return nil, auth.ErrBadCredentials
	}
	return d.identify(ctx, name, nil)
}

// identify finds name's account, runs check on it (the password bind),
// and reads its groups.
func (d *Directory) identify(ctx context.Context, name string, check func(conn *ldap.Conn, dn string) error) (*auth.Identity, error) {
	conn, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := d.serviceBind(conn); err != nil {
		return nil, err
	}
	res, err := conn.Search(ldap.NewSearchRequest(d.cfg.UserBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2,
		int(d.cfg.Timeout.Seconds()), false, fmt.Sprintf(d.cfg.UserFilter, ldap.EscapeFilter(name)), []string{d.cfg.UserAttr}, nil))
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return nil, fmt.Errorf("ldap: search for the account: %w", err)
	}
	if res == nil || len(res.Entries) != 1 {
		// None (unknown, or left out by the filter: disabled) or several
		// (ambiguous): no sign-in either way.
		return nil, auth.ErrBadCredentials
	}
	entry := res.Entries[0]
	if check != nil {
		if err := check(conn, entry.DN); err != nil {
			return nil, err
		}
	}
	id := &auth.Identity{Name: strings.ToLower(entry.GetAttributeValue(d.cfg.UserAttr)), Groups: []string{}}
	if d.cfg.GroupFilter == "" {
		return id, nil
	}
	// Groups are read with the service account's rights.
	if err := d.serviceBind(conn); err != nil {
		return nil, err
	}
	gres, err := conn.Search(ldap.NewSearchRequest(d.cfg.GroupBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0,
		int(d.cfg.Timeout.Seconds()), false, fmt.Sprintf(d.cfg.GroupFilter, ldap.EscapeFilter(entry.DN)), []string{d.cfg.GroupAttr}, nil))
	if err != nil {
		return nil, fmt.Errorf("ldap: search for the account's groups: %w", err)
	}
	for _, g := range gres.Entries {
		id.Groups = append(id.Groups, g.GetAttributeValues(d.cfg.GroupAttr)...)
	}
	return id, nil
}

// connect dials the directory (TLS as configured) within the timeout.
func (d *Directory) connect(ctx context.Context) (*ldap.Conn, error) {
	dialer := &net.Dialer{Timeout: d.cfg.Timeout}
	if deadline, ok := ctx.Deadline(); ok {
		dialer.Deadline = deadline
	}
	conn, err := ldap.DialURL(d.cfg.URL, ldap.DialWithDialer(dialer), ldap.DialWithTLSConfig(d.tls))
	if err != nil {
		return nil, fmt.Errorf("ldap: connect to %s: %w", d.cfg.URL, err)
	}
	conn.SetTimeout(d.cfg.Timeout)
	if d.cfg.StartTLS {
		if err := conn.StartTLS(d.tls); err != nil {
			conn.Close()
			return nil, fmt.Errorf("ldap: StartTLS with %s: %w", d.cfg.URL, err)
		}
	}
	return conn, nil
}

// serviceBind binds as the service account (or stays anonymous).
func (d *Directory) serviceBind(conn *ldap.Conn) error {
	if d.cfg.BindDN == "" {
		return nil
	}
	if err := conn.Bind(d.cfg.BindDN, d.cfg.BindPassword); err != nil {
		// Not the person's fault: said as a server-side failure, without
		// the password.
		return fmt.Errorf("ldap: bind as the service account %s: %w", d.cfg.BindDN, err)
	}
	return nil
}
