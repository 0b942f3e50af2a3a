package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Helm chart installed on the test cluster (scripts/k8s/cluster.sh),
// the way a user would: berth's image made by `make image`, pushed into a
// bootstrap berth on the host and pulled from there by the kubelet with a
// pull Secret that `berth secret create` made from docker login's config;
// then the in-cluster berth serves the cluster's own pulls through its
// NodePort Service.

// chartInstallTimeout bounds helm install --wait (image pull, first start
// with its migrations, readiness).
const chartInstallTimeout = 5 * time.Minute

// bootImage is berth's image as the cluster pulls it.
type bootImage struct {
	// Repository and Tag name the image in the bootstrap registry.
	Repository, Tag string
	// DockerConfig is the config.json docker login to the bootstrap
	// registry wrote.
	DockerConfig string
	// Registry is the bootstrap registry's host:port.
	Registry string
	// docker is logged in to the bootstrap registry.
	docker *dockerClient
}

// publishBerthImage builds berth's image with `make image`, pushes it with
// Docker Engine into a bootstrap berth on the host (token auth, namespace
// berth) and makes that registry reachable from the cluster over plain
// HTTP.
func publishBerthImage(t *testing.T, c *k8sCluster, docker string) *bootImage {
	t.Helper()
	boot := startAuthBerth(t)
	createNamespace(t, boot, "berth")
	version := "0.0.0-e2e." + randomHex(t, 4)
	local := "berth-e2e/berth:" + version
	makeImage(t, docker, version, local)
	d := newDockerClient(t, docker, boot.Addr)
	d.mustLogin("admin", boot.AdminPassword)
	ref := d.ref("berth/berth:" + version)
	d.run("tag", local, ref)
	d.created = append(d.created, ref)
	t.Logf("pushed %s as %s", ref, d.push(ref))
	c.AddPlainHTTPRegistry(t, boot.Addr)
	return &bootImage{
		Repository:   boot.Addr + "/berth/berth",
		Tag:          version,
		DockerConfig: filepath.Join(d.cfgDir, "config.json"),
		Registry:     boot.Addr,
		docker:       d,
	}
}

// newVersion builds berth's image again with another version (so another
// binary and image digest), pushes it next to the first and returns its
// tag: what `helm upgrade` moves to.
func (img *bootImage) newVersion(t *testing.T) string {
	t.Helper()
	version := "0.0.0-e2e." + randomHex(t, 4)
	local := "berth-e2e/berth:" + version
	makeImage(t, img.docker.bin, version, local)
	ref := img.Repository + ":" + version
	img.docker.run("tag", local, ref)
	img.docker.created = append(img.docker.created, ref)
	t.Logf("pushed %s as %s", ref, img.docker.push(ref))
	return version
}

// prepareNamespace creates Kubernetes namespace ns with the Secret
// berth-pull that `berth secret create --from-docker-config --apply` makes
// from docker login's config for the bootstrap registry.
func prepareNamespace(t *testing.T, c *k8sCluster, img *bootImage, ns string) {
	t.Helper()
	c.kubectl(t, "create", "namespace", ns)
	mustSucceed(t, "berth secret create berth-pull --from-docker-config --apply", berthKube(t, []string{"KUBECONFIG=" + c.Kubeconfig}, "",
		"secret", "create", "berth-pull", "--from-docker-config", img.DockerConfig, "--registry-host", img.Registry,
		"--apply", "--kubeconfig", c.Kubeconfig, "-n", ns))
}

// createNamespace makes berth namespace name through the admin API.
func createNamespace(t *testing.T, b *authBerth, name string) {
	t.Helper()
	st, body := imageHTTP(t, http.MethodPost, b.URL+"/api/v1/namespaces", mustJSON(t, map[string]any{"name": name}),
		map[string]string{"Authorization": imageBasicAuth("admin", b.AdminPassword), "Content-Type": "application/json"})
	if st != http.StatusCreated {
		t.Fatalf("creating the namespace %s on %s: %d %s", name, b.Addr, st, truncate(string(body), 300))
	}
}

// chartRelease is the chart installed on a test cluster, its Service
// published on the host's 127.0.0.1 under its node port.
type chartRelease struct {
	c             *k8sCluster
	helm          string
	Namespace     string
	Name          string
	NodePort      int
	AdminPassword string
	// Berth is the in-cluster berth as the test's clients see it (its
	// NodePort through ForwardOut); its proc has no process of its own.
	Berth *authBerth
}

// installChart installs the chart as release name in namespace ns (made
// by prepareNamespace), with the image from img, a NodePort Service, the
// extra --set values and secretValues (YAML, given in a file so that no
// secret is on a command line); it waits until the release is Ready,
// publishes the NodePort on the host and lets the node pull from it over
// plain HTTP.
// nodePort 0 picks a free one.
func installChart(t *testing.T, c *k8sCluster, helm string, img *bootImage, ns, name string, nodePort int, secretValues string, sets ...string) *chartRelease {
	t.Helper()
	if nodePort == 0 {
		nodePort = freeNodePort(t)
	}
	r := &chartRelease{c: c, helm: helm, Namespace: ns, Name: name, NodePort: nodePort, AdminPassword: "adm-" + randomHex(t, 12)}
	args := []string{"install", name, chartDir(t), "--namespace", ns, "--kubeconfig", c.Kubeconfig,
		"--wait", "--timeout", chartInstallTimeout.String(),
		"--set", "image.repository=" + img.Repository, "--set", "image.tag=" + img.Tag,
		"--set", "imagePullSecrets[0].name=berth-pull",
		"--set", "service.type=NodePort", "--set", "service.nodePort=" + strconv.Itoa(r.NodePort),
		"--set", "persistence.size=1Gi",
		"--set", "shutdownTimeoutSeconds=10",
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	values := filepath.Join(t.TempDir(), "secrets.yaml")
	writeFile(t, values, []byte(fmt.Sprintf("auth:\n  adminPassword: %q\n", r.AdminPassword)+secretValues))
	args = append(args, "-f", values)
	t.Cleanup(func() {
		if t.Failed() {
			r.dumpDiagnostics(t)
		}
	})
	start := time.Now()
	mustSucceed(t, "helm install", execIn(t, "", nil, helm, args...))
	t.Logf("helm install %s (%s) Ready after %s", name, img.Tag, time.Since(start).Round(time.Millisecond))

	addr := "127.0.0.1:" + strconv.Itoa(r.NodePort)
	c.ForwardOut(t, r.NodePort, addr)
	c.PlainHTTPHost(t, addr)
	r.Berth = &authBerth{proc: &proc{server: &server{Addr: addr, URL: "http://" + addr}}, AdminPassword: r.AdminPassword}
	return r
}

// dumpDiagnostics logs the release's objects and berth's log.
func (r *chartRelease) dumpDiagnostics(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{
		{"get", "all,pvc,pv,secrets", "-n", r.Namespace, "-o", "wide"},
		{"describe", "pods", "-n", r.Namespace},
		{"logs", "-n", r.Namespace, "-l", "app.kubernetes.io/instance=" + r.Name, "--tail", "60", "--prefix"},
	} {
		res := r.c.kubectlIn(t, "", args...)
		t.Logf("kubectl %s:\n%s%s", strings.Join(args, " "), truncate(res.Stdout, 8000), res.Stderr)
	}
}

// TestHelmInstallEmbedded (issue 15, item 1): the chart in embedded mode on
// the complete cluster. berth's own image comes from a bootstrap berth
// through a Secret made from docker login's config; Docker Engine pushes
// images into the in-cluster berth through its NodePort Service. Pods
// (placed by the scheduler) run them, pulled by the kubelet through the
// same Service: team/app with a Secret made by `berth secret create
// --robot --apply`, node/app through the kubelet credential provider
// (`berth credential-provider`, a robot that may pull node/* only); a Pod
// of team/app without the Secret is refused.
func TestHelmInstallEmbedded(t *testing.T) {
	skipIfShort(t)
	docker := needDocker(t)
	helm := needHelm(t)
	needStaticBusybox(t)
	// The provider is part of the kubelet's configuration, so it is written
	// before the cluster starts, for the NodePort the release will have.
	nodePort := freeNodePort(t)
	provider := writeCredentialProviderFor(t, fmt.Sprintf("127.0.0.1:%d", nodePort))
	t.Setenv("KUBELET_CREDENTIAL_PROVIDER_CONFIG", provider.config)
	t.Setenv("KUBELET_CREDENTIAL_PROVIDER_BIN_DIR", provider.binDir)
	c := startCluster(t)
	img := publishBerthImage(t, c, docker)
	prepareNamespace(t, c, img, "registry")
	rel := installChart(t, c, helm, img, "registry", "berth", nodePort, "", "mode=embedded")
	b := rel.Berth

	// The chart's PVC is bound to a volume of the cluster's provisioner,
	// and berth's data lives there.
	pvc := c.kubectl(t, "get", "pvc", "-n", rel.Namespace, "-o", "jsonpath={.items[*].status.phase}")
	if pvc != "Bound" {
		t.Fatalf("the release's PVCs: %q, want one Bound", pvc)
	}

	// Docker Engine pushes through the Service.
	createNamespace(t, b, "team")
	createNamespace(t, b, "node")
	d := newDockerClient(t, docker, b.Addr)
	d.mustLogin("admin", rel.AdminPassword)
	ref, nodeRef := d.ref("team/app:v1"), d.ref("node/app:v1")
	d.buildBusybox(ref, nodeRef)
	pushed := d.push(ref)
	if got := d.push(nodeRef); got != pushed {
		t.Fatalf("the same image pushed as %s is %s, as %s %s", nodeRef, got, ref, pushed)
	}
	t.Logf("docker push %s and %s through the NodePort: %s", ref, nodeRef, pushed)

	// The node's credential provider gets its robot (node/*, pull only).
	robot, secret := b.addRobot(t, "node", "kubelet", []string{"node/*"}, []string{"pull"}, "")
	provider.setRobot(t, robot, secret)

	// The pull Secret, made and applied by berth (a robot of team).
	r := berthKube(t, append(b.adminEnv(), "KUBECONFIG="+c.Kubeconfig), "", "secret", "create", "regcred",
		"--robot", "--scope", "team/*", "--expires", "1d", "--apply", "--kubeconfig", c.Kubeconfig, "-n", "default")
	mustSucceed(t, "berth secret create regcred --robot --apply", r)

	for _, p := range []struct {
		name, image string
		secret      bool
	}{{"app", ref, true}, {"no-secret", ref, false}, {"via-provider", nodeRef, false}} {
		spec := map[string]any{
			"terminationGracePeriodSeconds": 1,
			"containers":                    []map[string]any{{"name": "main", "image": p.image, "imagePullPolicy": "Always"}},
		}
		if p.secret {
			spec["imagePullSecrets"] = []map[string]any{{"name": "regcred"}}
		}
		c.apply(t, string(mustJSON(t, map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": p.name, "namespace": "default"},
			"spec":     spec,
		})))
	}
	for _, name := range []string{"app", "via-provider"} {
		s := c.waitPodRunning(t, "default", name, 3*time.Minute)
		if got := s.Containers[0].ImageID; !strings.HasSuffix(got, "@"+pushed) {
			t.Errorf("Pod %s runs image %q, want the pushed %s", name, got, pushed)
		}
	}
	// The provider's robot may not pull team/*: without the Secret, no pull.
	denied := c.waitPullFailure(t, "no-secret")
	if msg := denied.Containers[0].Message; !strings.Contains(msg, "401") && !strings.Contains(msg, "403") {
		t.Errorf("Pod no-secret (no imagePullSecrets): %s; want a pull refused with 401 or 403", denied)
	}
}
