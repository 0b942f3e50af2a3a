package testserver

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestStartPostgres starts a server as the benchmark does, without a test
// wrapper: two databases are distinct and usable, and Stop (twice) ends
// the server.
func TestStartPostgres(t *testing.T) {
	p, err := StartPostgres()
	if errors.Is(err, ErrMissing) {
		need(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	a, err := p.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two databases with one DSN %s", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, dsn := range []string{a, b} {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "CREATE TABLE x (id int)"); err != nil {
			t.Errorf("%s: %v", dsn, err)
		}
		db.Close()
	}
	p.Stop()
	p.Stop()
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p.Port), time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still answers after Stop", p.Port)
	}
}

// TestStartS3 starts a server without a test wrapper: a second bucket can
// be created, and stop (twice) ends the server.
func TestStartS3(t *testing.T) {
	srv, stop, err := StartS3(t.TempDir())
	if err != nil {
		need(t, err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.CreateBucket(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", srv.Endpoint[len("http://"):], time.Second); err == nil {
		c.Close()
		t.Errorf("%s still answers after stop", srv.Endpoint)
	}
}
