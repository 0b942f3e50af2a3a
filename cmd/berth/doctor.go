package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/kube"
)

// errPullWouldFail makes the doctor exit 1 without another message.
var errPullWouldFail = errors.New("")

type doctorOpts struct {
	secretFiles []string
	secrets     []string
	namespace   string
	podFile     string
	pod         string
	platform    string
	output      string
	plainHTTP   bool
	kubeconfig  string
	kubecontext string
}

func doctorCmd() *cobra.Command {
	o := &doctorOpts{}
	cmd := &cobra.Command{
		Use:   "doctor [IMAGE]",
		Short: "Tell whether the kubelet would pull an image with given Secrets, and if not, why",
		Long: `Check, in the order the kubelet meets them, everything between a Pod's
imagePullSecrets and a successful pull: the Secret exists in the Pod's
namespace, its type and data key, the base64 (once), the JSON and its auths,
each entry's auth, which entry matches the image's registry by the kubelet's
keyring rules, the registry accepting the credentials (a real token
exchange), the account's right to pull, the tag or digest, and the platform.

One line per finding with a fix for each. Exit status 0 only if the pull
would succeed.`,
		Example: `  berth doctor 127.0.0.1:5000/team/app:v1 --secret-file regcred.yaml
  berth doctor --pod-file my-private-reg-pod.yaml --secret-file regcred.yaml
  berth doctor --pod private-reg -n awesomeapps          # live Pod and Secrets
  berth doctor 127.0.0.1:5000/team/app:v1 -n apps --secret regcred -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			image := ""
			if len(args) == 1 {
				image = args[0]
			}
			return o.run(cmd, image, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.secretFiles, "secret-file", nil, "Secret manifest (YAML or JSON; repeatable)")
	f.StringArrayVar(&o.secrets, "secret", nil, "Secret in the cluster, in --namespace (repeatable)")
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace of the Pod and Secrets (default: the kubeconfig context's, or default)")
	f.StringVar(&o.podFile, "pod-file", "", "Pod manifest: its image, namespace and imagePullSecrets")
	f.StringVar(&o.pod, "pod", "", "live Pod in the cluster, in --namespace")
	f.StringVar(&o.platform, "platform", "linux/amd64", "the node's platform")
	f.StringVarP(&o.output, "output", "o", "text", "text or json")
	f.BoolVar(&o.plainHTTP, "plain-http", false, "speak plain HTTP to the registry (default only for loopback hosts)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&o.kubecontext, "context", "", "kubeconfig context")
	return cmd
}

func (o *doctorOpts) run(cmd *cobra.Command, image string, out io.Writer) error {
	ctx := cmd.Context()
	in := kube.Input{Image: image, PodNamespace: o.namespace, Platform: o.platform}
	var fileSecrets []kube.SecretInput
	var pod *kube.PodInfo
	for _, path := range append(slices.Clone(o.secretFiles), o.podFile) {
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		secrets, p, err := kube.ParseManifests(b)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fileSecrets = append(fileSecrets, secrets...)
		if p != nil {
			pod = p
		}
	}
	needCluster := o.pod != "" || len(o.secrets) > 0 || pod != nil && len(fileSecrets) == 0 && len(pod.PullSecrets) > 0
	var lookup func(name string) (kube.SecretInput, error)
	if needCluster {
		cs, ctxNS, err := kube.Client(o.kubeconfig, o.kubecontext)
		if err != nil {
			return err
		}
		if in.PodNamespace == "" {
			in.PodNamespace = ctxNS
		}
		if o.pod != "" {
			if pod, err = kube.ClusterPod(ctx, cs, in.PodNamespace, o.pod); err != nil {
				return err
			}
		}
		lookup = func(name string) (kube.SecretInput, error) { return kube.ClusterSecret(ctx, cs, in.PodNamespace, name) }
	}
	if pod != nil {
		if in.PodNamespace == "" {
			in.PodNamespace = pod.Namespace
		}
		if in.Image == "" && len(pod.Images) > 0 {
			in.Image = pod.Images[0]
		}
	}
	if in.PodNamespace == "" {
		in.PodNamespace = "default"
	}
	if in.Image == "" {
		return errors.New("no image: give IMAGE, --pod-file or --pod")
	}
	// The Secrets the Pod lists, in its order, from files first.
	names := o.secrets
	if pod != nil {
		names = pod.PullSecrets
	}
	byName := map[string]kube.SecretInput{}
	for _, s := range fileSecrets {
		byName[s.Name] = s
	}
	if pod == nil && len(o.secrets) == 0 {
		in.Secrets = fileSecrets
	}
	for _, name := range names {
		if s, ok := byName[name]; ok {
			in.Secrets = append(in.Secrets, s)
			continue
		}
		if lookup == nil {
			in.Secrets = append(in.Secrets, kube.SecretInput{Name: name})
			continue
		}
		s, err := lookup(name)
		if err != nil {
			return err
		}
		in.Secrets = append(in.Secrets, s)
	}
	prober := &kube.HTTPProber{}
	if o.plainHTTP {
		prober.PlainHTTP = func(string) bool { return true }
	}
	findings, ok := kube.Diagnose(ctx, in, prober)
	if o.output == "json" {
		b, _ := json.MarshalIndent(struct {
			Image    string         `json:"image"`
			Pull     bool           `json:"pull"`
			Findings []kube.Finding `json:"findings"`
		}{in.Image, ok, findings}, "", "  ")
		fmt.Fprintln(out, string(b))
	} else {
		for _, f := range findings {
			mark := "ok  "
			if !f.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(out, "%s %-11s %s\n", mark, f.Check+":", f.Message)
			if f.Fix != "" {
				fmt.Fprintf(out, "     %-11s %s\n", "fix:", f.Fix)
			}
		}
		if ok {
			fmt.Fprintln(out, "the kubelet would pull "+in.Image)
		} else {
			fmt.Fprintln(out, "the kubelet would NOT pull "+in.Image)
		}
	}
	if !ok {
		return errPullWouldFail
	}
	return nil
}
