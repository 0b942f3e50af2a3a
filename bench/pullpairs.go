package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// pullPairs is the alternating comparison of large blob pulls (issue 14):
// berth and Distribution pull the same blob one right after the other, in
// pairs (ABBA order), so that the machine's drift falls on both.
type pullPairs struct {
	berth, dist []float64 // MiB/s per pair
	cost        pairedCost
	ok          bool
}

// runPullPairs runs the pairs once the last target has pulled: it needs
// berth and distribution, both holding the large blob.
func (b *bench) runPullPairs(ctx context.Context) error {
	var berth, dist *target
	for _, t := range b.targets {
		switch t.name {
		case "berth":
			berth = t
		case "distribution":
			dist = t
		}
	}
	if berth == nil || dist == nil || !berth.bigPushed || !dist.bigPushed || b.cfg.pullPairs < 2 {
		return nil
	}
	rate := func(t *target) (float64, error) {
		start := time.Now()
		if err := t.pullBlob(ctx, "bench/big", b.bigDigest(), b.cfg.blobSize, false); err != nil {
			return 0, err
		}
		return float64(b.cfg.blobSize) / mib / time.Since(start).Seconds(), nil
	}
	p := &pullPairs{}
	for i := range b.cfg.pullPairs {
		order := []*target{berth, dist}
		if i%2 == 1 {
			order = []*target{dist, berth}
		}
		got := map[*target]float64{}
		for _, t := range order {
			r, err := rate(t)
			if err != nil {
				return fmt.Errorf("pull pairs: %s: %w", t.name, err)
			}
			got[t] = r
		}
		p.berth, p.dist = append(p.berth, got[berth]), append(p.dist, got[dist])
	}
	p.cost, p.ok = comparePairs(p.dist, p.berth)
	b.pulls = p
	logf("pull pairs: berth/distribution %.3f [%.3f, %.3f] over %d pairs", p.cost.ratio, p.cost.lo, p.cost.hi, p.cost.n)
	return nil
}

// renderPullPairs renders the alternating pull comparison.
func renderPullPairs(cfg *config, p *pullPairs) string {
	if p == nil || !p.ok {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n### Blob pull, berth and Distribution alternating (issue 14)\n\n")
	fmt.Fprintf(&sb, "The %s blob pulled %d times from each, berth and Distribution one right after the other (berth first in even pairs), every byte read; the ratio is berth/Distribution per pair.\n\n", fmtSize(cfg.blobSize), p.cost.n)
	fmt.Fprintf(&sb, "| pair | berth (MiB/s) | distribution (MiB/s) | berth / distribution |\n| ---: | ---: | ---: | ---: |\n")
	for i := range p.berth {
		fmt.Fprintf(&sb, "| %d | %.0f | %.0f | %.2f× |\n", i+1, p.berth[i], p.dist[i], p.berth[i]/p.dist[i])
	}
	verdict := "not met"
	if p.cost.median >= 1 {
		verdict = "met"
	}
	fmt.Fprintf(&sb, "\nberth/Distribution: median %.2f×, geometric mean %.3f [%.3f, %.3f] (95 %% CI). Issue 14, embedded blob pull at least 1.0× Distribution (median of the alternating pairs): **%s**.\n", p.cost.median, p.cost.ratio, p.cost.lo, p.cost.hi, verdict)
	return sb.String()
}
