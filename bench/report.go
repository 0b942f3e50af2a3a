package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// sysInfo describes the machine and the software compared.
type sysInfo struct {
	date, uname, cpu, load, goVersion, berth, distribution, berthCommit string
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
		if s == "distribution" {
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
	}
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

// renderReport builds the Markdown report.
func renderReport(cfg *config, in *sysInfo, ts []*target) string {
	var berth, dist *target
	for _, t := range ts {
		if t.name == "berth" {
			berth = t
		} else {
			dist = t
		}
	}
	var w strings.Builder
	fmt.Fprintf(&w, "### berth vs CNCF Distribution (%s)\n\n", in.date)
	fmt.Fprintf(&w, "- Machine: `%s`, %s, %d cores; load average at start %s\n", in.uname, in.cpu, in.cores, in.load)
	fmt.Fprintf(&w, "- Go: %s; berth: %s (%s); distribution: %s\n", in.goVersion, in.berthCommit, in.berth, in.distribution)
	fmt.Fprintf(&w, "- Command: `go run ./bench %s`\n\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(&w, "| Metric | berth | distribution | berth advantage (×, >1 = berth better) |\n")
	fmt.Fprintf(&w, "| --- | ---: | ---: | ---: |\n")
	for _, m := range metrics(cfg) {
		if m.workload != "" && !cfg.selected(m.workload) {
			continue
		}
		fmt.Fprintf(&w, "| %s | %s | %s | %s |\n", m.label, cell(berth, m), cell(dist, m), ratio(berth, dist, m))
	}
	fmt.Fprintf(&w, "\nServer CPU time per workload, setup included (s, lower is better):\n\n")
	fmt.Fprintf(&w, "| Workload | berth | distribution |\n| --- | ---: | ---: |\n")
	for _, wl := range workloads {
		if !cfg.selected(wl.name) {
			continue
		}
		c := func(t *target) string {
			if v, ok := t.cpuOf(wl.name); ok {
				return fmt.Sprintf("%.1f", v)
			}
			return "–"
		}
		fmt.Fprintf(&w, "| %s | %s | %s |\n", wl.name, c(berth), c(dist))
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
	w.WriteString("- Pulls read what was just written, so they are served from the page cache.\n")
	w.WriteString("- distribution runs with Debian's default in-memory blob descriptor cache and its access log disabled " +
		"(berth logs no requests at --log-level=warn).\n")
	return w.String()
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
