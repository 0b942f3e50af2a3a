// Command bench compares berth with CNCF Distribution 2.8 (Debian's
// docker-registry) on the same machine and in the same run.
//
// It builds berth, starts the registries side by side on loopback ports
// with fresh data directories under one parent directory, runs each
// workload against one server after the other, checks that all answer
// every request correctly, and prints a Markdown table ready for
// docs/benchmarks.md, with one column per server.
//
// -servers chooses the servers, in the order they run, among five kinds:
//
//	berth            embedded mode: blobs on the filesystem, metadata in SQLite,
//	                 --metrics=false, no webhook
//	berth-observed   berth as an operator runs it: the same, with metrics on,
//	                 served on a --metrics-addr that the benchmark scrapes every
//	                 second, tracing off, and one global webhook endpoint for
//	                 push, pull, delete and tag_delete events, delivering to a
//	                 receiver the benchmark runs on loopback (answering 204)
//	distribution     docker-registry with the filesystem storage driver
//	berth-s3         berth in S3+PostgreSQL mode (--storage s3 --metadata postgres)
//	distribution-s3  docker-registry with the s3 storage driver, redirects off
//
// The default is berth,berth-observed,distribution. When berth and
// berth-observed both run, the manifest and head loads run on the two in
// -pairs pairs of turns of -pair-requests requests, one server right after
// the other (berth first in even pairs, berth-observed first in odd ones);
// after the last pair the benchmark waits until both are idle again, at
// most -settle-max (after the manifest pairs at least 11 s, so that the
// pull events berth flushes every 10 s and their webhook deliveries count
// in its CPU). Their table cells are the medians of the turns, and the
// report adds berth-observed's throughput relative to berth's, pair by
// pair, with a confidence interval: the cost of metrics and webhooks,
// which issue 11 wants below 5 %. The berth processes get no OTEL_* variables (and
// --tracing=off). The benchmark creates the two berths' databases itself
// (and inserts berth-observed's webhook), with its own copy of
// internal/metadata: a berth given with -berth must be built from the
// same tree.
//
// The S3 kinds share one S3 server, MinIO by default or versitygw with
// -s3-server versitygw (from PATH or ~/.cache/berth-tools/bin: bash
// scripts/test-deps.sh), that the benchmark starts on loopback, with a
// bucket each; berth-s3 gets a fresh database
// on a PostgreSQL server the benchmark starts too (Debian's postgresql
// package, run as the postgres user, so as root). Both are started through internal/testserver and
// stopped at exit. For the S3 kinds the report adds the CPU time of those
// backend servers during each workload.
//
// Usage (from the repository root):
//
//	apt-get install -y docker-registry
//	go run ./bench                                   # full run
//	go run ./bench -blob-size 64MiB -requests 5000   # quick run
//	go run ./bench -only manifest,head -out /tmp/table.md
//	go run ./bench -only manifest,head -servers berth,berth-observed -pairs 300
//	go run ./bench -servers berth,distribution,berth-s3,distribution-s3
//
// Workloads (names for -only): push, pull, images, manifest, head, tags,
// catalog, gc, console, mirror, s3. The s3 workload (issue 14: berth on S3
// and PostgreSQL against a raw S3 client, embedded berth and Distribution's
// s3 driver, on a MinIO of its own by default) runs once when berth is
// among the servers; see s3section.go. The console workload (the web console's pages with
// 10,000 repositories and 5,000 tags) runs against a berth of its own,
// only when berth is among the servers. The gc workload (online garbage collection) runs against a
// berth of its own in embedded mode, only when berth is among the servers,
// and not against distribution, whose garbage collection is offline (nor
// against berth-s3: its collection is tested by test/e2e, not timed here):
//
//	go run ./bench -only gc -servers berth
//	go run ./bench -only gc -servers berth -gc-manifests 2000 -gc-blobs 10000
//
// The mirror workload (issue 13: berth as a pull-through cache of a
// Distribution) also runs against a berth and a Distribution of its own,
// only when berth is among the servers; see mirror.go:
//
//	go run ./bench -only mirror -servers berth -pairs 20 -cold-trials 1
//
// The exit status is 1 if any request got a wrong answer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// config holds the command-line settings.
type config struct {
	blobSize     int64
	requests     int
	conc         int
	images       int
	imageConc    int
	tags         int
	repos        int
	pageSize     int
	listRepeats  int
	gcManifests  int
	gcBlobs      int
	gcRepos      int
	gcReaders    int
	pairs        int
	pullPairs    int  // pairs of alternating large blob pulls (pullpairs.go)
	tls          bool // the compared servers serve HTTPS (tls.go)
	pairRequests int
	settleMax    time.Duration
	mirror       mirrorConfig // the mirror workload's (mirror.go)
	s3           s3Config     // the s3 workload's (s3section.go)
	only         []string
	servers      []string
	out          string
	tmpDir       string
	distBin      string
	berthBin     string
	timeout      time.Duration
	keep         bool
}

// serverKinds are the names -servers accepts, in the order of the help.
var serverKinds = []string{"berth", "berth-observed", "distribution", "berth-s3", "distribution-s3"}

// workload is one benchmark, run against each server in turn.
type workload struct {
	name string
	run  func(b *bench, ctx context.Context, t *target) error
}

// workloads lists the benchmarks in the order they run.
var workloads = []workload{
	{"push", (*bench).benchPush},
	{"pull", (*bench).benchPull},
	{"images", (*bench).benchImages},
	{"manifest", (*bench).benchManifest},
	{"head", (*bench).benchHead},
	{"tags", (*bench).benchTags},
	{"catalog", (*bench).benchCatalog},
	{"gc", (*bench).benchGC},
	{"console", (*bench).benchConsole},
	{"mirror", (*bench).benchMirror},
	{"s3", (*bench).benchS3},
}

// bench is the shared state of one run.
type bench struct {
	cfg      *config
	berthBin string // the berth binary, for workloads that start their own
	tmp      string // the run's temporary directory
	hot      *image
	images   []*image
	digest   string
	hashing  sync.Once
	// targets are the run's servers; pulls what the alternating pulls of
	// berth and Distribution measured (pullpairs.go).
	targets []*target
	pulls   *pullPairs
	// s3 is what the s3 workload measured (s3section.go).
	s3 *s3Result
}

// bigDigest returns the digest of the generated large blob, computing it
// on first use (untimed).
func (b *bench) bigDigest() string {
	b.hashing.Do(func() {
		start := time.Now()
		b.digest = streamDigest(b.cfg.blobSize, bigSeed)
		logf("hashed the %s test blob in %.1fs: %s", fmtSize(b.cfg.blobSize), time.Since(start).Seconds(), b.digest)
	})
	return b.digest
}

// target is one server with what the workloads measured on it.
type target struct {
	*server
	bigPushed    bool
	hotPushed    bool
	values       map[string]float64
	notes        map[string][]string
	cpu          map[string]float64
	errs         map[string]error
	catalogTotal int
	// backend returns the CPU time used so far by the servers behind this
	// one (versitygw, PostgreSQL); nil for the filesystem kinds.
	backend    func() float64
	backendCPU map[string]float64 // per workload
	// paired is what the pairs of manifest and head turns on berth and
	// berth-observed measured, by workload.
	paired map[string]*pairedLoad
	// consolePages are the pages the console workload timed.
	consolePages []consolePage
	// observed is the scraper and webhook receiver of a berth-observed.
	observed *observed
	// mirror is what the mirror workload measured.
	mirror *mirrorResult
}

// set records a measured value.
func (t *target) set(key string, v float64) { t.values[key] = v }

// note records a remark about a measurement.
func (t *target) note(key, s string) { t.notes[key] = append(t.notes[key], s) }

func main() {
	code := run()
	runCleanups()
	os.Exit(code)
}

// logf prints a progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// parseFlags reads the command line.
func parseFlags() (*config, error) {
	cfg := &config{blobSize: 1 << 30, s3: s3Config{chunk: 16 << 20}}
	flag.Var((*sizeFlag)(&cfg.blobSize), "blob-size", "size of the large blob pushed and pulled (e.g. 1GiB, 64MiB, 1000000)")
	flag.IntVar(&cfg.requests, "requests", 50000, "requests per manifest GET and blob HEAD load")
	flag.IntVar(&cfg.conc, "concurrency", 64, "concurrent clients of the manifest GET and blob HEAD loads")
	flag.IntVar(&cfg.images, "images", 200, "small images pushed by the images workload")
	flag.IntVar(&cfg.imageConc, "image-concurrency", 8, "images pushed at a time")
	flag.IntVar(&cfg.tags, "tags", 5000, "tags of the repository listed by the tags workload")
	flag.IntVar(&cfg.repos, "repos", 2000, "repositories listed by the catalog workload")
	flag.IntVar(&cfg.pageSize, "page-size", 100, "n of tags and catalog pages")
	flag.IntVar(&cfg.listRepeats, "list-repeats", 5, "full listings timed per server (median reported)")
	flag.IntVar(&cfg.gcManifests, "gc-manifests", 10000, "manifests set up for the gc workload (half of them garbage)")
	flag.IntVar(&cfg.gcBlobs, "gc-blobs", 50000, "distinct blobs of those manifests (at least one per manifest)")
	flag.IntVar(&cfg.gcRepos, "gc-repos", 10, "repositories of the gc workload")
	flag.IntVar(&cfg.gcReaders, "gc-readers", 1, "clients reading manifests during the collection")
	flag.BoolVar(&cfg.tls, "tls", false, "serve berth, berth-observed and distribution over TLS (one self-signed certificate, HTTP/1.1), for the push and pull workloads over TLS")
	flag.IntVar(&cfg.pullPairs, "pull-pairs", 7, "pairs of large blob pulls from berth and distribution, alternating, after the pull workload")
	flag.IntVar(&cfg.pairs, "pairs", 200, "pairs of turns of the manifest and head loads on berth and berth-observed when both run, and of the mirror workload's cached pulls (compared pair by pair)")
	flag.IntVar(&cfg.pairRequests, "pair-requests", 5000, "requests of one turn of a pair")
	flag.DurationVar(&cfg.settleMax, "settle-max", 5*time.Minute, "longest wait, after the last pair, for the servers to be idle again (pull events flushed and delivered)")
	only := flag.String("only", "", "comma-separated workloads to run (default all): "+workloadNames())
	servers := flag.String("servers", "berth,berth-observed,distribution", "comma-separated servers to run, in this order: "+strings.Join(serverKinds, ", ")+
		" (berth-observed is berth with metrics, scraped every second, and a webhook for every event; the -s3 kinds use the -s3-server and, for berth-s3, a PostgreSQL that the benchmark starts)")
	flag.StringVar(&cfg.out, "out", "", "also write the Markdown report to this file")
	flag.StringVar(&cfg.tmpDir, "tmp-dir", "/var/tmp", "parent of the temporary build and data directories (one disk for all servers)")
	flag.StringVar(&cfg.distBin, "distribution", "/usr/bin/docker-registry", "docker-registry binary (apt-get install docker-registry)")
	flag.StringVar(&cfg.berthBin, "berth", "", "prebuilt berth binary (default: go build ./cmd/berth)")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Minute, "time limit of one workload on one server")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (data and logs) for inspection")
	flag.BoolVar(&sameAsBerth, "same-as-berth", false, "run berth-observed exactly as berth (metrics off, no webhook, no scrapes): an A/A check of the comparison")
	cfg.mirror.register()
	cfg.s3.register()
	events := flag.String("hook-events", strings.Join(hookEvents, ","), "events berth-observed's webhook subscribes to (add pull to measure pull events: one delivery per manifest GET)")
	flag.Parse()
	hookEvents = splitList(*events)
	if flag.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	for _, name := range splitList(*only) {
		if !slices.ContainsFunc(workloads, func(w workload) bool { return w.name == name }) {
			return nil, fmt.Errorf("-only: unknown workload %q (have %s)", name, workloadNames())
		}
		cfg.only = append(cfg.only, name)
	}
	for _, name := range splitList(*servers) {
		if !slices.Contains(serverKinds, name) {
			return nil, fmt.Errorf("-servers: unknown server %q (have %s)", name, strings.Join(serverKinds, ", "))
		}
		if slices.Contains(cfg.servers, name) {
			return nil, fmt.Errorf("-servers: %q given twice", name)
		}
		cfg.servers = append(cfg.servers, name)
	}
	if err := cfg.mirror.check(); err != nil {
		return nil, err
	}
	if err := cfg.s3.check(); err != nil {
		return nil, err
	}
	if len(cfg.servers) == 0 || cfg.blobSize <= 0 || cfg.requests <= 0 || cfg.conc <= 0 || cfg.images <= 0 ||
		cfg.imageConc <= 0 || cfg.tags <= 1 || cfg.repos <= 1 || cfg.pageSize <= 0 || cfg.listRepeats <= 0 ||
		cfg.gcManifests < 4 || cfg.gcBlobs < cfg.gcManifests || cfg.gcRepos <= 0 || cfg.gcReaders <= 0 || cfg.pairs < 2 || cfg.pairRequests <= 0 || cfg.settleMax <= 0 {
		return nil, errors.New("sizes, counts and concurrencies must be positive (tags and repos above 1, gc-manifests at least 4, gc-blobs at least gc-manifests)")
	}
	return cfg, nil
}

// selected reports whether a workload is to run.
func (c *config) selected(name string) bool {
	return len(c.only) == 0 || slices.Contains(c.only, name)
}

// run does the whole benchmark and returns the exit status.
func run() (code int) {
	defer func() {
		if p := recover(); p != nil {
			runCleanups()
			panic(p)
		}
	}()
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	// The first signal cancels the workloads so that run returns and main
	// cleans up; a second one cleans up and exits at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		logf("%v: stopping servers and removing temporary files", s)
		cancel()
		<-sig
		runCleanups()
		os.Exit(130)
	}()
	err = runBench(ctx, cfg)
	switch {
	case ctx.Err() != nil:
		return 130
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		return 1
	}
	return 0
}

// runBench starts the servers, runs the workloads and writes the report.
func runBench(ctx context.Context, cfg *config) error {
	info := collectInfo(cfg)
	tmp, err := os.MkdirTemp(cfg.tmpDir, "berth-bench-")
	if err != nil {
		return err
	}
	if cfg.keep {
		logf("keeping %s", tmp)
	} else {
		atExit(func() { os.RemoveAll(tmp) })
	}
	warnForeignRegistries()
	if cfg.tls {
		if benchTLS, err = newTLSFiles(filepath.Join(tmp, "tls")); err != nil {
			return err
		}
		logf("tls: berth, berth-observed and distribution serve HTTPS with a certificate for 127.0.0.1 (%s)", benchTLS.cert)
	}

	targets, berthBin, err := startServers(cfg, info, tmp)
	if err != nil {
		return err
	}

	b := &bench{cfg: cfg, berthBin: berthBin, tmp: tmp, hot: newImage("bench/hot", "latest", 1, 1), images: newImages(cfg.images), targets: targets}
	if cfg.selected("push") || cfg.selected("pull") {
		b.bigDigest()
	}
	failed := false
	for _, w := range workloads {
		if !cfg.selected(w.name) {
			continue
		}
		for _, t := range targets {
			if paired, here := pairedHere(targets, w.name, t); paired {
				// berth and berth-observed, alternately, where the first of them runs
				if here {
					plain, obs := overheadPair(targets)
					if !b.runPairs(ctx, w.name, plain, obs) {
						failed = true
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
				}
				continue
			}
			if !t.alive() {
				t.errs[w.name] = fmt.Errorf("%s is not running", t.name)
				continue
			}
			before := t.sample().cpuSec
			var backendBefore float64
			if t.backend != nil {
				backendBefore = t.backend()
			}
			wctx, cancel := context.WithTimeout(ctx, cfg.timeout)
			start := time.Now()
			err := w.run(b, wctx, t)
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			st := t.sample()
			if _, own := t.cpu[w.name]; !own { // a workload with a server of its own sets it
				t.cpu[w.name] = st.cpuSec - before
			}
			backendNote := ""
			if t.backend != nil {
				t.backendCPU[w.name] = t.backend() - backendBefore
				backendNote = fmt.Sprintf(" + backends %.1fs", t.backendCPU[w.name])
			}
			if err != nil {
				failed = true
				t.errs[w.name] = err
				fmt.Fprintf(os.Stderr, "\n!!! %s FAILED workload %q:\n%v\n", t.name, w.name, err)
				if !t.alive() {
					fmt.Fprintf(os.Stderr, "!!! %s exited: %v\n%s\n", t.name, t.waitErr, t.logTail())
				}
				continue
			}
			logf("%-15s %-8s done in %5.1fs  server cpu %5.1fs%s  rss %4d MiB  peak %4d MiB  %s",
				t.name, w.name, time.Since(start).Seconds(), t.cpu[w.name], backendNote, st.rssKiB>>10, st.hwmKiB>>10, t.summary(w.name))
		}
	}
	if err := crossCheck(targets); err != nil {
		failed = true
		fmt.Fprintf(os.Stderr, "\n!!! %v\n", err)
	}
	for _, t := range targets {
		if o := t.observed; o != nil {
			o.stopScraper()
			if n := o.scrapeFailures.Load(); n > 0 {
				failed = true
				fmt.Fprintf(os.Stderr, "\n!!! %s: %d scrapes of /metrics failed, first: %v\n", t.name, n, o.firstScrapeErr.Load())
			}
		}
		t.stop()
		t.set("hwm", float64(t.stats.hwmKiB)/1024)
		t.set("cpu", t.stats.cpuSec)
		if t.backend != nil {
			var sum float64
			for _, v := range t.backendCPU {
				sum += v
			}
			t.set("backend-cpu", sum)
			t.set("total-cpu", t.stats.cpuSec+sum)
		} else {
			t.set("total-cpu", t.stats.cpuSec)
		}
	}
	report := renderReport(cfg, info, targets) + renderOverhead(cfg, targets) + renderGC(cfg, targets) + renderConsole(cfg, targets) + renderMirror(cfg, targets) + renderPullPairs(cfg, b.pulls) + renderS3(cfg, targets, b.s3)
	fmt.Print(report)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
			return err
		}
		logf("wrote %s", cfg.out)
	}
	if failed {
		return errors.New("some requests got wrong answers; see the messages above")
	}
	return nil
}

// crossCheck compares what the servers reported where they must agree.
func crossCheck(ts []*target) error {
	var first *target
	for _, t := range ts {
		if t.catalogTotal == 0 || len(t.errs) > 0 {
			continue
		}
		if first == nil {
			first = t
		} else if t.catalogTotal != first.catalogTotal {
			return fmt.Errorf("catalogs differ: %s lists %d repositories, %s lists %d",
				first.name, first.catalogTotal, t.name, t.catalogTotal)
		}
	}
	return nil
}

// startServers starts the servers of cfg.servers in order, with the
// backends the S3 kinds need, and returns them with the berth binary
// (built once, or -berth) if one of them is a berth.
func startServers(cfg *config, info *sysInfo, tmp string) ([]*target, string, error) {
	var targets []*target
	var berthBin string
	be := &backends{dir: tmp, kind: cfg.s3.server}
	berth := func() (string, error) {
		if berthBin != "" {
			return berthBin, nil
		}
		bin := cfg.berthBin
		if bin == "" {
			root, err := moduleRoot()
			if err != nil {
				return "", err
			}
			logf("building berth in %s", root)
			if bin, err = buildBerth(root, tmp); err != nil {
				return "", err
			}
		}
		info.berth = toolVersion(bin, "version")
		berthBin = bin
		return bin, nil
	}
	distribution := func() error {
		if _, err := os.Stat(cfg.distBin); err != nil {
			return fmt.Errorf("%v (install it with: apt-get install -y docker-registry)", err)
		}
		return nil
	}
	for _, name := range cfg.servers {
		var s *server
		var backend func() float64
		var obs *observed
		switch name {
		case "berth":
			bin, err := berth()
			if err != nil {
				return nil, "", err
			}
			if s, err = startBerth(bin, filepath.Join(tmp, "berth-data"), filepath.Join(tmp, "berth.log"), cfg.conc); err != nil {
				return nil, "", err
			}
		case "berth-observed":
			bin, err := berth()
			if err != nil {
				return nil, "", err
			}
			if s, obs, err = startBerthObserved(bin, filepath.Join(tmp, "berth-observed-data"), filepath.Join(tmp, "berth-observed.log"), cfg.conc); err != nil {
				return nil, "", err
			}
		case "distribution":
			if err := distribution(); err != nil {
				return nil, "", err
			}
			root := filepath.Join(tmp, "distribution-data")
			if err := os.MkdirAll(root, 0o755); err != nil {
				return nil, "", err
			}
			var err error
			if s, err = startDistribution(cfg.distBin, tmp, root, filepath.Join(tmp, "distribution.log"), cfg.conc, benchTLS); err != nil {
				return nil, "", err
			}
		case "berth-s3":
			bin, err := berth()
			if err != nil {
				return nil, "", err
			}
			s3, err := be.S3("berth-bench")
			if err != nil {
				return nil, "", err
			}
			dsn, err := be.PostgresDSN()
			if err != nil {
				return nil, "", err
			}
			if s, err = startBerthS3(bin, filepath.Join(tmp, "berth-s3"), s3, "berth-bench", dsn, filepath.Join(tmp, "berth-s3.log"), cfg.conc); err != nil {
				return nil, "", err
			}
			backend = func() float64 { return be.s3CPU() + be.pgCPU() }
		case "distribution-s3":
			if err := distribution(); err != nil {
				return nil, "", err
			}
			s3, err := be.S3("distribution-bench")
			if err != nil {
				return nil, "", err
			}
			if s, err = startDistributionS3(cfg.distBin, tmp, s3, "distribution-bench", filepath.Join(tmp, "distribution-s3.log"), cfg.conc); err != nil {
				return nil, "", err
			}
			backend = be.s3CPU
		}
		logf("%s listening on %s (pid %d)", name, s.base, s.cmd.Process.Pid)
		if obs != nil {
			logf("%s: metrics at %s (scraped every second), webhook to %s", name, obs.metricsURL, obs.hooks.srv.URL)
		}
		targets = append(targets, &target{server: s, values: map[string]float64{}, notes: map[string][]string{},
			cpu: map[string]float64{}, errs: map[string]error{}, backend: backend, backendCPU: map[string]float64{},
			paired: map[string]*pairedLoad{}, observed: obs})
	}
	if be.s3 != nil {
		info.versitygw = be.s3.Version
	}
	if be.pg != nil {
		info.postgres = be.pg.Version
	}
	return targets, berthBin, nil
}

// warnForeignRegistries warns about other registry processes (such as
// Debian's docker-registry service) that would compete for the CPU.
func warnForeignRegistries() {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err == nil && strings.Contains(string(b), "docker-registry") {
			pid := strings.Split(d, "/")[2]
			logf("warning: another docker-registry is running (pid %s: %s); stop it for fair numbers",
				pid, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

// splitList splits a comma-separated flag value.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// workloadNames lists the workload names for help texts.
func workloadNames() string {
	var names []string
	for _, w := range workloads {
		names = append(names, w.name)
	}
	return strings.Join(names, ",")
}
