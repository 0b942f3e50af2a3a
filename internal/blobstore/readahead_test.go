package blobstore

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestReadAhead reads bodies through readAhead with reads of several
// sizes: the bytes come out whole and in order, a body that fails passes
// its error on after the bytes before it, and stopping half-way returns.
func TestReadAhead(t *testing.T) {
	data := testData(3*readAheadSize+12345, 41)
	for _, size := range []int{1, 4095, readAheadSize, 1 << 20} {
		for name, body := range map[string]io.Reader{
			"whole":     bytes.NewReader(data),
			"one byte":  iotest.OneByteReader(bytes.NewReader(data[:readAheadSize+7])),
			"half read": iotest.HalfReader(bytes.NewReader(data)),
		} {
			want := data
			if name == "one byte" {
				if size > 4095 {
					continue // slow and no different
				}
				want = data[:readAheadSize+7]
			}
			ra := startReadAhead(io.NopCloser(body), 0, int64(len(want)))
			var got []byte
			p := make([]byte, size)
			for {
				n, err := ra.read(p)
				got = append(got, p[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s, reads of %d: %v", name, size, err)
				}
			}
			ra.stop()
			if !bytes.Equal(got, want) || ra.off != int64(len(want)) {
				t.Fatalf("%s, reads of %d: %d bytes, offset %d; want the %d bytes", name, size, len(got), ra.off, len(want))
			}
		}
	}

	broken := errors.New("connection reset")
	ra := startReadAhead(io.NopCloser(io.MultiReader(bytes.NewReader(data[:readAheadSize+10]), iotest.ErrReader(broken))), 0, int64(len(data)))
	got, err := io.ReadAll(readerFunc(ra.read))
	ra.stop()
	if !errors.Is(err, broken) || !bytes.Equal(got, data[:readAheadSize+10]) {
		t.Fatalf("a failing body: %d bytes, %v; want %d bytes then the error", len(got), err, readAheadSize+10)
	}

	ra = startReadAhead(io.NopCloser(bytes.NewReader(data)), 0, int64(len(data)))
	if _, err := ra.read(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	ra.stop() // with buffers full and the goroutine waiting
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
