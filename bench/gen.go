package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
)

// genBlock is the size of one generated block of a blobStream.
const genBlock = 1 << 20

// blobStream is a deterministic, incompressible stream of size bytes. It
// keeps one random 1 MiB base block and derives block i by XORing every
// 64-bit word of the base with a per-block key, so consecutive blocks
// differ and the stream is produced at memory speed without ever holding
// the whole blob.
type blobStream struct {
	size  int64
	off   int64
	seed  uint64
	base  []byte
	block []byte
	idx   int64 // index of the block currently in block, -1 if none
}

// newBlobStream returns a stream of size bytes derived from seed. Two
// streams with the same size and seed yield the same bytes.
func newBlobStream(size int64, seed uint64) *blobStream {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	base := make([]byte, genBlock)
	_, _ = rand.NewChaCha8(key).Read(base)
	return &blobStream{size: size, seed: seed, base: base, block: make([]byte, genBlock), idx: -1}
}

// fill computes block i into s.block.
func (s *blobStream) fill(i int64) {
	k := splitmix(s.seed ^ uint64(i)*0x9E3779B97F4A7C15)
	for j := 0; j < genBlock; j += 8 {
		binary.LittleEndian.PutUint64(s.block[j:], binary.LittleEndian.Uint64(s.base[j:])^k)
	}
	s.idx = i
}

// Read implements io.Reader.
func (s *blobStream) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && s.off < s.size {
		i, o := s.off/genBlock, s.off%genBlock
		if i != s.idx {
			s.fill(i)
		}
		c := copy(p[n:], s.block[o:min(int64(genBlock), o+s.size-s.off)])
		n += c
		s.off += int64(c)
	}
	return n, nil
}

// WriteTo implements io.WriterTo so that io.Copy hands whole 1 MiB blocks
// to the writer instead of going through a small intermediate buffer.
func (s *blobStream) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for s.off < s.size {
		i, o := s.off/genBlock, s.off%genBlock
		if i != s.idx {
			s.fill(i)
		}
		n, err := w.Write(s.block[o:min(int64(genBlock), o+s.size-s.off)])
		s.off += int64(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// splitmix is the SplitMix64 finaliser, used to derive block keys.
func splitmix(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	return x ^ (x >> 31)
}

// streamDigest hashes a fresh blobStream of the given size and seed and
// returns its "sha256:..." digest.
func streamDigest(size int64, seed uint64) string {
	h := sha256.New()
	_, _ = newBlobStream(size, seed).WriteTo(h)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// digestOf returns the "sha256:..." digest of b.
func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// randomBytes returns n bytes drawn from r.
func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

// sizeFlag is a byte count that accepts KiB/MiB/GiB (and k/M/G) suffixes.
type sizeFlag int64

func (f *sizeFlag) String() string { return fmtSize(int64(*f)) }

func (f *sizeFlag) Set(s string) error {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("bad size %q", s)
	}
	*f = sizeFlag(n * mult)
	return nil
}

// fmtSize renders a byte count with a binary unit when it divides evenly.
func fmtSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
