package errcode

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRetryAfter: an error with RetryAfter says when to retry, in whole
// seconds rounded up; one without says nothing.
func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{{0, ""}, {1500 * time.Millisecond, "2"}, {18 * time.Second, "18"}} {
		e := WithStatus(BlobUploadInvalid, 416, "busy")
		e.RetryAfter = tc.after
		w := httptest.NewRecorder()
		Write(w, httptest.NewRequest(http.MethodPatch, "/v2/a/blobs/uploads/x", nil), e)
		if got := w.Header().Get("Retry-After"); got != tc.want || w.Code != 416 {
			t.Errorf("RetryAfter %s: %d, Retry-After %q; want 416, %q", tc.after, w.Code, got, tc.want)
		}
	}
}
