package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// bigSeed seeds the generated large blob.
const bigSeed = 0xBE27

// image is a small OCI image held in memory.
type image struct {
	repo, tag      string
	config         []byte
	configDigest   string
	layers         [][]byte
	layerDigests   []string
	manifest       []byte
	manifestDigest string
}

// blobs returns the image's blobs and their digests, config first.
func (im *image) blobs() ([][]byte, []string) {
	return append([][]byte{im.config}, im.layers...), append([]string{im.configDigest}, im.layerDigests...)
}

// newImage builds a deterministic image from seed: a ~1 KiB JSON config
// and nLayers random layers of 8-64 KiB.
func newImage(repo, tag string, seed uint64, nLayers int) *image {
	r := rand.New(rand.NewPCG(seed, 0x1A6E))
	im := &image{repo: repo, tag: tag}
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int    `json:"size"`
	}
	var layers []desc
	var diffIDs []string
	for range nLayers {
		b := randomBytes(r, 8<<10+r.IntN(56<<10))
		d := digestOf(b)
		im.layers, im.layerDigests = append(im.layers, b), append(im.layerDigests, d)
		layers = append(layers, desc{ociLayer, d, len(b)})
		diffIDs = append(diffIDs, d)
	}
	pad := hex.EncodeToString(randomBytes(r, 400))
	im.config, _ = json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Env": []string{"PAD=" + pad}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	im.configDigest = digestOf(im.config)
	im.manifest, _ = json.Marshal(struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, ociManifest, desc{ociConfig, im.configDigest, len(im.config)}, layers})
	im.manifestDigest = digestOf(im.manifest)
	return im
}

// push uploads an image as a client does: HEAD each blob, upload the
// missing ones, then PUT the manifest under its tag.
func (s *server) pushImage(ctx context.Context, im *image) error {
	data, digests := im.blobs()
	for i, d := range digests {
		ok, err := s.headBlob(ctx, im.repo, d)
		if err != nil {
			return err
		}
		if !ok {
			if err := s.pushBlob(ctx, im.repo, data[i], d); err != nil {
				return err
			}
		}
	}
	return s.putManifest(ctx, im.repo, im.tag, im.manifest)
}

// getManifest fetches repo:ref with the Accept header of a pulling client
// and checks that the answer is exactly im's manifest.
func (s *server) getManifest(ctx context.Context, im *image, ref string) error {
	r := request{method: http.MethodGet, url: "/v2/" + im.repo + "/manifests/" + ref,
		header: http.Header{"Accept": {manifestAccept}}, want: []int{http.StatusOK}}
	resp, b, err := s.do(ctx, r)
	if err != nil {
		return err
	}
	ok := bytes.Equal(b, im.manifest) && resp.Header.Get("Docker-Content-Digest") == im.manifestDigest &&
		resp.Header.Get("Content-Type") == ociManifest
	return s.check(ok, resp, b, r, "the %d-byte manifest %s with Content-Type %s and a matching Docker-Content-Digest",
		len(im.manifest), im.manifestDigest, ociManifest)
}

// headBlobExact HEADs a blob and checks status, length and digest.
func (s *server) headBlobExact(ctx context.Context, repo, dgst string, size int) error {
	r := request{method: http.MethodHead, url: "/v2/" + repo + "/blobs/" + dgst, want: []int{http.StatusOK}}
	resp, b, err := s.do(ctx, r)
	if err != nil {
		return err
	}
	ok := resp.ContentLength == int64(size) && resp.Header.Get("Docker-Content-Digest") == dgst
	return s.check(ok, resp, b, r, "Content-Length %d and Docker-Content-Digest %s", size, dgst)
}

// runLoad calls fn n times from c goroutines and returns each call's
// latency and the wall time. The first error stops all workers.
func runLoad(ctx context.Context, n, c int, fn func(ctx context.Context, i int) error) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	lat := make([][]time.Duration, c)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					once.Do(func() { firstErr = fmt.Errorf("panic: %v\n%s", p, debug.Stack()); cancel() })
				}
			}()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				t := time.Now()
				if err := fn(ctx, i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				lat[w] = append(lat[w], time.Since(t))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	return slices.Concat(lat...), elapsed, firstErr
}

// quantile returns the q-quantile of sorted durations, in milliseconds.
func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, int(q*float64(len(sorted))))
	return float64(sorted[i]) / float64(time.Millisecond)
}

// mib is bytes per MiB, for throughput.
const mib = 1 << 20

// benchPush times the streamed push of the large blob.
func (b *bench) benchPush(ctx context.Context, t *target) error {
	start := time.Now()
	if err := t.pushStreamed(ctx, "bench/big", b.cfg.blobSize, bigSeed, b.bigDigest()); err != nil {
		return err
	}
	sec := time.Since(start).Seconds()
	t.bigPushed = true
	t.set("push", float64(b.cfg.blobSize)/mib/sec)
	return nil
}

// benchPull times pulls of the large blob (median of three) after one
// untimed pull that checks its sha256.
func (b *bench) benchPull(ctx context.Context, t *target) error {
	if !t.bigPushed {
		if err := t.pushStreamed(ctx, "bench/big", b.cfg.blobSize, bigSeed, b.bigDigest()); err != nil {
			return err
		}
		t.bigPushed = true
	}
	if err := t.pullBlob(ctx, "bench/big", b.bigDigest(), b.cfg.blobSize, true); err != nil {
		return err
	}
	var rates []float64
	for range 3 {
		start := time.Now()
		if err := t.pullBlob(ctx, "bench/big", b.bigDigest(), b.cfg.blobSize, false); err != nil {
			return err
		}
		rates = append(rates, float64(b.cfg.blobSize)/mib/time.Since(start).Seconds())
	}
	t.set("pull", median(rates))
	if t == b.targets[len(b.targets)-1] {
		return b.runPullPairs(ctx)
	}
	return nil
}

// benchImages pushes the small images, image-concurrency at a time, then
// reads every manifest back (untimed) to check what was stored.
func (b *bench) benchImages(ctx context.Context, t *target) error {
	_, elapsed, err := runLoad(ctx, len(b.images), b.cfg.imageConc, func(ctx context.Context, i int) error {
		return t.pushImage(ctx, b.images[i])
	})
	if err != nil {
		return err
	}
	t.set("images", float64(len(b.images))/elapsed.Seconds())
	_, _, err = runLoad(ctx, len(b.images), b.cfg.imageConc, func(ctx context.Context, i int) error {
		return t.getManifest(ctx, b.images[i], b.images[i].tag)
	})
	return err
}

// ensureHot pushes the image that the manifest and HEAD loads read.
func (b *bench) ensureHot(ctx context.Context, t *target) error {
	if t.hotPushed {
		return nil
	}
	if err := t.pushImage(ctx, b.hot); err != nil {
		return err
	}
	t.hotPushed = true
	return nil
}

// loadResult is what one timed request load measured.
type loadResult struct {
	n             int
	elapsed       time.Duration
	rps, p50, p99 float64
}

// warmUp runs the untimed requests that precede a timed load.
func (b *bench) warmUp(ctx context.Context, fn func(ctx context.Context, i int) error) error {
	_, _, err := runLoad(ctx, b.cfg.warmUpRequests(), b.cfg.conc, fn)
	return err
}

// warmUpRequests is the number of untimed requests before a timed load.
func (c *config) warmUpRequests() int { return min(2000, c.requests/10+1) }

// timed runs the timed request load.
func (b *bench) timed(ctx context.Context, fn func(ctx context.Context, i int) error) (loadResult, error) {
	return b.timedN(ctx, b.cfg.requests, fn)
}

// timedN runs a timed request load of n requests.
func (b *bench) timedN(ctx context.Context, n int, fn func(ctx context.Context, i int) error) (loadResult, error) {
	lat, elapsed, err := runLoad(ctx, n, b.cfg.conc, fn)
	if err != nil {
		return loadResult{}, err
	}
	slices.Sort(lat)
	return loadResult{n: len(lat), elapsed: elapsed, rps: float64(len(lat)) / elapsed.Seconds(),
		p50: quantile(lat, 0.50), p99: quantile(lat, 0.99)}, nil
}

// load runs a warm-up and then the timed request load, and records
// requests/s, p50 and p99 under key.
func (b *bench) load(ctx context.Context, t *target, key string, fn func(ctx context.Context, i int) error) error {
	if err := b.warmUp(ctx, fn); err != nil {
		return err
	}
	r, err := b.timed(ctx, fn)
	if err != nil {
		return err
	}
	t.set(key+"-rps", r.rps)
	t.set(key+"-p50", r.p50)
	t.set(key+"-p99", r.p99)
	return nil
}

// request returns one request of the manifest or head load on t.
func (b *bench) request(workload string, t *target) func(ctx context.Context, i int) error {
	switch workload {
	case "manifest":
		return func(ctx context.Context, _ int) error { return t.getManifest(ctx, b.hot, b.hot.tag) }
	case "head":
		return func(ctx context.Context, _ int) error {
			return t.headBlobExact(ctx, b.hot.repo, b.hot.layerDigests[0], len(b.hot.layers[0]))
		}
	}
	panic("no request load " + workload)
}

// benchManifest loads manifest GET by tag.
func (b *bench) benchManifest(ctx context.Context, t *target) error {
	if err := b.ensureHot(ctx, t); err != nil {
		return err
	}
	return b.load(ctx, t, "manifest", b.request("manifest", t))
}

// benchHead loads HEAD of a layer blob.
func (b *bench) benchHead(ctx context.Context, t *target) error {
	if err := b.ensureHot(ctx, t); err != nil {
		return err
	}
	return b.load(ctx, t, "head", b.request("head", t))
}

// median returns the median of xs (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// newImages builds the n small images of the images workload, spread over
// 20 repositories.
func newImages(n int) []*image {
	ims := make([]*image, n)
	for i := range ims {
		ims[i] = newImage(fmt.Sprintf("small/app%02d", i%20), "v"+strconv.Itoa(i), uint64(1000+i), 2)
	}
	return ims
}
