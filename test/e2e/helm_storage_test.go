package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testserver"
)

// storageServices are MinIO and PostgreSQL running as Pods of the test
// cluster, for the chart's s3-postgres mode.
type storageServices struct {
	// S3Endpoint is MinIO's Service (http://CLUSTER-IP:9000): no CoreDNS
	// here, so addresses rather than names.
	S3Endpoint string
	// S3AccessKey and S3SecretKey are MinIO's root credentials.
	S3AccessKey, S3SecretKey string
	// Bucket is the bucket made for berth.
	Bucket string
	// PostgresDSN reaches PostgreSQL's Service.
	PostgresDSN string
}

// chartValues returns the values that point the chart at the services,
// secrets included (for installChart's values file).
func (s *storageServices) chartValues() string {
	return fmt.Sprintf("s3:\n  bucket: %q\n  endpoint: %q\n  pathStyle: true\n  region: us-east-1\n  accessKeyId: %q\n  secretAccessKey: %q\npostgres:\n  dsn: %q\n",
		s.Bucket, s.S3Endpoint, s.S3AccessKey, s.S3SecretKey, s.PostgresDSN)
}

// deployStorageServices builds the MinIO and PostgreSQL images, runs them
// as Deployments with ClusterIP Services in namespace ns (made by
// prepareNamespace: its Secret berth-pull pulls them), waits for both and
// creates berth's bucket through a forwarded port.
func deployStorageServices(t *testing.T, c *k8sCluster, img *bootImage, ns string) *storageServices {
	t.Helper()
	minio, postgres := buildServiceImages(t, img.docker)
	s := &storageServices{S3AccessKey: "berth" + randomHex(t, 4), S3SecretKey: randomHex(t, 16), Bucket: "berth"}
	pgPassword := randomHex(t, 16)
	// On stdin, not on a command line (which the test log shows).
	c.apply(t, string(mustJSON(t, map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": "storage-credentials", "namespace": ns},
		"stringData": map[string]string{"MINIO_ROOT_USER": s.S3AccessKey, "MINIO_ROOT_PASSWORD": s.S3SecretKey, "POSTGRES_PASSWORD": pgPassword},
	})))
	c.apply(t, fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: minio, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: minio}}
  template:
    metadata: {labels: {app: minio}}
    spec:
      imagePullSecrets: [{name: berth-pull}]
      securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000}
      containers:
      - name: minio
        image: %[2]s
        args: [server, /data, --address, ":9000", --quiet]
        env:
        - {name: HOME, value: /data}
        - {name: MINIO_BROWSER, value: "off"}
        - {name: MINIO_UPDATE, value: "off"}
        - name: MINIO_ROOT_USER
          valueFrom: {secretKeyRef: {name: storage-credentials, key: MINIO_ROOT_USER}}
        - name: MINIO_ROOT_PASSWORD
          valueFrom: {secretKeyRef: {name: storage-credentials, key: MINIO_ROOT_PASSWORD}}
        ports: [{containerPort: 9000}]
        readinessProbe: {httpGet: {path: /minio/health/ready, port: 9000}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: minio, namespace: %[1]s}
spec:
  selector: {app: minio}
  ports: [{port: 9000, targetPort: 9000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: postgres, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      imagePullSecrets: [{name: berth-pull}]
      securityContext: {runAsUser: %[4]s, runAsGroup: %[4]s, fsGroup: %[4]s}
      containers:
      - name: postgres
        image: %[3]s
        env:
        - name: POSTGRES_PASSWORD
          valueFrom: {secretKeyRef: {name: storage-credentials, key: POSTGRES_PASSWORD}}
        ports: [{containerPort: 5432}]
        readinessProbe: {tcpSocket: {port: 5432}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: postgres, namespace: %[1]s}
spec:
  selector: {app: postgres}
  ports: [{port: 5432, targetPort: 5432}]
`, ns, minio, postgres, postgresUID))
	for _, d := range []string{"minio", "postgres"} {
		c.kubectl(t, "rollout", "status", "deployment/"+d, "-n", ns, "--timeout=3m")
	}
	minioIP := c.kubectl(t, "get", "service", "minio", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
	pgIP := c.kubectl(t, "get", "service", "postgres", "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
	s.S3Endpoint = "http://" + minioIP + ":9000"
	s.PostgresDSN = fmt.Sprintf("postgres://berth:%s@%s:5432/postgres?sslmode=disable", pgPassword, pgIP)

	// The bucket, from the host through a forwarded port.
	port, err := testserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	c.ForwardOut(t, port, minioIP+":9000")
	srv := &testserver.S3Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Region: "us-east-1", AccessKey: s.S3AccessKey, SecretKey: s.S3SecretKey}
	// kube-proxy programs the Service's endpoint a moment after MinIO is
	// Ready; until then connections are refused.
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := srv.CreateBucket(ctx, s.Bucket)
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
}
