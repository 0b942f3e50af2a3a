package adminclient

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNormalizeURL(t *testing.T) {
	ok := map[string]string{
		"registry.example.com":             "https://registry.example.com",
		"Registry.Example.COM/":            "https://registry.example.com",
		"https://registry.example.com":     "https://registry.example.com",
		"https://registry.example.com:443": "https://registry.example.com",
		"HTTP://127.0.0.1:5000":            "http://127.0.0.1:5000",
		"http://localhost:80/":             "http://localhost",
		"localhost:5000":                   "https://localhost:5000",
		" http://[::1]:5000 ":              "http://[::1]:5000",
	}
	for in, want := range ok {
		got, err := NormalizeURL(in)
		if err != nil || got != want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                              "empty",
		"ftp://x":                       "unsupported URL scheme",
		"https://x/v2/":                 "must not have a path",
		"https://x?a=b":                 "must not have a path",
		"https://alice:hunter2@x":       "must not contain credentials",
		"https://":                      "invalid registry URL",
		"https://alice:hunter2@x:bad/%": "invalid registry URL",
	}
	for in, want := range bad {
		_, err := NormalizeURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NormalizeURL(%q) err = %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NormalizeURL(%q) error shows the password: %v", in, err)
		}
	}
}

func TestDefaultConfigPath(t *testing.T) {
	env := map[string]string{"BERTH_CONFIG_DIR": "/tmp/berthcfg"}
	got, err := DefaultConfigPath(func(k string) string { return env[k] })
	if err != nil || got != "/tmp/berthcfg/config.json" {
		t.Errorf("got %q, %v", got, err)
	}
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	t.Setenv("HOME", "/home/x")
	got, err = DefaultConfigPath(func(string) string { return "" })
	if err != nil || got != filepath.Join("/xdg", "berth", "config.json") {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestConfigSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "berth")
	path := filepath.Join(dir, "config.json")
	cfg, err := LoadConfig(path)
	if err != nil || cfg.Current != "" || len(cfg.Servers) != 0 {
		t.Fatalf("missing file: %+v, %v", cfg, err)
	}
	cfg.SetCredentials("https://r.example", "alice", "pa:ss")
	cfg.SetCredentials("http://127.0.0.1:5000", "bob", "x")
	cfg.Current = "https://r.example"
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	assertMode(t, dir, 0o700)
	assertMode(t, path, 0o600)

	data, _ := os.ReadFile(path)
	var onDisk map[string]any
	if err := json.Unmarshal(data, &onDisk); err != nil {
		t.Fatal(err)
	}
	servers := onDisk["servers"].(map[string]any)
	if onDisk["current"] != "https://r.example" ||
		servers["https://r.example"].(map[string]any)["auth"] != "YWxpY2U6cGE6c3M=" {
		t.Errorf("file = %s", data)
	}

	back, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	user, pass, ok, err := back.Credentials("https://r.example")
	if !ok || err != nil || user != "alice" || pass != "pa:ss" {
		t.Errorf("credentials = %q %q %v %v", user, pass, ok, err)
	}
	if _, _, ok, _ := back.Credentials("https://other"); ok {
		t.Error("credentials for an unknown server")
	}

	if !back.Remove("https://r.example") || back.Current != "" || back.Remove("https://r.example") {
		t.Errorf("remove: %+v", back)
	}
	if !back.Remove("http://127.0.0.1:5000") || len(back.Servers) != 0 {
		t.Errorf("remove: %+v", back)
	}
}

func TestSaveKeepsExistingDirAndTightensFile(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(`{"servers":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ := LoadConfig(path)
	cfg.SetCredentials("https://x", "a", "b")
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	assertMode(t, dir, 0o755)
	assertMode(t, path, 0o600)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "not a valid berth config file") {
		t.Errorf("err = %v", err)
	}
	cfg := &Config{Servers: map[string]ServerEntry{"https://x": {Auth: "!!!"}, "https://y": {Auth: "bm9jb2xvbg=="}}}
	for _, u := range []string{"https://x", "https://y"} {
		if _, _, _, err := cfg.Credentials(u); err == nil || !strings.Contains(err.Error(), "run: berth login "+u) {
			t.Errorf("%s: err = %v", u, err)
		}
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s mode = %o, want %o", path, got, want)
	}
}
