package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// noCluster sets an environment with no kubeconfig and no registry
// login: KUBECONFIG names a missing file, HOME is empty, and the process
// is not in a cluster.
func noCluster(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("KUBECONFIG", filepath.Join(home, "missing-kubeconfig"))
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", filepath.Join(home, ".docker"))
	t.Setenv("BERTH_REGISTRY", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
}

// writeManifest writes a manifest into dir and returns its path.
func writeManifest(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// secretYAML is a pull Secret manifest; ns may be empty.
func secretYAML(name, ns, typ, key, payload string) string {
	meta := "  name: " + name + "\n"
	if ns != "" {
		meta += "  namespace: " + ns + "\n"
	}
	return "apiVersion: v1\nkind: Secret\nmetadata:\n" + meta + "type: " + typ + "\ndata:\n  " + key + ": " + b64(payload) + "\n"
}

// podYAML is a Pod manifest running image with one pull Secret.
func podYAML(image, secret string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: private-reg\nspec:\n  containers:\n  - name: app\n    image: " + image +
		"\n  imagePullSecrets:\n  - name: " + secret + "\n"
}

// TestDoctorCommand runs berth doctor on manifest files, with no cluster
// and a registry that is not there (127.0.0.1:1 refuses connections), for
// the mistakes that the doctor must name before it asks the registry.
func TestDoctorCommand(t *testing.T) {
	noCluster(t)
	const registry = "127.0.0.1:1"
	image := registry + "/team/app:v1"
	config := `{"auths":{"` + registry + `":{"auth":"` + b64("ci:secret") + `"}}}`
	dir := t.TempDir()
	regcred := writeManifest(t, dir, "regcred.yaml", secretYAML("regcred", "", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", config))
	inApps := writeManifest(t, dir, "apps.yaml", secretYAML("regcred", "apps", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", config))
	legacy := writeManifest(t, dir, "legacy.yaml", secretYAML("regcred", "", "kubernetes.io/dockercfg", ".dockercfg", config))
	pod := writeManifest(t, dir, "pod.yaml", podYAML(image, "regcred"))
	pod2 := writeManifest(t, dir, "pod2.yaml", podYAML(image, "regcred2"))

	cases := []struct {
		name string
		args []string
		// report: the doctor prints a report and exits 1 (else it fails
		// with an error); says: phrases of the report or the error, with
		// single spaces; not: phrases that must not be there.
		report    bool
		says, not []string
	}{
		{"dockercfg type holding a docker config file", []string{image, "--secret-file", legacy}, true, []string{
			"FAIL type:",
			`secret regcred has the legacy type kubernetes.io/dockercfg but the new content ({"auths": {...}})`,
			"type kubernetes.io/dockerconfigjson and the data under key .dockerconfigjson",
			`drop the "auths" wrapper`,
		}, []string{"neither auth nor username"}},
		{"secret file's namespace when no Pod and no -n", []string{image, "--secret-file", inApps}, true, []string{
			"ok secret: secret regcred: type, key and encoding are right",
			"FAIL registry: cannot reach " + registry,
		}, []string{"is in namespace apps"}},
		{"pod file, no secret file, no kubeconfig", []string{"--pod-file", pod}, false, []string{
			"the Pod's imagePullSecrets (regcred) must be read from a cluster, and no cluster is configured",
			"give the Secrets as files with --secret-file",
		}, []string{"KUBERNETES_MASTER"}},
		{"pod names a secret other than the one passed", []string{"--pod-file", pod2, "--secret-file", regcred}, true, []string{
			"FAIL secret:",
			"secret regcred2 not found; you passed regcred, which the Pod does not list",
			"list regcred in the Pod's imagePullSecrets, or name the Secret regcred2",
		}, nil},
		{"-n still wins over the secret file's namespace", []string{image, "--secret-file", inApps, "-n", "default"}, true, []string{
			"FAIL secret: secret regcred is in namespace apps, the Pod in default",
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := doctorCmd()
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			cmd.SetArgs(c.args)
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			err := cmd.Execute()
			text := out.String()
			switch {
			case c.report && !errors.Is(err, errPullWouldFail):
				t.Fatalf("berth doctor %s: error %v, want a report and exit status 1; output:\n%s", strings.Join(c.args, " "), err, text)
			case !c.report && (err == nil || errors.Is(err, errPullWouldFail)):
				t.Fatalf("berth doctor %s: error %v, want a one-line error; output:\n%s", strings.Join(c.args, " "), err, text)
			case !c.report:
				text = err.Error()
				if strings.Contains(text, "\n") {
					t.Errorf("error is not one line: %q", text)
				}
			}
			text = squash(text) // phrases ignore the report's column widths
			for _, p := range c.says {
				if !strings.Contains(text, p) {
					t.Errorf("berth doctor %s does not say %q:\n%s", strings.Join(c.args, " "), p, text)
				}
			}
			for _, p := range c.not {
				if strings.Contains(text, p) {
					t.Errorf("berth doctor %s says %q:\n%s", strings.Join(c.args, " "), p, text)
				}
			}
		})
	}
}

// squash collapses runs of white space into one space.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }
