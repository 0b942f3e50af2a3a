package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mirrorsForNodes starts the upstreams and the mirror of the node tests:
// a berth holding library/busybox:latest (a runnable busybox) as Docker
// Hub, Distribution 2.8 holding team/app:v1 as a second registry host,
// and an open berth mirroring both; it returns the mirror, the two images
// and the hosts.toml files `berth mirror node-config` wrote for them.
func mirrorsForNodes(t *testing.T) (b *proc, dist *distribution, busybox, app *ociImage, certsDir string) {
	t.Helper()
	hub := startBerth(t)
	busybox = newBusyboxImage(t)
	pushOpen(t, hub.URL, "library/busybox", "latest", busybox)
	dist = startDistribution(t)
	app = newOCIImage(t, testFile{Name: "app.txt", Data: []byte("app " + randomHex(t, 8))})
	pushOpen(t, dist.URL, "team/app", "v1", app)

	b = start(t, launch{Args: []string{"--auth=none"}})
	mustSucceed(t, "berth mirror add hub", execIn(t, "", nil, berthBin, "mirror", "add", "hub", "--upstream", hub.URL, "--docker-hub", "--registry", b.URL))
	mustSucceed(t, "berth mirror add dist", execIn(t, "", nil, berthBin, "mirror", "add", "dist", "--upstream", dist.URL, "--registry", b.URL))
	out := t.TempDir()
	mustSucceed(t, "berth mirror node-config", execIn(t, "", nil, berthBin, "mirror", "node-config", "--registry", b.URL, "--out", out))
	certsDir = filepath.Join(out, "containerd", "certs.d")
	for _, host := range []string{"docker.io", dist.Addr} {
		data, err := os.ReadFile(filepath.Join(certsDir, host, "hosts.toml"))
		if err != nil || !strings.Contains(string(data), `[host."`+b.URL+`"]`) {
			t.Fatalf("node-config wrote no hosts.toml for %s sending pulls to %s: %v\n%s", host, b.URL, err, data)
		}
	}
	daemon, err := os.ReadFile(filepath.Join(out, "docker", "daemon.json"))
	var dj struct {
		Mirrors []string `json:"registry-mirrors"`
	}
	if err != nil || json.Unmarshal(daemon, &dj) != nil || len(dj.Mirrors) != 1 || dj.Mirrors[0] != b.URL {
		t.Errorf("node-config daemon.json: %v\n%s", err, daemon)
	}
	return b, dist, busybox, app, certsDir
}

// copyTree copies the files under src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		writeFile(t, filepath.Join(dst, rel), data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// cachedTags lists what the mirror holds of a repository.
func cachedTags(t *testing.T, b *proc, repo string) string {
	t.Helper()
	r := authDo(t, http.MethodGet, b.URL+"/v2/"+repo+"/tags/list", nil)
	return string(r.Body)
}

// TestMirrorContainerd: containerd, with the hosts.toml files `berth
// mirror node-config` writes, pulls docker.io/library/busybox:latest and
// <distribution host>/team/app:v1 through one berth endpoint (crictl, as
// the kubelet pulls), and berth keeps both.
func TestMirrorContainerd(t *testing.T) {
	skipIfShort(t)
	crictl := needTool(t, "crictl")
	b, dist, busybox, app, certsDir := mirrorsForNodes(t)
	ctrd := startContainerdWith(t, func(dir string) { copyTree(t, certsDir, dir) })
	cri := newCRIClient(t, crictl, ctrd)

	mustSucceed(t, "crictl pull docker.io/library/busybox:latest", cri.run("pull", "docker.io/library/busybox:latest"))
	if id := cri.imageID("docker.io/library/busybox:latest"); id != busybox.ConfigDigest {
		t.Errorf("containerd holds busybox as %q, want the upstream's config %s", id, busybox.ConfigDigest)
	}
	second := dist.Addr + "/team/app:v1"
	mustSucceed(t, "crictl pull "+second, cri.run("pull", second))
	if id := cri.imageID(second); id != app.ConfigDigest {
		t.Errorf("containerd holds %s as %q, want %s", second, id, app.ConfigDigest)
	}
	// Both came through berth, which kept them.
	if tags := cachedTags(t, b, "hub/library/busybox"); !strings.Contains(tags, `"latest"`) {
		t.Errorf("berth did not keep docker.io's busybox: %s", tags)
	}
	if tags := cachedTags(t, b, "dist/team/app"); !strings.Contains(tags, `"v1"`) {
		t.Errorf("berth did not keep %s: %s", second, tags)
	}
	// containerd asked berth with docker.io's own repository name.
	if log := tailFile(b.LogPath, 200); !strings.Contains(log, "path=/v2/library/busybox/manifests/") {
		t.Errorf("berth's log shows no request for /v2/library/busybox/manifests/:\n%s", log)
	}
}

// TestMirrorKubernetesPod: on the single-node Kubernetes, whose containerd
// has the hosts.toml files of `berth mirror node-config`, a Pod with
// image docker.io/library/busybox:latest reaches Running through berth.
func TestMirrorKubernetesPod(t *testing.T) {
	c := startCluster(t)
	b, _, busybox, _, certsDir := mirrorsForNodes(t)
	copyTree(t, certsDir, filepath.Join(c.Dir, "certs.d"))
	c.ForwardIn(t, b.Addr)
	pod, _ := json.Marshal(map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": "hub", "namespace": "default"},
		"spec": map[string]any{
			"nodeName":                      c.NodeName,
			"restartPolicy":                 "Never",
			"terminationGracePeriodSeconds": 1,
			"containers":                    []map[string]any{{"name": "main", "image": "docker.io/library/busybox:latest", "imagePullPolicy": "Always"}},
		},
	})
	c.apply(t, string(pod))
	s := c.waitPodRunning(t, "default", "hub", 3*time.Minute)
	if got := s.Containers[0].ImageID; !strings.HasSuffix(got, "@"+busybox.ManifestDigest) {
		t.Errorf("container runs image %q, want the upstream's %s", got, busybox.ManifestDigest)
	}
	if tags := cachedTags(t, b, "hub/library/busybox"); !strings.Contains(tags, `"latest"`) {
		t.Errorf("berth did not keep the pod's image: %s", tags)
	}
}
