package main

import (
	"math"
	"testing"
)

func TestTQuantile975(t *testing.T) {
	// Values from a table of Student's t distribution.
	for df, want := range map[int]float64{1: 12.706, 2: 4.303, 3: 3.182, 5: 2.571, 10: 2.228, 30: 2.042, 100: 1.984, 1000: 1.962} {
		if got := tQuantile975(df); math.Abs(got-want)/want > 0.002 {
			t.Errorf("tQuantile975(%d) = %.4f, want %.3f", df, got, want)
		}
	}
}

func TestComparePairs(t *testing.T) {
	// A machine that drifts by a factor of two, and a second server 4 %
	// slower in every pair: the paired ratio sees exactly the 4 %.
	var plain, obs []float64
	for i := range 20 {
		speed := 10000 * (1 + float64(i%5)/4)
		plain = append(plain, speed)
		obs = append(obs, speed*0.96)
	}
	c, ok := comparePairs(plain, obs)
	if !ok || c.n != 20 || c.slower != 20 {
		t.Fatalf("comparePairs = %+v, %v", c, ok)
	}
	for name, v := range map[string]float64{"ratio": c.ratio, "lo": c.lo, "hi": c.hi, "median": c.median, "min": c.min, "max": c.max} {
		if math.Abs(v-0.96) > 1e-9 {
			t.Errorf("%s = %v, want 0.96", name, v)
		}
	}

	// Ratios 0.9 and 1.1 alternating: geometric mean sqrt(0.99), and an
	// interval of t(9) * sd / sqrt(10) on the logarithms.
	plain, obs = nil, nil
	for i := range 10 {
		plain = append(plain, 100)
		obs = append(obs, []float64{90, 110}[i%2])
	}
	c, ok = comparePairs(plain, obs)
	if !ok || c.slower != 5 {
		t.Fatalf("comparePairs = %+v, %v", c, ok)
	}
	l1, l2 := math.Log(0.9), math.Log(1.1)
	mean := (l1 + l2) / 2
	sd := math.Sqrt(10 * ((l1-mean)*(l1-mean) + (l2-mean)*(l2-mean)) / 2 / 9)
	half := 2.262 * sd / math.Sqrt(10)
	if math.Abs(c.ratio-math.Exp(mean)) > 1e-9 || math.Abs(c.lo-math.Exp(mean-half)) > 1e-3 || math.Abs(c.hi-math.Exp(mean+half)) > 1e-3 {
		t.Errorf("ratio %v [%v, %v], want %v [%v, %v]", c.ratio, c.lo, c.hi, math.Exp(mean), math.Exp(mean-half), math.Exp(mean+half))
	}

	if _, ok := comparePairs([]float64{1}, []float64{1}); ok {
		t.Error("one pair compared")
	}
	if _, ok := comparePairs([]float64{1, 0}, []float64{1, 1}); ok {
		t.Error("a zero throughput compared")
	}
}
