package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// sysInfo describes the machine and the software compared.
type sysInfo struct {
	date, uname, cpu, load, goVersion, berth, distribution, berthCommit string
	versitygw, postgres                                                 string // of the S3 kinds' backends, "" if not run
	cores                                                               int
}

// collectInfo gathers the machine description before the run.
func collectInfo(cfg *config) *sysInfo {
	in := &sysInfo{date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), cores: runtime.NumCPU(),
		goVersion: runtime.Version(), cpu: "unknown", berth: "unknown", distribution: "not run"}
	if b, err := exec.Command("uname", "-srm").Output(); err == nil {
		in.uname = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				in.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		in.load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		in.berthCommit = strings.TrimSpace(string(b))
	}
	if cfg.berthBin != "" {
		in.berthCommit = cfg.berthBin
	}
	for _, s := range cfg.servers {
		if s == "distribution" || s == "distribution-s3" {
			in.distribution = toolVersion(cfg.distBin, "--version")
		}
	}
	return in
}

// metric is one row of the table.
type metric struct {
	key      string
	workload string
	label    string
	higher   bool // higher values are better
	prec     int  // decimals shown
}

// metrics returns the table rows for cfg, in order.
func metrics(c *config) []metric {
	size := fmtSize(c.blobSize)
	return []metric{
		{"push", "push", fmt.Sprintf("Blob push, %s, one streamed PATCH (MiB/s)", size), true, 1},
		{"pull", "pull", fmt.Sprintf("Blob pull, %s, median of 3 (MiB/s)", size), true, 1},
		{"images", "images", fmt.Sprintf("Push %d small images, %d at a time (images/s)", c.images, c.imageConc), true, 1},
		{"manifest-rps", "manifest", fmt.Sprintf("Manifest GET by tag, %d clients (req/s)", c.conc), true, 0},
		{"manifest-p50", "manifest", "Manifest GET p50 latency (ms)", false, 2},
		{"manifest-p99", "manifest", "Manifest GET p99 latency (ms)", false, 2},
		{"head-rps", "head", fmt.Sprintf("Blob HEAD, %d clients (req/s)", c.conc), true, 0},
		{"head-p50", "head", "Blob HEAD p50 latency (ms)", false, 2},
		{"head-p99", "head", "Blob HEAD p99 latency (ms)", false, 2},
		{"tags", "tags", fmt.Sprintf("List %d tags, n=%d, median of %d (ms)", c.tags, c.pageSize, c.listRepeats), false, 1},
		{"catalog", "catalog", fmt.Sprintf("List %d-repository catalog, n=%d, median of %d (ms)", c.repos, c.pageSize, c.listRepeats), false, 1},
		{"tags-setup", "tags", fmt.Sprintf("Setup: tag one manifest %d times, %d clients (tags/s)", c.tags-1, setupConc), true, 0},
		{"catalog-setup", "catalog", fmt.Sprintf("Setup: create %d repositories (2 mounts + manifest PUT), %d clients (repos/s)", c.repos-1, setupConc), true, 0},
		{"hwm", "", "Peak server memory, whole run (VmHWM, MiB)", false, 1},
		{"cpu", "", "Server CPU time, whole run (s)", false, 1},
		{"backend-cpu", "", "Backend CPU time during the workloads (versitygw + PostgreSQL, s)", false, 1},
		{"total-cpu", "", "Server + backend CPU time (s)", false, 1},
	}
}

// backendRows reports whether the rows of backend CPU apply: whether an
// S3 kind ran.
func backendRows(ts []*target) bool {
	return slices.ContainsFunc(ts, func(t *target) bool { return t.backend != nil })
}

// pair is a berth kind and the distribution kind it is compared with.
type pair struct{ berth, dist *target }

// pairs returns the comparisons of the run: berth with distribution and
// berth-s3 with distribution-s3, where both ran.
func pairs(ts []*target) []pair {
	byName := map[string]*target{}
	for _, t := range ts {
		byName[t.name] = t
	}
	var ps []pair
	for _, k := range [][2]string{{"berth", "distribution"}, {"berth-s3", "distribution-s3"}} {
		if b, d := byName[k[0]], byName[k[1]]; b != nil && d != nil {
			ps = append(ps, pair{b, d})
		}
	}
	return ps
}

// summary renders the values a workload produced, for progress lines.
func (t *target) summary(workload string) string {
	var parts []string
	for _, m := range metrics(&config{}) {
		if v, ok := t.values[m.key]; ok && m.workload == workload {
			parts = append(parts, fmt.Sprintf("%s=%.*f", m.key, m.prec, v))
		}
	}
	return strings.Join(parts, " ")
}

// cell renders one server's value of a metric.
func cell(t *target, m metric) string {
	if t == nil {
		return "–"
	}
	if m.workload != "" && t.errs[m.workload] != nil {
		return "FAIL"
	}
	v, ok := t.values[m.key]
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.*f", m.prec, v)
}

// ratio renders berth's advantage: >1 means berth is better.
func ratio(b, d *target, m metric) string {
	if b == nil || d == nil {
		return "–"
	}
	bv, bok := b.values[m.key]
	dv, dok := d.values[m.key]
	if !bok || !dok || (m.workload != "" && (b.errs[m.workload] != nil || d.errs[m.workload] != nil)) {
		return "–"
	}
	if m.higher && dv > 0 {
		return fmt.Sprintf("%.2f×", bv/dv)
	}
	if !m.higher && bv > 0 {
		return fmt.Sprintf("%.2f×", dv/bv)
	}
	return "–"
}

// renderReport builds the Markdown report: one column per server, then
// one column of ratios per pair of a berth kind and its distribution kind.
func renderReport(cfg *config, in *sysInfo, ts []*target) string {
	ps := pairs(ts)
	var w strings.Builder
	fmt.Fprintf(&w, "### berth vs CNCF Distribution (%s)\n\n", in.date)
	fmt.Fprintf(&w, "- Machine: `%s`, %s, %d cores; load average at start %s\n", in.uname, in.cpu, in.cores, in.load)
	fmt.Fprintf(&w, "- Go: %s; berth: %s (%s); distribution: %s\n", in.goVersion, in.berthCommit, in.berth, in.distribution)
	if in.versitygw != "" || in.postgres != "" {
		fmt.Fprintf(&w, "- Backends of the S3 kinds: versitygw %s; PostgreSQL %s\n", orNotRun(in.versitygw), orNotRun(in.postgres))
	}
	fmt.Fprintf(&w, "- Command: `go run ./bench %s`\n\n", strings.Join(os.Args[1:], " "))
	w.WriteString("| Metric |")
	for _, t := range ts {
		fmt.Fprintf(&w, " %s |", t.name)
	}
	for _, p := range ps {
		if len(ps) == 1 && p.berth.name == "berth" {
			w.WriteString(" berth advantage (×, >1 = berth better) |")
		} else {
			fmt.Fprintf(&w, " %s ÷ %s (×, >1 = %s better) |", p.berth.name, p.dist.name, p.berth.name)
		}
	}
	fmt.Fprintf(&w, "\n| --- |%s\n", strings.Repeat(" ---: |", len(ts)+len(ps)))
	for _, m := range metrics(cfg) {
		if m.workload != "" && !cfg.selected(m.workload) {
			continue
		}
		if (m.key == "backend-cpu" || m.key == "total-cpu") && !backendRows(ts) {
			continue
		}
		fmt.Fprintf(&w, "| %s |", m.label)
		for _, t := range ts {
			fmt.Fprintf(&w, " %s |", cell(t, m))
		}
		for _, p := range ps {
			fmt.Fprintf(&w, " %s |", ratio(p.berth, p.dist, m))
		}
		w.WriteString("\n")
	}
	fmt.Fprintf(&w, "\nServer CPU time per workload, setup included (s, lower is better)")
	if backendRows(ts) {
		w.WriteString("; for the S3 kinds, server + backends (versitygw, and PostgreSQL for berth-s3)")
	}
	w.WriteString(":\n\n| Workload |")
	for _, t := range ts {
		fmt.Fprintf(&w, " %s |", t.name)
	}
	fmt.Fprintf(&w, "\n| --- |%s\n", strings.Repeat(" ---: |", len(ts)))
	for _, wl := range workloads {
		if !cfg.selected(wl.name) {
			continue
		}
		fmt.Fprintf(&w, "| %s |", wl.name)
		for _, t := range ts {
			c := "–"
			if v, ok := t.cpuOf(wl.name); ok {
				c = fmt.Sprintf("%.1f", v)
				if b, ok := t.backendCPU[wl.name]; ok {
					c += fmt.Sprintf(" + %.1f", b)
				}
			}
			fmt.Fprintf(&w, " %s |", c)
		}
		w.WriteString("\n")
	}
	w.WriteString("\nNotes:\n\n")
	for _, t := range ts {
		for _, m := range metrics(cfg) {
			if n := t.notes[m.key]; len(n) > 0 {
				fmt.Fprintf(&w, "- %s, %s: %s.\n", t.name, m.key, strings.Join(n, "; "))
			}
		}
		for _, wl := range workloads {
			if err := t.errs[wl.name]; err != nil {
				fmt.Fprintf(&w, "- %s FAILED %s: %s\n", t.name, wl.name, firstLine(err.Error()))
			}
		}
	}
	fmt.Fprintf(&w, "- Each workload runs against %s in turn; the servers run side by side on loopback "+
		"with data directories on the same disk, and the load generator shares the machine's cores.\n",
		strings.Join(cfg.servers, ", then "))
	if plain, _ := overheadPair(ts); plain != nil && slices.ContainsFunc(overheadWorkloads, cfg.selected) {
		fmt.Fprintf(&w, "- Except the manifest and head loads of berth and berth-observed, which ran in %d pairs of turns of %d requests each "+
			"(see the comparison below); their cells in the first table are the medians of the turns, and the CPU times "+
			"of those workloads cover the warm-up, all turns of both servers and the wait for the server to be idle after the last pair.\n",
			cfg.pairs, cfg.pairRequests)
	}
	w.WriteString("- Pulls read what was just written, so they are served from the page cache.\n")
	w.WriteString("- distribution runs with Debian's default in-memory blob descriptor cache and its access log disabled " +
		"(berth logs no requests at --log-level=warn).\n")
	if backendRows(ts) {
		w.WriteString("- The S3 kinds share one versitygw (posix backend, on the same disk) on loopback, with a bucket each; " +
			"berth-s3 keeps its metadata in a PostgreSQL database on the same machine (default --postgres-conns); " +
			"distribution-s3 uses the s3 storage driver with redirects disabled, so blobs stream through both registries. " +
			"Backend CPU is versitygw's (and PostgreSQL's for berth-s3) while that server's workloads ran; " +
			"their memory is not in the peak memory row.\n")
	}
	return w.String()
}

// orNotRun returns s, or "not run" if it is empty.
func orNotRun(s string) string {
	if s == "" {
		return "not run"
	}
	return s
}

// cpuOf returns the server CPU time of a workload, if it ran.
func (t *target) cpuOf(workload string) (float64, bool) {
	if t == nil {
		return 0, false
	}
	v, ok := t.cpu[workload]
	return v, ok
}

// firstLine returns the first line of s.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
