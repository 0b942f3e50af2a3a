package testserver

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// Postgres is one PostgreSQL server started for a test binary: Debian's
// packaged binaries, run as the postgres user on a free loopback port with
// its data in a temporary directory and password authentication.
type Postgres struct {
	dir, bin string
	Port     int
	User     string
	Password string
}

var (
	pgOnce   sync.Once
	pgShared *Postgres
	pgErr    error
)

// PostgresDSN returns the DSN of a fresh, empty database on the test
// binary's PostgreSQL server, starting the server on first use (Main stops
// it). Without PostgreSQL installed the test fails under CI=true and is
// skipped otherwise.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	bin := postgresBin()
	if bin == "" {
		pgMissing(t, "PostgreSQL (initdb, pg_ctl)", "apt-get install -y postgresql, or bash scripts/test-deps.sh")
	}
	pgOnce.Do(func() { pgShared, pgErr = startPostgres(bin) })
	if pgErr != nil {
		t.Fatalf("start PostgreSQL: %v", pgErr)
	}
	name := "t_" + pgRandomHex(6)
	db, err := sql.Open("pgx", pgShared.dsn("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return pgShared.dsn(name)
}

func (p *Postgres) dsn(db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", p.User, p.Password, p.Port, db)
}

// postgresBin finds the newest installed PostgreSQL's bin directory.
func postgresBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) < version(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "pg_ctl")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func startPostgres(bin string) (*Postgres, error) {
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the postgres user is missing (install the postgresql package): %w", err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	// Not t.TempDir: the postgres user must be able to reach the directory.
	dir, err := os.MkdirTemp("", "berth-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{dir: dir, bin: bin, User: "berth", Password: pgRandomHex(12)}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(p.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	for _, f := range []string{dir, pwfile} {
		if err := os.Chown(f, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres(bin, "initdb", "-D", data, "-U", p.User, "--pwfile", pwfile, "-A", "scram-sha-256", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		p.Port = pgFreePort()
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=200", p.Port, dir)
		out, err := asPostgres(bin, "pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput()
		if err == nil {
			break
		}
		if attempt == 2 {
			logTail, _ := os.ReadFile(filepath.Join(dir, "log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, pgTail(string(logTail), 2000))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", p.dsn("postgres"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		p.stop()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return p, nil
}

func (p *Postgres) stop() {
	_ = asPostgres(p.bin, "pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "-w", "stop").Run()
	os.RemoveAll(p.dir)
}

func asPostgres(bin, name string, args ...string) *exec.Cmd {
	return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
}

// Main runs a test binary's tests and then stops the servers they started;
// use it from TestMain: os.Exit(testserver.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if pgShared != nil {
		pgShared.stop()
	}
	return code
}

func pgMissing(t testing.TB, what, install string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing; install it with: %s", what, install)
	}
	t.Skipf("%s is missing; install it with: %s", what, install)
}

func pgFreePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func pgRandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func pgTail(s string, n int) string {
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
