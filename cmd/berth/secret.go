package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
	"github.com/berth-registry/berth/internal/kube"
)

const defaultDockerConfig = "~/.docker/config.json"

type secretOpts struct {
	admin          adminOpts
	namespace      string
	fromConfig     string
	registries     []string
	username       string
	passwordStdin  bool
	server         string
	robot          bool
	scopes         []string
	expires        string
	output         *string
	apply          bool
	serviceAccount string
	printPod       string
	kubeconfig     string
	kubecontext    string
}

func secretCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Make Kubernetes pull Secrets for berth",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(secretCreateCmd())
	return cmd
}

func secretCreateCmd() *cobra.Command {
	o := &secretOpts{}
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Print (or apply) a kubernetes.io/dockerconfigjson pull Secret",
		Long: `Print a Secret of type kubernetes.io/dockerconfigjson (data key
.dockerconfigjson: the docker config as one base64 string) from one of:

  --from-docker-config [PATH]   a docker config (default ~/.docker/config.json),
                                optionally only the --registry-host entries; credentials
                                kept by a credential helper (credsStore,
                                credHelpers) are fetched from it and embedded,
                                because the kubelet cannot run helpers
  --username U --password-stdin --server HOST
  --robot --scope 'team/*' [--expires 90d]
                                a new pull-only robot created on the berth server
                                of berth login, so no personal password lands in
                                the cluster

--apply sends it to the cluster of the current kubeconfig context (server-side
apply); --service-account also adds it to that ServiceAccount's
imagePullSecrets; --print-pod IMAGE prints a Pod that uses it.`,
		Example: `  berth secret create regcred --robot --scope 'team/*' --expires 90d --apply
  berth secret create regcred --from-docker-config --registry-host 127.0.0.1:5000 -n apps
  echo "$PASS" | berth secret create regcred --server reg.example.com:5000 --username ci --password-stdin -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			// "--from-docker-config PATH" (without =) leaves PATH as a
			// second argument: take it as the file.
			if len(args) == 2 && o.fromConfig == defaultDockerConfig {
				o.fromConfig = args[1]
				return nil
			}
			return exactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", "", "namespace of the Secret (default: the kubeconfig context's with --apply, else default)")
	f.StringVar(&o.fromConfig, "from-docker-config", "", "docker config file to take credentials from")
	f.Lookup("from-docker-config").NoOptDefVal = defaultDockerConfig
	f.StringSliceVar(&o.registries, "registry-host", nil, "with --from-docker-config: only these registries (repeatable)")
	f.StringVar(&o.username, "username", "", "user name (with --password-stdin and --server)")
	f.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from standard input")
	f.StringVar(&o.server, "server", "", "registry host[:port] the credentials are for")
	f.BoolVar(&o.robot, "robot", false, "create a pull-only robot on the berth server for this Secret")
	f.StringSliceVar(&o.scopes, "scope", nil, "with --robot: repositories it may pull (team/* or team/app; repeatable)")
	f.StringVar(&o.expires, "expires", "", "with --robot: lifetime (90d, 720h); default never")
	f.BoolVar(&o.apply, "apply", false, "apply the Secret to the cluster of the current kubeconfig context")
	f.StringVar(&o.serviceAccount, "service-account", "", "with --apply: add the Secret to this ServiceAccount's imagePullSecrets")
	f.StringVar(&o.printPod, "print-pod", "", "also print a Pod running this image with the Secret")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&o.kubecontext, "context", "", "kubeconfig context (default the current one)")
	o.output = formatFlag(cmd, "", "yaml", "json")
	o.admin.register(f)
	return cmd
}

func (o *secretOpts) sources() int {
	n := 0
	for _, on := range []bool{o.fromConfig != "", o.username != "" || o.passwordStdin, o.robot} {
		if on {
			n++
		}
	}
	return n
}

func (o *secretOpts) run(ctx context.Context, name string, stdin io.Reader, stdout io.Writer) error {
	if o.sources() != 1 {
		return errors.New("give exactly one of --from-docker-config, --username/--password-stdin/--server or --robot (see --help)")
	}
	cfg, err := o.dockerConfig(ctx, name, stdin)
	if err != nil {
		return err
	}
	ns := o.namespace
	if o.apply {
		cs, ctxNS, err := kube.Client(o.kubeconfig, o.kubecontext)
		if err != nil {
			return err
		}
		if ns == "" {
			ns = ctxNS
		}
		s, err := kube.PullSecret(name, ns, cfg)
		if err != nil {
			return err
		}
		if err := kube.ApplySecret(ctx, cs, s, o.serviceAccount); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "secret/%s applied in namespace %s\n", name, ns)
	}
	if ns == "" {
		ns = "default"
	}
	s, err := kube.PullSecret(name, ns, cfg)
	if err != nil {
		return err
	}
	out, err := kube.Render(s, *o.output)
	if err != nil {
		return err
	}
	if o.printPod != "" {
		pod, err := kube.Render(kube.PodUsing("private-reg", ns, o.printPod, name), *o.output)
		if err != nil {
			return err
		}
		sep := "---\n"
		if *o.output == "json" {
			sep = ""
		}
		out = append(append(out, sep...), pod...)
	}
	_, err = stdout.Write(out)
	return err
}

// dockerConfig builds the Secret's payload from the chosen source.
func (o *secretOpts) dockerConfig(ctx context.Context, name string, stdin io.Reader) (*kube.DockerConfig, error) {
	switch {
	case o.fromConfig != "":
		path := o.fromConfig
		if dir := os.Getenv("DOCKER_CONFIG"); dir != "" && path == defaultDockerConfig {
			path = filepath.Join(dir, "config.json") // as docker itself does
		}
		if rest, ok := strings.CutPrefix(path, "~/"); ok {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, err
			}
			path = filepath.Join(home, rest)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read docker config: %w (run docker login first)", err)
		}
		cfg, err := kube.ParseDockerConfig(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return cfg.ForKubelet(ctx, o.registries, kube.RunHelper)
	case o.robot:
		return o.robotConfig(ctx, name)
	default:
		if o.username == "" || o.server == "" || !o.passwordStdin {
			return nil, errors.New("--username, --password-stdin and --server go together")
		}
		pw, err := io.ReadAll(io.LimitReader(stdin, 4096))
		if err != nil {
			return nil, err
		}
		pass := strings.TrimRight(string(pw), "\r\n")
		if pass == "" {
			return nil, errors.New("no password on standard input")
		}
		return &kube.DockerConfig{Auths: map[string]kube.AuthEntry{o.server: kube.NewEntry(o.username, pass)}}, nil
	}
}

// robotConfig creates a pull-only robot for the Secret on the berth server
// the CLI is logged in to.
func (o *secretOpts) robotConfig(ctx context.Context, name string) (*kube.DockerConfig, error) {
	if len(o.scopes) == 0 {
		return nil, errors.New("--robot needs --scope (e.g. --scope 'team/*')")
	}
	ns, _, _ := strings.Cut(strings.TrimSuffix(o.scopes[0], "/*"), "/")
	c, err := o.admin.connect()
	if err != nil {
		return nil, err
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	robotName := strings.ToLower(strings.ReplaceAll(name, ".", "-")) + "-" + hex.EncodeToString(suffix)
	r, _, err := c.CreateRobot(ctx, ns, adminclient.NewRobot{Name: robotName, Scopes: o.scopes, Actions: []string{"pull"}, ExpiresIn: o.expires})
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(c.URL())
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "created robot %s (pull only: %s)\n", r.Name, strings.Join(o.scopes, " "))
	return &kube.DockerConfig{Auths: map[string]kube.AuthEntry{u.Host: kube.NewEntry(r.Name, r.Secret)}}, nil
}
