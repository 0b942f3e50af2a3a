package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/adminclient"
)

// testMirrors are a Docker Hub mirror and a mirror of ghcr.io that also
// stands in for another host.
var testMirrors = []adminclient.Mirror{
	{Name: "ghcr", Namespace: "ghcr", Upstream: "https://ghcr.io", TagTTL: "1h0m0s", Hosts: []string{"ghcr.example.com:5000"}},
	{Name: "hub", Namespace: "hub", Upstream: "https://registry-1.docker.io", TagTTL: "10m0s", DockerHub: true, Hosts: []string{}},
}

func TestNodeConfigFiles(t *testing.T) {
	files, err := nodeConfig("http://berth.example.com:5000", testMirrors)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"docker/daemon.json",
		"containerd/certs.d/docker.io/hosts.toml",
		"containerd/certs.d/ghcr.example.com:5000/hosts.toml",
		"containerd/certs.d/ghcr.io/hosts.toml",
	}
	if got := nodeConfigOrder(files); !slices.Equal(got, want) {
		t.Fatalf("files = %q, want %q", got, want)
	}
	hub := "# berth mirror hub: containerd pulls docker.io images from berth, else from the server below.\n" +
		"server = \"https://registry-1.docker.io\"\n\n" +
		"[host.\"http://berth.example.com:5000\"]\n" +
		"  capabilities = [\"pull\", \"resolve\"]\n"
	if got := files["containerd/certs.d/docker.io/hosts.toml"]; got != hub {
		t.Errorf("docker.io hosts.toml:\n%s\nwant:\n%s", got, hub)
	}
	for _, h := range []string{"ghcr.io", "ghcr.example.com:5000"} {
		got := files["containerd/certs.d/"+h+"/hosts.toml"]
		for _, line := range []string{`server = "https://ghcr.io"`, `[host."http://berth.example.com:5000"]`, `  capabilities = ["pull", "resolve"]`, "berth mirror ghcr"} {
			if !strings.Contains(got, line+"\n") && !strings.Contains(got, line+":") {
				t.Errorf("%s hosts.toml lacks %q:\n%s", h, line, got)
			}
		}
		if strings.Contains(got, "skip_verify") || strings.Contains(got, "ca =") {
			t.Errorf("%s hosts.toml has TLS settings, an http:// host needs none:\n%s", h, got)
		}
	}
}

// TestNodeConfigDaemonJSON checks Docker Engine's registry-mirrors and
// when berth must be listed as an insecure registry.
func TestNodeConfigDaemonJSON(t *testing.T) {
	cases := []struct {
		url      string
		insecure []string
	}{
		{"http://berth.example.com:5000", []string{"berth.example.com:5000"}},
		{"http://berth.example.com", []string{"berth.example.com"}},
		{"http://10.0.0.7:30500", []string{"10.0.0.7:30500"}},
		{"https://berth.example.com", nil},
		{"https://berth.example.com:8443", nil},
		{"http://localhost:5000", nil},
		{"http://127.0.0.1:5000", nil},
		{"http://127.0.0.2", nil},
	}
	for _, tc := range cases {
		files, err := nodeConfig(tc.url, testMirrors)
		if err != nil {
			t.Fatal(err)
		}
		raw, ok := files["docker/daemon.json"]
		if !ok {
			t.Fatalf("%s: no daemon.json", tc.url)
		}
		var d map[string][]string
		if err := json.Unmarshal([]byte(raw), &d); err != nil {
			t.Fatalf("%s: daemon.json %q: %v", tc.url, raw, err)
		}
		if got := d["registry-mirrors"]; !slices.Equal(got, []string{tc.url}) {
			t.Errorf("%s: registry-mirrors = %q", tc.url, got)
		}
		if got, ok := d["insecure-registries"]; !slices.Equal(got, tc.insecure) || ok != (tc.insecure != nil) {
			t.Errorf("%s: insecure-registries = %q (present %v), want %q", tc.url, got, ok, tc.insecure)
		}
		hub := files["containerd/certs.d/docker.io/hosts.toml"]
		if !strings.Contains(hub, `[host."`+tc.url+`"]`) {
			t.Errorf("%s: docker.io hosts.toml does not point at berth:\n%s", tc.url, hub)
		}
	}
}

func TestNodeConfigWithoutDockerHub(t *testing.T) {
	files, err := nodeConfig("https://berth.example.com", testMirrors[:1])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files["docker/daemon.json"]; ok {
		t.Error("daemon.json without a Docker Hub mirror: Docker Engine mirrors only Docker Hub")
	}
	if _, ok := files["containerd/certs.d/docker.io/hosts.toml"]; ok {
		t.Error("docker.io hosts.toml without a Docker Hub mirror")
	}
	if got := files["containerd/certs.d/ghcr.io/hosts.toml"]; !strings.Contains(got, `[host."https://berth.example.com"]`) {
		t.Errorf("ghcr.io hosts.toml:\n%s", got)
	}
	if _, err := nodeConfig("berth.example.com", testMirrors); err == nil {
		t.Error("a berth URL without a scheme was taken")
	}
}

func TestWriteNodeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "containerd", "certs.d", "docker.io", "hosts.toml")
	if err := writeNodeFile(p, "x\n"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("stat %s: %v, %v", p, fi, err)
	}
}

func TestReadUpstreamPassword(t *testing.T) {
	for in, want := range map[string]string{"pw": "pw", "pw\n": "pw", "pw\r\n": "pw", "pw\n\n": "pw\n", " pw \n": " pw "} {
		if got, err := readUpstreamPassword(strings.NewReader(in)); err != nil || got != want {
			t.Errorf("readUpstreamPassword(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n"} {
		if _, err := readUpstreamPassword(strings.NewReader(in)); err == nil {
			t.Errorf("readUpstreamPassword(%q) took an empty password", in)
		}
	}
}

// TestMirrorFlagChecks runs mirror add and update with flags that do not
// go together: each must fail before connecting, with one line.
func TestMirrorFlagChecks(t *testing.T) {
	noCluster(t)
	cases := []struct {
		args []string
		says string
	}{
		{[]string{"mirror", "add", "hub", "--upstream", "https://registry-1.docker.io", "--username", "ci"}, "--username needs --password-stdin"},
		{[]string{"mirror", "add", "hub", "--upstream", "https://registry-1.docker.io", "--password-stdin"}, "--password-stdin needs --username"},
		{[]string{"mirror", "add", "hub"}, "--upstream is required"},
		{[]string{"mirror", "update", "hub", "--username", "ci"}, "--username needs --password-stdin"},
		{[]string{"mirror", "update", "hub", "--password-stdin"}, "--password-stdin needs --username"},
		{[]string{"mirror", "update", "hub", "--clear-credentials", "--username", "ci", "--password-stdin"}, "--clear-credentials makes the upstream anonymous"},
		{[]string{"mirror", "update", "hub"}, "nothing to change"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := rootCmd()
			var out bytes.Buffer
			root.SetArgs(tc.args)
			root.SetIn(strings.NewReader("secret\n"))
			root.SetOut(&out)
			root.SetErr(&out)
			err := root.Execute()
			if err == nil {
				t.Fatalf("no error; output:\n%s", out.String())
			}
			if msg := err.Error(); !strings.Contains(msg, tc.says) || strings.Contains(msg, "\n") {
				t.Errorf("error %q, want one line saying %q", msg, tc.says)
			}
		})
	}
}

// TestMirrorFlagsPass checks that flags that go together get past the
// checks: the command fails only for want of a server to talk to.
func TestMirrorFlagsPass(t *testing.T) {
	noCluster(t)
	for _, args := range [][]string{
		{"mirror", "add", "hub", "--upstream", "https://registry-1.docker.io", "--username", "ci", "--password-stdin", "--docker-hub", "--tag-ttl", "1h"},
		{"mirror", "update", "hub", "--docker-hub=false"},
		{"mirror", "update", "hub", "--host", ""},
		{"mirror", "update", "hub", "--clear-credentials"},
	} {
		root := rootCmd()
		root.SetArgs(args)
		root.SetIn(strings.NewReader("secret\n"))
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), "registry") {
			t.Errorf("berth %s: error %v, want one about no registry selected", strings.Join(args, " "), err)
		}
	}
}

func TestDescribeMirror(t *testing.T) {
	var b bytes.Buffer
	describeMirror(&b, testMirrors[1])
	describeMirror(&b, testMirrors[0])
	want := "mirror hub: hub/<path> pulls from https://registry-1.docker.io (tags re-checked after 10m)\n" +
		"Docker Hub names without a namespace in berth (alpine, bitnami/redis) and ?ns=docker.io resolve to it\n" +
		"mirror ghcr: ghcr/<path> pulls from https://ghcr.io (tags re-checked after 1h)\n" +
		"containerd pulls from ghcr.example.com:5000, ghcr.io (?ns=) resolve to it (node settings: berth mirror node-config)\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
