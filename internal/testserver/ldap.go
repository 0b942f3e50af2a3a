package testserver

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// ldapSchemaDir holds the schemas StartLDAP loads, as Debian's slapd package
// installs them.
const ldapSchemaDir = "/etc/ldap/schema"

// LDAPServer is a running OpenLDAP server (Debian's slapd) with one MDB
// database for BaseDN, which holds the entries ou=people and ou=groups.
// Its configuration (cn=config), data, TLS key and log are all in a
// temporary directory; the system's /etc/ldap is only read (its schemas).
//
// Access: AdminDN (the database's rootdn) may do anything; every other
// client, anonymous or bound, may read everything but userPassword, which
// only serves to authenticate (a simple bind) and which a user may change
// for themselves.
type LDAPServer struct {
	// URL is ldap://127.0.0.1:PORT, the only plain listener; it supports
	// StartTLS with the certificate of CACert.
	URL string
	// LDAPSURL is ldaps://127.0.0.1:PORT, a listener speaking TLS from
	// the start, with the same certificate.
	LDAPSURL string
	// BaseDN is the suffix of the database, dc=berth,dc=test.
	BaseDN string
	// AdminDN (cn=admin,BaseDN) is the rootdn of the database, with the
	// random password AdminPassword.
	AdminDN, AdminPassword string
	// CACert is the PEM of the server's self-signed certificate, for
	// 127.0.0.1 and localhost; trust it to use StartTLS or LDAPSURL.
	CACert []byte
	// CACertFile is a file holding CACert (for LDAPTLS_CACERT).
	CACertFile string
	// Version is slapd's version, such as 2.5.13+dfsg-5.
	Version string
	// Pid is the process id of slapd.
	Pid int

	dir, pwFile, logPath string
	tools                map[string]string // program name (slapd, ldapadd, ...): path
	p                    *proc
}

// LDAP starts an OpenLDAP server with StartLDAP in a fresh temporary
// directory of the test and stops it when the test ends. When slapd or
// the LDAP client tools are not installed, the test is skipped, or fails
// when CI=true.
func LDAP(t testing.TB) *LDAPServer {
	t.Helper()
	s, err := StartLDAP(t.TempDir())
	if err != nil {
		need(t, err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Logf("testserver: %v", err)
		}
	})
	return s
}

// StartLDAP starts slapd in the foreground on free ports of 127.0.0.1
// (URL and LDAPSURL) and waits until AdminDN can bind (about 0.1 s); Stop
// ends it. Everything it writes is in dir, which must exist: the
// configuration (slapd.d, made from config.ldif), the database (data), the
// TLS certificate and key, the admin password file and slapd's log
// (slapd.log).
//
// The configuration, made with slapadd -n0, loads the core, cosine,
// inetorgperson and nis schemas from /etc/ldap/schema and the back_mdb
// module; an MDB database for BaseDN (without fsync) holds BaseDN,
// ou=people and ou=groups, added with slapadd before slapd starts.
//
// slapd and slapadd are looked for on PATH and in /usr/sbin, the client
// tools (ldap-utils) on PATH and in /usr/bin; their absence gives an error
// matching ErrMissing. Root is not needed.
func StartLDAP(dir string) (*LDAPServer, error) {
	tools := map[string]string{}
	for _, name := range []string{"slapd", "slapadd", "ldapadd", "ldapmodify", "ldapdelete", "ldapwhoami"} {
		p, err := ldapTool(name)
		if err != nil {
			return nil, err
		}
		tools[name] = p
	}
	if _, err := os.Stat(filepath.Join(ldapSchemaDir, "core.ldif")); err != nil {
		return nil, missingError(fmt.Sprintf("the OpenLDAP schemas are missing (%v); install them with: apt-get install -y slapd ldap-utils, or bash scripts/test-deps.sh", err))
	}
	s := &LDAPServer{
		BaseDN:        "dc=berth,dc=test",
		AdminPassword: randomHex(12),
		dir:           dir,
		pwFile:        filepath.Join(dir, "admin.pw"),
		logPath:       filepath.Join(dir, "slapd.log"),
		tools:         tools,
	}
	s.AdminDN = "cn=admin," + s.BaseDN
	if out, err := exec.Command(tools["slapd"], "-VV").CombinedOutput(); err == nil {
		// @(#) $OpenLDAP: slapd 2.5.13+dfsg-5 (Feb  8 2023 01:56:12) $
		if f := strings.Fields(string(out)); len(f) > 4 && f[2] == "slapd" {
			s.Version = f[3]
		}
	}
	if err := s.configure(); err != nil {
		return nil, err
	}

	// The ports are found free and then handed to slapd, so another
	// process may take one in between: slapd then exits at once, and
	// other ports are tried.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		tlsPort, err := FreePort()
		if err != nil {
			return nil, err
		}
		s.URL = "ldap://127.0.0.1:" + strconv.Itoa(port)
		s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(tlsPort)
		// -d keeps slapd in the foreground, logging to dir/slapd.log its
		// errors (such as a lost port) and, with "stats", a few lines per
		// connection and operation (none at level 0); olcLogLevel none
		// keeps syslog out of it. Without -u, slapd runs as its caller,
		// who owns dir.
		s.p, err = startProc(tools["slapd"], s.logPath, nil,
			"-d", "stats", "-F", filepath.Join(dir, "slapd.d"), "-h", s.URL+"/ "+s.LDAPSURL+"/")
		if err != nil {
			return nil, fmt.Errorf("start slapd: %w", err)
		}
		if lastErr = s.waitBind(15 * time.Second); lastErr == nil {
			s.Pid = s.p.cmd.Process.Pid
			return s, nil
		}
		s.p.stop()
		if !errors.Is(lastErr, errExited) {
			break
		}
	}
	return nil, fmt.Errorf("slapd did not start: %v\n--- tail of %s ---\n%s", lastErr, s.logPath, logTail(s.logPath))
}

// configure writes the server's files into s.dir: the admin password file,
// the TLS certificate and key, cn=config (slapd.d) and the database (data)
// with its first entries.
func (s *LDAPServer) configure() error {
	if err := os.WriteFile(s.pwFile, []byte(s.AdminPassword), 0o600); err != nil { // -y reads every byte: no newline
		return err
	}
	certPEM, keyPEM, err := selfSignedCert()
	if err != nil {
		return fmt.Errorf("make a TLS certificate: %w", err)
	}
	s.CACert = certPEM
	s.CACertFile = filepath.Join(s.dir, "cert.pem")
	keyFile := filepath.Join(s.dir, "key.pem")
	if err := os.WriteFile(s.CACertFile, certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	confDir := filepath.Join(s.dir, "slapd.d")
	dataDir := filepath.Join(s.dir, "data")
	for _, d := range []string{confDir, dataDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}

	var c strings.Builder
	fmt.Fprintf(&c, `dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: %s
olcArgsFile: %s
olcLogLevel: none
olcTLSCACertificateFile: %s
olcTLSCertificateFile: %s
olcTLSCertificateKeyFile: %s

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

`, filepath.Join(s.dir, "slapd.pid"), filepath.Join(s.dir, "slapd.args"), s.CACertFile, s.CACertFile, keyFile)
	for _, schema := range []string{"core", "cosine", "inetorgperson", "nis"} {
		fmt.Fprintf(&c, "include: file://%s\n\n", filepath.Join(ldapSchemaDir, schema+".ldif"))
	}
	fmt.Fprintf(&c, `dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: %s
olcRootDN: %s
olcRootPW: %s
olcDbDirectory: %s
olcDbMaxSize: 104857600
olcDbNoSync: TRUE
olcDbIndex: objectClass eq
olcDbIndex: uid,cn,mail eq
olcDbIndex: member,memberUid eq
olcAccess: {0}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {1}to * by * read
`, s.BaseDN, s.AdminDN, ssha(s.AdminPassword), dataDir)
	confLDIF := filepath.Join(s.dir, "config.ldif")
	if err := os.WriteFile(confLDIF, []byte(c.String()), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(s.tools["slapadd"], "-n0", "-F", confDir, "-l", confLDIF).CombinedOutput(); err != nil {
		return fmt.Errorf("slapadd -n0 (cn=config): %v\n%s", err, out)
	}

	base := fmt.Sprintf(`dn: %s
objectClass: dcObject
objectClass: organization
dc: berth
o: berth test directory

dn: ou=people,%[1]s
objectClass: organizationalUnit
ou: people

dn: ou=groups,%[1]s
objectClass: organizationalUnit
ou: groups
`, s.BaseDN)
	baseLDIF := filepath.Join(s.dir, "base.ldif")
	if err := os.WriteFile(baseLDIF, []byte(base), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command(s.tools["slapadd"], "-F", confDir, "-b", s.BaseDN, "-l", baseLDIF).CombinedOutput(); err != nil {
		return fmt.Errorf("slapadd (%s): %v\n%s", s.BaseDN, err, out)
	}
	return nil
}

// waitBind waits until AdminDN can bind, or slapd exits (errExited).
func (s *LDAPServer) waitBind(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-s.p.done:
			return fmt.Errorf("%w: %v", errExited, s.p.cmd.ProcessState)
		default:
		}
		// Try TCP first: it is much cheaper than running ldapwhoami.
		var c net.Conn
		if c, err = net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "ldap://"), time.Second); err == nil {
			c.Close()
			if _, err = s.run("ldapwhoami", ""); err == nil {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no bind on %s within %v: %v", s.URL, timeout, err)
}

// Stop ends slapd with SIGTERM (SIGKILL after five seconds, which the
// error reports) and waits for it to exit; later calls do nothing. It
// leaves the server's directory in place.
func (s *LDAPServer) Stop() error {
	if err := s.p.stop(); err != nil {
		return fmt.Errorf("slapd: %w", err)
	}
	return nil
}

// UserDN returns the DN of the user uid: uid=UID,ou=people,BaseDN.
func (s *LDAPServer) UserDN(uid string) string {
	return "uid=" + escapeDNValue(uid) + ",ou=people," + s.BaseDN
}

// GroupDN returns the DN of the group cn: cn=CN,ou=groups,BaseDN.
func (s *LDAPServer) GroupDN(cn string) string {
	return "cn=" + escapeDNValue(cn) + ",ou=groups," + s.BaseDN
}

// AddUser adds the user UserDN(uid), an inetOrgPerson whose userPassword
// is an {SSHA} hash of password, so that a simple bind as UserDN(uid) with
// password succeeds. Its cn and sn are uid unless attrs set them; attrs
// are further "attribute: value" lines, such as "mail: a@example.com" or
// "employeeType: disabled" (a value is base64-encoded in the LDIF when it
// has to be). The test fails if the entry cannot be added.
func (s *LDAPServer) AddUser(t testing.TB, uid, password string, attrs ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(ldifLine("dn", s.UserDN(uid)))
	b.WriteString("objectClass: inetOrgPerson\n")
	b.WriteString(ldifLine("uid", uid))
	b.WriteString(ldifLine("userPassword", ssha(password)))
	has := map[string]bool{}
	for _, a := range attrs {
		name, value, ok := strings.Cut(a, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			t.Fatalf("testserver: LDAP attribute %q is not \"attribute: value\"", a)
		}
		has[strings.ToLower(name)] = true
		b.WriteString(ldifLine(name, strings.TrimPrefix(value, " ")))
	}
	for _, name := range []string{"cn", "sn"} {
		if !has[name] {
			b.WriteString(ldifLine(name, uid))
		}
	}
	s.mustRun(t, "ldapadd", b.String())
}

// DeleteUser deletes the user UserDN(uid) (its group memberships stay:
// remove them with RemoveMember). The test fails if the user is missing.
func (s *LDAPServer) DeleteUser(t testing.TB, uid string) {
	t.Helper()
	s.mustRun(t, "ldapdelete", s.UserDN(uid)+"\n")
}

// AddGroup adds the group GroupDN(cn), a groupOfNames with the members
// UserDN(m) for each m of memberUIDs (which need not exist). A
// groupOfNames must have a member: without memberUIDs the group gets
// AdminDN as a placeholder member, so that it looks empty to a search for
// users; AddMember keeps the placeholder, which RemoveMember(t, cn, "")
// removes once another member is in. The test fails if the group cannot be
// added.
func (s *LDAPServer) AddGroup(t testing.TB, cn string, memberUIDs ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(ldifLine("dn", s.GroupDN(cn)))
	b.WriteString("objectClass: groupOfNames\n")
	b.WriteString(ldifLine("cn", cn))
	if len(memberUIDs) == 0 {
		b.WriteString(ldifLine("member", s.AdminDN))
	}
	for _, m := range memberUIDs {
		b.WriteString(ldifLine("member", s.UserDN(m)))
	}
	s.mustRun(t, "ldapadd", b.String())
}

// AddMember adds UserDN(uid) to the members of the group GroupDN(group).
// The test fails if the group is missing or already has the member.
func (s *LDAPServer) AddMember(t testing.TB, group, uid string) {
	t.Helper()
	s.mustRun(t, "ldapmodify", s.memberChange(group, "add", s.UserDN(uid)))
}

// RemoveMember removes UserDN(uid) from the members of the group
// GroupDN(group), or AddGroup's placeholder member AdminDN when uid is "".
// The test fails if the group does not have the member, or if it is the
// group's last (a groupOfNames must keep one).
func (s *LDAPServer) RemoveMember(t testing.TB, group, uid string) {
	t.Helper()
	member := s.AdminDN
	if uid != "" {
		member = s.UserDN(uid)
	}
	s.mustRun(t, "ldapmodify", s.memberChange(group, "delete", member))
}

func (s *LDAPServer) memberChange(group, op, member string) string {
	return ldifLine("dn", s.GroupDN(group)) + "changetype: modify\n" + op + ": member\n" + ldifLine("member", member) + "-\n"
}

// Modify applies LDIF changes as AdminDN with ldapmodify, such as
//
//	dn: uid=alice,ou=people,dc=berth,dc=test
//	changetype: modify
//	replace: employeeType
//	employeeType: disabled
//
// (records without changetype are modifications). The test fails if a
// change fails.
func (s *LDAPServer) Modify(t testing.TB, ldif string) {
	t.Helper()
	s.mustRun(t, "ldapmodify", ldif)
}

// mustRun is run for a test: it fails the test on an error.
func (s *LDAPServer) mustRun(t testing.TB, tool, stdin string) {
	t.Helper()
	if out, err := s.run(tool, stdin); err != nil {
		t.Fatalf("testserver: %s: %v\n%s\n--- input ---\n%s", tool, err, out, stdin)
	}
}

// run runs an LDAP client tool bound as AdminDN (its password read from a
// file, never on the command line) with stdin as its input, returning its
// output. LDAPNOINIT keeps ldap.conf and ~/.ldaprc out of it.
func (s *LDAPServer) run(tool, stdin string) ([]byte, error) {
	cmd := exec.Command(s.tools[tool], "-x", "-H", s.URL, "-D", s.AdminDN, "-y", s.pwFile)
	cmd.Env = append(environWithout("LDAP"), "LDAPNOINIT=1")
	cmd.Stdin = strings.NewReader(stdin)
	return cmd.CombinedOutput()
}

// ldapTool finds an OpenLDAP program on PATH or in /usr/sbin or /usr/bin
// (/usr/sbin is often missing from a user's PATH), or returns an error
// matching ErrMissing.
func ldapTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", missingError(fmt.Sprintf("%s is missing; install OpenLDAP with: apt-get install -y slapd ldap-utils, or bash scripts/test-deps.sh", name))
}

// ssha returns the {SSHA} userPassword of a password: base64 of
// SHA-1(password+salt)+salt, with an 8-byte random salt.
func ssha(password string) string {
	salt := make([]byte, 8)
	rand.Read(salt)
	h := sha1.Sum(append([]byte(password), salt...))
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(h[:], salt...))
}

// ldifLine returns an LDIF "name: value" line, or "name:: base64" when
// the value is not a safe string (RFC 2849).
func ldifLine(name, value string) string {
	safe := utf8.ValidString(value) && !strings.HasPrefix(value, " ") &&
		!strings.HasPrefix(value, ":") && !strings.HasPrefix(value, "<") && !strings.HasSuffix(value, " ")
	for i := 0; safe && i < len(value); i++ {
		c := value[i]
		safe = c != 0 && c != '\n' && c != '\r' && c < 0x80
	}
	if safe {
		return name + ": " + value + "\n"
	}
	return name + ":: " + base64.StdEncoding.EncodeToString([]byte(value)) + "\n"
}

// escapeDNValue escapes an attribute value for a DN (RFC 4514).
func escapeDNValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case strings.IndexByte(`,+"\<>;=`, c) >= 0,
			(c == ' ' || c == '#') && i == 0,
			c == ' ' && i == len(v)-1:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == 0:
			b.WriteString(`\00`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// selfSignedCert returns a self-signed ECDSA certificate for 127.0.0.1,
// ::1 and localhost, valid for a day, and its key, in PEM.
func selfSignedCert() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "berth test LDAP server", Organization: []string{"berth tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	var cb, kb bytes.Buffer
	pem.Encode(&cb, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	pem.Encode(&kb, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return cb.Bytes(), kb.Bytes(), nil
}
