package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

// backends are the servers behind the S3 server kinds, started by the
// benchmark on first use through internal/testserver and stopped at exit:
// one versitygw on loopback, on which berth-s3 and distribution-s3 have a
// bucket each, and one PostgreSQL server, with a fresh database for
// berth-s3.
type backends struct {
	dir   string // parent of the S3 server's directory
	kind  string // the S3 server: "minio" or "versitygw" (default)
	s3    *testserver.S3Server
	pg    *testserver.Postgres
	stops []func()
}

// name is the S3 server's name and version.
func (be *backends) name() string {
	if be.s3 == nil {
		return ""
	}
	if be.kind == "minio" {
		return "MinIO " + be.s3.Version
	}
	return "versitygw " + be.s3.Version
}

// stop stops the servers now (they are stopped at exit otherwise).
func (be *backends) stop() {
	for _, stop := range slices.Backward(be.stops) {
		stop()
	}
	be.stops = nil
}

// onStop runs stop at be.stop or at exit, once.
func (be *backends) onStop(stop func()) {
	var once sync.Once
	f := func() { once.Do(stop) }
	be.stops = append(be.stops, f)
	atExit(f)
}

// S3 returns the run's S3 server with a new bucket, starting the server on
// first use.
func (be *backends) S3(bucket string) (*testserver.S3Server, error) {
	if be.s3 == nil {
		startS3 := testserver.StartS3
		if be.kind == "minio" {
			startS3 = testserver.StartMinIO
		}
		srv, stop, err := startS3(filepath.Join(be.dir, "s3"))
		if err != nil {
			return nil, fmt.Errorf("start the S3 server: %w", err)
		}
		be.onStop(func() {
			if err := stop(); err != nil {
				logf("%v", err)
			}
		})
		be.s3 = srv
		logf("%s listening on %s (pid %d)", be.name(), srv.Endpoint, srv.Pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return be.s3, be.s3.CreateBucket(ctx, bucket)
}

// PostgresDSN returns the DSN of a new database on the run's PostgreSQL
// server, starting the server on first use.
func (be *backends) PostgresDSN() (string, error) {
	if be.pg == nil {
		pg, err := testserver.StartPostgres()
		if err != nil {
			return "", fmt.Errorf("start PostgreSQL: %w", err)
		}
		be.onStop(pg.Stop)
		be.pg = pg
		logf("PostgreSQL %s listening on 127.0.0.1:%d (pid %d)", pg.Version, pg.Port, pg.Pid())
	}
	return be.pg.NewDatabase()
}

// s3CPU returns the CPU time versitygw has used.
func (be *backends) s3CPU() float64 {
	if be.s3 == nil {
		return 0
	}
	st, _ := readStat(be.s3.Pid)
	return st.self + st.children
}

// pgCPU returns the CPU time the PostgreSQL server has used: the
// postmaster's, its exited children's, and its running children's (the
// backends, which live as long as a client's pooled connection).
func (be *backends) pgCPU() float64 {
	if be.pg == nil {
		return 0
	}
	pid := be.pg.Pid()
	if pid == 0 {
		return 0
	}
	st, _ := readStat(pid)
	sum := st.self + st.children
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		child, _ := strconv.Atoi(filepath.Base(d))
		if c, err := readStat(child); err == nil && c.ppid == pid {
			sum += c.self + c.children
		}
	}
	return sum
}

// statCPU is what /proc/PID/stat tells about a process's CPU time.
type statCPU struct {
	ppid     int
	self     float64 // utime + stime, s
	children float64 // cutime + cstime: children waited for, s
}

// readStat reads the parent and the CPU times of pid from /proc.
func readStat(pid int) (statCPU, error) {
	var st statCPU
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// Fields after the parenthesised command name start at field 3 (state):
	// ppid is field 4, utime, stime, cutime and cstime fields 14 to 17, in
	// clock ticks of 1/100 s.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return st, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	st.ppid, _ = strconv.Atoi(f[1])
	var t [4]float64
	for j := range t {
		t[j], _ = strconv.ParseFloat(f[11+j], 64)
	}
	st.self, st.children = (t[0]+t[1])/100, (t[2]+t[3])/100
	return st, nil
}
