package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func load(t *testing.T, args []string, env map[string]string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs, func(k string) string { return env[k] })
}

func TestDefaults(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":5000" || c.DataDir != "./data" || c.Auth != "token" || c.MaxManifestSize != 4<<20 || c.UploadTTL != 24*time.Hour {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "berth.yaml")
	if err := os.WriteFile(file, []byte("addr: 127.0.0.1:1\ndata_dir: /from/file\nupload_ttl: 1h\nlog_format: json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"BERTH_CONFIG": file, "BERTH_ADDR": "127.0.0.1:2", "BERTH_DATA_DIR": "/from/env"}
	c, err := load(t, []string{"--data-dir", "/from/flag"}, env)
	if err != nil {
		t.Fatal(err)
	}
	// flag > env > file > default
	if c.DataDir != "/from/flag" || c.Addr != "127.0.0.1:2" || c.UploadTTL != time.Hour || c.LogFormat != "json" || c.LogLevel != "info" {
		t.Fatalf("config = %+v", c)
	}
	// --config wins over BERTH_CONFIG.
	other := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(other, []byte("log_level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = load(t, []string{"--config", other}, env)
	if err != nil || c.LogLevel != "debug" || c.LogFormat != "text" {
		t.Fatalf("--config: %+v %v", c, err)
	}
}

func TestRejects(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(body string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", n))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"unknown key":  {[]string{"--config", write("adr: x\n")}, nil, `unknown setting "adr"`},
		"bad yaml":     {[]string{"--config", write("addr: [\n")}, nil, "not valid YAML"},
		"nested":       {[]string{"--config", write("addr:\n  a: b\n")}, nil, "want a single value"},
		"bad duration": {nil, map[string]string{"BERTH_UPLOAD_TTL": "soon"}, "BERTH_UPLOAD_TTL"},
		"bad level":    {[]string{"--log-level", "loud"}, nil, "--log-level"},
		"bad auth":     {[]string{"--auth", "maybe"}, nil, "want one of token, none"},
		"bad size":     {[]string{"--max-manifest-size", "-1"}, nil, "--max-manifest-size"},
		"missing file": {[]string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "read configuration"},
	}
	for name, c := range cases {
		_, err := load(t, c.args, c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.want)
		}
	}
}
