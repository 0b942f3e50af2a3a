package ldapauth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/testserver"
)

// directoryFor returns a Directory over srv's people and groups, searching
// as the admin, leaving out accounts marked employeeType=disabled.
func directoryFor(t *testing.T, srv *testserver.LDAPServer, mod func(*Config)) *Directory {
	t.Helper()
	cfg := Config{
		URL: srv.URL, BindDN: srv.AdminDN, BindPassword: srv.AdminPassword,
		UserBase: "ou=people," + srv.BaseDN, UserFilter: "(&(uid=%s)(!(employeeType=disabled)))",
		GroupBase: "ou=groups," + srv.BaseDN, GroupFilter: "(member=%s)",
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAuthenticate(t *testing.T) {
	srv := testserver.LDAP(t)
	srv.AddUser(t, "alice", "alice-pw-1")
	srv.AddUser(t, "bob", "bob-pw-1")
	srv.AddUser(t, "carol", "carol-pw-1", "employeeType: disabled")
	srv.AddGroup(t, "team-dev", "alice", "carol")
	srv.AddGroup(t, "readers", "alice", "bob")
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"plain", nil},
		{"starttls", func(c *Config) { c.StartTLS, c.CACertFile = true, srv.CACertFile }},
		{"ldaps", func(c *Config) { c.URL, c.CACertFile = srv.LDAPSURL, srv.CACertFile }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := directoryFor(t, srv, tc.mod)
			id, err := d.Authenticate(ctx, "Alice", "alice-pw-1")
			if err != nil {
				t.Fatalf("alice's password: %v", err)
			}
			slices.Sort(id.Groups)
			if id.Name != "alice" || !slices.Equal(id.Groups, []string{"readers", "team-dev"}) {
				t.Errorf("alice: %+v, want name alice and groups [readers team-dev]", id)
			}
			for _, bad := range []struct{ name, pw, why string }{
				{"alice", "wrong", "a wrong password"},
				{"alice", "", "an empty password (an unauthenticated bind would succeed)"},
				{"nobody", "alice-pw-1", "an unknown account"},
				{"carol", "carol-pw-1", "an account the filter leaves out (disabled)"},
				{"*", "alice-pw-1", "a wildcard name"},
				{"alice)(uid=*", "alice-pw-1", "a filter injection"},
			} {
				if _, err := d.Authenticate(ctx, bad.name, bad.pw); !errors.Is(err, auth.ErrBadCredentials) || err != auth.ErrBadCredentials {
					t.Errorf("%s (%q): %v, want exactly ErrBadCredentials", bad.why, bad.name, err)
				}
			}
		})
	}

	// Lookup (for personal access tokens): no password, the same answers.
	d := directoryFor(t, srv, nil)
	if id, err := d.Lookup(ctx, "alice"); err != nil || id.Name != "alice" || len(id.Groups) != 2 {
		t.Errorf("Lookup(alice): %+v %v, want alice in 2 groups", id, err)
	}
	for _, name := range []string{"carol", "nobody", "*", ""} {
		if _, err := d.Lookup(ctx, name); err != auth.ErrBadCredentials {
			t.Errorf("Lookup(%q): %v, want ErrBadCredentials", name, err)
		}
	}

	// Group changes show at the next sign-in.
	srv.RemoveMember(t, "team-dev", "alice")
	if id, err := d.Authenticate(ctx, "alice", "alice-pw-1"); err != nil || !slices.Equal(id.Groups, []string{"readers"}) {
		t.Errorf("after leaving team-dev: %+v %v, want groups [readers]", id, err)
	}

	// A directory that does not answer, or a wrong service password, is
	// a failure of the server, not a wrong password (no guess counted).
	if _, err := directoryFor(t, srv, func(c *Config) { c.BindPassword = "wrong" }).Authenticate(ctx, "alice", "alice-pw-1"); err == nil || errors.Is(err, auth.ErrBadCredentials) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong service password: %v, want a server error that does not show the password", err)
	}
	if _, err := directoryFor(t, srv, func(c *Config) { c.URL = "ldap://127.0.0.1:1" }).Authenticate(ctx, "alice", "alice-pw-1"); err == nil || errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("no directory: %v, want a connection error", err)
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	good := Config{URL: "ldap://127.0.0.1:389", UserBase: "ou=people,dc=x", UserFilter: "(uid=%s)"}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.URL = "http://x" }, "ldap://host:port"},
		{func(c *Config) { c.URL = "ldaps://x:636"; c.StartTLS = true }, "ldaps:// is TLS already"},
		{func(c *Config) { c.UserBase = "" }, "ldap_user_base is required"},
		{func(c *Config) { c.UserFilter = "(uid=alice)" }, "must hold %s"},
		{func(c *Config) { c.GroupFilter = "(member=%s)(x=%s)" }, "must hold %s"},
		{func(c *Config) { c.CACertFile = "/nonexistent" }, "ldap_ca_cert"},
	} {
		cfg := good
		tc.mod(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want an error saying %q", cfg, err, tc.want)
		}
	}
	if _, err := New(good); err != nil {
		t.Errorf("New(good): %v", err)
	}
}
