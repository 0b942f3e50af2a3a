package audit

import (
	"fmt"
	"time"

	"github.com/berth-registry/berth/internal/retention"
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

// ParseAge reads a non-negative Go duration or a number of days (7d), as
// retention policies read their durations.
func ParseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("age %q: want e.g. 90m, 1h or 7d", s)
	}
	return retention.ParseDuration(s)
}
