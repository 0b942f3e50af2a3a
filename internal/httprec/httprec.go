// Package httprec records what a handler answered: the status and the
// number of body bytes, for request logs and metrics.
package httprec

import (
	"io"
	"net/http"
)

// Recorder wraps a ResponseWriter and records the status and size of the
// response. It passes ReadFrom through, so that blob bodies still go out
// with sendfile, and Unwrap lets http.ResponseController reach the
// underlying writer.
type Recorder struct {
	http.ResponseWriter
	// Status is the status written (0 until the handler writes one).
	Status int
	// Bytes counts the body bytes written.
	Bytes int64
}

// WriteHeader records the first status written.
func (w *Recorder) WriteHeader(code int) {
	if w.Status == 0 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write counts the body bytes written.
func (w *Recorder) Write(p []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.Bytes += int64(n)
	return n, err
}

// ReadFrom copies r to the response through the underlying writer's
// ReadFrom when it has one (sendfile for files).
func (w *Recorder) ReadFrom(r io.Reader) (int64, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.Bytes += n
	return n, err
}

// Unwrap returns the underlying writer.
func (w *Recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Answered is the status of the response: the one written, or 200 when
// the handler wrote nothing.
func (w *Recorder) Answered() int {
	if w.Status == 0 {
		return http.StatusOK
	}
	return w.Status
}
