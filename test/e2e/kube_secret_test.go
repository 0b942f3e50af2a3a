package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
)

// robotCreated is what `berth secret create --robot` says on stderr.
var robotCreated = regexp.MustCompile(`created robot (\S+)`)

// TestKubeSecretsReadByOthers makes pull Secrets with `berth secret
// create` every way it offers (a new robot, a user name and password, a
// docker config with the credentials inline or kept by a credential
// helper), in YAML and JSON, and reads each back with what the ecosystem
// reads them with: the Kubernetes API types, go-containerregistry's port
// of the kubelet's keyring (which must resolve the image to the right
// credentials and then pull it), and kubectl.
func TestKubeSecretsReadByOthers(t *testing.T) {
	skipIfShort(t)
	b := startAuthBerth(t)
	b.addNamespace(t, "team", false)
	ciPass := b.addUser(t, "ci", false)
	b.setMember(t, "team", "ci", "reader")
	img := newOCIImage(t, testFile{Name: "etc/hello.txt", Data: []byte("hello from a pull Secret " + randomHex(t, 8) + "\n")})
	b.pushImageAs(t, "admin", b.AdminPassword, "team/app", "v1", img)
	repo, ref := b.Addr+"/team/app", b.Addr+"/team/app:v1"

	// Without credentials the image does not pull: the Secrets matter.
	if r, err := name.ParseReference(ref, name.Insecure); err != nil {
		t.Fatal(err)
	} else if _, err := remote.Image(r, remoteOpts(t, authn.NewMultiKeychain())...); registryRefusal(err) == 0 {
		t.Fatalf("anonymous remote.Image(%s): got %v, want a 401 or 403", ref, err)
	}

	kubeconfig := fakeKubeAPI(t)

	// A docker config with the credentials inline, and one whose entry is
	// empty because a credential helper keeps them.
	dir := t.TempDir()
	inline := filepath.Join(dir, "inline.json")
	writeFile(t, inline, mustJSON(t, map[string]any{"auths": map[string]any{
		b.Addr:                     map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("ci:" + ciPass))},
		"registry.example.com:443": map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("someone:else"))},
	}}))
	helperLog := filepath.Join(dir, "helper.log")
	binDir := filepath.Join(dir, "bin")
	writeFile(t, filepath.Join(binDir, "docker-credential-fake"), []byte(fmt.Sprintf(`#!/bin/sh
# A docker credential helper that knows one registry.
[ "$1" = get ] || { echo "unsupported: $1" >&2; exit 1; }
read -r server
echo "$server" >> %q
if [ "$server" = %q ]; then
	printf '{"ServerURL":"%%s","Username":"ci","Secret":"%%s"}\n' "$server" %q
	exit 0
fi
echo "credentials not found in native keychain"
exit 1
`, helperLog, b.Addr, ciPass)))
	if err := os.Chmod(filepath.Join(binDir, "docker-credential-fake"), 0o755); err != nil {
		t.Fatal(err)
	}
	helperCfg := filepath.Join(dir, "helper.json")
	writeFile(t, helperCfg, mustJSON(t, map[string]any{"auths": map[string]any{b.Addr: map[string]any{}}, "credsStore": "fake"}))
	helperEnv := []string{"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH")}

	type source struct {
		name  string
		env   []string
		stdin string
		args  []string
		// user is the account the Secret must carry ("" for a new robot).
		user, password string
	}
	sources := []source{
		{name: "robot", env: b.adminEnv(), args: []string{"--robot", "--scope", "team/*"}},
		{name: "password", stdin: ciPass + "\n", args: []string{"--username", "ci", "--password-stdin", "--server", b.Addr}, user: "ci", password: ciPass},
		{name: "docker-config", args: []string{"--from-docker-config", inline}, user: "ci", password: ciPass},
		{name: "credential-helper", env: helperEnv, args: []string{"--from-docker-config", helperCfg}, user: "ci", password: ciPass},
	}
	for _, src := range sources {
		for _, format := range []string{"yaml", "json"} {
			t.Run(src.name+"/"+format, func(t *testing.T) {
				args := append([]string{"regcred"}, src.args...)
				if format == "json" {
					args = append(args, "-o", "json")
				}
				ps, r := makePullSecret(t, src.env, src.stdin, args...)
				if ps.Secret.Name != "regcred" || ps.Secret.Namespace != "default" {
					t.Errorf("Secret %s/%s, want default/regcred", ps.Secret.Namespace, ps.Secret.Name)
				}
				user, password := src.user, src.password
				if user == "" {
					m := robotCreated.FindStringSubmatch(r.Stderr)
					if m == nil {
						t.Fatalf("berth secret create --robot did not say which robot it created; stderr:\n%s", r.Stderr)
					}
					user = m[1]
					if !strings.HasPrefix(user, "team+regcred-") {
						t.Errorf("robot %q, want a robot of namespace team named after the Secret (team+regcred-...)", user)
					}
					// The robot's secret is shown nowhere else: take it from
					// auth, which the kubelet reads first.
					raw, _ := base64.StdEncoding.DecodeString(ps.Config.Auths[b.Addr].Auth)
					_, password, _ = strings.Cut(string(raw), ":")
				}
				ps.checkEntry(t, b.Addr, user, password)
				if src.name == "credential-helper" {
					asked, _ := os.ReadFile(helperLog)
					if !strings.Contains(string(asked), b.Addr+"\n") {
						t.Errorf("docker-credential-fake was asked for %q, want %s", asked, b.Addr)
					}
				}

				kc, cfg := kubeletAuth(t, []corev1.Secret{ps.Secret}, repo)
				if cfg.Username != user || cfg.Password != password {
					t.Errorf("the kubelet's keyring resolves %s to %q and a password of %d bytes, want %q and the Secret's password",
						repo, cfg.Username, len(cfg.Password), user)
				}
				pullWithKeychain(t, kc, ref, img)

				t.Run("kubectl", func(t *testing.T) {
					kubectlDryRun(t, kubectlTool(t), kubeconfig, ps)
				})
			})
		}
	}
}

// TestKubeSecretRobotScope checks that the robot `berth secret create
// --robot --scope team/app` makes pulls team/app and nothing else of team.
func TestKubeSecretRobotScope(t *testing.T) {
	skipIfShort(t)
	b := startAuthBerth(t)
	b.addNamespace(t, "team", false)
	img := newOCIImage(t, testFile{Name: "etc/scope.txt", Data: []byte("scoped " + randomHex(t, 8) + "\n")})
	b.pushImageAs(t, "admin", b.AdminPassword, "team/app", "v1", img)
	b.pushImageAs(t, "admin", b.AdminPassword, "team/other", "v1", img)

	ps, r := makePullSecret(t, b.adminEnv(), "", "regcred", "--robot", "--scope", "team/app")
	if !strings.Contains(r.Stderr, "team/app") {
		t.Errorf("berth secret create --robot --scope team/app does not name the scope on stderr:\n%s", r.Stderr)
	}
	kc, cfg := kubeletAuth(t, []corev1.Secret{ps.Secret}, b.Addr+"/team/app")
	if !strings.HasPrefix(cfg.Username, "team+") {
		t.Errorf("the Secret carries %q, want a robot of team", cfg.Username)
	}

	// The token endpoint grants pull on team/app, nothing on team/other,
	// and never push.
	tok := b.token(t, cfg.Username, cfg.Password, "repository:team/app:pull,push", "repository:team/other:pull")
	_, _, access := tokenClaims(t, tok.Token)
	granted := map[string][]string{}
	for _, a := range access {
		if a.Type == "repository" && len(a.Actions) > 0 {
			granted[a.Name] = a.Actions
		}
	}
	if got := strings.Join(granted["team/app"], ","); got != "pull" {
		t.Errorf("the Secret's robot is granted %q on team/app, want pull", got)
	}
	if got := granted["team/other"]; len(got) != 0 {
		t.Errorf("the Secret's robot (scope team/app) is granted %v on team/other, want nothing", got)
	}

	// And a client pulls accordingly.
	pullWithKeychain(t, kc, b.Addr+"/team/app:v1", img)
	other, err := name.ParseReference(b.Addr+"/team/other:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Image(other, remoteOpts(t, kc)...)
	if registryRefusal(err) == 0 {
		t.Errorf("remote.Image(team/other:v1) with the team/app robot's Secret: got %v, want a 401 or 403", err)
	} else {
		t.Logf("team/other refused as it must: %v", err)
	}
	// The push the robot was never given.
	pushTok := b.token(t, cfg.Username, cfg.Password, "repository:team/app:push")
	if _, _, access := tokenClaims(t, pushTok.Token); len(access) > 0 && len(access[0].Actions) > 0 {
		t.Errorf("the Secret's pull-only robot is granted %v when asking push on team/app", access[0].Actions)
	}
}
