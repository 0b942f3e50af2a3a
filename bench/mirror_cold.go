package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// coldPull is one timed GET of the cold blob.
type coldPull struct {
	ttfb, total time.Duration
	// CPU time used during the pull (s) by berth, the Distribution and the
	// benchmark's own process (the client).
	berthCPU, distCPU, clientCPU float64
}

// coldTrial is one cold blob, pulled both ways.
type coldTrial struct {
	direct, mirror coldPull
	directFirst    bool
	upload         time.Duration // upload to the Distribution, hashing included
	// write is the time to write as many bytes to a new file beside
	// berth's data, 1 MiB at a time, as berth writes its spool, without
	// fsync, into page-cache pages freed just before (by firstWrite's
	// file): the floor of a pull through any mirror that keeps what it
	// serves on this disk and serves it from there. firstWrite is the same
	// into memory the kernel may never have used: in a virtual machine
	// that backs guest memory on first touch (Firecracker) it costs many
	// times more.
	write, firstWrite time.Duration
	writeCPU          float64 // the benchmark's CPU during write (s)
	freed             int64   // bytes berth's collection freed afterwards
}

// ratio is the trial's time through the mirror relative to direct.
func (c coldTrial) ratio() float64 { return c.mirror.total.Seconds() / c.direct.total.Seconds() }

// freeBytes returns the space available to unprivileged users on the
// file system of dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// mirrorCold runs the cold trials: a fresh blob each, uploaded to the
// Distribution, pulled once directly and once through berth's mirror
// (which one first alternates), then deleted from both.
func (b *bench) mirrorCold(ctx context.Context, s, dist *server, distRoot, debugURL string, res *mirrorResult) error {
	mc := &b.cfg.mirror
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	for i := range mc.coldTrials {
		// The upstream's copy, berth's and the floor's file, plus a margin.
		need := 3*mc.coldSize + 1<<30
		if free, err := freeBytes(b.tmp); err != nil {
			return err
		} else if free < need {
			return fmt.Errorf("mirror: cold trial %d needs %s free in %s, have %s", i+1, fmtSize(need), b.tmp, fmtSize(free))
		}
		repo := fmt.Sprintf("bench/cold%d", i)
		seed := uint64(time.Now().UnixNano()) ^ uint64(i)<<56
		tr := coldTrial{directFirst: i%2 == 0}
		start := time.Now()
		dgst := streamDigest(mc.coldSize, seed)
		if err := dist.pushStreamed(ctx, repo, mc.coldSize, seed, dgst); err != nil {
			return err
		}
		if err := dist.pushBlob(ctx, repo, config, digestOf(config)); err != nil {
			return err
		}
		manifest := manifestOf(config, []string{dgst}, []int64{mc.coldSize})
		if err := dist.putManifest(ctx, repo, "v1", manifest); err != nil {
			return err
		}
		tr.upload = time.Since(start)
		logf("mirror: cold trial %d/%d: %s blob %s uploaded to distribution in %.1fs", i+1, mc.coldTrials, fmtSize(mc.coldSize), dgst, tr.upload.Seconds())
		// Each timed step starts with no dirty pages to write back (the
		// upload's, berth's copy of the last step): sync(2), untimed.
		var err error
		syscall.Sync()
		// Written twice: the second file reuses the pages the first freed,
		// as berth's spool then does.
		if tr.firstWrite, _, err = writeFloor(b.tmp, mc.coldSize); err != nil {
			return err
		}
		if tr.write, tr.writeCPU, err = writeFloor(b.tmp, mc.coldSize); err != nil {
			return err
		}
		for k := range 2 {
			viaMirror := (k == 0) != tr.directFirst
			syscall.Sync()
			if viaMirror {
				profile := ""
				if i == 0 && debugURL != "" {
					profile = mc.coldProfile
				}
				tr.mirror, err = b.coldGet(ctx, s, s, dist, mirrorName+"/"+repo, dgst, mc.coldSize, debugURL, profile, tr.direct.total)
				if profile != "" && err == nil {
					res.profile = profile
				}
			} else {
				tr.direct, err = b.coldGet(ctx, dist, s, dist, repo, dgst, mc.coldSize, "", "", 0)
			}
			if err != nil {
				return err
			}
		}
		logf("mirror: cold trial %d/%d: direct %.2fs (first byte %.1f ms), through berth %.2fs (first byte %.1f ms): %.2f×; "+
			"berth's CPU %.2fs; writing as much to a file %.2fs (first %.2fs)",
			i+1, mc.coldTrials, tr.direct.total.Seconds(), ms(tr.direct.ttfb), tr.mirror.total.Seconds(), ms(tr.mirror.ttfb), tr.ratio(),
			tr.mirror.berthCPU, tr.write.Seconds(), tr.firstWrite.Seconds())
		// What berth kept is the blob: pull it again, from its cache, and
		// check every byte.
		if err := s.pullBlob(ctx, mirrorName+"/"+repo, dgst, mc.coldSize, true); err != nil {
			return err
		}
		freed, note, err := b.dropCold(ctx, s, dist, distRoot, repo, dgst, manifest)
		if err != nil {
			return err
		}
		tr.freed = freed
		logf("mirror: cold trial %d/%d: deleted; berth's collection freed %s", i+1, mc.coldTrials, fmtMiB(freed))
		if note != "" {
			res.cleanupNotes = append(res.cleanupNotes, fmt.Sprintf("trial %d: %s", i+1, note))
		}
		res.cold = append(res.cold, tr)
	}
	return nil
}

// writeFloor writes size generated bytes to a new file in dir, 1 MiB at a
// time with WriteAt, without fsync, removes it, and returns the time taken
// and the CPU the benchmark's process used.
func writeFloor(dir string, size int64) (time.Duration, float64, error) {
	f, err := os.CreateTemp(dir, "write-floor-*")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, genBlock)
	_, _ = newBlobStream(genBlock, 0xF100).Read(buf)
	self, _ := readStat(os.Getpid())
	start := time.Now()
	for off := int64(0); off < size; off += genBlock {
		if _, err := f.WriteAt(buf[:min(genBlock, size-off)], off); err != nil {
			return 0, 0, err
		}
	}
	d := time.Since(start)
	self2, _ := readStat(os.Getpid())
	return d, self2.self - self.self, nil
}

// ms renders a duration in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// coldGet GETs a blob from from (the Distribution, or berth's mirror),
// reading every byte, and times the first byte and the whole, with the CPU
// of berth, the Distribution and the client during it. With profile set,
// it records a CPU profile of berth from debugURL during the pull, for a
// window of ten times the direct pull's time (ref) plus two seconds (berth
// idles after the pull until the window ends).
func (b *bench) coldGet(ctx context.Context, from, berth, dist *server, repo, dgst string, size int64, debugURL, profile string, ref time.Duration) (coldPull, error) {
	var p coldPull
	var profDone chan error
	if profile != "" {
		secs := max(2, min(120, int(math.Ceil(10*ref.Seconds()))+2))
		profDone = make(chan error, 1)
		go func() { profDone <- fetchProfile(ctx, debugURL, secs, profile) }()
		time.Sleep(200 * time.Millisecond) // let the profile start
	}
	self, _ := readStat(os.Getpid())
	b0, d0 := berth.sample().cpuSec, dist.sample().cpuSec
	r := request{method: http.MethodGet, url: "/v2/" + repo + "/blobs/" + dgst, want: []int{http.StatusOK}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, from.resolve(r.url), nil)
	if err != nil {
		return p, err
	}
	start := time.Now()
	resp, err := from.client.Do(req)
	if err != nil {
		return p, from.fail(req, r, nil, nil, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		return p, from.fail(req, r, resp, body, nil)
	}
	// The client verifies the digest as it reads, as every registry
	// client does, on both paths.
	buf := make([]byte, 256<<10)
	h := sha256.New()
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		if k > 0 && n == 0 {
			p.ttfb = time.Since(start)
		}
		h.Write(buf[:k])
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return p, from.fail(req, r, resp, nil, fmt.Errorf("reading body after %d bytes: %v", n, err))
		}
	}
	p.total = time.Since(start)
	self2, _ := readStat(os.Getpid())
	p.berthCPU, p.distCPU, p.clientCPU = berth.sample().cpuSec-b0, dist.sample().cpuSec-d0, self2.self-self.self
	if err := from.check(n == size, resp, nil, r, "%d body bytes, got %d", size, n); err != nil {
		return p, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != dgst {
		return p, fmt.Errorf("GET %s: the body hashes to %s", r.url, got)
	}
	if profDone != nil {
		if err := <-profDone; err != nil {
			return p, err
		}
		logf("mirror: wrote a CPU profile of berth's first cold pull to %s", profile)
	}
	return p, nil
}

// fetchProfile writes a CPU profile of secs seconds from a Go debug
// listener to file.
func fetchProfile(ctx context.Context, debugURL string, secs int, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", debugURL, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cpu profile: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cpu profile: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// dropCold deletes a cold trial's blob: from berth by unlinking it from the
// mirrored repository and collecting garbage (returning the bytes freed),
// from the Distribution (whose collection is offline) by deleting the
// manifest and then the blob's and the repository's directories under its
// root. A note says what did not go as expected, without failing the run.
func (b *bench) dropCold(ctx context.Context, s, dist *server, distRoot, repo, dgst string, manifest []byte) (int64, string, error) {
	var notes []string
	if _, _, err := s.do(ctx, request{method: http.MethodDelete, url: "/v2/" + mirrorName + "/" + repo + "/blobs/" + dgst,
		want: []int{http.StatusAccepted}}); err != nil {
		return 0, "", err
	}
	var freed int64
	for try := range 3 {
		time.Sleep(1100 * time.Millisecond) // past --gc-grace
		rep, err := s.collectGarbage(ctx, false)
		if err != nil {
			return 0, "", err
		}
		if freed += rep.Bytes; freed >= b.cfg.mirror.coldSize {
			break
		}
		if try == 2 {
			notes = append(notes, fmt.Sprintf("berth's collection freed %d bytes, not the blob", freed))
		}
	}
	if _, _, err := dist.do(ctx, request{method: http.MethodDelete, url: "/v2/" + repo + "/manifests/" + digestOf(manifest),
		want: []int{http.StatusAccepted}}); err != nil {
		return 0, "", err
	}
	hex := strings.TrimPrefix(dgst, "sha256:")
	v2 := filepath.Join(distRoot, "docker", "registry", "v2")
	blobDir := filepath.Join(v2, "blobs", "sha256", hex[:2], hex)
	if _, err := os.Stat(filepath.Join(blobDir, "data")); err != nil {
		notes = append(notes, fmt.Sprintf("distribution's copy not found where expected: %v", err))
	}
	if err := os.RemoveAll(blobDir); err != nil {
		return 0, "", err
	}
	if err := os.RemoveAll(filepath.Join(v2, "repositories", filepath.FromSlash(repo))); err != nil {
		return 0, "", err
	}
	return freed, strings.Join(notes, "; "), nil
}
