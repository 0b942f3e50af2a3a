package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

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
	output      *string
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
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace of the Pod and Secrets (default: the Pod's, else (no Pod) the Secret file's, else the kubeconfig context's, else default)")
	f.StringVar(&o.podFile, "pod-file", "", "Pod manifest: its image, namespace and imagePullSecrets")
	f.StringVar(&o.pod, "pod", "", "live Pod in the cluster, in --namespace")
	f.StringVar(&o.platform, "platform", "linux/amd64", "the node's platform")
	f.BoolVar(&o.plainHTTP, "plain-http", false, "speak plain HTTP to the registry (default only for loopback hosts)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&o.kubecontext, "context", "", "kubeconfig context")
	o.output = formatFlag(cmd, "", "text", "json")
	return cmd
}

func (o *doctorOpts) run(cmd *cobra.Command, image string, out io.Writer) error {
	ctx := cmd.Context()
	req := kube.Request{Image: image, Names: o.secrets, Namespace: o.namespace, Platform: o.platform}
	if err := readManifests(&req, append(slices.Clone(o.secretFiles), o.podFile)); err != nil {
		return err
	}
	cs, contextNS, pod, err := o.connect(ctx, req.Files, req.Pod)
	if err != nil {
		return err
	}
	req.Pod, req.ContextNS = pod, contextNS
	if cs != nil {
		req.Lookup = func(ns, name string) (kube.SecretInput, error) { return kube.ClusterSecret(ctx, cs, ns, name) }
	}
	in, err := kube.Assemble(req)
	if errors.Is(err, kube.ErrNoImage) {
		return errors.New("no image: give IMAGE, --pod-file or --pod")
	}
	if err != nil {
		return err
	}
	prober := &kube.HTTPProber{}
	if o.plainHTTP {
		prober.PlainHTTP = func(string) bool { return true }
	}
	findings, ok := kube.Diagnose(ctx, in, prober)
	if *o.output == "json" {
		printDoctorJSON(out, in.Image, ok, findings)
	} else {
		printDoctorText(out, in.Image, ok, findings)
	}
	if !ok {
		return errPullWouldFail
	}
	return nil
}

// connect opens the cluster when the doctor needs it (nil otherwise) and
// returns the kubeconfig context's namespace and the Pod, read from the
// cluster with --pod.
func (o *doctorOpts) connect(ctx context.Context, files []kube.SecretInput, pod *kube.PodInfo) (kubernetes.Interface, string, *kube.PodInfo, error) {
	if !o.needCluster(files, pod) {
		return nil, "", pod, nil
	}
	cs, contextNS, err := kube.Client(o.kubeconfig, o.kubecontext)
	if err != nil {
		return nil, "", nil, o.clusterError(err, pod)
	}
	if o.pod != "" {
		if pod, err = kube.ClusterPod(ctx, cs, cmp.Or(o.namespace, contextNS), o.pod); err != nil {
			return nil, "", nil, err
		}
	}
	return cs, contextNS, pod, nil
}

// readManifests adds the Secrets and the Pod of manifest files to req.
func readManifests(req *kube.Request, paths []string) error {
	for _, path := range paths {
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := req.AddManifests(b); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// needCluster tells whether the doctor must read a Pod or Secrets from
// the cluster: --pod, --secret, or a Pod file that lists Secrets when no
// Secret file is given.
func (o *doctorOpts) needCluster(files []kube.SecretInput, pod *kube.PodInfo) bool {
	return o.pod != "" || len(o.secrets) > 0 || pod != nil && len(files) == 0 && len(pod.PullSecrets) > 0
}

// clusterError turns "no kubeconfig" into what the user can do instead.
func (o *doctorOpts) clusterError(err error, pod *kube.PodInfo) error {
	if !errors.Is(err, kube.ErrNoCluster) {
		return err
	}
	what := "the Pod's imagePullSecrets"
	switch {
	case o.pod != "":
		what = "pod " + o.pod
	case len(o.secrets) > 0:
		what = "secret " + strings.Join(o.secrets, ", ")
	case pod != nil:
		what += " (" + strings.Join(pod.PullSecrets, ", ") + ")"
	}
	return fmt.Errorf("%s must be read from a cluster, and no cluster is configured (no kubeconfig); give the Secrets as files with --secret-file (and the Pod with --pod-file), or set --kubeconfig", what)
}

// printDoctorJSON prints the report as -o json.
func printDoctorJSON(out io.Writer, image string, ok bool, findings []kube.Finding) {
	b, _ := json.MarshalIndent(struct {
		Image    string         `json:"image"`
		Pull     bool           `json:"pull"`
		Findings []kube.Finding `json:"findings"`
	}{image, ok, findings}, "", "  ")
	fmt.Fprintln(out, string(b))
}

// printDoctorText prints the report one line per finding, fixes beneath.
func printDoctorText(out io.Writer, image string, ok bool, findings []kube.Finding) {
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
		fmt.Fprintln(out, "the kubelet would pull "+image)
	} else {
		fmt.Fprintln(out, "the kubelet would NOT pull "+image)
	}
}
