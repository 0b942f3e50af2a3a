package api

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkBlobBody measures how a blob file reaches a client over
// loopback TCP: sendfile (ServeContent on the *os.File) against the
// pooled-buffer copy berth uses, for sizes from 64 KiB to 1 GiB. The
// client reads every byte. Run: go test ./internal/api -run x -bench BlobBody
func BenchmarkBlobBody(b *testing.B) {
	dir := b.TempDir()
	for _, size := range []int64{64 << 10, 1 << 20, 16 << 20, 256 << 20, 1 << 30} {
		path := filepath.Join(dir, fmt.Sprint(size))
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyN(f, rand.Reader, size); err != nil {
			b.Fatal(err)
		}
		f.Close()
		for _, mode := range []string{"sendfile", "copy"} {
			b.Run(fmt.Sprintf("%s/%dKiB", mode, size>>10), func(b *testing.B) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					c, err := os.Open(path)
					if err != nil {
						http.Error(w, err.Error(), 500)
						return
					}
					defer c.Close()
					if mode == "copy" {
						w = bigCopies{w}
					}
					http.ServeContent(w, r, "", zeroTime, c)
				}))
				defer srv.Close()
				buf := make([]byte, 256<<10)
				b.SetBytes(size)
				b.ResetTimer()
				for range b.N {
					resp, err := srv.Client().Get(srv.URL)
					if err != nil {
						b.Fatal(err)
					}
					n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
					resp.Body.Close()
					if err != nil || n != size {
						b.Fatalf("%d bytes, %v", n, err)
					}
				}
			})
		}
	}
}
