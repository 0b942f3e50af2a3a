package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/config"
)

// BenchmarkManifestGet serves manifest GETs in process, with metrics off
// and on: the cost of the metrics middleware per request, without the
// network and client noise of make bench.
func BenchmarkManifestGet(b *testing.B) {
	for _, off := range []bool{true, false} {
		b.Run(fmt.Sprintf("metrics=%v", !off), func(b *testing.B) {
			cfg := &config.Config{Addr: "127.0.0.1:0", DataDir: b.TempDir(), Auth: "none", MaxManifestSize: 1 << 20,
				UploadTTL: time.Hour, ShutdownTimeout: time.Second, BodyTimeout: time.Minute, MetricsOff: off}
			s, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			h := s.Handler()
			cfgBlob := []byte("{}")
			put := func(method, target string, body []byte, ctype string) int {
				rec := httptest.NewRecorder()
				r := httptest.NewRequest(method, target, strings.NewReader(string(body)))
				if ctype != "" {
					r.Header.Set("Content-Type", ctype)
				}
				h.ServeHTTP(rec, r)
				return rec.Code
			}
			d := "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
			if c := put("POST", "/v2/a/b/blobs/uploads/?digest="+d, cfgBlob, "application/octet-stream"); c != 201 {
				b.Fatalf("blob: %d", c)
			}
			m := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d + `","size":2},"layers":[]}`
			if c := put("PUT", "/v2/a/b/manifests/v1", []byte(m), "application/vnd.oci.image.manifest.v1+json"); c != 201 {
				b.Fatalf("manifest: %d", c)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/a/b/manifests/v1", nil))
					if rec.Code != 200 {
						b.Errorf("GET: %d", rec.Code)
						return
					}
				}
			})
		})
	}
}
