package api

import (
	"errors"
	"strconv"
	"strings"
)

var errContentRange = errors.New("malformed Content-Range")

// ParseContentRange parses the Content-Range of an upload chunk: "start-end"
// (inclusive), optionally with a "bytes " or "bytes=" prefix. It returns
// the start and the length the range covers.
func ParseContentRange(s string) (start, length int64, err error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "bytes"); ok {
		s = strings.TrimLeft(rest, " =")
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i] // "start-end/total": the total is not needed
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, errContentRange
	}
	start, err1 := parseOffset(a)
	end, err2 := parseOffset(b)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, errContentRange
	}
	return start, end - start + 1, nil
}

func parseOffset(s string) (int64, error) {
	if s == "" || len(s) > 18 || s[0] == '+' || s[0] == '-' {
		return 0, errContentRange
	}
	return strconv.ParseInt(s, 10, 64)
}
