package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// The cost of metrics and webhooks (issue 11): berth (--metrics=false, no
// webhook) and berth-observed run the manifest GET and blob HEAD loads in
// pairs of short turns, one server right after the other, and the report
// compares them pair by pair.
//
// Why pairs: on a shared 2-core machine the speed of the same server moves
// by a third from one minute to the next, so long rounds separated by
// pauses and compared by their medians could not see a 5 % difference (an
// earlier version of this benchmark, 7 rounds of 50,000 requests, read
// -15 % in one run and +4 % in an A/A run). Two turns a quarter of a second
// apart see the same machine; the ratio of each pair is free of the drift,
// and a few hundred of them bound the cost to about a percent.

// overheadWorkloads are the loads measured in pairs when berth and
// berth-observed both run.
var overheadWorkloads = []string{"manifest", "head"}

// overheadLimit is the largest throughput cost of metrics and webhooks
// that issue 11 accepts (done-when item 5), as a fraction.
const overheadLimit = 0.05

// pullFlushWait is how long after the last pair of manifest turns the
// benchmark waits before it checks that the servers are idle: berth writes
// the pull events it holds in memory every 10 s (internal/server
// pullFlushInterval), and berth-observed's webhook, if subscribed to
// pulls, then delivers them; that work counts in the server's CPU.
const pullFlushWait = 11 * time.Second

// turn is one timed load of one server in a pair.
type turn struct {
	loadResult
	first bool    // the server ran first in its pair
	cpu   float64 // server CPU during the turn (s)
}

// pairedLoad is what the pairs of one load measured on one server.
type pairedLoad struct {
	turns []turn
	// warmCPU is the server's CPU in the warm-up before the pairs (s);
	// total is its CPU from the end of the warm-up until it was idle
	// again after the last pair, and after the part of it after the last
	// pair (s).
	warmCPU, total, after float64
	// idle is how long after the last pair the server became idle again;
	// settled is false if it was still busy after -settle-max.
	idle    time.Duration
	settled bool
}

// requests is the number of timed requests of the turns.
func (p *pairedLoad) requests() int {
	n := 0
	for _, t := range p.turns {
		n += t.n
	}
	return n
}

// values returns one value of each turn.
func (p *pairedLoad) values(f func(turn) float64) []float64 {
	out := make([]float64, len(p.turns))
	for i, t := range p.turns {
		out[i] = f(t)
	}
	return out
}

// overheadPair returns berth and berth-observed if both run.
func overheadPair(ts []*target) (plain, obs *target) {
	for _, t := range ts {
		switch t.name {
		case "berth":
			plain = t
		case "berth-observed":
			obs = t
		}
	}
	if plain == nil || obs == nil {
		return nil, nil
	}
	return plain, obs
}

// pairedHere reports whether workload w runs on t as part of the pairs,
// and whether t is where they run (the first of the two in the order of
// -servers).
func pairedHere(ts []*target, w string, t *target) (paired, here bool) {
	plain, obs := overheadPair(ts)
	if plain == nil || !slices.Contains(overheadWorkloads, w) || (t != plain && t != obs) {
		return false, false
	}
	first := plain
	if slices.Index(ts, obs) < slices.Index(ts, plain) {
		first = obs
	}
	return true, t == first
}

// runPairs runs workload w on berth and berth-observed in cfg.pairs pairs
// of turns of cfg.pairRequests requests each, one server right after the
// other (berth first in even pairs, berth-observed first in odd ones),
// then waits until both are idle again, and records each server's turns
// and CPU. It returns false if a server failed.
func (b *bench) runPairs(ctx context.Context, w string, plain, obs *target) bool {
	ok := true
	fail := func(t *target, err error) {
		ok = false
		t.errs[w] = err
		fmt.Fprintf(os.Stderr, "\n!!! %s FAILED workload %q:\n%v\n", t.name, w, err)
		if !t.alive() {
			fmt.Fprintf(os.Stderr, "!!! %s exited: %v\n%s\n", t.name, t.waitErr, t.logTail())
		}
	}
	both := []*target{plain, obs}
	fns := map[*target]func(ctx context.Context, i int) error{}
	for _, t := range both {
		if !t.alive() {
			fail(t, fmt.Errorf("%s is not running", t.name))
			continue
		}
		if err := b.ensureHot(ctx, t); err != nil {
			fail(t, err)
			continue
		}
		// Start from quiet servers: what earlier workloads left to do (such
		// as webhook deliveries) must not fall into the pairs.
		if idle, settled, err := settle(ctx, t, time.Now(), b.cfg.settleMax); err != nil {
			fail(t, err)
			continue
		} else if !settled {
			logf("%s: still busy %.0fs before the %s pairs; starting them anyway", t.name, idle.Seconds(), w)
		}
		fns[t] = b.request(w, t)
	}
	if !ok {
		return false
	}
	runs := map[*target]*pairedLoad{}
	start := map[*target]float64{}
	for _, t := range both {
		c0 := t.sample().cpuSec
		if err := b.warmUp(ctx, fns[t]); err != nil {
			fail(t, err)
			return false
		}
		start[t] = t.sample().cpuSec
		runs[t] = &pairedLoad{warmCPU: start[t] - c0}
	}
	began := time.Now()
	for i := range b.cfg.pairs {
		order := both
		if i%2 == 1 {
			order = []*target{obs, plain}
		}
		for pos, t := range order {
			c0 := t.sample().cpuSec
			res, err := b.timedN(ctx, b.cfg.pairRequests, fns[t])
			if ctx.Err() != nil {
				return false
			}
			if err != nil {
				fail(t, err)
				return false
			}
			runs[t].turns = append(runs[t].turns, turn{loadResult: res, first: pos == 0, cpu: t.sample().cpuSec - c0})
		}
		if (i+1)%50 == 0 || i+1 == b.cfg.pairs {
			c, _ := comparePairs(runs[plain].values(turnRPS), runs[obs].values(turnRPS))
			logf("%-8s %d/%d pairs: berth-observed/berth %.3f [%.3f, %.3f], turns %.0f and %.0f req/s (medians)", w, i+1, b.cfg.pairs,
				c.ratio, c.lo, c.hi, median(runs[plain].values(turnRPS)), median(runs[obs].values(turnRPS)))
		}
	}
	end := time.Now()
	// What the pairs left to do (pull events written every 10 s and their
	// webhook deliveries) counts in each server's CPU.
	wait := time.Duration(0)
	if w == "manifest" {
		wait = pullFlushWait
	}
	for _, t := range both {
		last := t.sample().cpuSec
		idle, settled, err := settle(ctx, t, end.Add(wait), b.cfg.settleMax)
		if err != nil {
			fail(t, err)
			return false
		}
		c := t.sample().cpuSec
		r := runs[t]
		r.total, r.after, r.idle, r.settled = c-start[t], c-last, time.Since(end), settled
		if !settled {
			logf("%s: still busy %.0fs after the %s pairs", t.name, idle.Seconds(), w)
		}
		t.paired[w] = r
		t.cpu[w] = r.warmCPU + r.total
		t.set(w+"-rps", median(r.values(turnRPS)))
		t.set(w+"-p50", median(r.values(func(x turn) float64 { return x.p50 })))
		t.set(w+"-p99", median(r.values(func(x turn) float64 { return x.p99 })))
		t.note(w+"-rps", fmt.Sprintf("median of %d turns of %d requests, in pairs with %s", len(r.turns), b.cfg.pairRequests, other(t, plain, obs).name))
		st := t.sample()
		logf("%-15s %-8s done: %d turns, median %.0f req/s  server cpu %5.1fs  rss %4d MiB  peak %4d MiB",
			t.name, w, len(r.turns), t.values[w+"-rps"], t.cpu[w], st.rssKiB>>10, st.hwmKiB>>10)
	}
	logf("%s: %d pairs on berth and berth-observed took %.0fs", w, b.cfg.pairs, end.Sub(began).Seconds())
	return ok
}

// turnRPS is a turn's throughput.
func turnRPS(t turn) float64 { return t.rps }

// other returns the one of a and b that is not t.
func other(t, a, b *target) *target {
	if t == a {
		return b
	}
	return a
}

// settle waits until notBefore and then until t has used at most one
// clock tick (10 ms) of CPU in each of two consecutive 250 ms windows, at
// most limit in all; it returns how long it waited and whether t became
// idle.
func settle(ctx context.Context, t *target, notBefore time.Time, limit time.Duration) (time.Duration, bool, error) {
	start := time.Now()
	if d := time.Until(notBefore); d > 0 {
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-time.After(d):
		}
	}
	quiet := 0
	last := t.sample().cpuSec
	for quiet < 2 {
		if time.Since(start) >= limit {
			return time.Since(start), false, nil
		}
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if !t.alive() {
			return 0, false, fmt.Errorf("%s exited: %v\n%s", t.name, t.waitErr, t.logTail())
		}
		cur := t.sample().cpuSec
		if cur-last <= 0.0101 {
			quiet++
		} else {
			quiet = 0
		}
		last = cur
	}
	return time.Since(start), true, nil
}

// pct renders a ratio's difference from 1 as a signed percentage.
func pct(ratio float64) string { return fmt.Sprintf("%+.1f %%", (ratio-1)*100) }

// renderOverhead renders the comparison of berth-observed with berth, or
// "" if they did not both run the manifest or head load.
func renderOverhead(cfg *config, ts []*target) string {
	plain, obs := overheadPair(ts)
	if plain == nil || !slices.ContainsFunc(overheadWorkloads, cfg.selected) {
		return ""
	}
	labels := map[string]string{
		"manifest": fmt.Sprintf("Manifest GET by tag, %d clients", cfg.conc),
		"head":     fmt.Sprintf("Blob HEAD, %d clients", cfg.conc),
	}
	var loads []string
	for _, wl := range overheadWorkloads {
		if cfg.selected(wl) {
			loads = append(loads, wl)
		}
	}
	both := []*target{plain, obs}
	compared := map[string]pairedCost{}
	for _, wl := range loads {
		if plain.errs[wl] != nil || obs.errs[wl] != nil || plain.paired[wl] == nil || obs.paired[wl] == nil {
			continue
		}
		if c, ok := comparePairs(plain.paired[wl].values(turnRPS), obs.paired[wl].values(turnRPS)); ok {
			compared[wl] = c
		}
	}
	var w strings.Builder
	w.WriteString("\n### Cost of metrics and webhooks: berth-observed vs berth (issue 11)\n\n")
	if sameAsBerth {
		w.WriteString("**A/A check (-same-as-berth): berth-observed ran exactly as berth (metrics off, no webhook, no scrapes); " +
			"the description below does not apply, and any difference is the comparison's own bias or noise.**\n\n")
	}
	fmt.Fprintf(&w, "berth runs with `--metrics=false` and no webhook; berth-observed with metrics on, served on a "+
		"`--metrics-addr` of its own that the benchmark scrapes every second, tracing off (`--tracing=off`, no `OTEL_*` "+
		"variables, as for berth), and one global webhook endpoint (Distribution format) subscribed to "+
		strings.Join(hookEvents, ", ")+", delivering to a receiver in the benchmark on loopback that answers 204. "+
		"After a warm-up of %d requests each, each load ran in %d pairs of turns of %d requests from %d clients, "+
		"the two servers one right after the other (berth first in even pairs, berth-observed first in odd ones), "+
		"so that both turns of a pair see the machine in the same state. Compared: the ratio of berth-observed's "+
		"throughput to berth's in each pair, summarised by their geometric mean with a 95 %% confidence interval "+
		"(Student's t on the logarithms). Within 5 %% means that the whole interval lies above 0.95 (the cost is "+
		"below 5 %% with 95 %% confidence) and that berth-observed was idle again at most %v after the last pair "+
		"(after the manifest pairs the benchmark first waits %v: berth writes the pull events it holds every 10 s).\n\n",
		cfg.warmUpRequests(), cfg.pairs, cfg.pairRequests, cfg.conc, cfg.settleMax, pullFlushWait)
	w.WriteString("| Load | berth, median turn (req/s) | berth-observed, median turn (req/s) | berth-observed / berth, pairs' geometric mean [95 % CI] | cost, at most | within 5 % |\n" +
		"| --- | ---: | ---: | ---: | ---: | :---: |\n")
	verdict := true
	for _, wl := range loads {
		c, ok := compared[wl]
		if !ok {
			fmt.Fprintf(&w, "| %s | %s | %s | – | – | FAIL |\n", labels[wl], cell(plain, metric{key: wl + "-rps", workload: wl}),
				cell(obs, metric{key: wl + "-rps", workload: wl}))
			verdict = false
			continue
		}
		within := c.lo > 1-overheadLimit
		mark := map[bool]string{true: "yes", false: "**no**"}[within]
		if r := obs.paired[wl]; !r.settled {
			within = false
			mark = fmt.Sprintf("**no**: still busy %v after the last pair", cfg.settleMax)
		}
		verdict = verdict && within
		fmt.Fprintf(&w, "| %s | %.0f | %.0f | %.3f [%.3f, %.3f] (%s) | %.1f %% | %s |\n", labels[wl], plain.values[wl+"-rps"],
			obs.values[wl+"-rps"], c.ratio, c.lo, c.hi, pct(c.ratio), max(0, (1-c.lo)*100), mark)
	}
	if sameAsBerth {
		w.WriteString("\nA/A check: no verdict on issue 11; with no bias in the comparison each interval contains 1.000 (in 95 % of runs).\n")
	} else {
		fmt.Fprintf(&w, "\nIssue 11, done-when 5 (less than 5 %% on both loads): **%s**.\n", map[bool]string{true: "met", false: "not met"}[verdict])
	}

	w.WriteString("\nThe pairs and turns: how often berth-observed was the slower of a pair, the spread of the pairs' ratios, " +
		"and the spread of each server's turns (the machine's drift, which the pairing removes):\n\n" +
		"| Load | pairs | berth-observed slower | pair ratio min / median / max | berth turns min / median / max (req/s) | berth-observed turns min / median / max (req/s) |\n" +
		"| --- | ---: | ---: | ---: | ---: | ---: |\n")
	spread := func(t *target, wl string) string {
		xs := t.paired[wl].values(turnRPS)
		slices.Sort(xs)
		return fmt.Sprintf("%.0f / %.0f / %.0f", xs[0], median(xs), xs[len(xs)-1])
	}
	for _, wl := range loads {
		c, ok := compared[wl]
		if !ok {
			continue
		}
		fmt.Fprintf(&w, "| %s | %d | %d | %.3f / %.3f / %.3f | %s | %s |\n", labels[wl], c.n, c.slower, c.min, c.median, c.max,
			spread(plain, wl), spread(obs, wl))
	}

	w.WriteString("\nServer CPU per timed request: during its own turns, and over the whole run (from the end of the warm-up until the " +
		"server was idle again after the last pair: its own turns, the other server's turns, and the work after the last pair: " +
		"pull events written to the outbox, webhook deliveries, scrapes):\n\n" +
		"| Load | server | during its turns (µs/request) | whole run (µs/request) | after the last pair (s of CPU) | idle after (s) |\n" +
		"| --- | --- | ---: | ---: | ---: | ---: |\n")
	for _, wl := range loads {
		if _, ok := compared[wl]; !ok {
			continue
		}
		for _, t := range both {
			r := t.paired[wl]
			n := float64(r.requests())
			var during float64
			for _, x := range r.turns {
				during += x.cpu
			}
			idle := fmt.Sprintf("%.1f", r.idle.Seconds())
			if !r.settled {
				idle += fmt.Sprintf(" (still busy at %v)", cfg.settleMax)
			}
			fmt.Fprintf(&w, "| %s | %s | %.1f | %.1f | %.2f | %s |\n", labels[wl], t.name, during/n*1e6, r.total/n*1e6, r.after, idle)
		}
	}
	w.WriteString("\n")
	if o := obs.observed; o != nil {
		fmt.Fprintf(&w, "- berth-observed: %s.\n", o.hooks.summary())
		fmt.Fprintf(&w, "- berth-observed: %s.\n", o.summary())
		if r := obs.paired["manifest"]; r != nil {
			fmt.Fprintf(&w, "- berth-observed answered %d manifest GETs in its manifest turns (and %d in the warm-up).\n",
				r.requests(), cfg.warmUpRequests())
		}
	}
	return w.String()
}
