package main

import (
	"math"
	"slices"
)

// pairedCost summarises a paired comparison of throughputs: in pair i the
// two servers ran the same load one right after the other, so a drift of
// the machine (its speed on a shared host moves by a third within minutes)
// falls on both, and the ratio obs/plain of a pair measures the cost free
// of it. The summary is on the logarithms of the ratios, so that a pair
// twice as fast and one twice as slow cancel out.
type pairedCost struct {
	n int
	// ratio is the geometric mean of obs/plain; lo and hi bound it with
	// 95 % confidence (Student's t on the logarithms).
	ratio, lo, hi float64
	// median, min and max of the pairs' ratios.
	median, min, max float64
	// slower counts the pairs in which obs was slower.
	slower int
}

// comparePairs returns the summary of obs[i]/plain[i] over the pairs; it
// needs at least two pairs and positive throughputs.
func comparePairs(plain, obs []float64) (pairedCost, bool) {
	n := min(len(plain), len(obs))
	if n < 2 {
		return pairedCost{}, false
	}
	logs := make([]float64, n)
	ratios := make([]float64, n)
	c := pairedCost{n: n}
	var sum float64
	for i := range n {
		if plain[i] <= 0 || obs[i] <= 0 {
			return pairedCost{}, false
		}
		ratios[i] = obs[i] / plain[i]
		logs[i] = math.Log(ratios[i])
		sum += logs[i]
		if ratios[i] < 1 {
			c.slower++
		}
	}
	mean := sum / float64(n)
	var ss float64
	for _, l := range logs {
		ss += (l - mean) * (l - mean)
	}
	half := tQuantile975(n-1) * math.Sqrt(ss/float64(n-1)) / math.Sqrt(float64(n))
	c.ratio, c.lo, c.hi = math.Exp(mean), math.Exp(mean-half), math.Exp(mean+half)
	slices.Sort(ratios)
	c.median, c.min, c.max = median(ratios), ratios[0], ratios[n-1]
	return c, true
}

// tQuantile975 returns the 0.975 quantile of Student's t distribution with
// df degrees of freedom (df >= 1): from a table up to 4, then the
// Cornish-Fisher expansion around the normal quantile (within 0.2 %).
func tQuantile975(df int) float64 {
	switch df {
	case 1:
		return 12.706
	case 2:
		return 4.303
	case 3:
		return 3.182
	case 4:
		return 2.776
	}
	const z = 1.959964
	v := float64(df)
	z3, z5, z7 := z*z*z, z*z*z*z*z, z*z*z*z*z*z*z
	return z + (z3+z)/(4*v) + (5*z5+16*z3+3*z)/(96*v*v) + (3*z7+19*z5+17*z3-15*z)/(384*v*v*v)
}
