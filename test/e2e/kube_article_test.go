package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// pullFailTimeout bounds the wait for a Pod whose pull must fail to say
// so (ErrImagePull, or ImagePullBackOff after it).
const pullFailTimeout = 90 * time.Second

// TestKubernetesArticle plays the article berth started from on a real
// single-node cluster, with berth serving with token auth, from the
// cluster's start to the Pod that runs, then the ways it goes wrong:
//
//   - `berth secret create regcred --robot --scope 'team/*' --apply` makes
//     the Secret, and the article's Pod (as `--print-pod` prints it) pulls
//     team/app with it and runs; `berth doctor --pod` says it would pull.
//   - A Pod pulling node/app with no imagePullSecrets runs through the
//     kubelet credential provider (`berth credential-provider`, a node
//     robot scoped to node/* only, so it cannot stand in for the Secrets
//     of the team/app Pods).
//   - Pods that must not pull, each with `berth doctor --pod` naming the
//     cause (exit status 1): no imagePullSecrets; a Secret keyed for
//     another port; a Secret of a robot revoked since; a valid Secret next
//     to one whose entry's auth is not base64 of user:password (the
//     kubelet then pulls nothing at all).
func TestKubernetesArticle(t *testing.T) {
	skipIfShort(t)
	start := time.Now()
	t.Cleanup(func() { t.Logf("TestKubernetesArticle took %s in all", time.Since(start).Round(time.Second)) })

	// berth first: the credential provider's configuration names its port.
	b := startAuthBerth(t)
	b.addNamespace(t, "team", false)
	b.addNamespace(t, "node", false)
	img := newBusyboxImage(t)
	b.pushImageAs(t, "admin", b.AdminPassword, "team/app", "v1", img)
	b.pushImageAs(t, "admin", b.AdminPassword, "node/app", "v1", img)
	teamImage, nodeImage := b.Addr+"/team/app:v1", b.Addr+"/node/app:v1"
	for _, repo := range []string{"team/app", "node/app"} {
		if st := anonymousManifestStatus(t, b, repo, "v1"); st != http.StatusUnauthorized && st != http.StatusForbidden {
			t.Fatalf("anonymous GET of %s:v1's manifest: %d, want 401 or 403 (the namespaces are private)", repo, st)
		}
	}

	// The node's credential provider: berth as the plugin, with a robot
	// that may pull node/* and nothing else.
	nodeRobot, nodeSecret := b.addRobot(t, "node", "kubelet", []string{"node/*"}, []string{"pull"}, "")
	provider := writeCredentialProvider(t, b, nodeRobot, nodeSecret)
	t.Setenv("KUBELET_CREDENTIAL_PROVIDER_CONFIG", provider.config)
	t.Setenv("KUBELET_CREDENTIAL_PROVIDER_BIN_DIR", provider.binDir)

	c := startCluster(t)
	c.AddPlainHTTPRegistry(t, b.Addr)
	kubeEnv := []string{"KUBECONFIG=" + c.Kubeconfig}
	t.Logf("berth and the cluster ready after %s", time.Since(start).Round(time.Second))

	// The article: the Secret, then the Pod that uses it.
	r := berthKube(t, append(b.adminEnv(), kubeEnv...), "", "secret", "create", "regcred",
		"--robot", "--scope", "team/*", "--expires", "1d",
		"--apply", "--kubeconfig", c.Kubeconfig, "-n", "default", "--print-pod", teamImage)
	mustSucceed(t, "berth secret create regcred --robot --apply --print-pod", r)
	if m := robotCreated.FindStringSubmatch(r.Stderr); m == nil || !strings.HasPrefix(m[1], "team+regcred-") {
		t.Errorf("berth secret create --robot did not say it created a robot of team for regcred; stderr:\n%s", r.Stderr)
	}
	regcred := c.secret(t, "regcred")
	if regcred.Type != corev1.SecretTypeDockerConfigJson || len(regcred.Data[corev1.DockerConfigJsonKey]) == 0 {
		t.Fatalf("Secret regcred in the cluster: type %q, data keys %v; want %s with %s",
			regcred.Type, keysOf(regcred.Data), corev1.SecretTypeDockerConfigJson, corev1.DockerConfigJsonKey)
	}
	// --service-account adds the Secret to a ServiceAccount's
	// imagePullSecrets, once however often it is applied. (Not the default
	// ServiceAccount: its pull Secrets would reach the Pods below that must
	// have none.)
	c.kubectl(t, "create", "serviceaccount", "builder", "-n", "default")
	for i := 0; i < 2; i++ {
		r := berthKube(t, append(b.adminEnv(), kubeEnv...), "", "secret", "create", "sa-cred",
			"--robot", "--scope", "team/*", "--apply", "--kubeconfig", c.Kubeconfig, "-n", "default", "--service-account", "builder")
		mustSucceed(t, "berth secret create sa-cred --apply --service-account builder", r)
	}
	if got := c.kubectl(t, "get", "serviceaccount", "builder", "-n", "default", "-o", "jsonpath={.imagePullSecrets[*].name}"); strings.TrimSpace(got) != "sa-cred" {
		t.Errorf("ServiceAccount builder imagePullSecrets = %q, want exactly sa-cred", got)
	}
	podYAML := printedPod(t, r.Stdout)
	if podYAML.Name != "private-reg" || len(podYAML.Spec.ImagePullSecrets) != 1 || podYAML.Spec.ImagePullSecrets[0].Name != "regcred" ||
		len(podYAML.Spec.Containers) != 1 || podYAML.Spec.Containers[0].Image != teamImage {
		t.Fatalf("--print-pod printed another Pod than the article's (private-reg, %s, imagePullSecrets regcred):\n%s", teamImage, r.Stdout)
	}
	// No scheduler here: the Pod names its node.
	podYAML.Spec.NodeName = c.NodeName
	grace := int64(1)
	podYAML.Spec.TerminationGracePeriodSeconds = &grace
	c.apply(t, string(mustJSON(t, podYAML)))
	s := c.waitPodRunning(t, "default", "private-reg", 3*time.Minute)
	if got := s.Containers[0].ImageID; !strings.HasSuffix(got, "@"+img.ManifestDigest) {
		t.Errorf("private-reg runs image %q, want the pushed manifest %s", got, img.ManifestDigest)
	}
	t.Logf("the article's Pod runs after %s: %s", time.Since(start).Round(time.Second), s)
	doctorMustPass(t, c, "private-reg", teamImage)

	// No Secret at all: the credential provider.
	c.apply(t, articlePod(c, "node-provider", nodeImage))
	s = c.waitPodRunning(t, "default", "node-provider", 3*time.Minute)
	if got := s.Containers[0].ImageID; !strings.HasSuffix(got, "@"+img.ManifestDigest) {
		t.Errorf("node-provider runs image %q, want the pushed manifest %s", got, img.ManifestDigest)
	}
	if recs := auditRecords(t, b, func(rec auditRecord) bool {
		return rec.Msg == "pull credential issued" && rec.Subject == nodeRobot
	}); len(recs) == 0 {
		t.Errorf("node-provider runs, but berth's audit log has no pull credential issued to %s: who pulled?", nodeRobot)
	}
	t.Logf("the Pod without imagePullSecrets runs through the credential provider after %s: %s", time.Since(start).Round(time.Second), s)

	// (b) A Secret from a valid robot, keyed for another port.
	host, port, err := net.SplitHostPort(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	otherPort := net.JoinHostPort(host, strconv.Itoa(p+1))
	wpRobot, wpSecret := b.addRobot(t, "team", "wrongport", []string{"team/*"}, []string{"pull"}, "")
	mustSucceed(t, "berth secret create wrong-port --password-stdin --apply",
		berthKube(t, kubeEnv, wpSecret+"\n", "secret", "create", "wrong-port",
			"--server", otherPort, "--username", wpRobot, "--password-stdin",
			"--apply", "--kubeconfig", c.Kubeconfig, "-n", "default"))
	if _, ok := c.dockerConfig(t, "wrong-port").Auths[otherPort]; !ok {
		t.Fatalf("Secret wrong-port has no auths entry %s", otherPort)
	}

	// (d) A valid Secret next to one whose entry's auth is base64 of
	// something without a colon.
	c.apply(t, string(mustJSON(t, corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "bad-auth", Namespace: "default"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: mustJSON(t, map[string]any{"auths": map[string]any{
			b.Addr: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("no-colon-" + randomHex(t, 4)))},
		}})},
	})))

	// (a), (b), (d) side by side.
	badAuthCreated := time.Now()
	for _, pod := range []string{
		articlePod(c, "no-secret", teamImage),
		articlePod(c, "wrong-port", teamImage, "wrong-port"),
		articlePod(c, "bad-auth", teamImage, "regcred", "bad-auth"),
	} {
		c.apply(t, pod)
	}
	c.waitPullFailure(t, "no-secret")
	c.waitPullFailure(t, "wrong-port")
	// What the kubelet does with a malformed entry: building the keyring
	// of the Pod's Secrets fails, so it never pulls, and the error itself
	// becomes the container's waiting reason (not ErrImagePull), again at
	// each sync; the Pod stays Pending.
	const parseAuth = "unable to parse auth field"
	s = c.waitPod(t, "default", "bad-auth", pullFailTimeout, func(s podState) bool {
		for _, cs := range s.Containers {
			if cs.Running || cs.Waiting == "ErrImagePull" || cs.Waiting == "ImagePullBackOff" {
				t.Fatalf("pod bad-auth pulled (or tried to) despite its malformed Secret: %s", s)
			}
		}
		return len(s.Containers) == 1 && strings.Contains(s.Containers[0].Waiting, parseAuth)
	})
	if s.Phase != "Pending" {
		t.Errorf("pod bad-auth: phase %s, want Pending", s.Phase)
	}
	t.Logf("pod bad-auth: %s", s)
	c.mustNotHavePulled(t, "bad-auth", parseAuth)

	doctorMustFail(t, c, "no-secret", teamImage, "access", "anonymous")
	doctorMustFail(t, c, "wrong-port", teamImage, "match", "no entry matches", otherPort)
	doctorMustFail(t, c, "bad-auth", teamImage, "entry", parseAuth, "bad-auth")

	// bad-auth, watched for half a minute from its creation: Pending all
	// along, never pulled.
	s = c.waitPod(t, "default", "bad-auth", pullFailTimeout, func(s podState) bool {
		if s.Phase != "Pending" || len(s.Containers) != 1 || !strings.Contains(s.Containers[0].Waiting, parseAuth) {
			t.Fatalf("pod bad-auth, later: %s; want Pending, waiting with %q", s, parseAuth)
		}
		return time.Since(badAuthCreated) >= 30*time.Second
	})
	t.Logf("pod bad-auth after %s: %s", time.Since(badAuthCreated).Round(time.Second), s)
	c.mustNotHavePulled(t, "bad-auth", parseAuth)
	// Done with them: their retries (with the credential provider's
	// credentials, which may not pull team/app) stop.
	c.kubectl(t, "delete", "pod", "-n", "default", "no-secret", "wrong-port", "bad-auth", "--grace-period=0", "--force", "--wait=false")

	// (c) A Secret from a robot revoked since. Last, and its Pod deleted
	// as soon as it has been looked at: each of its pull attempts counts
	// four failed logins against 127.0.0.1 (containerd 1.6 tries POST then
	// GET /token, twice), doctor one more, and berth then refuses every
	// login from the address for the rest of the minute, the Secrets and
	// the credential provider of other Pods included.
	r = berthKube(t, append(b.adminEnv(), kubeEnv...), "", "secret", "create", "revoked",
		"--robot", "--scope", "team/*", "--apply", "--kubeconfig", c.Kubeconfig, "-n", "default")
	mustSucceed(t, "berth secret create revoked --robot --apply", r)
	m := robotCreated.FindStringSubmatch(r.Stderr)
	if m == nil {
		t.Fatalf("berth secret create --robot did not say which robot it created; stderr:\n%s", r.Stderr)
	}
	revokedRobot := m[1]
	b.revokeRobot(t, "team", revokedRobot)
	c.apply(t, articlePod(c, "revoked-robot", teamImage, "revoked"))
	c.waitPullFailure(t, "revoked-robot")
	doctorMustFail(t, c, "revoked-robot", teamImage, "credentials", "refuses the credentials", revokedRobot, "revoked")
	findingsDone := time.Now()
	c.kubectl(t, "delete", "pod", "-n", "default", "revoked-robot", "--grace-period=0", "--force", "--wait=false")

	// The findings above are about the causes they name, not about 429s:
	// berth rate-limited nothing until the last of them.
	failed := auditRecords(t, b, func(rec auditRecord) bool { return rec.Msg == "login failed" || rec.Msg == "login refused" })
	limited := 0
	for _, rec := range failed {
		t.Logf("audit: %s", rec.line)
		if at, err := time.Parse(time.RFC3339Nano, rec.Time); rec.Reason == "rate limited" && (err != nil || !at.After(findingsDone)) {
			limited++
		}
	}
	t.Logf("berth's audit log: %d failed or refused logins", len(failed))
	if limited > 0 {
		t.Errorf("berth rate-limited %d logins before the last finding: the findings may be about 429s, not the causes they name", limited)
	}
	t.Logf("scenario done after %s", time.Since(start).Round(time.Second))
}

// credentialProvider is a kubelet credential provider setup for berth.
type credentialProvider struct {
	config, binDir, robotFile string
}

// writeCredentialProvider writes what the kubelet needs to run `berth
// credential-provider` for b's images with a node robot: the robot file,
// a bin dir holding berth under the provider's name, and the
// CredentialProviderConfig.
func writeCredentialProvider(t *testing.T, b *authBerth, robot, secret string) credentialProvider {
	t.Helper()
	p := writeCredentialProviderFor(t, b.Addr)
	p.setRobot(t, robot, secret)
	return p
}

// setRobot writes the robot file the provider reads at each pull.
func (p credentialProvider) setRobot(t *testing.T, robot, secret string) {
	t.Helper()
	writeFile(t, p.robotFile, []byte(robot+":"+secret+"\n"))
	if err := os.Chmod(p.robotFile, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeCredentialProviderFor writes the provider's bin dir and config for
// images of the berth at addr (host:port, plain HTTP); the robot file is
// for setRobot, before the first pull.
func writeCredentialProviderFor(t *testing.T, addr string) credentialProvider {
	t.Helper()
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(berthBin, filepath.Join(binDir, "berth")); err != nil {
		t.Fatal(err)
	}
	robotFile := filepath.Join(dir, "node-robot")
	// matchImages: the kubelet compares ports literally (no globs), and
	// "127.0.0.1:*" is not even a valid URL, so the exact host:port.
	config := filepath.Join(dir, "credential-providers.yaml")
	writeFile(t, config, []byte(fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
- name: berth
  apiVersion: credentialprovider.kubelet.k8s.io/v1
  matchImages:
  - %q
  defaultCacheDuration: "5m"
  args:
  - credential-provider
  - --server=%s
  - --robot-file=%s
  - --ttl=1h
`, addr, "http://"+addr, robotFile)))
	t.Logf("credential provider: %s\n%s", config, tailFile(config, 20))
	return credentialProvider{config: config, binDir: binDir, robotFile: robotFile}
}

// anonymousManifestStatus is the status of an anonymous GET of repo's
// manifest ref, with the anonymous token the token endpoint hands out.
func anonymousManifestStatus(t *testing.T, b *authBerth, repo, ref string) int {
	t.Helper()
	tr := authDo(t, http.MethodGet, b.tokenURL("repository:"+repo+":pull"), nil)
	var tok tokenAnswer
	if tr.Status == http.StatusOK {
		mustUnmarshal(t, "anonymous token answer", tr.Body, &tok)
	}
	return authDo(t, http.MethodGet, b.URL+"/v2/"+repo+"/manifests/"+ref, nil,
		reqBearer(tok.Token), reqHeader("Accept", allManifestTypes)).Status
}

// articlePod is the article's Pod: one container pulling image with
// imagePullPolicy Always and the named imagePullSecrets, on the node.
func articlePod(c *k8sCluster, name, image string, secrets ...string) string {
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{
			"nodeName":                      c.NodeName,
			"terminationGracePeriodSeconds": 1,
			"containers": []map[string]any{{
				"name":            "app",
				"image":           image,
				"imagePullPolicy": "Always",
			}},
		},
	}
	var refs []map[string]string
	for _, s := range secrets {
		refs = append(refs, map[string]string{"name": s})
	}
	if len(refs) > 0 {
		pod["spec"].(map[string]any)["imagePullSecrets"] = refs
	}
	out, _ := json.Marshal(pod)
	return string(out)
}

// printedPod finds the Pod among the YAML documents `berth secret create
// --print-pod` printed.
func printedPod(t *testing.T, out string) *corev1.Pod {
	t.Helper()
	for _, doc := range strings.Split(out, "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil || meta.Kind != "Pod" {
			continue
		}
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict([]byte(doc), &pod); err != nil {
			t.Fatalf("--print-pod printed a Pod that does not decode: %v\n%s", err, doc)
		}
		return &pod
	}
	t.Fatalf("--print-pod printed no Pod:\n%s", out)
	return nil
}

// secret reads Secret default/name.
func (c *k8sCluster) secret(t *testing.T, name string) corev1.Secret {
	t.Helper()
	var s corev1.Secret
	mustUnmarshal(t, "secret "+name, []byte(c.kubectl(t, "get", "secret", "-n", "default", name, "-o", "json")), &s)
	return s
}

// dockerConfig reads the docker config of pull Secret default/name.
func (c *k8sCluster) dockerConfig(t *testing.T, name string) kubeDockerConfig {
	t.Helper()
	s := c.secret(t, name)
	var cfg kubeDockerConfig
	mustUnmarshal(t, "secret "+name+"'s "+corev1.DockerConfigJsonKey, s.Data[corev1.DockerConfigJsonKey], &cfg)
	return cfg
}

// waitPullFailure waits for Pod default/name's container to wait with
// ErrImagePull or ImagePullBackOff; it fails the test if it runs.
func (c *k8sCluster) waitPullFailure(t *testing.T, name string) podState {
	t.Helper()
	s := c.waitPod(t, "default", name, pullFailTimeout, func(s podState) bool {
		if len(s.Containers) != 1 {
			return false
		}
		if s.Containers[0].Running {
			t.Fatalf("pod %s runs, but must not be able to pull: %s", name, s)
		}
		w := s.Containers[0].Waiting
		return w == "ErrImagePull" || w == "ImagePullBackOff"
	})
	t.Logf("pod %s cannot pull, as it must: %s", name, s)
	return s
}

// podEvent is one event about a Pod.
type podEvent struct {
	Type, Reason, Message string
	Count                 int
}

// events lists the events about Pod default/name.
func (c *k8sCluster) events(t *testing.T, name string) []podEvent {
	t.Helper()
	out := c.kubectl(t, "get", "events", "-n", "default", "--field-selector", "involvedObject.kind=Pod,involvedObject.name="+name, "-o", "json")
	var list corev1.EventList
	mustUnmarshal(t, "events of "+name, []byte(out), &list)
	var evs []podEvent
	for _, e := range list.Items {
		evs = append(evs, podEvent{Type: e.Type, Reason: e.Reason, Message: e.Message, Count: int(e.Count)})
	}
	return evs
}

// mustNotHavePulled checks that the kubelet never started a pull for Pod
// default/name (no Pulling, Pulled or BackOff event) and that it said
// why, in a Warning event holding want.
func (c *k8sCluster) mustNotHavePulled(t *testing.T, name, want string) {
	t.Helper()
	said := false
	for _, e := range c.events(t, name) {
		switch {
		case e.Reason == "Pulling" || e.Reason == "Pulled" || e.Reason == "BackOff":
			t.Errorf("pod %s: event %s %q: the kubelet tried to pull", name, e.Reason, e.Message)
		case e.Type == "Warning" && strings.Contains(e.Message, want):
			said = true
			t.Logf("pod %s: event %s %s (x%d): %s", name, e.Type, e.Reason, e.Count, e.Message)
		}
	}
	if !said {
		t.Errorf("pod %s: no Warning event saying %q; events: %+v", name, want, c.events(t, name))
	}
}

// doctor runs `berth doctor --pod NAME -n default` against the cluster.
func (c *k8sCluster) doctor(t *testing.T, pod string) cmdResult {
	t.Helper()
	return berthKube(t, nil, "", "doctor", "--pod", pod, "-n", "default", "--kubeconfig", c.Kubeconfig)
}

// doctorMustPass checks that berth doctor says the Pod's image would pull.
func doctorMustPass(t *testing.T, c *k8sCluster, pod, image string) {
	t.Helper()
	r := c.doctor(t, pod)
	out := mustSucceed(t, "berth doctor --pod "+pod, r)
	if !strings.Contains(out, "the kubelet would pull "+image) || strings.Contains(out, "FAIL") {
		t.Errorf("berth doctor --pod %s exits 0 but does not say plainly that the kubelet would pull %s:\n%s", pod, image, out)
	}
	t.Logf("berth doctor --pod %s:\n%s", pod, strings.TrimSpace(out))
}

// doctorMustFail checks that berth doctor exits 1 on the Pod, concludes
// that the kubelet would not pull, and has a FAIL line for check whose
// text holds every one of words (case-insensitive).
func doctorMustFail(t *testing.T, c *k8sCluster, pod, image, check string, words ...string) {
	t.Helper()
	r := c.doctor(t, pod)
	out := r.combined()
	if code := exitCode(r.Err); code != 1 {
		t.Errorf("berth doctor --pod %s: exit status %d (%v), want 1; output:\n%s", pod, code, r.Err, out)
	}
	if !strings.Contains(r.Stdout, "the kubelet would NOT pull "+image) {
		t.Errorf("berth doctor --pod %s does not conclude that the kubelet would not pull %s:\n%s", pod, image, out)
	}
	// A finding is its FAIL line and the fix line under it.
	var found bool
	ls := lines(r.Stdout)
	for i, l := range ls {
		if !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, " "+check+":") {
			continue
		}
		text := l
		if i+1 < len(ls) && strings.Contains(ls[i+1], "fix:") {
			text += "\n" + ls[i+1]
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(strings.ToLower(text), strings.ToLower(w))
		}
		found = found || all
	}
	if !found {
		t.Errorf("berth doctor --pod %s: no FAIL %s: finding saying %q:\n%s", pod, check, words, out)
		return
	}
	t.Logf("berth doctor --pod %s (exit %d):\n%s", pod, exitCode(r.Err), strings.TrimSpace(r.Stdout))
}

// auditRecord is one line of berth's audit log (JSON).
type auditRecord struct {
	line    string
	Time    string `json:"time"`
	Msg     string `json:"msg"`
	User    string `json:"user"`
	Client  string `json:"client"`
	Reason  string `json:"reason"`
	Subject string `json:"subject"`
}

// auditRecords returns the records of b's audit log that match.
func auditRecords(t *testing.T, b *authBerth, match func(auditRecord) bool) []auditRecord {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.DataDir, "audit.log"))
	if err != nil {
		t.Fatalf("reading berth's audit log: %v", err)
	}
	var recs []auditRecord
	for _, l := range bytes.Split(data, []byte("\n")) {
		var rec auditRecord
		if len(bytes.TrimSpace(l)) == 0 || json.Unmarshal(l, &rec) != nil {
			continue
		}
		if match(rec) {
			rec.line = string(l)
			recs = append(recs, rec)
		}
	}
	return recs
}
