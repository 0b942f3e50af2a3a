package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

// The berth container image (Dockerfile, .dockerignore, make image),
// built and run with Docker Engine.

const (
	// imageBuildTimeout bounds make image: a cold static build of berth
	// compiles every dependency again (-trimpath, CGO_ENABLED=0).
	imageBuildTimeout = 20 * time.Minute
	// imageStartTimeout bounds how long the container may take to answer
	// /healthz.
	imageStartTimeout = time.Minute
	// imageUser is the image's numeric user (and group).
	imageUser = "65532:65532"
)

// imageConfig is the part of docker image inspect the test reads.
type imageConfig struct {
	ID     string `json:"Id"`
	Config struct {
		User         string              `json:"User"`
		Entrypoint   []string            `json:"Entrypoint"`
		Cmd          []string            `json:"Cmd"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
		Volumes      map[string]struct{} `json:"Volumes"`
		WorkingDir   string              `json:"WorkingDir"`
	} `json:"Config"`
}

func inspectImage(t *testing.T, docker, ref string) imageConfig {
	t.Helper()
	out := run(t, docker, "image", "inspect", ref)
	var imgs []imageConfig
	mustUnmarshal(t, "docker image inspect "+ref, []byte(out), &imgs)
	if len(imgs) != 1 {
		t.Fatalf("docker image inspect %s: %d images", ref, len(imgs))
	}
	return imgs[0]
}

// imageFiles reads the layers of a saved image (docker save) and returns
// the tar header of every path in the image, the upper layers winning.
func imageFiles(t *testing.T, docker, ref string) map[string]*tar.Header {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.tar")
	run(t, docker, "image", "save", "-o", archive, ref)
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading docker save output: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries[hdr.Name] = data
	}
	var manifest []struct {
		Layers []string `json:"Layers"`
	}
	mustUnmarshal(t, "manifest.json of docker save", entries["manifest.json"], &manifest)
	if len(manifest) != 1 {
		t.Fatalf("docker save %s: manifest.json lists %d images", ref, len(manifest))
	}
	files := map[string]*tar.Header{}
	for _, layer := range manifest[0].Layers {
		data, ok := entries[layer]
		if !ok {
			t.Fatalf("docker save %s: layer %s missing", ref, layer)
		}
		lr := tar.NewReader(bytes.NewReader(data))
		for {
			hdr, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("reading layer %s: %v", layer, err)
			}
			files[strings.TrimSuffix(strings.TrimPrefix(hdr.Name, "./"), "/")] = hdr
		}
	}
	return files
}

// checkStaticBinary fails the test when the binary is dynamically linked, which
// a FROM scratch image could not run.
func checkStaticBinary(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (it has an ELF interpreter)", bin)
		}
	}
}

// imageHTTP sends one request to the berth in the container and reads
// the answer.
func imageHTTP(t *testing.T, method, u string, body []byte, header map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, u, err)
	}
	return resp.StatusCode, data
}

func imageBasicAuth(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

// TestContainerImage builds the image with make image (a FROM scratch
// image holding the static binary), runs it with Docker Engine on the host
// network with token auth and a non-root user, logs in with docker, pushes
// the berth image itself into the berth running in it, pulls it back and
// runs berth version from the pulled image.
// makeImage runs `make image` for VERSION and IMAGE into a context
// directory of the test's own, which it returns (bin/image/berth is the
// binary); the image is removed from the engine at cleanup.
func makeImage(t *testing.T, docker, version, image string) string {
	t.Helper()
	mk := needTool(t, "make")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	t.Cleanup(func() { execIn(t, "", nil, docker, "rmi", "-f", image) })
	ctx, cancel := context.WithTimeout(context.Background(), imageBuildTimeout)
	defer cancel()
	build := exec.CommandContext(ctx, mk, "image", "VERSION="+version, "IMAGE="+image, "IMAGE_CONTEXT="+ctxDir, "DOCKER="+docker)
	build.Dir = root
	start := time.Now()
	out, err := build.CombinedOutput()
	t.Logf("$ make image VERSION=%s IMAGE=%s IMAGE_CONTEXT=%s  (%s, %v)", version, image, ctxDir, time.Since(start).Round(time.Millisecond), exitStatus(err))
	if err != nil {
		t.Fatalf("make image failed: %v\n%s", err, truncate(string(out), 6000))
	}
	return ctxDir
}

func TestContainerImage(t *testing.T) {
	skipIfShort(t)
	docker := needDocker(t)
	version := "0.0.0-e2e." + randomHex(t, 4)
	image := "berth-e2e/berth:" + version
	ctxDir := makeImage(t, docker, version, image)
	bin := filepath.Join(ctxDir, "bin", "image", "berth")
	checkStaticBinary(t, bin)
	if got := run(t, bin, "version"); !strings.HasPrefix(got, "berth "+version+" ") {
		t.Errorf("the built binary's version: %q, want berth %s ...", strings.TrimSpace(got), version)
	}

	// The image: non-root, /data, port 5000, serve by default.
	cfg := inspectImage(t, docker, image)
	if cfg.Config.User != imageUser {
		t.Errorf("image user %q, want %s", cfg.Config.User, imageUser)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/berth" {
		t.Errorf("image entrypoint %q, want [/berth]", cfg.Config.Entrypoint)
	}
	if got := strings.Join(cfg.Config.Cmd, " "); got != "serve --addr :5000 --data-dir /data" {
		t.Errorf("image cmd %q, want serve --addr :5000 --data-dir /data", got)
	}
	if _, ok := cfg.Config.ExposedPorts["5000/tcp"]; !ok {
		t.Errorf("image exposes %v, want 5000/tcp", cfg.Config.ExposedPorts)
	}
	if _, ok := cfg.Config.Volumes["/data"]; !ok {
		t.Errorf("image volumes %v, want /data", cfg.Config.Volumes)
	}
	files := imageFiles(t, docker, image)
	if h := files["berth"]; h == nil || h.Mode&0o111 == 0 {
		t.Errorf("the image has no executable /berth: %+v", h)
	}
	if h := files["etc/ssl/certs/ca-certificates.crt"]; h == nil || h.Size == 0 {
		t.Errorf("the image has no CA certificates at /etc/ssl/certs/ca-certificates.crt")
	}
	if h := files["data"]; h == nil || h.Typeflag != tar.TypeDir || h.Uid != 65532 || h.Gid != 65532 {
		t.Errorf("/data in the image: %+v, want a directory owned by 65532:65532", h)
	}
	var extra []string
	for name := range files {
		switch {
		case name == "berth", name == "data", name == "etc", name == "etc/ssl", name == "etc/ssl/certs",
			name == "etc/ssl/certs/ca-certificates.crt":
		default:
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		t.Errorf("the image holds more than berth, the CA certificates and /data: %v", extra)
	}

	// Run it: host network (the daemon has no bridge), token auth.
	port, err := testserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	base := "http://" + addr
	pass := "admin-" + randomHex(t, 12)
	name := "berth-e2e-" + randomHex(t, 6)
	t.Cleanup(func() {
		if t.Failed() {
			r := execIn(t, "", nil, docker, "logs", "--tail", "60", name)
			t.Logf("last lines of the container's log:\n%s%s", r.Stdout, r.Stderr)
		}
		execIn(t, "", nil, docker, "rm", "-f", "-v", name)
	})
	// -e NAME takes the value from docker's environment: the password is
	// in no command line.
	mustSucceed(t, "docker run", execIn(t, "", []string{"BERTH_ADMIN_PASSWORD=" + pass}, docker,
		"run", "-d", "--name", name, "--network", "host", "-e", "BERTH_ADMIN_PASSWORD",
		image, "serve", "--addr", addr, "--data-dir", "/data", "--auth", "token"))
	waitImageHealthy(t, docker, name, base)
	if st, body := imageHTTP(t, http.MethodGet, base+"/readyz", nil, nil); st != http.StatusOK {
		t.Errorf("GET /readyz: %d %s", st, truncate(string(body), 200))
	}

	// It runs as the image's user, not root.
	if u := strings.TrimSpace(run(t, docker, "inspect", "-f", "{{.Config.User}}", name)); u != imageUser {
		t.Errorf("container user %q, want %s", u, imageUser)
	}
	top := lines(run(t, docker, "top", name, "-o", "pid,uid,comm"))
	if len(top) != 2 || len(strings.Fields(top[1])) < 2 || strings.Fields(top[1])[1] != "65532" {
		t.Errorf("docker top %s: %q, want one process of uid 65532", name, top)
	}

	// The admin makes the namespace berth; docker logs in as admin.
	st, body := imageHTTP(t, http.MethodPost, base+"/api/v1/namespaces", mustJSON(t, map[string]any{"name": "berth"}),
		map[string]string{"Authorization": imageBasicAuth("admin", pass), "Content-Type": "application/json"})
	if st != http.StatusCreated {
		t.Fatalf("creating the namespace berth: %d %s", st, truncate(string(body), 300))
	}
	d := newDockerClient(t, docker, addr)
	d.mustLogin("admin", pass)

	// Push the berth image into the berth running from it.
	ref := d.ref("berth/berth:test")
	d.run("tag", image, ref)
	d.created = append(d.created, ref)
	pushed := d.push(ref)
	t.Logf("pushed %s as %s", ref, pushed)

	// The registry holds that manifest, whose config is the image's.
	st, body = imageHTTP(t, http.MethodGet, base+"/token?"+url.Values{"service": {"berth"}, "scope": {"repository:berth/berth:pull"}}.Encode(), nil,
		map[string]string{"Authorization": imageBasicAuth("admin", pass)})
	var tok struct {
		Token string `json:"token"`
	}
	if st != http.StatusOK {
		t.Fatalf("GET /token: %d %s", st, truncate(string(body), 300))
	}
	mustUnmarshal(t, "token answer", body, &tok)
	st, body = imageHTTP(t, http.MethodGet, base+"/v2/berth/berth/manifests/test", nil,
		map[string]string{"Authorization": "Bearer " + tok.Token, "Accept": allManifestTypes})
	if st != http.StatusOK {
		t.Fatalf("GET the pushed manifest: %d %s", st, truncate(string(body), 300))
	}
	if got := sha256Digest(body); got != pushed {
		t.Errorf("the registry's manifest hashes to %s, docker pushed %s", got, pushed)
	}
	var man manifest
	mustUnmarshal(t, "pushed manifest", body, &man)
	if man.Config.Digest != cfg.ID {
		t.Errorf("the pushed manifest's config is %s, the image's ID %s", man.Config.Digest, cfg.ID)
	}

	// Remove the tag, pull it back: the same manifest and image.
	d.run("rmi", ref)
	if d.exec("image", "inspect", ref).Err == nil {
		t.Fatalf("%s is still there after docker rmi", ref)
	}
	if got := d.pull(ref); got != pushed {
		t.Errorf("docker pull %s reported %s, pushed %s", ref, got, pushed)
	}
	if id := inspectImage(t, docker, ref).ID; id != cfg.ID {
		t.Errorf("the pulled image is %s, the pushed one %s", id, cfg.ID)
	}
	if got := d.run("run", "--rm", "--network", "none", ref, "version"); !strings.HasPrefix(got, "berth "+version+" ") {
		t.Errorf("docker run %s version printed %q, want berth %s ...", ref, strings.TrimSpace(got), version)
	}

	// SIGTERM (docker stop) ends berth gracefully, well within the wait.
	start := time.Now()
	run(t, docker, "stop", "-t", "30", name)
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("docker stop took %s: berth did not end on SIGTERM", took.Round(time.Millisecond))
	}
	if code := strings.TrimSpace(run(t, docker, "inspect", "-f", "{{.State.ExitCode}}", name)); code != "0" {
		t.Errorf("berth exited with status %s after SIGTERM, want 0", code)
	}
}

// waitImageHealthy polls /healthz until it answers 200, failing the
// test when the container stops or imageStartTimeout passes.
func waitImageHealthy(t *testing.T, docker, name, base string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(imageStartTimeout)
	for i := 0; ; i++ {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if i%10 == 9 {
			if r := execIn(t, "", nil, docker, "inspect", "-f", "{{.State.Running}}", name); strings.TrimSpace(r.Stdout) != "true" {
				t.Fatalf("the container %s stopped before answering /healthz (%v)", name, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container %s did not answer /healthz within %s: %v", name, imageStartTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
