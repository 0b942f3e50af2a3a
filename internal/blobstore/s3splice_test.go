package blobstore

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"

	"github.com/berth-registry/berth/internal/testserver"
)

// TestS3Splice sends ranges of a blob to a TCP connection through
// SpliceTo: from the offset, exactly n bytes, and the content moves on;
// small ranges and writers without ReadFrom are declined untouched.
func TestS3Splice(t *testing.T) {
	srv := testserver.S3(t)
	s := newTestS3(t, srv, freshPrefix(t))
	data := testData(11*mib+7, 43)
	d := storeBlob(t, s, data)
	ctx := context.Background()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(c)
		c.Close()
		got <- b
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sp := c.(Splicer)
	if _, ok, _ := sp.SpliceTo(conn, spliceMin-1); ok {
		t.Fatal("a range under spliceMin was spliced")
	}
	if _, ok, _ := sp.SpliceTo(struct{ io.Writer }{&bytes.Buffer{}}, 2*mib); ok {
		t.Fatal("spliced to a writer without ReadFrom")
	}
	if _, err := c.Seek(3*mib+1, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	n, ok, err := sp.SpliceTo(conn, 5*mib)
	if !ok || err != nil || n != 5*mib {
		t.Fatalf("SpliceTo: %d bytes, ok %v, %v", n, ok, err)
	}
	rest, err := io.ReadAll(c) // the content moved on by what was sent
	if err != nil || !bytes.Equal(rest, data[8*mib+1:]) {
		t.Fatalf("read after the splice: %d bytes, %v", len(rest), err)
	}
	conn.Close()
	if b := <-got; !bytes.Equal(b, data[3*mib+1:8*mib+1]) {
		t.Fatalf("received %d bytes, not the range", len(b))
	}
}
