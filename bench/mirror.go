package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

// The mirror workload (issue 13): berth as a pull-through cache of a
// Distribution, on a berth and a Distribution of its own (fresh data
// directories under the run's directory, loopback ports), with a mirror
// "dist" whose upstream is that Distribution. It measures two things:
//
//   - cached pulls: full pulls (manifest by tag, then every blob, reading
//     every byte) of the same image pushed to berth as bench/pushed and
//     mirrored from the Distribution as dist/bench/mirrored (warmed first,
//     so that berth holds everything), from -mirror-clients clients, in
//     -pairs pairs of turns of -mirror-pulls pulls, compared pair by pair
//     as the overhead loads are (paired.go). Within its TTL a mirrored tag
//     costs a read of its tag-check row: part of what is measured.
//   - cold pulls: a fresh generated blob of -cold-size per trial, uploaded
//     to the Distribution, then fetched once directly from it and once
//     through berth's mirror with nothing cached (which order alternates),
//     -cold-trials times; the blobs are deleted from both after each trial.

// Issue 13's targets.
const (
	// mirrorCachedMin is the least throughput of cached pulls through the
	// mirror relative to pulls of a pushed image.
	mirrorCachedMin = 0.95
	// mirrorColdMax is the most time a cold pull through the mirror may
	// take relative to a pull straight from the upstream.
	mirrorColdMax = 1.2
)

// The image of the cached pulls: a config and mirrorLayers layers of
// mirrorLayerSize random bytes.
const (
	mirrorLayers    = 4
	mirrorLayerSize = 4 << 20
)

// mirrorName is the mirror's name, and so its namespace, on berth.
const mirrorName = "dist"

// mirrorConfig holds the mirror workload's settings.
type mirrorConfig struct {
	clients     int    // concurrent clients of the cached pulls
	pulls       int    // full pulls per turn
	coldTrials  int    // cold pulls of a fresh blob, each way
	coldSize    int64  // size of the cold blob
	coldProfile string // file for a CPU profile of berth's first cold pull ("" for none)
}

// register defines the mirror workload's flags.
func (c *mirrorConfig) register() {
	c.coldSize = 1 << 30
	flag.IntVar(&c.clients, "mirror-clients", 16, "concurrent clients of the mirror workload's cached pulls")
	flag.IntVar(&c.pulls, "mirror-pulls", 32, "full image pulls per turn of the mirror workload's pairs (-pairs pairs)")
	flag.IntVar(&c.coldTrials, "cold-trials", 3, "cold pulls of a fresh blob, direct from Distribution and through berth's mirror, in the mirror workload")
	flag.Var((*sizeFlag)(&c.coldSize), "cold-size", "size of the mirror workload's cold blob (a fresh one per trial)")
	flag.StringVar(&c.coldProfile, "cold-profile", "", "write a CPU profile of berth during its first cold pull to this file (berth gets a loopback --debug-addr)")
}

// check validates the mirror workload's settings.
func (c *mirrorConfig) check() error {
	if c.clients <= 0 || c.pulls <= 0 || c.coldTrials <= 0 || c.coldSize <= 0 {
		return errors.New("-mirror-clients, -mirror-pulls, -cold-trials and -cold-size must be positive")
	}
	return nil
}

// mirrorResult is what the mirror workload measured.
type mirrorResult struct {
	pullBytes int64 // bytes of one full pull, manifest included
	// pushed and mirrored are the throughputs of the turns (MiB/s), pair
	// by pair; pushedCPU and mirroredCPU berth's CPU during them (s).
	pushed, mirrored       []float64
	pushedCPU, mirroredCPU float64
	pairsTime              time.Duration
	cold                   []coldTrial
	profile                string // the profile written, if any
	cleanupNotes           []string
}

// benchMirror runs only for the berth kind, against a berth and a
// Distribution of its own.
func (b *bench) benchMirror(ctx context.Context, t *target) error {
	if t.name != "berth" {
		logf("mirror: skipped for %s: the mirror workload runs once, against a berth and a Distribution of its own", t.name)
		return nil
	}
	if _, err := os.Stat(b.cfg.distBin); err != nil {
		return fmt.Errorf("mirror: the upstream is a Distribution: %v (apt-get install -y docker-registry)", err)
	}
	dir := filepath.Join(b.tmp, "mirror")
	distRoot := filepath.Join(dir, "distribution-data")
	if err := os.MkdirAll(distRoot, 0o755); err != nil {
		return err
	}
	mc := &b.cfg.mirror
	dist, err := startDistribution(b.cfg.distBin, dir, distRoot, filepath.Join(dir, "distribution.log"), mc.clients, nil)
	if err != nil {
		return err
	}
	defer dist.stop()
	// --gc-grace 1s: a collection after each cold trial frees the blob.
	args := []string{"--metrics=false", "--gc-grace", "1s"}
	debugURL := ""
	if mc.coldProfile != "" {
		dport, err := testserver.FreePort()
		if err != nil {
			return err
		}
		args = append(args, "--debug-addr", fmt.Sprintf("127.0.0.1:%d", dport))
		debugURL = fmt.Sprintf("http://127.0.0.1:%d", dport)
	}
	s, err := startOwnBerth(b.berthBin, filepath.Join(dir, "berth-data"), filepath.Join(dir, "berth.log"), mc.clients, nil, args...)
	if err != nil {
		return err
	}
	defer func() {
		s.stop()
		t.cpu["mirror"] = s.stats.cpuSec // this berth's, not the shared one's
	}()
	logf("mirror: berth on %s (pid %d), its upstream distribution on %s (pid %d)", s.base, s.cmd.Process.Pid, dist.base, dist.cmd.Process.Pid)
	add := request{method: http.MethodPost, url: "/api/v1/mirrors", header: http.Header{"Content-Type": {"application/json"}},
		want: []int{http.StatusCreated}}
	add.body, _ = json.Marshal(map[string]string{"name": mirrorName, "upstream": dist.base})
	if _, _, err := s.do(ctx, add); err != nil {
		return err
	}
	res := &mirrorResult{}
	t.mirror = res
	if err := b.mirrorCached(ctx, s, dist, res); err != nil {
		return err
	}
	return b.mirrorCold(ctx, s, dist, distRoot, debugURL, res)
}

// layeredImage builds a deterministic image from seed: a small JSON config
// and n random layers of size bytes.
func layeredImage(repo, tag string, seed uint64, n, size int) *image {
	r := rand.New(rand.NewPCG(seed, 0x13))
	im := &image{repo: repo, tag: tag}
	for range n {
		l := randomBytes(r, size)
		im.layers, im.layerDigests = append(im.layers, l), append(im.layerDigests, digestOf(l))
	}
	im.config, _ = json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": im.layerDigests}})
	im.configDigest = digestOf(im.config)
	sizes := make([]int64, n)
	for i := range sizes {
		sizes[i] = int64(size)
	}
	im.manifest = manifestOf(im.config, im.layerDigests, sizes)
	im.manifestDigest = digestOf(im.manifest)
	return im
}

// manifestOf returns an OCI image manifest of config and the layers of
// the given digests and sizes.
func manifestOf(config []byte, digests []string, sizes []int64) []byte {
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	layers := make([]desc, len(digests))
	for i, d := range digests {
		layers[i] = desc{ociLayer, d, sizes[i]}
	}
	m, _ := json.Marshal(struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, ociManifest, desc{ociConfig, digestOf(config), int64(len(config))}, layers})
	return m
}

// pullImage pulls im as a client does: its manifest by tag (checked),
// then every blob, reading every byte; with verify it checks each blob's
// digest too.
func (s *server) pullImage(ctx context.Context, im *image, verify bool) error {
	if err := s.getManifest(ctx, im, im.tag); err != nil {
		return err
	}
	data, digests := im.blobs()
	for i, d := range digests {
		if err := s.pullBlob(ctx, im.repo, d, int64(len(data[i])), verify); err != nil {
			return err
		}
	}
	return nil
}

// withRepo returns a copy of im in another repository.
func withRepo(im *image, repo string) *image {
	c := *im
	c.repo = repo
	return &c
}

// mirrorCached pushes the image to berth and to the Distribution, warms
// the mirror and runs the pairs of turns of cached pulls.
func (b *bench) mirrorCached(ctx context.Context, s, dist *server, res *mirrorResult) error {
	mc := &b.cfg.mirror
	im := layeredImage("bench/pushed", "latest", 0x13, mirrorLayers, mirrorLayerSize)
	pushed, upstream, mirrored := im, withRepo(im, "bench/mirrored"), withRepo(im, mirrorName+"/bench/mirrored")
	if err := s.pushImage(ctx, pushed); err != nil {
		return err
	}
	if err := dist.pushImage(ctx, upstream); err != nil {
		return err
	}
	res.pullBytes = int64(len(im.manifest) + len(im.config) + mirrorLayers*mirrorLayerSize)
	// Warm the mirror (the manifest fetched and kept, the blobs berth holds
	// already linked once the upstream confirms them), checking every byte
	// of both ways.
	for _, x := range []*image{mirrored, pushed, mirrored} {
		if err := s.pullImage(ctx, x, true); err != nil {
			return err
		}
	}
	turn := func(x *image) (float64, float64, error) {
		c0 := s.sample().cpuSec
		_, elapsed, err := runLoad(ctx, mc.pulls, mc.clients, func(ctx context.Context, _ int) error { return s.pullImage(ctx, x, false) })
		if err != nil {
			return 0, 0, err
		}
		return float64(int64(mc.pulls)*res.pullBytes) / mib / elapsed.Seconds(), s.sample().cpuSec - c0, nil
	}
	for _, x := range []*image{pushed, mirrored} { // warm-up
		if _, _, err := turn(x); err != nil {
			return err
		}
	}
	logf("mirror: %d pairs of turns of %d pulls of %s from %d clients, pushed vs mirrored", b.cfg.pairs, mc.pulls,
		fmtMiB(res.pullBytes), mc.clients)
	began := time.Now()
	for i := range b.cfg.pairs {
		order := []*image{pushed, mirrored}
		if i%2 == 1 {
			order = []*image{mirrored, pushed}
		}
		for _, x := range order {
			rate, cpu, err := turn(x)
			if err != nil {
				return err
			}
			if x == pushed {
				res.pushed, res.pushedCPU = append(res.pushed, rate), res.pushedCPU+cpu
			} else {
				res.mirrored, res.mirroredCPU = append(res.mirrored, rate), res.mirroredCPU+cpu
			}
		}
		if (i+1)%50 == 0 || i+1 == b.cfg.pairs {
			c, _ := comparePairs(res.pushed, res.mirrored)
			logf("mirror %d/%d pairs: mirrored/pushed %.3f [%.3f, %.3f], turns %.0f and %.0f MiB/s (medians)", i+1, b.cfg.pairs,
				c.ratio, c.lo, c.hi, median(append([]float64(nil), res.pushed...)), median(append([]float64(nil), res.mirrored...)))
		}
	}
	res.pairsTime = time.Since(began)
	return nil
}
