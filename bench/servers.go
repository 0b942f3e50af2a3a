package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

// cleanups is the stack of actions run at exit, on every path: normal
// return, error, panic and SIGINT/SIGTERM.
var cleanups struct {
	sync.Mutex
	fns  []func()
	done bool
}

// atExit registers fn to run at exit. Later registrations run first.
func atExit(fn func()) {
	cleanups.Lock()
	defer cleanups.Unlock()
	cleanups.fns = append(cleanups.fns, fn)
}

// runCleanups runs the registered actions once, newest first.
func runCleanups() {
	cleanups.Lock()
	defer cleanups.Unlock()
	if cleanups.done {
		return
	}
	cleanups.done = true
	for i := len(cleanups.fns) - 1; i >= 0; i-- {
		cleanups.fns[i]()
	}
}

// server is one registry process under test.
type server struct {
	name    string // a server kind of -servers: berth, berth-observed, distribution, berth-s3, distribution-s3
	base    string // http://127.0.0.1:PORT
	health  string // path that answers 200 once the server is up
	logPath string
	cmd     *exec.Cmd
	client  *http.Client
	exited  chan struct{}
	waitErr error
	stats   procStats // last sample taken while the process was alive
}

// procStats is what /proc tells about a server process.
type procStats struct {
	hwmKiB int64   // VmHWM: peak resident set size
	rssKiB int64   // VmRSS: current resident set size
	cpuSec float64 // user + system CPU time
}

// buildBerth compiles ./cmd/berth of the module in srcDir into dir.
func buildBerth(srcDir, dir string) (string, error) {
	out := filepath.Join(dir, "berth")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/berth")
	cmd.Dir = srcDir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/berth: %v\n%s", err, b)
	}
	return out, nil
}

// moduleRoot returns the directory of the main module around the working
// directory.
func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module; run from the berth repository")
	}
	return filepath.Dir(mod), nil
}

// distributionConfig is the docker-registry configuration: the Debian
// defaults (filesystem storage, in-memory blob descriptor cache, deletes
// enabled) on a private root directory and loopback port, with quiet logs.
const distributionConfig = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:%d
`

// distributionS3Config is the docker-registry configuration of
// distribution-s3: distributionConfig with the s3 storage driver on a
// bucket of the run's versitygw instead of the filesystem, and redirects
// off, so that blob GETs stream through the registry as berth-s3's do (and
// as the benchmark's client, which follows no redirects, needs).
//
// distribution 2.8 has no forcepathstyle parameter (it came in v3): a
// regionendpoint turns path-style addressing on. The key is written for
// the reader and for v3, and 2.8 ignores it. chunksize (the multipart
// part size) keeps its default, 10 MiB.
const distributionS3Config = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  s3:
    accesskey: %s
    secretkey: %s
    region: %s
    regionendpoint: %s
    forcepathstyle: true
    bucket: %s
    secure: false
    v4auth: true
  redirect:
    disable: true
  delete:
    enabled: true
http:
  addr: 127.0.0.1:%d
`

// startBerth runs "berth serve" on a free port with dataDir (its database
// made as berth-observed's is: prepareDataDir), without metrics
// (berth-observed has them) and without tracing; with TLS under -tls.
func startBerth(bin, dataDir, logPath string, conns int) (*server, error) {
	return startOwnBerth(bin, dataDir, logPath, conns, benchTLS, append([]string{"--metrics=false"}, benchTLS.berthArgs()...)...)
}

// startOwnBerth runs an open, quiet berth without tracing on a free
// loopback port with a fresh data directory and extra serve flags: the
// compared berth, and the berths of the workloads that run their own
// (console, gc, mirror).
func startOwnBerth(bin, dataDir, logPath string, conns int, tlsf *tlsFiles, extra ...string) (*server, error) {
	if err := prepareDataDir(dataDir, ""); err != nil {
		return nil, err
	}
	port, err := testserver.FreePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--data-dir", dataDir, "--auth=none", "--log-level=warn", "--tracing=off"}, extra...)
	return start("berth", bin, args, environWithout("OTEL_"), port, "/healthz", logPath, conns, tlsf)
}

// startBerthS3 runs "berth serve" in S3+PostgreSQL mode on a free port:
// blobs in bucket of the S3 server s3, metadata in the PostgreSQL database
// dsn, signing keys in dir/keys and the rest of its data directory in
// dir/data. Everything else is startBerth's.
func startBerthS3(bin, dir string, s3 *testserver.S3Server, bucket, dsn, logPath string, conns int) (*server, error) {
	port, err := testserver.FreePort()
	if err != nil {
		return nil, err
	}
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, err
	}
	args := []string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--data-dir", filepath.Join(dir, "data"), "--auth=none", "--log-level=warn",
		"--storage", "s3", "--s3-bucket", bucket, "--s3-endpoint", s3.Endpoint, "--s3-region", s3.Region,
		"--s3-path-style=true", "--metadata", "postgres", "--keys-dir", keys}
	// Secrets through the environment, as berth serve --help advises; a
	// developer's AWS_* settings (profile, session token) must not reach
	// it, nor OTEL_* ones (tracing stays off).
	env := append(environWithout("AWS_", "OTEL_"), "BERTH_POSTGRES_DSN="+dsn,
		"AWS_ACCESS_KEY_ID="+s3.AccessKey, "AWS_SECRET_ACCESS_KEY="+s3.SecretKey)
	return start("berth-s3", bin, args, env, port, "/healthz", logPath, conns)
}

// startDistribution writes a config into dir and runs docker-registry on a
// free port with rootDir as its storage, with TLS when tlsf is not nil.
func startDistribution(bin, dir, rootDir, logPath string, conns int, tlsf *tlsFiles) (*server, error) {
	port, err := testserver.FreePort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "distribution.yml")
	conf := append(fmt.Appendf(nil, distributionConfig, rootDir, port), tlsf.distributionConfig()...)
	if err := os.WriteFile(cfg, conf, 0o644); err != nil {
		return nil, err
	}
	return start("distribution", bin, []string{"serve", cfg}, nil, port, "/v2/", logPath, conns, tlsf)
}

// startDistributionS3 writes a config into dir and runs docker-registry on
// a free port with bucket of the S3 server s3 as its storage.
func startDistributionS3(bin, dir string, s3 *testserver.S3Server, bucket, logPath string, conns int) (*server, error) {
	port, err := testserver.FreePort()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "distribution-s3.yml")
	conf := fmt.Appendf(nil, distributionS3Config, s3.AccessKey, s3.SecretKey, s3.Region, s3.Endpoint, bucket, port)
	if err := os.WriteFile(cfg, conf, 0o600); err != nil {
		return nil, err
	}
	return start("distribution-s3", bin, []string{"serve", cfg}, environWithout("AWS_"), port, "/v2/", logPath, conns)
}

// environWithout returns the environment minus the variables whose names
// start with one of the prefixes.
func environWithout(prefixes ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(kv, p) }) {
			env = append(env, kv)
		}
	}
	return env
}

// start launches a server process with env (nil: the benchmark's
// environment), registers its shutdown at exit and waits until it answers
// its health path.
func start(name, bin string, args, env []string, port int, health, logPath string, conns int, tlsf ...*tlsFiles) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so a terminal's ^C reaches only the benchmark
	// (which then stops the servers itself); SIGKILL if the benchmark dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %v", name, err)
	}
	s := &server{name: name, base: fmt.Sprintf("http://127.0.0.1:%d", port), health: health,
		logPath: logPath, cmd: cmd, client: newClient(conns), exited: make(chan struct{})}
	if len(tlsf) > 0 && tlsf[0] != nil {
		s.base = fmt.Sprintf("https://127.0.0.1:%d", port)
		tlsf[0].client(s.client)
	}
	go func() {
		s.waitErr = cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	atExit(s.stop)
	if err := s.waitReady(30 * time.Second); err != nil {
		return nil, err
	}
	return s, nil
}

// newClient returns an HTTP client that keeps enough idle connections for
// conns concurrent requests and uses large buffers for blob bodies.
func newClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        2 * conns,
			MaxIdleConnsPerHost: 2 * conns,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
			ReadBufferSize:      64 << 10,
			WriteBufferSize:     64 << 10,
		},
		// Registries answer with relative or absolute Locations that the
		// client follows itself; never follow redirects silently.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// waitReady polls the health path until it answers 200.
func (s *server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited during startup: %v\n%s", s.name, s.waitErr, s.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+s.health, nil)
		resp, err := s.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not healthy at %s%s after %v\n%s", s.name, s.base, s.health, timeout, s.logTail())
}

// alive reports whether the process still runs.
func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// sample refreshes s.stats from /proc while the process is alive and
// returns them.
func (s *server) sample() procStats {
	if !s.alive() {
		return s.stats
	}
	if st, err := readProcStats(s.cmd.Process.Pid); err == nil {
		s.stats = st
	}
	return s.stats
}

// stop samples the process a last time, then ends it: SIGTERM, and SIGKILL
// if it has not exited after five seconds.
func (s *server) stop() {
	if !s.alive() {
		return
	}
	s.sample()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// logTail returns the last lines of the server's log.
func (s *server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "--- " + s.name + " log tail ---\n" + string(b)
}

// readProcStats reads VmHWM, VmRSS and CPU time of pid from /proc.
func readProcStats(pid int) (procStats, error) {
	var st procStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmHWM":
			st.hwmKiB, _ = strconv.ParseInt(f[0], 10, 64)
		case "VmRSS":
			st.rssKiB, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	c, err := readStat(pid)
	if err != nil {
		return st, err
	}
	st.cpuSec = c.self
	return st, nil
}

// toolVersion returns the first line of "bin args...", or "unknown".
func toolVersion(bin string, args ...string) string {
	b, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}
