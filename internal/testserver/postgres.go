package testserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// Postgres is a running PostgreSQL server: Debian's packaged binaries, run
// as the postgres user on a free loopback port with its data in a
// temporary directory and password authentication.
type Postgres struct {
	dir, bin string
	Port     int
	User     string
	Password string
	// Version is the server's version (SHOW server_version), such as
	// "15.18 (Debian 15.18-0+deb12u1)".
	Version  string
	stopOnce sync.Once
}

var (
	pgOnce   sync.Once
	pgShared *Postgres
	pgErr    error
)

// PostgresDSN returns the DSN of a fresh, empty database on the test
// binary's PostgreSQL server, starting the server with StartPostgres on
// first use (Main stops it). Without PostgreSQL installed the test fails
// under CI=true and is skipped otherwise.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	pgOnce.Do(func() { pgShared, pgErr = StartPostgres() })
	if errors.Is(pgErr, ErrMissing) {
		need(t, pgErr)
	}
	if pgErr != nil {
		t.Fatalf("testserver: start PostgreSQL: %v", pgErr)
	}
	dsn, err := pgShared.NewDatabase()
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	return dsn
}

// Main runs a test binary's tests and then stops the servers they started;
// use it from TestMain: os.Exit(testserver.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if pgShared != nil {
		pgShared.Stop()
	}
	return code
}

// StartPostgres initialises a cluster in a fresh directory under
// os.TempDir (see TMPDIR) and starts a PostgreSQL server on a free port of
// 127.0.0.1 with a random password for the user User, waiting until it
// accepts connections (1-9 s). The newest installed version under
// /usr/lib/postgresql runs, as the postgres user (through runuser, so the
// caller must be root). Without PostgreSQL installed the error matches
// ErrMissing. Stop ends the server and removes its directory.
func StartPostgres() (*Postgres, error) {
	bin := postgresBin()
	if bin == "" {
		return nil, missingError("PostgreSQL (initdb, pg_ctl) is missing; install it with: apt-get install -y postgresql, or bash scripts/test-deps.sh")
	}
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the postgres user is missing (install the postgresql package): %w", err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	// Not a test's TempDir: the postgres user must be able to reach the
	// directory.
	dir, err := os.MkdirTemp("", "berth-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{dir: dir, bin: bin, User: "berth", Password: randomHex(12)}
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte(p.Password+"\n"), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for _, f := range []string{dir, pwfile} {
		if err := os.Chown(f, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres(bin, "initdb", "-D", data, "-U", p.User, "--pwfile", pwfile, "-A", "scram-sha-256", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// The port is found free and then handed to the server, so another
	// process may take it in between: try a few ports.
	for attempt := 0; ; attempt++ {
		if p.Port, err = FreePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=200", p.Port, dir)
		out, err := asPostgres(bin, "pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput()
		if err == nil {
			break
		}
		if attempt == 2 {
			tail := logTail(filepath.Join(dir, "log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, tail)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", p.dsn("postgres"))
	if err != nil {
		p.Stop()
		return nil, err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		p.Stop()
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := db.QueryRowContext(ctx, "SHOW server_version").Scan(&p.Version); err != nil {
		p.Stop()
		return nil, fmt.Errorf("server version: %w", err)
	}
	return p, nil
}

// Pid returns the process id of the server's postmaster (the parent of
// its backends), or 0 if it is not running.
func (p *Postgres) Pid() int {
	b, err := os.ReadFile(filepath.Join(p.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// NewDatabase creates a fresh, empty database with a random name and
// returns its DSN (postgres://USER:PASSWORD@127.0.0.1:PORT/NAME?sslmode=disable).
func (p *Postgres) NewDatabase() (dsn string, err error) {
	name := "t_" + randomHex(6)
	db, err := sql.Open("pgx", p.dsn("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return p.dsn(name), nil
}

// Stop ends the server at once (pg_ctl stop -m immediate) and removes its
// directory. Later calls do nothing.
func (p *Postgres) Stop() {
	p.stopOnce.Do(func() {
		_ = asPostgres(p.bin, "pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "-w", "stop").Run()
		os.RemoveAll(p.dir)
	})
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

func asPostgres(bin, name string, args ...string) *exec.Cmd {
	return exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
}
