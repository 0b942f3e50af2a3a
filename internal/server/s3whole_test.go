package server

import (
	"bufio"
	"crypto/sha512"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

// TestS3WholeBlobs: a blob that comes whole in one request (a monolithic
// POST, or the PUT that brings an empty upload all its bytes) is stored
// with one PutObject, or none when the store has it already. Bad input
// stores nothing and costs no S3 request: a wrong digest (the upload
// ends, as on the general path), a body shorter than declared (the upload
// stays as it was). A PUT with the last bytes of an upload that holds
// some takes the general path. No upload state is left in the index.
func TestS3WholeBlobs(t *testing.T) {
	testserver.EachS3(t, func(t *testing.T, srv *testserver.S3Server) {
		u, counter, dataDir := serveCountingS3(t, srv)
		check := func(what string, want []string) {
			t.Helper()
			if got := counter.take(); !slices.Equal(got, want) {
				t.Errorf("%s: S3 requests %q, want %q", what, got, want)
			}
		}
		content := []byte("whole layer " + time.Now().String())
		good, wrong := digestOf(content), digestOf([]byte("other bytes"))

		expect(t, "monolithic, wrong digest", do(t, "POST", u+"/v2/w/app/blobs/uploads/?digest="+wrong, nil, content), 400, "DIGEST_INVALID")
		r := do(t, "POST", u+"/v2/w/app/blobs/uploads/", nil, nil)
		expect(t, "whole PUT, wrong digest", do(t, "PUT", finish(u, r, wrong), nil, content), 400, "DIGEST_INVALID")
		expect(t, "upload ended by the mismatch", do(t, "GET", abs(u, r.header.Get("Location")), nil, nil), 404, "BLOB_UPLOAD_UNKNOWN")
		expect(t, "nothing stored", do(t, "HEAD", u+"/v2/w/app/blobs/"+wrong, nil, nil), 404, "")

		// A body that ends before its Content-Length.
		r = do(t, "POST", u+"/v2/w/app/blobs/uploads/", nil, nil)
		loc := abs(u, r.header.Get("Location"))
		shortPut(t, finish(u, r, good), content, 10)
		if st := do(t, "GET", loc, nil, nil); st.status != 204 || st.header.Get("Range") != "0-0" && st.header.Get("Range") != "" {
			t.Errorf("upload after a short whole PUT: %d Range %q, want 204 and nothing received", st.status, st.header.Get("Range"))
		}
		check("bad input", nil)

		// The same upload, whole and right: one PutObject.
		expect(t, "whole PUT", do(t, "PUT", finish(u, r, good), nil, content), 201, "")
		check("whole PUT", []string{"PutObject"})
		// Stored already: another repository's whole PUT and a monolithic
		// POST cost no S3 request.
		r = do(t, "POST", u+"/v2/w/other/blobs/uploads/", nil, nil)
		expect(t, "whole PUT of a stored blob", do(t, "PUT", finish(u, r, good), nil, content), 201, "")
		expect(t, "monolithic POST of a stored blob", do(t, "POST", u+"/v2/w/third/blobs/uploads/?digest="+good, nil, content), 201, "")
		check("blob stored already", nil)
		for _, repo := range []string{"app", "other", "third"} {
			if g := do(t, "GET", u+"/v2/w/"+repo+"/blobs/"+good, nil, nil); g.status != 200 || string(g.body) != string(content) {
				t.Errorf("GET from %s: %d %q", repo, g.status, g.body)
			}
		}
		counter.take()

		// sha512, whole.
		d512 := fmt.Sprintf("sha512:%x", sha512.Sum512(content))
		expect(t, "sha512 monolithic", do(t, "POST", u+"/v2/w/app/blobs/uploads/?digest="+d512, nil, content), 201, "")
		check("sha512 monolithic", []string{"PutObject"})

		// An upload holding bytes: the last PUT takes the general path.
		r = do(t, "POST", u+"/v2/w/app/blobs/uploads/", nil, nil)
		more := []byte("two parts " + time.Now().String())
		r = do(t, "PATCH", abs(u, r.header.Get("Location")), map[string]string{"Content-Range": fmt.Sprintf("0-%d", 4)}, more[:5])
		expect(t, "PATCH", r, 202, "")
		expect(t, "last PUT with bytes", do(t, "PUT", finish(u, r, digestOf(more)), nil, more[5:]), 201, "")
		if g := do(t, "GET", u+"/v2/w/app/blobs/"+digestOf(more), nil, nil); string(g.body) != string(more) {
			t.Errorf("blob of PATCH + PUT: %q", g.body)
		}

		// No upload state left behind (the short PUT's upload was ended by
		// its whole PUT).
		db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "berth.db")+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM s3_uploads`).Scan(&n); err != nil || n != 0 {
			t.Errorf("upload states left in the index: %d (%v)", n, err)
		}
	})
}

// shortPut sends a PUT whose body stops after n of content's bytes,
// declaring them all, and half-closes the connection.
func shortPut(t *testing.T, rawURL string, content []byte, n int) {
	t.Helper()
	p, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", p.RequestURI(), p.Host, len(content))
	c.Write(content[:n])
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if res, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		res.Body.Close()
		if res.StatusCode < 400 {
			t.Errorf("short whole PUT answered %s", res.Status)
		}
	}
}
