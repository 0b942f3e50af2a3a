package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/adminclient"
)

func TestReplicationRequest(t *testing.T) {
	req, err := replicationRequest("dr", "https://dr.example.com", "", "team/*", "v*", 0, false)
	if err != nil || req.Direction != "push" || req.URL != "https://dr.example.com" || req.Filter != "team/*" || req.Tags != "v*" || req.Every != "" {
		t.Errorf("push rule: %+v %v", req, err)
	}
	req, err = replicationRequest("up", "", "http://r.example:5000", "", "", 10*time.Minute, true)
	if err != nil || req.Direction != "pull" || req.Every != "10m0s" {
		t.Errorf("pull rule: %+v %v", req, err)
	}
	for _, c := range []struct {
		to, from string
		everySet bool
		want     string
	}{
		{"http://a", "http://b", false, "not both"},
		{"", "", false, "give --to"},
		{"http://a", "", true, "--every is for pull rules"},
	} {
		if _, err := replicationRequest("x", c.to, c.from, "", "", time.Second, c.everySet); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("to=%q from=%q every=%v: %v, want %q", c.to, c.from, c.everySet, err, c.want)
		}
	}
}

func TestReadRemotePassword(t *testing.T) {
	for in, want := range map[string]string{"s3cret\n": "s3cret", "s3cret\r\n": "s3cret", "s3cret": "s3cret", "a b\n\n": "a b\n"} {
		if got, err := readRemotePassword(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("readRemotePassword(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := readRemotePassword(strings.NewReader("\n")); err == nil {
		t.Error("an empty password was accepted")
	}
}

func TestReplicationTable(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rules := []adminclient.ReplicationRule{
		{Name: "dr", Direction: "push", URL: "https://dr.example.com", Filter: "team/*", Pending: 3, Dead: 1,
			LastError: "put blob team/app@sha256:abc: post: dial tcp 10.0.0.5:443:\nconnection refused"},
		{Name: "up", Direction: "pull", URL: "http://r.example", Tags: "v*", Every: "1h0m0s",
			LastRun: &adminclient.ReplicationRun{StartedAt: "2026-01-02T03:02:05Z", FinishedAt: "2026-01-02T03:02:09Z", Copied: 4, Skipped: 2}},
		{Name: "new", Direction: "pull", URL: "http://s.example", Every: "10m0s"},
	}
	var buf bytes.Buffer
	if err := replicationTable(&buf, rules, now); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines, want 4:\n%s", len(lines), out)
	}
	for i, want := range [][]string{
		{"NAME", "DIRECTION", "REMOTE", "FILTER", "TAGS", "PENDING", "DEAD", "LAST-ERROR", "LAST-RUN"},
		{"dr", "push", "https://dr.example.com", "team/*", "all", "3", "1", "put blob team/app@sha256:abc: post: dial tcp 10.0.0.5:443:", "-"},
		{"up", "pull", "http://r.example", "all", "v*", "-", "-", "2m ago: 4 copied, 2 skipped, 0 failed"},
		{"new", "pull", "never (every 10m)"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d lacks %q:\n%s", i, w, out)
			}
		}
	}
}
