package config

import (
	"testing"
	"time"
)

// TestAuditSettings: the audit output and retention, their defaults, days
// and 0, and the values refused.
func TestAuditSettings(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.AuditLog != "file" || c.AuditRetention != 90*24*time.Hour {
		t.Fatalf("defaults: audit_log %q, audit_retention %s", c.AuditLog, c.AuditRetention)
	}
	for _, ok := range []struct {
		args []string
		log  string
		keep time.Duration
	}{
		{[]string{"--audit-log", "stdout", "--audit-retention", "0"}, "stdout", 0},
		{[]string{"--audit-log", "none", "--audit-retention", "30d"}, "none", 30 * 24 * time.Hour},
		{[]string{"--audit-retention", "36h"}, "file", 36 * time.Hour},
	} {
		c, err := load(t, ok.args, nil)
		if err != nil || c.AuditLog != ok.log || c.AuditRetention != ok.keep {
			t.Errorf("%v: %+v, %v", ok.args, c, err)
		}
	}
	c, err = load(t, nil, map[string]string{"BERTH_AUDIT_LOG": "stdout", "BERTH_AUDIT_RETENTION": "7d"})
	if err != nil || c.AuditLog != "stdout" || c.AuditRetention != 7*24*time.Hour {
		t.Errorf("environment: %+v, %v", c, err)
	}
	for _, bad := range [][]string{{"--audit-log", "syslog"}, {"--audit-retention", "-1h"}, {"--audit-retention", "forever"},
		{"--audit-retention", "-2d"}, {"--audit-retention", "1w"}} {
		if _, err := load(t, bad, nil); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
