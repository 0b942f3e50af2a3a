package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKubeCRIPullWithSecretCredentials pulls through containerd's CRI
// plugin with the credentials of a Secret made by `berth secret create
// --robot`, taken out of it as the kubelet takes them (the matching
// entry's user name and password, which it puts into the CRI AuthConfig
// of PullImage): crictl pull --creds with them works, without them fails,
// and outside the robot's scope fails.
func TestKubeCRIPullWithSecretCredentials(t *testing.T) {
	skipIfShort(t)
	crictl := needTool(t, "crictl")
	b := startAuthBerth(t)
	ctrd := startContainerd(t, b.Addr)
	b.addNamespace(t, "team", false)
	b.addNamespace(t, "other", false)
	img := newOCIImage(t, testFile{Name: "etc/hello.txt", Data: []byte("hello from a Secret through CRI " + randomHex(t, 8) + "\n")})
	b.pushImageAs(t, "admin", b.AdminPassword, "team/app", "v1", img)
	b.pushImageAs(t, "admin", b.AdminPassword, "other/app", "v1", img)

	ps, _ := makePullSecret(t, b.adminEnv(), "", "regcred", "--robot", "--scope", "team/*")
	_, auth := kubeletAuth(t, []corev1.Secret{ps.Secret}, b.Addr+"/team/app")
	// The entry the kubelet matched is the registry's, and carries the
	// same credentials in auth and in username/password.
	ps.checkEntry(t, b.Addr, auth.Username, auth.Password)
	if !strings.HasPrefix(auth.Username, "team+") {
		t.Errorf("the Secret carries %q, want a robot of team", auth.Username)
	}
	creds := auth.Username + ":" + auth.Password

	cri := newCRIClient(t, crictl, ctrd)
	team, other := b.Addr+"/team/app:v1", b.Addr+"/other/app:v1"
	mustFailWith(t, "crictl pull without credentials", cri.run("pull", team), "401|unauthorized")
	if id := cri.imageID(team); id != "" {
		t.Fatalf("%s is in containerd (as %s) after a refused pull", team, id)
	}
	mustSucceed(t, "crictl pull --creds (the Secret's)", cri.run("pull", "--creds", creds, team))
	if id := cri.imageID(team); id != img.ConfigDigest {
		t.Errorf("after crictl pull, containerd holds %s as %q, want the config digest %s", team, id, img.ConfigDigest)
	}
	mustFailWith(t, "crictl pull --creds (the Secret's, outside the robot's scope)", cri.run("pull", "--creds", creds, other), authErr)
	if id := cri.imageID(other); id != "" {
		t.Errorf("%s is in containerd after a refused pull", other)
	}
	mustSucceed(t, "crictl rmi", cri.run("rmi", team))
}

// credentialProviderResponse is the kubelet's CredentialProviderResponse
// (credentialprovider.kubelet.k8s.io/v1).
type credentialProviderResponse struct {
	APIVersion    string           `json:"apiVersion"`
	Kind          string           `json:"kind"`
	CacheKeyType  string           `json:"cacheKeyType"`
	CacheDuration *metav1.Duration `json:"cacheDuration,omitempty"`
	Auth          map[string]struct {
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"auth"`
}

// credentialProviderRequest is the kubelet's request for image.
func credentialProviderRequest(image string) string {
	return fmt.Sprintf(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":%q}`, image)
}

// runCredentialProvider runs `berth credential-provider` as the kubelet
// does: the request on stdin.
func runCredentialProvider(t *testing.T, b *authBerth, robotFile, image string, extra ...string) cmdResult {
	t.Helper()
	args := append([]string{"credential-provider", "--server", b.URL, "--robot-file", robotFile}, extra...)
	return berthKube(t, nil, credentialProviderRequest(image), args...)
}

// writeRobotFile writes a node's robot credentials as "name:secret".
func writeRobotFile(t *testing.T, name, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "robot")
	writeFile(t, p, []byte(name+":"+secret+"\n"))
	return p
}

// mustRefuseNode checks that the credential provider failed for a robot
// berth no longer accepts: a non-zero exit, nothing on stdout (the kubelet
// would parse it), and a message on stderr that says why.
func mustRefuseNode(t *testing.T, what string, r cmdResult) {
	t.Helper()
	if r.Err == nil {
		t.Errorf("credential-provider with %s succeeded; stdout:\n%s", what, r.Stdout)
		return
	}
	if strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("credential-provider with %s failed but printed on stdout:\n%s", what, r.Stdout)
	}
	if !matchesAny(r.Stderr, "revoked|expired") {
		t.Errorf("credential-provider with %s: stderr does not say revoked or expired:\n%s", what, r.Stderr)
	} else {
		t.Logf("credential-provider with %s refused as it must (%v): %s", what, r.Err, strings.TrimSpace(r.Stderr))
	}
}

// TestKubeCredentialProvider runs `berth credential-provider` as the
// kubelet's exec credential provider plugin: for a node robot's secret it
// answers a CredentialProviderResponse whose short-lived credentials pull
// through containerd's CRI plugin; once the robot is revoked, or when it
// has expired, it fails with a message that says so, and the credentials
// it handed out before stop working.
func TestKubeCredentialProvider(t *testing.T) {
	skipIfShort(t)
	crictl := needTool(t, "crictl")
	b := startAuthBerth(t)
	ctrd := startContainerd(t, b.Addr)
	b.addNamespace(t, "team", false)
	img := newOCIImage(t, testFile{Name: "etc/hello.txt", Data: []byte("hello from a credential provider " + randomHex(t, 8) + "\n")})
	b.pushImageAs(t, "admin", b.AdminPassword, "team/app", "v1", img)
	robot, secret := b.addRobot(t, "team", "node", []string{"team/*"}, []string{"pull"}, "")
	robotFile := writeRobotFile(t, robot, secret)
	image := b.Addr + "/team/app:v1"

	const ttl = 10 * time.Minute
	r := runCredentialProvider(t, b, robotFile, image, "--ttl", ttl.String())
	out := mustSucceed(t, "berth credential-provider", r)
	var resp credentialProviderResponse
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&resp); err != nil {
		t.Fatalf("credential-provider printed no CredentialProviderResponse: %v\n%s", err, out)
	}
	if resp.Kind != "CredentialProviderResponse" || resp.APIVersion != "credentialprovider.kubelet.k8s.io/v1" {
		t.Errorf("kind %q apiVersion %q, want CredentialProviderResponse credentialprovider.kubelet.k8s.io/v1", resp.Kind, resp.APIVersion)
	}
	if resp.CacheKeyType != "Registry" {
		t.Errorf("cacheKeyType %q, want Registry", resp.CacheKeyType)
	}
	if resp.CacheDuration == nil || resp.CacheDuration.Duration <= 0 || resp.CacheDuration.Duration > ttl {
		t.Errorf("cacheDuration %v, want more than 0 and at most the credential's life (%s)", resp.CacheDuration, ttl)
	}
	if len(resp.Auth) != 1 {
		t.Errorf("auth has keys %v, want only %s", keysOf(resp.Auth), b.Addr)
	}
	cred, ok := resp.Auth[b.Addr]
	if !ok {
		t.Fatalf("auth has no entry %s (has %v):\n%s", b.Addr, keysOf(resp.Auth), out)
	}
	if cred.Username != robot || cred.Password == "" {
		t.Errorf("auth[%s]: username %q and a password of %d bytes, want %q and a password", b.Addr, cred.Username, len(cred.Password), robot)
	}
	if cred.Password == secret {
		t.Errorf("credential-provider handed the node's long-lived robot secret to the kubelet, want a short-lived credential")
	}
	t.Logf("CredentialProviderResponse: cacheKeyType %s, cacheDuration %v, auth[%s].username %s", resp.CacheKeyType, resp.CacheDuration, b.Addr, cred.Username)

	// An image on another registry is not the provider's.
	if r := runCredentialProvider(t, b, robotFile, "registry.example.com/team/app:v1"); r.Err == nil || strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("credential-provider for an image on another registry: err %v, stdout %q; want a failure", r.Err, r.Stdout)
	}

	// containerd pulls with the credentials, as the kubelet passes them
	// in the CRI AuthConfig.
	cri := newCRIClient(t, crictl, ctrd)
	creds := cred.Username + ":" + cred.Password
	mustFailWith(t, "crictl pull without credentials", cri.run("pull", image), "401|unauthorized")
	mustSucceed(t, "crictl pull --creds (the credential provider's)", cri.run("pull", "--creds", creds, image))
	if id := cri.imageID(image); id != img.ConfigDigest {
		t.Errorf("after crictl pull, containerd holds %s as %q, want the config digest %s", image, id, img.ConfigDigest)
	}
	mustSucceed(t, "crictl rmi", cri.run("rmi", image))

	// Revoked: no new credentials, and the one handed out stops working.
	b.revokeRobot(t, "team", robot)
	mustRefuseNode(t, "a revoked robot", runCredentialProvider(t, b, robotFile, image))
	if tr := authDo(t, http.MethodGet, b.tokenURL("repository:team/app:pull"), nil, reqBasic(cred.Username, cred.Password)); tr.Status != http.StatusUnauthorized {
		t.Errorf("GET /token with the credential issued before the robot was revoked: %s, want 401", tr)
	}
	mustFailWith(t, "crictl pull --creds (issued before the robot was revoked)", cri.run("pull", "--creds", creds, image), "401|unauthorized")
	if id := cri.imageID(image); id != "" {
		t.Errorf("%s is in containerd after a refused pull", image)
	}

	// Expired. On a berth of its own: the refusals above count towards
	// the per-address login limit (all of them come from 127.0.0.1).
	t.Run("expired robot", func(t *testing.T) {
		b := startAuthBerth(t)
		b.addNamespace(t, "team", false)
		robot, secret := b.addRobot(t, "team", "short", []string{"team/*"}, []string{"pull"}, "1s")
		time.Sleep(2 * time.Second)
		r := runCredentialProvider(t, b, writeRobotFile(t, robot, secret), b.Addr+"/team/app:v1")
		mustRefuseNode(t, "an expired robot", r)
		if strings.Contains(r.Stderr, secret) {
			t.Errorf("credential-provider printed the robot's secret on stderr")
		}
	})
}
