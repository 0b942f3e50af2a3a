package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// The s3 workload (issue 14, done-when 2) runs once, against servers of
// its own on one S3 server and one PostgreSQL that it starts: embedded
// berth, berth-s3 (S3 + PostgreSQL), distribution-s3, and a raw S3 client
// (the AWS SDK for Go, as berth uses it) on a bucket of its own. Each
// measurement runs in -s3-rounds rounds, the columns in a rotating order,
// and the table gives the medians.
//
//	go run ./bench -only s3 -servers berth
//	go run ./bench -only s3 -servers berth -blob-size 256MiB -s3-rounds 1

// s3Config are the s3 workload's settings.
type s3Config struct {
	server   string // minio or versitygw
	phases   string // comma-separated: push, pull, images, loads
	rounds   int
	requests int
	chunk    int64
}

func (c *s3Config) register() {
	flag.StringVar(&c.server, "s3-server", "minio", "S3 server of the s3 workload and the -s3 server kinds: minio or versitygw")
	flag.StringVar(&c.phases, "s3-phases", "push,pull,images,loads", "phases of the s3 workload to run (push, pull, images, loads: manifest GETs and blob HEADs)")
	flag.IntVar(&c.rounds, "s3-rounds", 3, "rounds of the s3 workload's pushes and pulls (medians reported)")
	flag.IntVar(&c.requests, "s3-requests", 20000, "requests of the s3 workload's manifest GET and blob HEAD loads")
	flag.Var((*sizeFlag)(&c.chunk), "s3-chunk", "chunk size of the s3 workload's chunked push")
}

func (c *s3Config) check() error {
	if c.server != "minio" && c.server != "versitygw" {
		return fmt.Errorf("-s3-server: %q is neither minio nor versitygw", c.server)
	}
	if c.rounds < 1 || c.requests < 1 || c.chunk < 1 {
		return fmt.Errorf("-s3-rounds, -s3-requests and -s3-chunk must be positive")
	}
	return nil
}

// s3Columns are the s3 section's columns, in the order of its table.
var s3Columns = []string{"raw S3", "berth", "berth-s3", "distribution-s3"}

// s3Result is what the s3 workload measured: per metric, per column, the
// values of each round.
type s3Result struct {
	server string // "MinIO <version>"
	values map[string]map[string][]float64
	// phaseCPU is the CPU seconds each process used during a phase
	// (push, pull, images, loads), by column and for "S3 server" and
	// "PostgreSQL".
	phaseCPU map[string]map[string]float64
	phases   []string
}

func (r *s3Result) add(metric, col string, v float64) {
	if r.values[metric] == nil {
		r.values[metric] = map[string][]float64{}
	}
	r.values[metric][col] = append(r.values[metric][col], v)
}

// get returns the median of a metric's values in a column.
func (r *s3Result) get(metric, col string) (float64, bool) {
	vs := r.values[metric][col]
	if len(vs) == 0 {
		return 0, false
	}
	return median(append([]float64(nil), vs...)), true
}

// benchS3 is the s3 workload.
func (b *bench) benchS3(ctx context.Context, t *target) error {
	if t.name != "berth" {
		logf("s3: skipped for %s: the s3 workload runs once, against servers of its own", t.name)
		return nil
	}
	sc := b.cfg.s3
	dir := filepath.Join(b.tmp, "s3section")
	be := &backends{dir: dir, kind: sc.server}
	defer be.stop()
	raw, err := be.S3("raw")
	if err != nil {
		return err
	}
	if _, err := be.S3("berth-s3"); err != nil {
		return err
	}
	if _, err := be.S3("distribution-s3"); err != nil {
		return err
	}
	dsn, err := be.PostgresDSN()
	if err != nil {
		return err
	}
	conns := b.cfg.conc
	emb, err := startOwnBerth(b.berthBin, filepath.Join(dir, "berth-data"), filepath.Join(dir, "berth.log"), conns, nil, "--metrics=false")
	if err != nil {
		return err
	}
	defer emb.stop()
	bs3, err := startBerthS3(b.berthBin, filepath.Join(dir, "berth-s3"), raw, "berth-s3", dsn, filepath.Join(dir, "berth-s3.log"), conns)
	if err != nil {
		return err
	}
	defer bs3.stop()
	ds3, err := startDistributionS3(b.cfg.distBin, dir, raw, "distribution-s3", filepath.Join(dir, "distribution-s3.log"), conns)
	if err != nil {
		return err
	}
	defer ds3.stop()
	res := &s3Result{server: be.name(), values: map[string]map[string][]float64{}, phaseCPU: map[string]map[string]float64{}}
	b.s3 = res
	regs := map[string]*server{"berth": emb, "berth-s3": bs3, "distribution-s3": ds3}
	client := raw.Client()

	// measure runs a phase and records the CPU each process used in it.
	// What the pushes left dirty in the page cache is written back
	// first, not during the phase's timings.
	measure := func(phase string, run func() error) error {
		syscall.Sync()
		res.phases = append(res.phases, phase)
		mark := cpuNow(regs, be)
		if err := run(); err != nil {
			return err
		}
		res.phaseCPU[phase] = map[string]float64{}
		for k, v := range cpuNow(regs, be) {
			res.phaseCPU[phase][k] = v - mark[k]
		}
		return nil
	}
	phases := splitList(sc.phases)
	if slices.Contains(phases, "push") {
		err = measure("push", func() error { return b.s3Pushes(ctx, res, regs, raw.Bucket, client) })
	}
	if err == nil && slices.Contains(phases, "pull") {
		err = measure("pull", func() error { return b.s3Pulls(ctx, res, regs, raw.Bucket, client) })
	}
	if slices.Contains(phases, "images") {
		// Column by column, so that the backends' CPU is each one's.
		for _, col := range s3Columns[1:] {
			if err == nil {
				err = measure("images, "+col, func() error { return b.s3Images(ctx, res, regs, col) })
			}
		}
	}
	if err == nil && slices.Contains(phases, "loads") {
		err = measure("loads", func() error { return b.s3Loads(ctx, res, regs) })
	}
	return err
}

// cpuNow samples the CPU seconds of the registries and the backends.
func cpuNow(regs map[string]*server, be *backends) map[string]float64 {
	m := map[string]float64{"S3 server": be.s3CPU(), "PostgreSQL": be.pgCPU()}
	for col, s := range regs {
		m[col] = s.sample().cpuSec
	}
	return m
}

// s3Pushes times the pushes of the s3 workload.
func (b *bench) s3Pushes(ctx context.Context, res *s3Result, regs map[string]*server, bucket string, client *s3.Client) error {
	sc, size := b.cfg.s3, b.cfg.blobSize
	var err error
	// Pushes: the whole blob in one streamed PATCH (raw: a multipart
	// upload of 8 MiB parts, berth's part size), then in chunks.
	for round := range sc.rounds {
		seed := uint64(bigSeed + 100 + round)
		dgst := streamDigest(size, seed)
		cseed := uint64(bigSeed + 200 + round)
		cdgst := streamDigest(size, cseed)
		for _, col := range rotate(s3Columns, round) {
			start := time.Now()
			if col == "raw S3" {
				err = rawMultipart(ctx, client, bucket, fmt.Sprintf("round-%d", round), size, seed, dgst)
			} else {
				err = regs[col].pushStreamed(ctx, "bench/s3big", size, seed, dgst)
			}
			if err != nil {
				return fmt.Errorf("s3: push to %s: %w", col, err)
			}
			res.add("push", col, float64(size)/mib/time.Since(start).Seconds())
			if col == "raw S3" {
				continue
			}
			start = time.Now()
			if err := regs[col].pushChunked(ctx, "bench/s3chunked", size, sc.chunk, cseed, cdgst); err != nil {
				return fmt.Errorf("s3: chunked push to %s: %w", col, err)
			}
			res.add("chunked", col, float64(size)/mib/time.Since(start).Seconds())
		}
		logf("s3: round %d of pushes done", round+1)
	}
	return nil
}

// s3Pulls times the pulls of the s3 workload: of the first push round's
// blob, pushed first if the push phase did not run.
func (b *bench) s3Pulls(ctx context.Context, res *s3Result, regs map[string]*server, bucket string, client *s3.Client) error {
	sc, size := b.cfg.s3, b.cfg.blobSize
	var err error
	// Pulls of round 0's blob: one checked, then timed rounds.
	dgst := streamDigest(size, uint64(bigSeed+100))
	if len(res.values["push"]) == 0 {
		if err := rawMultipart(ctx, client, bucket, "round-0", size, uint64(bigSeed+100), dgst); err != nil {
			return err
		}
		for col, s := range regs {
			if err := s.pushStreamed(ctx, "bench/s3big", size, uint64(bigSeed+100), dgst); err != nil {
				return fmt.Errorf("s3: push to %s: %w", col, err)
			}
		}
	}
	for col, s := range regs {
		if err := s.pullBlob(ctx, "bench/s3big", dgst, size, true); err != nil {
			return fmt.Errorf("s3: pull from %s: %w", col, err)
		}
	}
	if err := rawGet(ctx, client, bucket, "round-0", size, dgst); err != nil {
		return err
	}
	// Pulls are short: three times as many rounds.
	for round := range 3 * sc.rounds {
		for _, col := range rotate(s3Columns, round) {
			start := time.Now()
			if col == "raw S3" {
				err = rawGet(ctx, client, bucket, "round-0", size, "")
			} else {
				err = regs[col].pullBlob(ctx, "bench/s3big", dgst, size, false)
			}
			if err != nil {
				return fmt.Errorf("s3: pull from %s: %w", col, err)
			}
			res.add("pull", col, float64(size)/mib/time.Since(start).Seconds())
		}
	}
	return nil
}

// s3Images times the pushes of the small images.
func (b *bench) s3Images(ctx context.Context, res *s3Result, regs map[string]*server, col string) error {
	{
		s := regs[col]
		lat, elapsed, err := runLoad(ctx, len(b.images), b.cfg.imageConc, func(ctx context.Context, i int) error {
			return s.pushImage(ctx, b.images[i])
		})
		if err != nil {
			return fmt.Errorf("s3: images to %s: %w", col, err)
		}
		res.add("images", col, float64(len(b.images))/elapsed.Seconds())
		slices.Sort(lat)
		res.add("images-p50", col, quantile(lat, 0.5))
	}
	return nil
}

// s3Loads times manifest GETs and blob HEADs.
func (b *bench) s3Loads(ctx context.Context, res *s3Result, regs map[string]*server) error {
	sc := b.cfg.s3
	for _, col := range s3Columns[1:] {
		if err := regs[col].pushImage(ctx, b.hot); err != nil {
			return err
		}
	}
	for _, load := range []string{"manifest", "head"} {
		for round := range sc.rounds {
			for _, col := range rotate(s3Columns[1:], round) {
				fn := b.request(load, &target{server: regs[col]})
				if round == 0 {
					if err := b.warmUp(ctx, fn); err != nil {
						return err
					}
				}
				r, err := b.timedN(ctx, max(1, sc.requests/sc.rounds), fn)
				if err != nil {
					return fmt.Errorf("s3: %s load on %s: %w", load, col, err)
				}
				res.add(load+"-rps", col, r.rps)
				res.add(load+"-p50", col, r.p50)
			}
		}
	}
	return nil
}

// rotate returns xs rotated left by n.
func rotate(xs []string, n int) []string {
	n %= len(xs)
	return append(append([]string(nil), xs[n:]...), xs[:n]...)
}

// rawMultipart uploads size generated bytes to key in 8 MiB parts, one
// after the other, and checks their sha256 against dgst as it goes.
func rawMultipart(ctx context.Context, c *s3.Client, bucket, key string, size int64, seed uint64, dgst string) error {
	mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
	if err != nil {
		return fmt.Errorf("raw S3: begin multipart upload: %w", err)
	}
	src := newBlobStream(size, seed)
	h := sha256.New()
	buf := make([]byte, 8<<20)
	var parts []types.CompletedPart
	for n := int32(1); ; n++ {
		k, rerr := io.ReadFull(src, buf)
		if k == 0 {
			break
		}
		h.Write(buf[:k])
		out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: mp.UploadId, PartNumber: aws.Int32(n),
			Body: bytes.NewReader(buf[:k]), ContentLength: aws.Int64(int64(k)), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
		if err != nil {
			return fmt.Errorf("raw S3: part %d: %w", n, err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32})
		if rerr != nil {
			break
		}
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != dgst {
		return fmt.Errorf("raw S3: generated %s, want %s", got, dgst)
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		return fmt.Errorf("raw S3: complete multipart upload: %w", err)
	}
	return nil
}

// rawGet downloads key as pullBlob downloads a blob (a 256 KiB buffer),
// and checks its size and, when dgst is set, its sha256.
func rawGet(ctx context.Context, c *s3.Client, bucket, key string, size int64, dgst string) error {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return fmt.Errorf("raw S3: get %s: %w", key, err)
	}
	defer out.Body.Close()
	n, got, err := readBody(out.Body, dgst != "")
	if err != nil || n != size {
		return fmt.Errorf("raw S3: get %s: %d of %d bytes: %v", key, n, size, err)
	}
	if dgst != "" && got != dgst {
		return fmt.Errorf("raw S3: get %s: content %s, want %s", key, got, dgst)
	}
	return nil
}

// pushChunked pushes size generated bytes as PATCHes of chunk bytes each
// (Content-Range and Content-Length set), then a PUT with the digest.
func (s *server) pushChunked(ctx context.Context, repo string, size, chunk int64, seed uint64, dgst string) error {
	post := request{method: http.MethodPost, url: "/v2/" + repo + "/blobs/uploads/", want: []int{http.StatusAccepted}}
	resp, b, err := s.do(ctx, post)
	if err != nil {
		return err
	}
	loc := s.resolve(resp.Header.Get("Location"))
	if err := s.check(loc != "", resp, b, post, "a Location header"); err != nil {
		return err
	}
	src := newBlobStream(size, seed)
	buf := make([]byte, chunk)
	for off := int64(0); off < size; {
		k, _ := io.ReadFull(src, buf[:min(chunk, size-off)])
		patch := request{method: http.MethodPatch, url: loc, body: buf[:k], want: []int{http.StatusAccepted},
			header: http.Header{"Content-Type": {"application/octet-stream"}, "Content-Range": {fmt.Sprintf("%d-%d", off, off+int64(k)-1)}}}
		resp, b, err := s.do(ctx, patch)
		if err != nil {
			return err
		}
		off += int64(k)
		if l := resp.Header.Get("Location"); l != "" {
			loc = s.resolve(l)
		}
		if err := s.check(resp.Header.Get("Range") == fmt.Sprintf("0-%d", off-1), resp, b, patch, "Range: 0-%d", off-1); err != nil {
			return err
		}
	}
	put := request{method: http.MethodPut, url: withQuery(loc, "digest", dgst), want: []int{http.StatusCreated}}
	resp, b, err = s.do(ctx, put)
	if err != nil {
		return err
	}
	return s.check(resp.Header.Get("Docker-Content-Digest") == dgst, resp, b, put, "Docker-Content-Digest %s", dgst)
}
