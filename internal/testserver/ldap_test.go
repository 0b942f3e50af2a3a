package testserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLDAP signs a user in against the server: the right password binds,
// a wrong one is refused with invalidCredentials (49), group membership
// shows in a search and goes with RemoveMember, and StartTLS and ldaps
// work with CACert.
func TestLDAP(t *testing.T) {
	start := time.Now()
	s := LDAP(t)
	t.Logf("slapd %s started in %v: %s, %s", s.Version, time.Since(start).Round(time.Millisecond), s.URL, s.LDAPSURL)
	if !strings.HasPrefix(s.URL, "ldap://127.0.0.1:") || !strings.HasPrefix(s.LDAPSURL, "ldaps://127.0.0.1:") ||
		s.BaseDN != "dc=berth,dc=test" || s.AdminDN == "" || s.AdminPassword == "" || s.Pid == 0 || len(s.CACert) == 0 {
		t.Fatalf("incomplete server description: %+v", s)
	}

	s.AddUser(t, "alice", "s3cret pass", "mail: alice@berth.test", "employeeType: staff", "cn: Alice Liddell")
	s.AddUser(t, "bob", "hunter2")
	s.AddGroup(t, "developers", "alice")
	s.AddGroup(t, "empty")
	s.AddMember(t, "developers", "bob")

	dir := t.TempDir()
	good := writeFile(t, dir, "good.pw", "s3cret pass")
	bad := writeFile(t, dir, "bad.pw", "s3cret pasS")
	bobPW := writeFile(t, dir, "bob.pw", "hunter2")
	if out, err := ldapCmd(t, "ldapwhoami", "-x", "-H", s.URL, "-D", s.UserDN("alice"), "-y", good).CombinedOutput(); err != nil {
		t.Fatalf("alice's bind: %v\n%s", err, out)
	} else if want := "dn:" + s.UserDN("alice"); strings.TrimSpace(string(out)) != want {
		t.Errorf("ldapwhoami = %q, want %q", out, want)
	}
	out, err := ldapCmd(t, "ldapwhoami", "-x", "-H", s.URL, "-D", s.UserDN("alice"), "-y", bad).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 49 {
		t.Errorf("bind with a wrong password: %v, want exit status 49\n%s", err, out)
	}

	// Users read other entries but not passwords.
	attrs := ldapSearch(t, s, s.UserDN("bob"), bobPW, s.UserDN("alice"), "(objectClass=*)", "*")
	for _, want := range []string{"mail: alice@berth.test", "employeeType: staff", "cn: Alice Liddell", "sn: alice"} {
		if !strings.Contains(attrs, want+"\n") {
			t.Errorf("alice's entry lacks %q:\n%s", want, attrs)
		}
	}
	if strings.Contains(attrs, "userPassword") {
		t.Errorf("alice's password is readable by bob:\n%s", attrs)
	}

	members := func() string {
		return ldapSearch(t, s, s.AdminDN, s.pwFile, s.GroupDN("developers"), "(objectClass=groupOfNames)", "member")
	}
	for _, uid := range []string{"alice", "bob"} {
		if m := members(); !strings.Contains(m, "member: "+s.UserDN(uid)+"\n") {
			t.Errorf("developers lacks %s:\n%s", uid, m)
		}
	}
	// The search a sign-in does: the groups that have the user as member.
	groups := ldapSearch(t, s, s.AdminDN, s.pwFile, "ou=groups,"+s.BaseDN, "(member="+s.UserDN("alice")+")", "cn")
	if !strings.Contains(groups, "dn: "+s.GroupDN("developers")+"\n") || strings.Contains(groups, s.GroupDN("empty")) {
		t.Errorf("alice's groups:\n%s", groups)
	}

	s.RemoveMember(t, "developers", "alice")
	if m := members(); strings.Contains(m, s.UserDN("alice")) || !strings.Contains(m, s.UserDN("bob")) {
		t.Errorf("after RemoveMember alice, developers has:\n%s", m)
	}
	s.AddMember(t, "empty", "alice")
	s.RemoveMember(t, "empty", "")
	if m := ldapSearch(t, s, s.AdminDN, s.pwFile, s.GroupDN("empty"), "(objectClass=*)", "member"); strings.Contains(m, s.AdminDN) ||
		!strings.Contains(m, s.UserDN("alice")) {
		t.Errorf("empty after adding alice and removing the placeholder:\n%s", m)
	}

	s.Modify(t, "dn: "+s.UserDN("bob")+"\nchangetype: modify\nreplace: employeeType\nemployeeType: disabled\n")
	if a := ldapSearch(t, s, s.AdminDN, s.pwFile, s.UserDN("bob"), "(employeeType=disabled)", "uid"); !strings.Contains(a, "uid: bob\n") {
		t.Errorf("bob is not disabled:\n%s", a)
	}
	s.DeleteUser(t, "bob")
	if out, err := ldapCmd(t, "ldapwhoami", "-x", "-H", s.URL, "-D", s.UserDN("bob"), "-y", bobPW).CombinedOutput(); err == nil {
		t.Errorf("a deleted user binds: %s", out)
	}

	// StartTLS (-ZZ: required) and ldaps, trusting CACert only.
	for _, args := range [][]string{{"-H", s.URL, "-ZZ"}, {"-H", s.LDAPSURL}} {
		cmd := ldapCmd(t, "ldapwhoami", append(args, "-x", "-D", s.UserDN("alice"), "-y", good)...)
		// Not LDAPNOINIT, which ignores these too: the variables override
		// ldap.conf.
		cmd.Env = append(environWithout("LDAP"), "LDAPTLS_CACERT="+s.CACertFile, "LDAPTLS_REQCERT=demand")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("ldapwhoami %v: %v\n%s", args, err, out)
		}
	}
	// Another CA is refused: CACert is what the client has to trust.
	other, _, err := selfSignedCert()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ldapCmd(t, "ldapwhoami", "-H", s.URL, "-ZZ", "-x", "-D", s.UserDN("alice"), "-y", good)
	cmd.Env = append(environWithout("LDAP"), "LDAPTLS_CACERT="+writeFile(t, dir, "other.pem", string(other)), "LDAPTLS_REQCERT=demand")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("StartTLS succeeded with another CA: %s", out)
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CACert) {
		t.Fatal("CACert holds no certificate")
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", strings.TrimPrefix(s.LDAPSURL, "ldaps://"),
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Errorf("Go TLS client on %s: %v", s.LDAPSURL, err)
	} else {
		c.Close()
	}
}

// TestLDAPStop checks that Stop (twice) ends slapd: the port is closed
// and the process is gone.
func TestLDAPStop(t *testing.T) {
	s, err := StartLDAP(t.TempDir())
	if err != nil {
		need(t, err)
	}
	defer s.Stop()
	if err := s.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "ldap://"), time.Second); err == nil {
		c.Close()
		t.Errorf("%s still answers after Stop", s.URL)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(s.Pid)); err == nil {
		t.Errorf("slapd (pid %d) still exists after Stop", s.Pid)
	}
}

// ldapCmd is an OpenLDAP client command that ignores ldap.conf and the
// caller's LDAP* settings.
func ldapCmd(t *testing.T, tool string, args ...string) *exec.Cmd {
	t.Helper()
	p, err := ldapTool(tool)
	if err != nil {
		need(t, err)
	}
	cmd := exec.Command(p, args...)
	cmd.Env = append(environWithout("LDAP"), "LDAPNOINIT=1")
	return cmd
}

// ldapSearch runs ldapsearch bound as dn with the password in pwFile for
// the entries under base (the whole subtree) matching filter and returns
// the LDIF of attrs, unwrapped.
func ldapSearch(t *testing.T, s *LDAPServer, dn, pwFile, base, filter string, attrs ...string) string {
	t.Helper()
	args := append([]string{"-x", "-LLL", "-o", "ldif_wrap=no", "-H", s.URL, "-D", dn, "-y", pwFile, "-b", base, filter}, attrs...)
	out, err := ldapCmd(t, "ldapsearch", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ldapsearch %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
