package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A complete single-node Kubernetes for end-to-end tests of image pulls from
// berth (imagePullSecrets, credential providers, the Helm chart...), started
// by scripts/k8s/cluster.sh with the binaries scripts/k8s/build.sh caches in
// $BERTH_TOOLS_DIR (test-deps.sh runs it): containerd, etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, a kubelet, kube-proxy, a CNI pod
// network and a local-path volume provisioner (default StorageClass), all
// inside a network namespace of its own. The host reaches the API server
// through a forwarded port (the kubeconfig's); a registry a test runs on the
// host is made reachable inside with AddPlainHTTPRegistry or ForwardIn, and
// a NodePort on the host with ForwardOut.

const (
	// clusterStartTimeout bounds `cluster.sh up`, which may first wait for
	// another test's cluster to stop (one runs at a time per machine).
	clusterStartTimeout = 8 * time.Minute
	// clusterStopTimeout bounds `cluster.sh down`.
	clusterStopTimeout = 3 * time.Minute
	// clusterMissingExit is cluster.sh's exit status when binaries or
	// packages it needs are not installed.
	clusterMissingExit = 3
)

// k8sCluster is a cluster started for one test by startCluster.
type k8sCluster struct {
	// Dir holds all of the cluster's state (a test temp dir).
	Dir string
	// Kubeconfig is a cluster-admin kubeconfig.
	Kubeconfig string
	// NodeName is the only node's name, for spec.nodeName.
	NodeName string
	// ContainerdSocket is the CRI endpoint of the node's containerd (for
	// crictl: --runtime-endpoint unix://<ContainerdSocket>).
	ContainerdSocket string
	// Kubectl is the kubectl binary matching the cluster's version.
	Kubectl string
	// NodeIP is the node's address inside the cluster's network namespace.
	NodeIP string
	// script is cluster.sh.
	script string
}

// clusterScript returns the absolute path of scripts/k8s/cluster.sh.
func clusterScript(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "scripts", "k8s", "cluster.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startCluster starts a single-node Kubernetes under a temp dir, waits for
// its node to be Ready and registers its teardown. The test is skipped (or
// fails under CI=true) when the cluster's binaries are not installed or the
// test does not run as root. Starting takes seconds once the binaries are
// built; `cluster.sh down` runs in the cleanup, and also by itself should
// the test binary die first.
func startCluster(t *testing.T) *k8sCluster {
	t.Helper()
	skipIfShort(t)
	if os.Geteuid() != 0 {
		missing(t, "a Kubernetes cluster needs root (the kubelet and containerd do)")
	}
	for _, tool := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet", "kubectl"} {
		if findTool(tool) == "" {
			missing(t, "%s not found on PATH or in %s (scripts/test-deps.sh builds it with scripts/k8s/build.sh; "+
				"the first build takes 5-20 minutes)", tool, toolsBinDir())
		}
	}
	script := clusterScript(t)
	dir := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, "up", dir)
	cmd.Env = append(os.Environ(),
		// A watchdog tears the cluster down if this process dies before
		// its cleanup runs.
		"BERTH_K8S_OWNER_PID="+strconv.Itoa(os.Getpid()),
		"BERTH_K8S_WAIT="+strconv.Itoa(int((clusterStartTimeout-2*time.Minute).Seconds())),
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	// Registered even when up failed: down is safe after a partial up.
	t.Cleanup(func() { stopCluster(t, script, dir) })
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == clusterMissingExit {
			missing(t, "cannot start a Kubernetes cluster: %s", strings.TrimSpace(out.String()))
		}
		t.Fatalf("cluster.sh up %s: %v\n%s", dir, err, out.String())
	}
	t.Logf("Kubernetes cluster up in %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(lastLine(out.String())))

	env := run(t, "bash", script, "env", dir)
	c := &k8sCluster{Dir: dir, script: script}
	for _, line := range lines(env) {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "KUBECONFIG":
			c.Kubeconfig = v
		case "NODE_NAME":
			c.NodeName = v
		case "CONTAINERD_SOCKET":
			c.ContainerdSocket = v
		case "KUBECTL":
			c.Kubectl = v
		case "NODE_IP":
			c.NodeIP = v
		}
	}
	if c.Kubeconfig == "" || c.NodeName == "" || c.ContainerdSocket == "" || c.Kubectl == "" || c.NodeIP == "" {
		t.Fatalf("cluster.sh env %s printed an incomplete environment:\n%s", dir, env)
	}
	// Runs before the teardown (cleanups run last-registered first).
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpDiagnostics(t)
		}
	})
	return c
}

// stopCluster runs `cluster.sh down DIR`; a failure is a test error, as it
// would leave processes or mounts behind.
func stopCluster(t *testing.T, script, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterStopTimeout)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "bash", script, "down", dir).CombinedOutput()
	if err != nil {
		t.Errorf("cluster.sh down %s: %v\n%s", dir, err, out)
		return
	}
	t.Logf("Kubernetes cluster down in %s", time.Since(start).Round(time.Millisecond))
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	l := lines(s)
	if len(l) == 0 {
		return ""
	}
	return l[len(l)-1]
}

// AddPlainHTTPRegistry lets the node's containerd pull from a registry on
// the host at hostPort (e.g. 127.0.0.1:41234) over plain HTTP: the address
// is forwarded into the cluster (ForwardIn) and containerd gets its
// hosts.toml. It takes effect for the next pull: no restart is needed.
func (c *k8sCluster) AddPlainHTTPRegistry(t *testing.T, hostPort string) {
	t.Helper()
	c.ForwardIn(t, hostPort)
	c.PlainHTTPHost(t, hostPort)
}

// ForwardIn makes the host's 127.0.0.1:PORT (hostPort's port) reachable at
// the same address inside the cluster's network namespace.
func (c *k8sCluster) ForwardIn(t *testing.T, hostPort string) {
	t.Helper()
	_, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatalf("ForwardIn(%q): %v", hostPort, err)
	}
	run(t, "bash", c.script, "forward", c.Dir, "in", port)
}

// ForwardOut makes addr inside the cluster's network namespace (a NodePort
// at 127.0.0.1:PORT, say) reachable on the host at 127.0.0.1:port.
func (c *k8sCluster) ForwardOut(t *testing.T, port int, addr string) {
	t.Helper()
	run(t, "bash", c.script, "forward", c.Dir, "out", strconv.Itoa(port), addr)
}

// PlainHTTPHost writes containerd's hosts.toml for hostPort: pulls from it
// use plain HTTP.
func (c *k8sCluster) PlainHTTPHost(t *testing.T, hostPort string) {
	t.Helper()
	toml := fmt.Sprintf(`server = "http://%[1]s"

[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
`, hostPort)
	writeFile(t, filepath.Join(c.Dir, "certs.d", hostPort, "hosts.toml"), []byte(toml))
}

// kubectlIn runs kubectl against the cluster with stdin (may be empty); it
// never fails the test.
func (c *k8sCluster) kubectlIn(t *testing.T, stdin string, args ...string) cmdResult {
	t.Helper()
	return execStdin(t, nil, stdin, c.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
}

// kubectl runs kubectl against the cluster and fails the test if it fails;
// it returns stdout.
func (c *k8sCluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return mustSucceed(t, "kubectl "+strings.Join(args, " "), c.kubectlIn(t, "", args...))
}

// apply runs `kubectl apply -f -` on a manifest.
func (c *k8sCluster) apply(t *testing.T, manifest string) {
	t.Helper()
	mustSucceed(t, "kubectl apply", c.kubectlIn(t, manifest, "apply", "-f", "-"))
}

// podState is what the tests read of a Pod's status.
type podState struct {
	Phase      string
	Containers []containerState
}

// containerState is one container's status: Waiting holds the reason while
// it waits (ErrImagePull, ImagePullBackOff...), with Message.
type containerState struct {
	Name    string
	Image   string
	ImageID string
	Running bool
	Waiting string
	Message string
}

func (s podState) String() string {
	var b strings.Builder
	b.WriteString("phase=" + s.Phase)
	for _, c := range s.Containers {
		switch {
		case c.Running:
			fmt.Fprintf(&b, " %s=Running(%s)", c.Name, c.ImageID)
		case c.Waiting != "":
			fmt.Fprintf(&b, " %s=%s(%s)", c.Name, c.Waiting, c.Message)
		default:
			fmt.Fprintf(&b, " %s=?", c.Name)
		}
	}
	return b.String()
}

// pod reads the state of Pod ns/name.
func (c *k8sCluster) pod(t *testing.T, ns, name string) podState {
	t.Helper()
	out := c.kubectl(t, "get", "pod", "-n", ns, name, "-o", "json")
	var p struct {
		Status struct {
			Phase             string `json:"phase"`
			ContainerStatuses []struct {
				Name    string `json:"name"`
				Image   string `json:"image"`
				ImageID string `json:"imageID"`
				State   struct {
					Running *struct{} `json:"running"`
					Waiting *struct {
						Reason  string `json:"reason"`
						Message string `json:"message"`
					} `json:"waiting"`
				} `json:"state"`
			} `json:"containerStatuses"`
		} `json:"status"`
	}
	mustUnmarshal(t, "pod "+ns+"/"+name, []byte(out), &p)
	s := podState{Phase: p.Status.Phase}
	for _, cs := range p.Status.ContainerStatuses {
		st := containerState{Name: cs.Name, Image: cs.Image, ImageID: cs.ImageID, Running: cs.State.Running != nil}
		if w := cs.State.Waiting; w != nil {
			st.Waiting, st.Message = w.Reason, w.Message
		}
		s.Containers = append(s.Containers, st)
	}
	return s
}

// waitPod polls Pod ns/name until done says so, failing the test after
// timeout; it returns the last state seen.
func (c *k8sCluster) waitPod(t *testing.T, ns, name string, timeout time.Duration, done func(podState) bool) podState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := c.pod(t, ns, name)
		if done(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s/%s: still not as expected after %s: %s", ns, name, timeout, s)
		}
		time.Sleep(time.Second)
	}
}

// waitPodRunning waits for every container of Pod ns/name to run. It fails
// early when a container is stuck in an error state.
func (c *k8sCluster) waitPodRunning(t *testing.T, ns, name string, timeout time.Duration) podState {
	t.Helper()
	return c.waitPod(t, ns, name, timeout, func(s podState) bool {
		if s.Phase == "Failed" || s.Phase == "Succeeded" {
			t.Fatalf("pod %s/%s ended instead of running: %s", ns, name, s)
		}
		running := len(s.Containers) > 0
		for _, cs := range s.Containers {
			switch cs.Waiting {
			case "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff", "CreateContainerError",
				"CreateContainerConfigError", "RunContainerError":
				t.Fatalf("pod %s/%s cannot run: %s", ns, name, s)
			}
			running = running && cs.Running
		}
		return s.Phase == "Running" && running
	})
}

// dumpDiagnostics logs what helps to understand a failed test: the Pods,
// their events, and the ends of the kubelet's and containerd's logs.
func (c *k8sCluster) dumpDiagnostics(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{
		{"get", "nodes,pods", "-A", "-o", "wide"},
		{"describe", "pods", "-A"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
	} {
		r := c.kubectlIn(t, "", args...)
		t.Logf("kubectl %s:\n%s%s", strings.Join(args, " "), truncate(r.Stdout, 8000), r.Stderr)
	}
	for _, name := range []string{"kubelet", "containerd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "provisioner"} {
		t.Logf("%s.log (end):\n%s", name, tailFile(filepath.Join(c.Dir, "logs", name+".log"), 40))
	}
}

// executableLayerTar is layerTar for executables (mode 0755).
func executableLayerTar(t *testing.T, files ...testFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	dirs := map[string]bool{}
	for _, f := range files {
		if d := filepath.Dir(f.Name); d != "." && !dirs[d] {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime}); err != nil {
				t.Fatal(err)
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Mode: 0o755, Size: int64(len(f.Data)), ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newBusyboxImage builds a FROM scratch linux/amd64 OCI image holding the
// static busybox as /bin/busybox, whose default command is `busybox sleep
// 3600`: a container that runs until it is stopped.
func newBusyboxImage(t *testing.T) *ociImage {
	t.Helper()
	needStaticBusybox(t)
	data, err := os.ReadFile(staticBusybox)
	if err != nil {
		t.Fatal(err)
	}
	files := []testFile{{Name: "bin/busybox", Data: data}}
	raw := executableLayerTar(t, files...)
	img := &ociImage{Files: files, Layer: gzipBytes(t, raw)}
	img.LayerDigest = sha256Digest(img.Layer)
	img.Config = mustJSON(t, map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"Entrypoint": []string{"/bin/busybox"},
			"Cmd":        []string{"sleep", "3600"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{sha256Digest(raw)}},
	})
	img.ConfigDigest = sha256Digest(img.Config)
	img.Manifest = mustJSON(t, manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeOCIManifest,
		Config:        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: img.ConfigDigest, Size: int64(len(img.Config))},
		Layers:        []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: img.LayerDigest, Size: int64(len(img.Layer))}},
	})
	img.ManifestDigest = sha256Digest(img.Manifest)
	return img
}

// clusterWithBusybox starts a cluster and an open berth on the host that
// holds the busybox image (newBusyboxImage) as smoke/busybox:v1, which the
// node may pull; it returns the cluster, the image and its reference.
func clusterWithBusybox(t *testing.T) (*k8sCluster, *ociImage, string) {
	t.Helper()
	c := startCluster(t)
	img := newBusyboxImage(t)
	dir := t.TempDir()
	b := startRawBerth(t, filepath.Join(dir, "data"), filepath.Join(dir, "berth.log"))
	pushImageWithToken(t, b.URL, "", "smoke/busybox", "v1", img)
	c.AddPlainHTTPRegistry(t, b.Addr)
	return c, img, b.Addr + "/smoke/busybox:v1"
}

// TestKubernetesSmoke runs a Pod whose image the kubelet pulls from berth
// (no authentication) over plain HTTP: the cluster works end to end.
func TestKubernetesSmoke(t *testing.T) {
	c, img, image := clusterWithBusybox(t)
	pod, _ := json.Marshal(map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": "smoke", "namespace": "default"},
		"spec": map[string]any{
			"nodeName":                      c.NodeName,
			"restartPolicy":                 "Never",
			"terminationGracePeriodSeconds": 1,
			"containers": []map[string]any{{
				"name":            "main",
				"image":           image,
				"imagePullPolicy": "Always",
			}},
		},
	})
	c.apply(t, string(pod))
	s := c.waitPodRunning(t, "default", "smoke", 3*time.Minute)
	if got := s.Containers[0].ImageID; !strings.HasSuffix(got, "@"+img.ManifestDigest) {
		t.Errorf("container runs image %q, want the pushed manifest %s", got, img.ManifestDigest)
	}
	t.Logf("pod running: %s", s)

	// The API server reaches the kubelet (exec, logs) and the projected
	// service-account volume is there.
	out := c.kubectl(t, "exec", "-n", "default", "smoke", "--", "/bin/busybox", "cat",
		"/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if strings.TrimSpace(out) != "default" {
		t.Errorf("service-account namespace file in the container: %q, want \"default\"", out)
	}
}
