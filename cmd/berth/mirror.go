package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-registry/berth/internal/adminclient"
)

func mirrorCmd() *cobra.Command {
	o := &adminOpts{}
	return groupCmd("mirror", "Pull-through mirrors: cache Docker Hub and other registries in berth (admins)",
		`A mirror makes berth a pull-through cache of another registry: a pull of
NAMESPACE/PATH that berth does not have yet is fetched from the upstream,
stored and served; later pulls are served from berth. Tags are asked of
the upstream again after the mirror's tag TTL; when the upstream is down,
the cached tags are served as they are. A mirror's namespace is read-only:
pushes into it are refused.

The mirror marked --docker-hub also serves Docker Hub's names that are in
no berth namespace (alpine, bitnami/redis), as Docker Engine's
registry-mirrors asks for them, and every mirror serves the registry hosts
it names (--host, and its upstream's host) to containerd, which sends the
host as ?ns=. berth mirror node-config prints the nodes' Docker and
containerd settings for that. Only admins manage mirrors.`,
		o, mirrorAddCmd(o), mirrorListCmd(o), mirrorUpdateCmd(o), mirrorRemoveCmd(o), mirrorNodeConfigCmd(o))
}

// mirrorCreds are the upstream credential flags of mirror add and update:
// the password comes from standard input only, never from the command
// line.
type mirrorCreds struct {
	username      string
	passwordStdin bool
}

func (f *mirrorCreds) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.username, "username", "", "the upstream user (with --password-stdin)")
	fs.BoolVar(&f.passwordStdin, "password-stdin", false, "read the upstream password from standard input (with --username)")
}

// read checks that the flags go together and returns the username and
// the password read from stdin; both are empty when neither flag is
// given.
func (f *mirrorCreds) read(cmd *cobra.Command) (username, password string, err error) {
	switch {
	case f.username != "" && !f.passwordStdin:
		return "", "", fmt.Errorf("--username needs --password-stdin: the upstream password is read from standard input only (echo \"$PASS\" | %s --username %s --password-stdin)", cmd.CommandPath(), f.username)
	case f.passwordStdin && f.username == "":
		return "", "", errors.New("--password-stdin needs --username: the upstream user the password belongs to")
	case !f.passwordStdin:
		return "", "", nil
	}
	password, err = readUpstreamPassword(cmd.InOrStdin())
	return f.username, password, err
}

// readUpstreamPassword reads a password from r, without one trailing
// newline (\n or \r\n).
func readUpstreamPassword(r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return "", fmt.Errorf("reading the upstream password from standard input: %w", err)
	}
	p := string(data)
	if s, ok := strings.CutSuffix(p, "\n"); ok {
		p = strings.TrimSuffix(s, "\r")
	}
	if p == "" {
		return "", errors.New("no password on standard input (pipe it in: echo \"$PASS\" | berth mirror ... --password-stdin)")
	}
	return p, nil
}

// shortTTL writes a Go duration without its zero tail: 10m, not 10m0s.
func shortTTL(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil || d == 0 {
		return s
	}
	s = d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// describeMirror prints what a mirror serves, after add and update.
func describeMirror(w io.Writer, m adminclient.Mirror) {
	fmt.Fprintf(w, "mirror %s: %s/<path> pulls from %s (tags re-checked after %s)\n", m.Name, m.Namespace, m.Upstream, shortTTL(m.TagTTL))
	if m.DockerHub {
		fmt.Fprintln(w, "Docker Hub names without a namespace in berth (alpine, bitnami/redis) and ?ns=docker.io resolve to it")
	} else if hosts := mirrorHosts(m); len(hosts) > 0 {
		fmt.Fprintf(w, "containerd pulls from %s (?ns=) resolve to it (node settings: berth mirror node-config)\n", strings.Join(hosts, ", "))
	}
}

func mirrorAddCmd(o *adminOpts) *cobra.Command {
	var req adminclient.MirrorRequest
	var creds mirrorCreds
	var ttl time.Duration
	var dockerHub bool
	cmd := &cobra.Command{
		Use:   "add NAME --upstream URL [--namespace NS] [--username U --password-stdin] [--tag-ttl D] [--docker-hub] [--host H]...",
		Short: "Add a pull-through mirror of a registry",
		Long: `Add a mirror named NAME of the registry at --upstream (an http:// or
https:// URL without a path, such as https://registry-1.docker.io). Its
content is cached in namespace --namespace (default: NAME), which becomes
read-only: NS/PATH pulls PATH from the upstream.

With --username and --password-stdin berth pulls from the upstream as that
user (Docker Hub's pull limits are higher for accounts); the password is
read from standard input, without one trailing newline, and the server
never shows it again. --tag-ttl says how long a tag is served from the
cache before the upstream is asked again (default 10m, at most 720h).

--docker-hub marks the mirror of Docker Hub (at most one): Docker Hub's
names that are in no berth namespace (alpine, bitnami/redis) and
containerd's ?ns=docker.io resolve to it. --host names a registry host the
mirror stands in for with containerd (repeatable; its upstream's host is
one already).`,
		Example: "  berth mirror add hub --upstream https://registry-1.docker.io --docker-hub\n" +
			"  echo \"$HUB_TOKEN\" | berth mirror add hub --upstream https://registry-1.docker.io --docker-hub --username ci --password-stdin\n" +
			"  berth mirror add ghcr --upstream https://ghcr.io --tag-ttl 1h\n" +
			"  berth mirror add quay --namespace quay-io --upstream https://quay.io --host quay.example.com",
		Args: exactArgs(1),
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		req.Name = args[0]
		if req.Upstream == "" {
			return errors.New("--upstream is required: the registry to pull from, such as https://registry-1.docker.io")
		}
		var err error
		if req.Username, req.Password, err = creds.read(cmd); err != nil {
			return err
		}
		if cmd.Flags().Changed("tag-ttl") {
			req.TagTTL = ttl.String()
		}
		if dockerHub {
			req.DockerHub = &dockerHub
		}
		return nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, _ []string) error {
			m, raw, err := c.AddMirror(cmd.Context(), req)
			if err != nil {
				return err
			}
			return printMirror(cmd, *output, m, raw)
		})(cmd, args)
	}
	f := cmd.Flags()
	f.StringVar(&req.Upstream, "upstream", "", "the registry to pull from: http:// or https:// URL without a path")
	f.StringVar(&req.Namespace, "namespace", "", "the namespace the mirror caches in (default: NAME)")
	creds.register(f)
	f.DurationVar(&ttl, "tag-ttl", 0, "how long a cached tag is served before the upstream is asked again (default 10m)")
	f.BoolVar(&dockerHub, "docker-hub", false, "this is the mirror of Docker Hub (names without a namespace, ?ns=docker.io)")
	f.StringSliceVar(&req.Hosts, "host", nil, "a registry host this mirror serves to containerd (?ns=HOST); repeatable")
	return cmd
}

// printMirror prints a mirror as add and update answer it: the server's
// JSON with -o json, else describeMirror's lines.
func printMirror(cmd *cobra.Command, output string, m adminclient.Mirror, raw json.RawMessage) error {
	if output == "json" {
		return printJSON(cmd.OutOrStdout(), raw)
	}
	describeMirror(cmd.OutOrStdout(), m)
	return nil
}

func mirrorListCmd(o *adminOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List the mirrors", Args: cobra.NoArgs}
	output := outputFlag(cmd)
	cmd.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, _ []string) error {
		ms, raw, err := c.Mirrors(cmd.Context())
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tNAMESPACE\tUPSTREAM\tTAG-TTL\tDOCKER-HUB\tHOSTS\tAUTH")
		for _, m := range ms {
			hub, auth := "no", "anonymous"
			if m.DockerHub {
				hub = "yes"
			}
			if m.Username != "" {
				auth = "user " + m.Username
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Namespace, m.Upstream, shortTTL(m.TagTTL), hub, dash(strings.Join(m.Hosts, ",")), auth)
		}
		return tw.Flush()
	})
	return cmd
}

func mirrorUpdateCmd(o *adminOpts) *cobra.Command {
	var req adminclient.MirrorRequest
	var creds mirrorCreds
	var ttl time.Duration
	var dockerHub bool
	cmd := &cobra.Command{
		Use:   "update NAME [--upstream URL] [--username U --password-stdin | --clear-credentials] [--tag-ttl D] [--docker-hub=true|false] [--host H]...",
		Short: "Change a mirror's upstream, credentials, tag TTL, Docker Hub mark or hosts",
		Long: `Change what the flags given say of mirror NAME; the rest stays as it is.
Its name and namespace stay too (remove and add it again to move it).

--username with --password-stdin sets new upstream credentials (the
password read from standard input); --clear-credentials makes the upstream
anonymous. --host replaces the mirror's hosts (--host '' clears them);
--docker-hub=false takes the Docker Hub mark away.`,
		Example: "  berth mirror update ghcr --tag-ttl 24h\n" +
			"  echo \"$HUB_TOKEN\" | berth mirror update hub --username ci --password-stdin\n" +
			"  berth mirror update hub --clear-credentials\n" +
			"  berth mirror update quay --host quay.example.com --host quay.internal:5000",
		Args: exactArgs(1),
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		f := cmd.Flags()
		if req.ClearCredentials && (creds.username != "" || creds.passwordStdin) {
			return errors.New("--clear-credentials makes the upstream anonymous: give it without --username and --password-stdin")
		}
		var err error
		if req.Username, req.Password, err = creds.read(cmd); err != nil {
			return err
		}
		if f.Changed("tag-ttl") {
			req.TagTTL = ttl.String()
		}
		if f.Changed("docker-hub") {
			req.DockerHub = &dockerHub
		}
		if f.Changed("host") && req.Hosts == nil {
			req.Hosts = []string{}
		}
		if !slices.ContainsFunc([]string{"upstream", "username", "clear-credentials", "tag-ttl", "docker-hub", "host"}, f.Changed) {
			return errors.New("nothing to change: give --upstream, --username with --password-stdin, --clear-credentials, --tag-ttl, --docker-hub or --host")
		}
		return nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			m, raw, err := c.UpdateMirror(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return printMirror(cmd, *output, m, raw)
		})(cmd, args)
	}
	f := cmd.Flags()
	f.StringVar(&req.Upstream, "upstream", "", "the registry to pull from: http:// or https:// URL without a path")
	creds.register(f)
	f.BoolVar(&req.ClearCredentials, "clear-credentials", false, "pull from the upstream anonymously from now on")
	f.DurationVar(&ttl, "tag-ttl", 0, "how long a cached tag is served before the upstream is asked again")
	f.BoolVar(&dockerHub, "docker-hub", false, "mark (true) or unmark (false) the mirror as Docker Hub's")
	f.StringSliceVar(&req.Hosts, "host", nil, "the registry hosts this mirror serves to containerd, replacing the current ones (repeatable; '' for none)")
	return cmd
}

func mirrorRemoveCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a mirror; what it cached stays, as an ordinary namespace",
		Long: `Remove mirror NAME. Nothing more is fetched from its upstream; what it
cached stays in its namespace, which becomes an ordinary (writable)
namespace, until deleted or collected.`,
		Example: "  berth mirror remove ghcr",
		Args:    exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			return c.RemoveMirror(cmd.Context(), args[0])
		}),
	}
}

// containerdNote says what containerd needs besides the hosts.toml files.
const containerdNote = `note: containerd reads these files only with config_path = "/etc/containerd/certs.d" under [plugins."io.containerd.grpc.v1.cri".registry] in /etc/containerd/config.toml; docs/mirror.md shows a DaemonSet that rolls this out to the nodes`

func mirrorNodeConfigCmd(o *adminOpts) *cobra.Command {
	var outDir string
	cmd := &cobra.Command{
		Use:   "node-config [--registry URL] [--out DIR]",
		Short: "Print the nodes' Docker and containerd settings that pull through the mirrors",
		Long: `Read the mirrors from the server and print the settings that make a node's
container runtimes pull through them, with berth at --registry (the URL the
nodes reach berth at):

  /etc/docker/daemon.json: "registry-mirrors" (Docker Engine mirrors only
  Docker Hub, so only when a mirror is marked --docker-hub), and
  "insecure-registries" when berth is http:// on a host other than
  localhost or 127.0.0.1. Merge it into the node's file and restart dockerd.

  /etc/containerd/certs.d/HOST/hosts.toml, one per registry host a mirror
  serves: docker.io for the Docker Hub mirror, and every other mirror's
  hosts and its upstream's host. containerd tries berth first and falls
  back to the registry itself. containerd reads them only with
  config_path = "/etc/containerd/certs.d" under
  [plugins."io.containerd.grpc.v1.cri".registry] in its config.toml
  ([plugins."io.containerd.cri.v1.images".registry] in containerd 2).

With --out DIR the files are written under DIR (DIR/docker/daemon.json,
DIR/containerd/certs.d/HOST/hosts.toml), ready to copy or to put in a
ConfigMap; docs/mirror.md shows a DaemonSet that rolls them out.`,
		Example: "  berth mirror node-config --registry http://berth.example.com:5000\n" +
			"  berth mirror node-config --out ./node-config",
		Args: exactArgs(0),
	}
	cmd.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, _ []string) error {
		ms, _, err := c.Mirrors(cmd.Context())
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			return errors.New("no mirrors yet: add one first (berth mirror add hub --upstream https://registry-1.docker.io --docker-hub)")
		}
		files, err := nodeConfig(c.URL(), ms)
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		for _, rel := range nodeConfigOrder(files) {
			if outDir == "" {
				fmt.Fprintf(w, "# /etc/%s\n%s\n", rel, files[rel])
				continue
			}
			p := filepath.Join(outDir, filepath.FromSlash(rel))
			if err := writeNodeFile(p, files[rel]); err != nil {
				return err
			}
			fmt.Fprintf(w, "wrote %s (for /etc/%s)\n", p, rel)
		}
		if _, ok := files[daemonJSONPath]; !ok {
			fmt.Fprintln(w, "note: no daemon.json: Docker Engine mirrors only Docker Hub, and no mirror is marked --docker-hub")
		}
		fmt.Fprintln(w, containerdNote)
		return nil
	})
	cmd.Flags().StringVar(&outDir, "out", "", "write the files under this directory instead of printing them")
	return cmd
}

func writeNodeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Chmod(path, 0o644)
}

// daemonJSONPath is Docker Engine's configuration, relative to /etc.
const daemonJSONPath = "docker/daemon.json"

// dockerHubServer is Docker Hub's registry, containerd's fallback for
// docker.io.
const dockerHubServer = "https://registry-1.docker.io"

// nodeConfig renders the node files that make Docker Engine and containerd
// pull through the mirrors from berth at berthURL, by path relative to
// /etc: docker/daemon.json when a mirror is Docker Hub's, and
// containerd/certs.d/HOST/hosts.toml for each registry host a mirror
// serves.
func nodeConfig(berthURL string, mirrors []adminclient.Mirror) (map[string]string, error) {
	u, err := url.Parse(berthURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("berth URL %q: want http:// or https://host[:port]", berthURL)
	}
	base := u.Scheme + "://" + u.Host
	// The Docker Hub mirror first: docker.io is its, whatever else names it.
	ms := slices.Clone(mirrors)
	slices.SortStableFunc(ms, func(a, b adminclient.Mirror) int {
		switch {
		case a.DockerHub == b.DockerHub:
			return 0
		case a.DockerHub:
			return -1
		}
		return 1
	})
	files := map[string]string{}
	add := func(host, server string, m adminclient.Mirror) {
		p := "containerd/certs.d/" + host + "/hosts.toml"
		if _, ok := files[p]; ok {
			return
		}
		files[p] = fmt.Sprintf("# berth mirror %s: containerd pulls %s images from berth, else from the server below.\nserver = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n",
			m.Name, host, server, base)
	}
	for _, m := range ms {
		if m.DockerHub {
			files[daemonJSONPath] = daemonJSON(u)
			add("docker.io", dockerHubServer, m)
			continue
		}
		for _, h := range mirrorHosts(m) {
			add(h, m.Upstream, m)
		}
	}
	return files, nil
}

// daemonJSON is Docker Engine's daemon.json that uses berth at u as its
// Docker Hub mirror.
func daemonJSON(u *url.URL) string {
	d := struct {
		Mirrors  []string `json:"registry-mirrors"`
		Insecure []string `json:"insecure-registries,omitempty"`
	}{Mirrors: []string{u.Scheme + "://" + u.Host}}
	// Docker allows plain http to 127.0.0.0/8 (and so localhost) already.
	if u.Scheme == "http" && !ipv4Loopback(u.Hostname()) {
		d.Insecure = []string{u.Host}
	}
	b, _ := json.MarshalIndent(d, "", "  ")
	return string(b) + "\n"
}

func ipv4Loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.To4() != nil && ip.IsLoopback()
}

// mirrorHosts lists the registry hosts a mirror serves to containerd: its
// hosts and its upstream's host, without repeats.
func mirrorHosts(m adminclient.Mirror) []string {
	var hosts []string
	for _, h := range m.Hosts {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	if u, err := url.Parse(m.Upstream); err == nil && u.Host != "" {
		if h := strings.ToLower(u.Host); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// nodeConfigOrder lists the files daemon.json first, then the hosts.toml
// files by host.
func nodeConfigOrder(files map[string]string) []string {
	var paths []string
	for p := range files {
		if p != daemonJSONPath {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	if _, ok := files[daemonJSONPath]; ok {
		paths = append([]string{daemonJSONPath}, paths...)
	}
	return paths
}
