package adminclient

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// APIError is an error response from the server: a non-2xx status with,
// for the admin API, a {"error":"message"} body.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is the server's "error" field, or a summary of a body that
	// was not the admin API's JSON.
	Message string
	// RetryAfter is the server's Retry-After for 429 responses.
	RetryAfter time.Duration
	// Hint tells the user what to do next; it may be empty.
	Hint string
}

// Error renders the error as one line, e.g.
// "403 forbidden: only admins may create users".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.StatusCode, strings.ToLower(http.StatusText(e.StatusCode)))
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry in %s)", e.RetryAfter)
	}
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

// apiError builds the APIError for a non-2xx response.
func (c *Client) apiError(resp *http.Response, body []byte) *APIError {
	e := &APIError{StatusCode: resp.StatusCode}
	var payload struct {
		Error string `json:"error"`
	}
	isAPI := json.Unmarshal(body, &payload) == nil && payload.Error != ""
	if isAPI {
		e.Message = oneLine(payload.Error)
	} else if !strings.Contains(resp.Header.Get("Content-Type"), "html") {
		e.Message = oneLine(string(body))
	}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		loc := resp.Header.Get("Location")
		e.Message = "the server redirects to " + oneLine(loc)
		if u, err := url.Parse(loc); err == nil && u.Scheme != "" && u.Host != "" {
			e.Hint = "use " + u.Scheme + "://" + u.Host + " as the registry URL"
		}
	case resp.StatusCode == http.StatusUnauthorized:
		if !isAPI {
			e.Message = "invalid user name or password"
		}
		e.Hint = c.authHint
	case resp.StatusCode == http.StatusTooManyRequests:
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(e.Message, "HTTP request to an HTTPS server"):
		e.Hint = "use " + strings.Replace(c.base, "http://", "https://", 1)
	case !isAPI && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed):
		e.Hint = "is " + c.base + " a berth server with the admin API?"
	}
	return e
}

// parseRetryAfter reads a Retry-After header in seconds or as an HTTP date.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t).Round(time.Second); d > 0 {
			return d
		}
	}
	return 0
}

// oneLine makes server-supplied text safe to print on one terminal line:
// control characters become spaces, runs of space collapse, and the text
// is cut at 200 characters.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "..."
	}
	return s
}

// ConnError is a failure to get any HTTP response from the server.
type ConnError struct {
	// URL is the server's base URL.
	URL string
	// Err is the transport error.
	Err error
}

// Error renders the error as one line, e.g. "cannot reach
// http://127.0.0.1:5000: connection refused (is berth serve running?)".
func (e *ConnError) Error() string {
	reason, hint := describeConnError(e.URL, e.Err)
	s := "cannot reach " + e.URL + ": " + reason
	if hint != "" {
		s += " (" + hint + ")"
	}
	return s
}

// Unwrap returns the transport error.
func (e *ConnError) Unwrap() error { return e.Err }

func describeConnError(base string, err error) (reason, hint string) {
	var (
		dnsErr     *net.DNSError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		recordErr  tls.RecordHeaderError
		netErr     net.Error
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", "is berth serve running?"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the server", ""
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "unknown host " + dnsErr.Name, ""
		}
		return "cannot resolve " + dnsErr.Name + ": " + dnsErr.Err, ""
	case errors.As(err, &unknownCA):
		return "TLS certificate signed by an unknown authority", "use --ca-cert FILE, or --insecure-skip-tls-verify"
	case errors.As(err, &hostErr):
		return "TLS certificate: " + strings.TrimPrefix(hostErr.Error(), "x509: "), ""
	case errors.As(err, &invalidErr):
		return "TLS certificate: " + strings.TrimPrefix(invalidErr.Error(), "x509: "), ""
	case errors.As(err, &recordErr) || strings.Contains(err.Error(), "HTTP response to HTTPS client"):
		return "the server does not speak TLS", "use " + strings.Replace(base, "https://", "http://", 1)
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timed out", ""
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return oneLine(err.Error()), ""
}
