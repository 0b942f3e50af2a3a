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
// alternating rounds, and the report compares the medians.

// overheadWorkloads are the loads measured in alternating rounds when
// berth and berth-observed both run.
var overheadWorkloads = []string{"manifest", "head"}

// overheadLimit is the largest throughput cost of metrics and webhooks
// that issue 11 accepts (done-when item 5), as a fraction.
const overheadLimit = 0.05

// pullFlushWait is how long after a manifest round the benchmark waits
// before it checks that the server is idle: berth writes the pull events
// it holds in memory every 10 s (internal/server pullFlushInterval), and
// berth-observed's webhook then delivers them; that work belongs to the
// round that caused it, not to the next server's round.
const pullFlushWait = 11 * time.Second

// round is one timed load of one server.
type round struct {
	loadResult
	order int     // 1 if the server ran first in its round, 2 if second
	cpu   float64 // server CPU during the timed load (s)
	after float64 // server CPU from the end of the load until it was idle again (s)
	total float64 // server CPU of the round, warm-up and settling included (s)
	// idle is how long after the load the server became idle again;
	// settled is false if it was still busy after -settle-max.
	idle    time.Duration
	settled bool
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

// pairedHere reports whether workload w runs on t as part of the
// alternating rounds, and whether t is where they run (the first of the
// two in the order of -servers).
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

// runRounds runs workload w on berth and berth-observed in cfg.rounds
// alternating rounds (ABBA: berth first in odd rounds, berth-observed
// first in even ones), records each round and sets each server's values
// to the medians. It returns false if a server failed.
func (b *bench) runRounds(ctx context.Context, w string, plain, obs *target) bool {
	ok := true
	fail := func(t *target, err error) {
		ok = false
		t.errs[w] = err
		fmt.Fprintf(os.Stderr, "\n!!! %s FAILED workload %q:\n%v\n", t.name, w, err)
		if !t.alive() {
			fmt.Fprintf(os.Stderr, "!!! %s exited: %v\n%s\n", t.name, t.waitErr, t.logTail())
		}
	}
	for _, t := range []*target{plain, obs} {
		if !t.alive() {
			t.errs[w] = fmt.Errorf("%s is not running", t.name)
			ok = false
			continue
		}
		if err := b.ensureHot(ctx, t); err != nil {
			fail(t, err)
			continue
		}
		// Start from quiet servers: what earlier workloads left to do (such
		// as webhook deliveries) must not fall into the rounds.
		if idle, settled, err := settle(ctx, t, time.Now(), b.cfg.settleMax); err != nil {
			fail(t, err)
		} else if !settled {
			logf("%s: still busy %.0fs before the %s rounds; starting them anyway", t.name, idle.Seconds(), w)
		}
	}
	wait := time.Duration(0)
	if w == "manifest" {
		wait = pullFlushWait
	}
	start := time.Now()
	for i := range b.cfg.rounds {
		order := []*target{plain, obs}
		if i%2 == 1 {
			order = []*target{obs, plain}
		}
		for pos, t := range order {
			if t.errs[w] != nil {
				continue
			}
			r, err := b.round(ctx, t, w, wait)
			if ctx.Err() != nil {
				return ok
			}
			if err != nil {
				fail(t, err)
				continue
			}
			r.order = pos + 1
			t.rounds[w] = append(t.rounds[w], r)
			busy := ""
			if !r.settled {
				busy = " STILL BUSY"
			}
			logf("%-15s %-8s round %d/%d: %6.0f req/s  p50 %5.2f ms  p99 %6.2f ms  server cpu %4.2fs during, %4.2fs after (idle after %.1fs%s)",
				t.name, w, i+1, b.cfg.rounds, r.rps, r.p50, r.p99, r.cpu, r.after, r.idle.Seconds(), busy)
		}
	}
	for _, t := range []*target{plain, obs} {
		rs := t.rounds[w]
		if t.errs[w] != nil || len(rs) == 0 {
			continue
		}
		var total float64
		for _, r := range rs {
			total += r.total
		}
		t.cpu[w] = total
		t.set(w+"-rps", median(roundValues(rs, func(r round) float64 { return r.rps })))
		t.set(w+"-p50", median(roundValues(rs, func(r round) float64 { return r.p50 })))
		t.set(w+"-p99", median(roundValues(rs, func(r round) float64 { return r.p99 })))
		t.note(w+"-rps", fmt.Sprintf("median of %d rounds alternating with %s", len(rs), other(t, plain, obs).name))
		st := t.sample()
		logf("%-15s %-8s done: %d rounds, median %.0f req/s  server cpu %5.1fs  rss %4d MiB  peak %4d MiB",
			t.name, w, len(rs), t.values[w+"-rps"], total, st.rssKiB>>10, st.hwmKiB>>10)
	}
	logf("%s: %d alternating rounds on berth and berth-observed took %.0fs", w, b.cfg.rounds, time.Since(start).Seconds())
	return ok
}

// other returns the one of a and b that is not t.
func other(t, a, b *target) *target {
	if t == a {
		return b
	}
	return a
}

// round runs one warm-up and one timed load of workload w on t, then
// waits at least wait and until t is idle, and measures t's CPU time.
func (b *bench) round(ctx context.Context, t *target, w string, wait time.Duration) (round, error) {
	fn := b.request(w, t)
	c0 := t.sample().cpuSec
	if err := b.warmUp(ctx, fn); err != nil {
		return round{}, err
	}
	c1 := t.sample().cpuSec
	res, err := b.timed(ctx, fn)
	if err != nil {
		return round{}, err
	}
	c2 := t.sample().cpuSec
	end := time.Now()
	idle, settled, err := settle(ctx, t, end.Add(wait), b.cfg.settleMax)
	if err != nil {
		return round{}, err
	}
	c3 := t.sample().cpuSec
	return round{loadResult: res, cpu: c2 - c1, after: c3 - c2, total: c3 - c0, idle: idle, settled: settled}, nil
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

// roundValues returns one value of each round.
func roundValues(rs []round, f func(round) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

// perRequest returns a round's server CPU per timed request in
// microseconds: during the load, or with the work after it.
func perRequest(r round, after bool) float64 {
	c := r.cpu
	if after {
		c += r.after
	}
	return c / float64(r.n) * 1e6
}

// relative renders (x-base)/base as a signed percentage.
func relative(x, base float64) string {
	if base == 0 {
		return "–"
	}
	return fmt.Sprintf("%+.1f %%", (x-base)/base*100)
}

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
	measured := func(wl string) bool {
		return plain.errs[wl] == nil && obs.errs[wl] == nil && len(plain.rounds[wl]) > 0 && len(obs.rounds[wl]) > 0
	}
	unsettled := func(t *target, wl string) int {
		n := 0
		for _, r := range t.rounds[wl] {
			if !r.settled {
				n++
			}
		}
		return n
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
		strings.Join(hookEvents, ", ")+", delivering to a receiver in the benchmark on loopback that answers 204. Each load ran in %d rounds "+
		"alternating the two servers (berth first in odd rounds, berth-observed first in even ones), a round being a warm-up "+
		"of %d requests and %d timed requests from %d clients; after each round the benchmark waits until that server is "+
		"idle again, at most %v (after a manifest round, first %v, so that the pull events berth writes every 10 s and "+
		"their webhook deliveries count for the round that caused them, not for the other server's next round). "+
		"Compared: the medians of the rounds' throughput; within 5 %% means berth-observed's median is at most 5 %% below "+
		"berth's, and that it finished the work its rounds caused before the next round.\n\n",
		cfg.rounds, cfg.warmUpRequests(), cfg.requests, cfg.conc, cfg.settleMax, pullFlushWait)
	w.WriteString("| Load | berth, median (req/s) | berth-observed, median (req/s) | difference | within 5 % |\n| --- | ---: | ---: | ---: | :---: |\n")
	verdict := true
	for _, wl := range loads {
		if !measured(wl) {
			fmt.Fprintf(&w, "| %s | %s | %s | – | FAIL |\n", labels[wl], cell(plain, metric{key: wl + "-rps", workload: wl}),
				cell(obs, metric{key: wl + "-rps", workload: wl}))
			verdict = false
			continue
		}
		p, o := plain.values[wl+"-rps"], obs.values[wl+"-rps"]
		within := o >= p*(1-overheadLimit)
		mark := map[bool]string{true: "yes", false: "**no**"}[within]
		if n := unsettled(obs, wl); n > 0 {
			within = false
			mark = fmt.Sprintf("**no**: still busy %v after %d of its %d rounds", cfg.settleMax, n, len(obs.rounds[wl]))
		}
		verdict = verdict && within
		fmt.Fprintf(&w, "| %s | %.0f | %.0f | %s | %s |\n", labels[wl], p, o, relative(o, p), mark)
	}
	fmt.Fprintf(&w, "\nIssue 11, done-when 5 (less than 5 %% on both loads): **%s**.\n", map[bool]string{true: "met", false: "not met"}[verdict])

	w.WriteString("\nEach round (req/s; * = the server ran first in that round):\n\n| Load | server |")
	for i := range cfg.rounds {
		fmt.Fprintf(&w, " %d |", i+1)
	}
	fmt.Fprintf(&w, "\n| --- | --- |%s\n", strings.Repeat(" ---: |", cfg.rounds))
	for _, wl := range loads {
		for _, t := range both {
			fmt.Fprintf(&w, "| %s | %s |", labels[wl], t.name)
			for i := range cfg.rounds {
				c := "–"
				if i < len(t.rounds[wl]) {
					r := t.rounds[wl][i]
					c = fmt.Sprintf("%.0f", r.rps)
					if r.order == 1 {
						c += "*"
					}
				}
				fmt.Fprintf(&w, " %s |", c)
			}
			w.WriteString("\n")
		}
	}

	w.WriteString("\nServer CPU, medians of the rounds: per timed request during the load; after the load until the server was " +
		"idle again (pull events written to the outbox, webhook deliveries, scrapes), and how long that took; and per timed " +
		"request with that work:\n\n" +
		"| Load | server | during the load (µs/request) | after it (s of CPU) | idle after (s) | with the work after (µs/request) |\n" +
		"| --- | --- | ---: | ---: | ---: | ---: |\n")
	for _, wl := range loads {
		if !measured(wl) {
			continue
		}
		for _, t := range both {
			rs := t.rounds[wl]
			idle := fmt.Sprintf("%.1f", median(roundValues(rs, func(r round) float64 { return r.idle.Seconds() })))
			if n := unsettled(t, wl); n > 0 {
				idle = fmt.Sprintf("%s (%d of %d rounds still busy at %v)", idle, n, len(rs), cfg.settleMax)
			}
			fmt.Fprintf(&w, "| %s | %s | %.1f | %.2f | %s | %.1f |\n", labels[wl], t.name,
				median(roundValues(rs, func(r round) float64 { return perRequest(r, false) })),
				median(roundValues(rs, func(r round) float64 { return r.after })), idle,
				median(roundValues(rs, func(r round) float64 { return perRequest(r, true) })))
		}
	}
	w.WriteString("\n")
	if o := obs.observed; o != nil {
		fmt.Fprintf(&w, "- berth-observed: %s.\n", o.hooks.summary())
		fmt.Fprintf(&w, "- berth-observed: %s.\n", o.summary())
		var gets int
		for _, r := range obs.rounds["manifest"] {
			gets += r.n + cfg.warmUpRequests()
		}
		if gets > 0 {
			fmt.Fprintf(&w, "- berth-observed answered %d manifest GETs in its manifest rounds (warm-ups included), each a pull for the webhook.\n", gets)
		}
	}
	return w.String()
}
