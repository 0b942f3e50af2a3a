package main

import (
	"fmt"
	"slices"
	"strings"
)

// renderMirror renders the mirror workload's section (issue 13), or "" if
// it did not run.
func renderMirror(cfg *config, ts []*target) string {
	t := berthTarget(ts)
	if !cfg.selected("mirror") || t == nil {
		return ""
	}
	var w strings.Builder
	w.WriteString("\n### Pull-through mirror (issue 13)\n\n")
	res := t.mirror
	if err := t.errs["mirror"]; err != nil {
		fmt.Fprintf(&w, "FAILED: %s\n", firstLine(err.Error()))
		if res == nil || len(res.pushed) < 2 {
			return w.String()
		}
		w.WriteString("\nWhat was measured before the failure:\n\n")
	}
	if res == nil {
		return w.String()
	}
	mc := &cfg.mirror
	yes := map[bool]string{true: "yes", false: "**no**"}
	met := map[bool]string{true: "met", false: "not met"}
	fmt.Fprintf(&w, "A berth (`--auth=none`, `--metrics=false`) and a Distribution of its own, on loopback, with the "+
		"mirror `%s` (upstream: that Distribution, default tag TTL).\n\n", mirrorName)
	c, ok := comparePairs(res.pushed, res.mirrored)
	if ok {
		fmt.Fprintf(&w, "**Cached pulls.** One image (a config and %d layers of %s, %s a pull with the manifest), pushed to "+
			"berth as `bench/pushed` and to the Distribution as `bench/mirrored`, then pulled once through `%s/bench/mirrored` "+
			"(berth fetched and kept the manifest and linked the blobs it held). A pull: the manifest by tag, then every blob, "+
			"every byte read. %d clients; %d pairs of turns of %d pulls, pushed first in even pairs, mirrored first in odd ones "+
			"(after one untimed turn each), compared pair by pair: the geometric mean of mirrored/pushed with a 95 %% "+
			"confidence interval (Student's t on the logarithms). A mirrored tag within its TTL costs a read of its "+
			"tag-check row: part of what is measured. The target: mirrored at least %.2f of pushed.\n\n",
			mirrorLayers, fmtSize(mirrorLayerSize), fmtMiB(res.pullBytes), mirrorName, mc.clients, c.n, mc.pulls, mirrorCachedMin)
		pulls := float64(c.n * mc.pulls)
		fmt.Fprintf(&w, "| Pull of | median turn (MiB/s) | turns min / max (MiB/s) | berth CPU per pull (ms) |\n| --- | ---: | ---: | ---: |\n")
		for _, row := range []struct {
			name  string
			rates []float64
			cpu   float64
		}{{"`bench/pushed` (pushed)", res.pushed, res.pushedCPU}, {"`" + mirrorName + "/bench/mirrored` (mirrored, cached)", res.mirrored, res.mirroredCPU}} {
			xs := slices.Clone(row.rates)
			slices.Sort(xs)
			fmt.Fprintf(&w, "| %s | %.0f | %.0f / %.0f | %.2f |\n", row.name, median(xs), xs[0], xs[len(xs)-1], row.cpu/pulls*1e3)
		}
		fmt.Fprintf(&w, "\n| mirrored / pushed, pairs' geometric mean [95 %% CI] | pair ratio min / median / max | pairs mirrored slower | whole CI ≥ %.2f | ratio ≥ %.2f |\n"+
			"| ---: | ---: | ---: | :---: | :---: |\n", mirrorCachedMin, mirrorCachedMin)
		fmt.Fprintf(&w, "| %.3f [%.3f, %.3f] (%s) | %.3f / %.3f / %.3f | %d of %d | %s | %s |\n\n", c.ratio, c.lo, c.hi, pct(c.ratio),
			c.min, c.median, c.max, c.slower, c.n, yes[c.lo >= mirrorCachedMin], yes[c.ratio >= mirrorCachedMin])
		fmt.Fprintf(&w, "Issue 13, cached pulls through the mirror at least %.0f %% of pushed: **%s** (the pairs took %.0f s).\n\n",
			mirrorCachedMin*100, met[c.ratio >= mirrorCachedMin], res.pairsTime.Seconds())
	}
	if len(res.cold) == 0 {
		return w.String()
	}
	fmt.Fprintf(&w, "**Cold pulls.** Per trial, a fresh generated %s blob uploaded to the Distribution (POST, one streamed PATCH, "+
		"PUT, and a manifest), then one GET of it directly from the Distribution and one through `%s/<repo>` on berth with "+
		"nothing cached (berth downloads it into a spool file while streaming it to the client, verifies it, keeps it), "+
		"every byte read; which goes first alternates (direct first in odd trials). Before each timed step the benchmark "+
		"calls sync(2) (untimed), so that none starts with another's dirty pages still to write back. Both read the Distribution's copy, which "+
		"the upload left in the page cache. Then the blob is pulled once more from berth's cache with its digest checked, "+
		"and deleted from both (berth: unlinked and collected). CPU: what berth, the Distribution and the benchmark's "+
		"client used during the GET. The write floor: before the pulls, the benchmark writes as many bytes to a new file "+
		"on the same disk, 1 MiB at a time as berth writes its spool, without fsync, removes it, and does it again (timed: "+
		"the floor, with its CPU in parentheses; the rest of its time it waited for the disk): the second file reuses the "+
		"page-cache pages the first freed, as berth's spool then does. The floor is the least a mirror that serves what "+
		"it keeps from its disk adds on this machine; the first write shows what the same costs in memory the kernel "+
		"had not used yet (a virtual machine may back its memory on first touch). The target: through berth at most %.1f× "+
		"direct (median of the trials).\n\n",
		fmtSize(mc.coldSize), mirrorName, mirrorColdMax)
	w.WriteString("| Trial | first | direct (s) | through berth (s) | berth / direct | first byte, direct / berth (ms) | " +
		"CPU direct: distribution / client (s) | CPU through berth: berth / distribution / client (s) | write floor (s) (CPU) | floor / direct | first write (s) | upload (s) |\n" +
		"| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var ratios []float64
	for i, tr := range res.cold {
		first := map[bool]string{true: "direct", false: "berth"}[tr.directFirst]
		fmt.Fprintf(&w, "| %d | %s | %.2f | %.2f | %.2f× | %.1f / %.1f | %.2f / %.2f | %.2f / %.2f / %.2f | %.2f (%.2f) | %.2f× | %.2f | %.1f |\n", i+1, first,
			tr.direct.total.Seconds(), tr.mirror.total.Seconds(), tr.ratio(), ms(tr.direct.ttfb), ms(tr.mirror.ttfb),
			tr.direct.distCPU, tr.direct.clientCPU, tr.mirror.berthCPU, tr.mirror.distCPU, tr.mirror.clientCPU,
			tr.write.Seconds(), tr.writeCPU, tr.write.Seconds()/tr.direct.total.Seconds(), tr.firstWrite.Seconds(), tr.upload.Seconds())
		ratios = append(ratios, tr.ratio())
	}
	m := median(ratios)
	fmt.Fprintf(&w, "\nIssue 13, a cold %s pull through the mirror at most %.1f× direct: median %.2f× over %d trial(s): **%s**.\n",
		fmtSize(mc.coldSize), mirrorColdMax, m, len(ratios), met[m <= mirrorColdMax])
	if res.profile != "" {
		fmt.Fprintf(&w, "\nA CPU profile of berth during the first cold pull: %s (`go tool pprof -top %s`).\n", res.profile, res.profile)
	}
	for _, n := range res.cleanupNotes {
		fmt.Fprintf(&w, "\n- Cleanup, %s.\n", n)
	}
	return w.String()
}

// fmtMiB renders a byte count in MiB with one decimal.
func fmtMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/mib) }
