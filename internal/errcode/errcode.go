// Package errcode defines the single error type of the registry API: an
// OCI Distribution error code with its HTTP status, rendered in one place.
package errcode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Code is an error code from the OCI Distribution Specification.
type Code string

// The error codes of the OCI Distribution Specification (plus TOOMANYREQUESTS).
const (
	BlobUnknown         Code = "BLOB_UNKNOWN"
	BlobUploadInvalid   Code = "BLOB_UPLOAD_INVALID"
	BlobUploadUnknown   Code = "BLOB_UPLOAD_UNKNOWN"
	DigestInvalid       Code = "DIGEST_INVALID"
	ManifestBlobUnknown Code = "MANIFEST_BLOB_UNKNOWN"
	ManifestInvalid     Code = "MANIFEST_INVALID"
	ManifestUnknown     Code = "MANIFEST_UNKNOWN"
	NameInvalid         Code = "NAME_INVALID"
	NameUnknown         Code = "NAME_UNKNOWN"
	SizeInvalid         Code = "SIZE_INVALID"
	Unauthorized        Code = "UNAUTHORIZED"
	Denied              Code = "DENIED"
	Unsupported         Code = "UNSUPPORTED"
	TooManyRequests     Code = "TOOMANYREQUESTS"
	// PaginationNumberInvalid is not in the OCI spec; CNCF Distribution
	// answers an invalid n with it, and clients know it from there.
	PaginationNumberInvalid Code = "PAGINATION_NUMBER_INVALID"
	// Internal is not a spec code; it is rendered as UNKNOWN with status 500.
	Internal Code = "UNKNOWN"
)

// Error is a registry API error: a spec code, an HTTP status, a message for
// people and an optional machine-readable detail.
type Error struct {
	Code    Code
	Status  int
	Message string
	Detail  any
	// Err is the underlying cause; it is logged, never sent to clients.
	Err error
	// RetryAfter, when positive, is sent as a Retry-After header (whole
	// seconds, rounded up): when the same request may succeed.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// WithDetail returns a copy of e carrying detail.
func (e *Error) WithDetail(detail any) *Error {
	c := *e
	c.Detail = detail
	return &c
}

// defaultStatus maps each code to the status the spec gives it.
var defaultStatus = map[Code]int{
	BlobUnknown:             http.StatusNotFound,
	BlobUploadInvalid:       http.StatusBadRequest,
	BlobUploadUnknown:       http.StatusNotFound,
	DigestInvalid:           http.StatusBadRequest,
	ManifestBlobUnknown:     http.StatusBadRequest,
	ManifestInvalid:         http.StatusBadRequest,
	ManifestUnknown:         http.StatusNotFound,
	NameInvalid:             http.StatusBadRequest,
	NameUnknown:             http.StatusNotFound,
	SizeInvalid:             http.StatusBadRequest,
	Unauthorized:            http.StatusUnauthorized,
	Denied:                  http.StatusForbidden,
	Unsupported:             http.StatusMethodNotAllowed,
	TooManyRequests:         http.StatusTooManyRequests,
	PaginationNumberInvalid: http.StatusBadRequest,
	Internal:                http.StatusInternalServerError,
}

// New returns an error with the code's default status.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Status: defaultStatus[code], Message: fmt.Sprintf(format, args...)}
}

// WithStatus returns an error with an explicit status.
func WithStatus(code Code, status int, format string, args ...any) *Error {
	return &Error{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an internal error around cause; clients see only msg.
func Wrap(cause error, msg string) *Error {
	return &Error{Code: Internal, Status: http.StatusInternalServerError, Message: msg, Err: cause}
}

// StatusClientClosed is the status recorded for a request whose client
// went away before its answer (nginx's 499): no client receives it, and
// it is no server error.
const StatusClientClosed = 499

// As converts any error to an *Error; errors without a code become
// internal, and a cancellation (the client closed the connection) becomes
// StatusClientClosed.
func As(err error) *Error {
	if errors.Is(err, context.Canceled) {
		return &Error{Code: Internal, Status: StatusClientClosed, Message: "request cancelled", Err: err}
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Wrap(err, "internal error")
}

type wireError struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

type wireErrors struct {
	Errors []wireError `json:"errors"`
}

// Write renders err in the spec's JSON form. HEAD requests get the status only.
func Write(w http.ResponseWriter, r *http.Request, err error) {
	e := As(err)
	body, _ := json.Marshal(wireErrors{Errors: []wireError{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	h.Del("Docker-Content-Digest")
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
