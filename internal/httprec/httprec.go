// Package httprec records what a handler answered: the status and the
// number of body bytes, for request logs and metrics, and bounds what a
// client sent (its method) for metric labels and span names.
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

// Of returns the Recorder w already is (an outer middleware made it), or
// a new one around w: one recorder per request, however many layers read
// it.
func Of(w http.ResponseWriter) *Recorder {
	if rec, ok := w.(*Recorder); ok {
		return rec
	}
	return &Recorder{ResponseWriter: w}
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

// Method bounds a request method, as the OpenTelemetry HTTP conventions
// do: the standard methods as they are, anything else "_OTHER". A client
// can send any method name; a label or span name made of it unbounded
// would grow without limit.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}
