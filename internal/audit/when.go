package audit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTime reads a time bound of an audit query: an RFC 3339 time
// (2026-01-02T15:04:05Z) or an age, a Go duration or a number of days
// (90m, 1h, 7d), meaning that long before now.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := ParseAge(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor an age (90m, 1h, 7d)", s)
	}
	return now.Add(-d), nil
}

// ParseAge reads a non-negative Go duration or a number of days (7d).
func ParseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 || days > 365*100 {
			return 0, fmt.Errorf("age %q: want e.g. 90m, 1h or 7d", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("age %q: want e.g. 90m, 1h or 7d", s)
	}
	return d, nil
}
