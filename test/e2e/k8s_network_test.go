package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeNodePort returns a port of the NodePort range (30000-32767) that is
// free on the host's 127.0.0.1, so that ForwardOut can publish the NodePort
// on the host under the same number (the same image reference on both
// sides).
func freeNodePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		p := 30000 + rand.IntN(2768)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free port in 30000-32767 on 127.0.0.1")
	return 0
}

// TestKubernetesServicesAndVolumes: the cluster is complete. A Deployment
// (no nodeName: the scheduler places it, the controller-manager makes its
// ReplicaSet and Pod) serves a file it wrote to a PersistentVolumeClaim of
// the default StorageClass (the provisioner's volume) through a NodePort
// Service (kube-proxy): another Pod reads it at the Service's ClusterIP over
// the pod network, the host reads it through the forwarded NodePort, and a
// replacement Pod finds the volume's data.
func TestKubernetesServicesAndVolumes(t *testing.T) {
	c, _, image := clusterWithBusybox(t)
	nodePort := freeNodePort(t)
	want := "served from a volume " + randomHex(t, 8)

	c.apply(t, fmt.Sprintf(`
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: web-data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext: {runAsUser: 65532, runAsGroup: 65532}
      containers:
      - name: httpd
        image: %[1]s
        command: [/bin/busybox, sh, -c]
        args:
        - test -f /data/index.html || echo "$MSG" > /data/index.html; exec /bin/busybox httpd -f -p 8080 -h /data
        env: [{name: MSG, value: %[2]q}]
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes:
      - name: data
        persistentVolumeClaim: {claimName: web-data}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: %[3]d}]
`, image, want, nodePort))
	c.kubectl(t, "rollout", "status", "deployment/web", "-n", "default", "--timeout=3m")
	if phase := c.kubectl(t, "get", "pvc", "web-data", "-n", "default", "-o", "jsonpath={.status.phase}"); phase != "Bound" {
		t.Fatalf("PVC web-data is %q, want Bound", phase)
	}
	volume := c.kubectl(t, "get", "pvc", "web-data", "-n", "default", "-o", "jsonpath={.spec.volumeName}")
	if got, err := os.ReadFile(filepath.Join(c.Dir, "volumes", volume, "index.html")); err != nil || strings.TrimSpace(string(got)) != want {
		t.Fatalf("the provisioner's volume %s holds %q (%v), want %q", volume, got, err, want)
	}

	// A Pod on the pod network, through the Service's ClusterIP.
	clusterIP := c.kubectl(t, "get", "service", "web", "-n", "default", "-o", "jsonpath={.spec.clusterIP}")
	c.apply(t, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: wget
    image: %s
    # busybox's wget crashes in a container without NSS files; nc does not
    # resolve anything.
    command: [/bin/busybox, sh, -c, 'printf "GET /index.html HTTP/1.0\r\n\r\n" | /bin/busybox nc %s 80']
`, image, clusterIP))
	s := c.waitPod(t, "default", "client", 3*time.Minute, func(s podState) bool { return s.Phase == "Succeeded" || s.Phase == "Failed" })
	logs := c.kubectl(t, "logs", "-n", "default", "client")
	if s.Phase != "Succeeded" || !strings.HasPrefix(logs, "HTTP/1.1 200 ") || !strings.HasSuffix(strings.TrimSpace(logs), "\n\n"+want) {
		t.Fatalf("Pod client read http://%s/index.html: %s, output %q; want 200 and %q", clusterIP, s, logs, want)
	}
	podIP := c.kubectl(t, "get", "pod", "client", "-n", "default", "-o", "jsonpath={.status.podIP}")
	if !strings.HasPrefix(podIP, "198.18.1.") {
		t.Errorf("Pod client has address %q, want one of the pod network 198.18.1.0/24", podIP)
	}

	// The host, through the NodePort published on its 127.0.0.1.
	c.ForwardOut(t, nodePort, fmt.Sprintf("127.0.0.1:%d", nodePort))
	url := fmt.Sprintf("http://127.0.0.1:%d/index.html", nodePort)
	if st, _, body := httpGet(t, url, nil); st != http.StatusOK || strings.TrimSpace(string(body)) != want {
		t.Fatalf("GET %s from the host: %d %q, want 200 %q", url, st, body, want)
	}

	// The Deployment replaces a deleted Pod, which finds the volume's data.
	first := c.kubectl(t, "get", "pods", "-n", "default", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}")
	c.kubectl(t, "delete", "pod", first, "-n", "default", "--wait=true")
	c.kubectl(t, "rollout", "status", "deployment/web", "-n", "default", "--timeout=3m")
	deadline := time.Now().Add(time.Minute)
	for {
		pods := c.kubectl(t, "get", "pods", "-n", "default", "-l", "app=web", "--field-selector=status.phase=Running",
			"-o", "jsonpath={.items[*].metadata.name}")
		if pods != "" && !strings.Contains(pods, first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement for Pod %s after a minute: %q", first, pods)
		}
		time.Sleep(time.Second)
	}
	if st, _, body := waitGet(t, url, time.Minute); st != http.StatusOK || strings.TrimSpace(string(body)) != want {
		t.Fatalf("GET %s after the Pod's replacement: %d %q, want 200 %q", url, st, body, want)
	}
}

// waitGet GETs url until it answers 200 or timeout passes, and returns the
// last answer (status 0 when the request itself failed).
func waitGet(t *testing.T, url string, timeout time.Duration) (int, http.Header, []byte) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
				return resp.StatusCode, resp.Header, body
			}
		} else if time.Now().After(deadline) {
			t.Logf("GET %s: %v", url, err)
			return 0, nil, nil
		}
		time.Sleep(500 * time.Millisecond)
	}
}
