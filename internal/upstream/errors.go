package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"
)

var (
	// ErrNotFound matches the errors of 404 answers: MANIFEST_UNKNOWN,
	// BLOB_UNKNOWN, NAME_UNKNOWN or a plain 404.
	ErrNotFound = errors.New("not found")
	// ErrDigestMismatch is returned when content does not hash to the
	// digest it was asked for or announced with.
	ErrDigestMismatch = errors.New("digest mismatch")
)

// StatusError is a non-2xx answer of the registry (or of its token realm):
// the status and the first error of the specification's
// {"errors":[{"code","message"}]} body, when there is one. Its message is
// cut short and never holds the client's password or tokens.
type StatusError struct {
	Status  int
	Code    string
	Message string
}

// Error renders the status, code and message.
func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Is makes a 404 match ErrNotFound.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// maxMessage bounds a StatusError's message, in bytes.
const maxMessage = 200

// statusError reads a failed response's body (a little of it), closes it
// and returns the StatusError. The message is cleaned of control
// characters and of the credentials sent (authz) or configured.
func (c *Client) statusError(resp *http.Response, authz string) *StatusError {
	defer resp.Body.Close()
	e := &StatusError{Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var spec struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &spec) == nil && len(spec.Errors) > 0 {
		e.Code, e.Message = spec.Errors[0].Code, spec.Errors[0].Message
	} else if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/plain") {
		e.Message = string(body)
	}
	e.Code = c.clean(e.Code, authz)
	e.Message = c.clean(e.Message, authz)
	return e
}

// clean makes text from the registry fit for an error: printable, short,
// and without the password or the credential that was sent.
func (c *Client) clean(s, authz string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	secrets := []string{c.pass}
	if _, cred, ok := strings.Cut(authz, " "); ok {
		secrets = append(secrets, cred)
	}
	secrets = append(secrets, c.auth.secrets()...)
	for _, secret := range secrets {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	s = strings.TrimSpace(s)
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// utf8Start reports whether b begins a UTF-8 sequence.
func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
