package blobstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Splicer is implemented by Content that can send part of itself to a
// writer without passing the bytes through the process: the S3 store's,
// from a plain-HTTP S3 endpoint to a client on plain HTTP, where the
// kernel moves them from one socket to the other (splice).
type Splicer interface {
	// SpliceTo sends the n bytes from the content's offset on to w. When
	// it cannot (ok false), it has sent nothing, and the caller copies.
	SpliceTo(w io.Writer, n int64) (written int64, ok bool, err error)
}

// spliceMin is the smallest range worth its own connection to S3.
const spliceMin = 1 << 20

// SpliceTo implements Splicer. It sends a presigned GET of the range on a
// connection of its own (closed after it) and hands the connection, past
// the answer's header, to w's ReadFrom: the http server's, which splices
// from one TCP connection to the other. Over HTTPS to S3, for ranges under
// spliceMin, to a writer without ReadFrom, or when S3 does not answer the
// range as asked, it declines.
func (c *s3Content) SpliceTo(w io.Writer, n int64) (int64, bool, error) {
	rf, isRF := w.(io.ReaderFrom)
	if c.closed || !isRF || n < spliceMin || c.off+n > c.size {
		return 0, false, nil
	}
	if c.ahead != nil {
		c.ahead.stop()
		c.ahead = nil
	}
	rng := fmt.Sprintf("bytes=%d-%d", c.off, c.off+n-1)
	pre, err := c.s.presign.PresignGetObject(c.ctx, &s3.GetObjectInput{Bucket: &c.s.bucket, Key: aws.String(c.key), Range: aws.String(rng)},
		s3.WithPresignExpires(time.Minute))
	if err != nil {
		return 0, false, nil
	}
	u, err := url.Parse(pre.URL)
	if err != nil || u.Scheme != "http" {
		return 0, false, nil
	}
	start := time.Now()
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(c.ctx, "tcp", host)
	if err != nil {
		return 0, false, nil // the SDK's path, with its retries
	}
	defer conn.Close()
	stop := context.AfterFunc(c.ctx, func() { conn.Close() })
	defer stop()
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return 0, false, nil
	}
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, pre.URL, nil)
	if err != nil {
		return 0, false, nil
	}
	req.Header = pre.SignedHeader.Clone()
	req.Header.Set("Range", rng)
	req.Close = true
	if err := req.Write(conn); err != nil {
		return 0, false, nil
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return 0, false, nil
	}
	if resp.StatusCode != http.StatusPartialContent || resp.ContentLength != n || len(resp.TransferEncoding) > 0 {
		outcome := S3OK
		if resp.StatusCode >= 300 {
			outcome = s3Outcome(c.ctx, resp.StatusCode, errors.New(resp.Status))
		}
		c.s.observed("GetObject", outcome, time.Since(start))
		return 0, false, nil
	}
	c.s.observed("GetObject", S3OK, time.Since(start))
	// What the header's read took of the body first, then the rest from
	// the connection itself.
	head, _ := br.Peek(min(br.Buffered(), int(n)))
	k, err := w.Write(head)
	written := int64(k)
	if err == nil {
		var m int64
		m, err = rf.ReadFrom(&io.LimitedReader{R: tcp, N: n - written})
		written += m
	}
	c.off += written
	if err == nil && written < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return written, true, fmt.Errorf("s3: send blob %s at %d: %w", c.d, c.off, err)
	}
	return written, true, nil
}

// observed tells the observer, if any, of a request sent outside the SDK.
func (s *S3) observed(operation, outcome string, elapsed time.Duration) {
	if s.observe != nil {
		s.observe(operation, outcome, elapsed)
	}
}
