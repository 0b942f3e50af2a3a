package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// doctorReport is `berth doctor -o json`.
type doctorReport struct {
	Image    string `json:"image"`
	Pull     bool   `json:"pull"`
	Findings []struct {
		Check   string `json:"check"`
		OK      bool   `json:"ok"`
		Message string `json:"message"`
		Fix     string `json:"fix"`
	} `json:"findings"`
}

// brokenSecret writes a copy of good's Secret with its docker config
// payload replaced (nil keeps it) and the data value then set by encode
// (nil: stored as is, which the manifest renders as base64 once).
func brokenSecret(t *testing.T, good *pullSecret, name string, cfg *kubeDockerConfig, encode func([]byte) []byte) string {
	t.Helper()
	s := good.Secret.DeepCopy()
	payload := s.Data[corev1.DockerConfigJsonKey]
	if cfg != nil {
		payload = mustJSON(t, cfg)
	}
	if encode != nil {
		payload = encode(payload)
	}
	s.Data = map[string][]byte{corev1.DockerConfigJsonKey: payload}
	out, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".yaml")
	writeFile(t, path, out)
	return path
}

// TestKubeDoctorCLI runs `berth doctor IMAGE --secret-file F` on a good
// pull Secret made by `berth secret create` and on broken copies of it
// (the mistakes people make: an auths key without or with another port, a
// docker config base64-encoded twice, a wrong password): exit status 0 and
// "would pull" for the good one; exit status 1 and a FAIL line naming what
// is wrong for each broken one; and -o json that parses, with "pull" and
// the findings.
func TestKubeDoctorCLI(t *testing.T) {
	skipIfShort(t)
	b := startAuthBerth(t)
	b.addNamespace(t, "team", false)
	img := newOCIImage(t, testFile{Name: "etc/doctor.txt", Data: []byte("doctor " + randomHex(t, 8) + "\n")})
	b.pushImageAs(t, "admin", b.AdminPassword, "team/app", "v1", img)
	image := b.Addr + "/team/app:v1"

	good, _ := makePullSecret(t, b.adminEnv(), "", "regcred", "--robot", "--scope", "team/*")
	entry := good.Config.Auths[b.Addr]
	user := entry.Username
	host, port, err := net.SplitHostPort(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	otherPort := net.JoinHostPort(host, strconv.Itoa(p+1))

	doctor := func(t *testing.T, secretFile string, extra ...string) cmdResult {
		t.Helper()
		return berthKube(t, nil, "", append([]string{"doctor", image, "--secret-file", secretFile}, extra...)...)
	}
	doctorJSON := func(t *testing.T, secretFile string) doctorReport {
		t.Helper()
		r := doctor(t, secretFile, "-o", "json")
		var rep doctorReport
		mustUnmarshal(t, "berth doctor -o json", []byte(r.Stdout), &rep)
		if rep.Image != image {
			t.Errorf("berth doctor -o json: image %q, want %q", rep.Image, image)
		}
		if len(rep.Findings) == 0 {
			t.Errorf("berth doctor -o json: no findings:\n%s", r.Stdout)
		}
		if want := map[bool]int{true: 0, false: 1}[rep.Pull]; exitCode(r.Err) != want {
			t.Errorf("berth doctor -o json: pull %v but exit status %d (%v)", rep.Pull, exitCode(r.Err), r.Err)
		}
		return rep
	}

	t.Run("good", func(t *testing.T) {
		r := doctor(t, good.Path)
		out := mustSucceed(t, "berth doctor on the Secret from berth secret create", r)
		if !strings.Contains(out, "the kubelet would pull "+image) {
			t.Errorf("berth doctor exits 0 but does not say the kubelet would pull %s:\n%s", image, out)
		}
		if strings.Contains(out, "FAIL") {
			t.Errorf("berth doctor exits 0 but reports a failure:\n%s", out)
		}
		rep := doctorJSON(t, good.Path)
		if !rep.Pull {
			t.Errorf("berth doctor -o json on the good Secret: pull false:\n%+v", rep)
		}
		for _, f := range rep.Findings {
			if !f.OK {
				t.Errorf("berth doctor -o json on the good Secret: failing finding %+v", f)
			}
		}
	})

	withKey := func(key string) *kubeDockerConfig {
		return &kubeDockerConfig{Auths: map[string]kubeAuthEntry{key: entry}}
	}
	wrongPass := entry
	wrongPass.Password = "berth_wrong-" + randomHex(t, 8)
	wrongPass.Auth = base64.StdEncoding.EncodeToString([]byte(user + ":" + wrongPass.Password))
	cases := []struct {
		name string
		file string
		// check is the finding that must fail; message a part of its text.
		check, message string
	}{
		{"key without the port", brokenSecret(t, good, "noport", withKey(host), nil), "match", "no entry matches"},
		{"key with another port", brokenSecret(t, good, "otherport", withKey(otherPort), nil), "match", "no entry matches"},
		{"base64 twice", brokenSecret(t, good, "twice", nil, func(payload []byte) []byte {
			return []byte(base64.StdEncoding.EncodeToString(payload))
		}), "encoding", "base64 encoded twice"},
		{"wrong password", brokenSecret(t, good, "wrongpass", &kubeDockerConfig{Auths: map[string]kubeAuthEntry{b.Addr: wrongPass}}, nil),
			"credentials", "refuses the credentials"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := doctor(t, c.file)
			out := r.combined()
			if code := exitCode(r.Err); code != 1 {
				t.Errorf("berth doctor on a Secret with a %s: exit status %d (%v), want 1; output:\n%s", c.name, code, r.Err, out)
			}
			named := false
			for _, l := range lines(r.Stdout) {
				if strings.HasPrefix(l, "FAIL") && strings.Contains(l, c.check+":") && strings.Contains(l, c.message) {
					named = true
				}
			}
			if !named {
				t.Errorf("berth doctor on a Secret with a %s: no FAIL line for %s saying %q:\n%s", c.name, c.check, c.message, out)
			} else {
				t.Logf("berth doctor on a Secret with a %s:\n%s", c.name, strings.TrimSpace(r.Stdout))
			}
			if !strings.Contains(r.Stdout, "the kubelet would NOT pull "+image) {
				t.Errorf("berth doctor on a Secret with a %s does not conclude that the kubelet would not pull:\n%s", c.name, out)
			}

			rep := doctorJSON(t, c.file)
			if rep.Pull {
				t.Errorf("berth doctor -o json on a Secret with a %s: pull true", c.name)
			}
			found := false
			for _, f := range rep.Findings {
				if !f.OK && f.Check == c.check && strings.Contains(f.Message, c.message) {
					found = true
					if f.Fix == "" {
						t.Errorf("berth doctor -o json: finding %s has no fix", f.Check)
					}
				}
			}
			if !found {
				js, _ := json.MarshalIndent(rep, "", "  ")
				t.Errorf("berth doctor -o json on a Secret with a %s: no failing %q finding saying %q:\n%s", c.name, c.check, c.message, js)
			}
		})
	}
}
