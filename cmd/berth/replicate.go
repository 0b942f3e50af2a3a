package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

func replicateCmd() *cobra.Command {
	o := &adminOpts{}
	return groupCmd("replicate", "Replication: copy images to and from other registries (admins)",
		`A replication rule copies images between berth and another registry
(another berth, CNCF Distribution, any OCI registry), digest for digest:
manifests byte for byte, indexes with all their child manifests, and the
referrers (signatures, SBOMs) of what it copies.

A push rule (--to URL) copies every image pushed to berth whose repository
matches --filter and whose tag matches --tags to the target registry, under
the same repository name. Pushes are queued durably in the push's own
transaction (the webhook outbox), so none is skipped across restarts or
crashes; a failed copy is retried with backoff, and given up ("dead")
after the last attempt (berth replicate redeliver queues those again).

A pull rule (--from URL) lists the remote's repositories that match
--filter and their tags that match --tags every --every, and copies what
berth lacks into berth through the normal push path (quotas, events and
webhooks apply). berth replicate run runs one now.`,
		o, replicateAddCmd(o), replicateListCmd(o), replicateRemoveCmd(o), replicateRunCmd(o), replicateRedeliverCmd(o))
}

// readRemotePassword reads a password from r, without one trailing
// newline (\n or \r\n).
func readRemotePassword(r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return "", fmt.Errorf("reading the remote registry's password from standard input: %w", err)
	}
	p := string(data)
	if s, ok := strings.CutSuffix(p, "\n"); ok {
		p = strings.TrimSuffix(s, "\r")
	}
	if p == "" {
		return "", errors.New("no password on standard input (pipe it in: echo \"$PASS\" | berth replicate add ... --password-stdin)")
	}
	return p, nil
}

// replicationRequest turns add's flags into the API's request.
func replicationRequest(name, to, from, filter, tags string, every time.Duration, everySet bool) (adminclient.NewReplicationRule, error) {
	req := adminclient.NewReplicationRule{Name: name, Filter: filter, Tags: tags}
	switch {
	case to != "" && from != "":
		return req, errors.New("give --to (push berth's images to a registry) or --from (pull a registry's images into berth), not both")
	case to != "":
		req.Direction, req.URL = "push", to
		if everySet {
			return req, errors.New("--every is for pull rules (--from): a push rule copies each push as it happens")
		}
	case from != "":
		req.Direction, req.URL = "pull", from
		if everySet {
			req.Every = every.String()
		}
	default:
		return req, errors.New("give --to URL (push replication) or --from URL (pull replication)")
	}
	return req, nil
}

func replicateAddCmd(o *adminOpts) *cobra.Command {
	var to, from, filter, tags, username string
	var every time.Duration
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "add NAME (--to URL | --from URL) [--filter GLOB] [--tags GLOB] [--every D] [--username U --password-stdin]",
		Short: "Add a push (--to) or pull (--from) replication rule",
		Long: `Add replication rule NAME.

--to URL makes a push rule: images pushed to berth from now on are copied to
the registry at URL (http:// or https://host[:port], no path). --from URL
makes a pull rule: berth copies the registry's images every --every
(default 1h, at least 1s).

--filter selects repositories with a glob whose * and ? stay within a path
segment (path.Match): 'team/*' matches team/app, not team/app/sub nor
other/app. --tags selects tags the same way ('v*'). Both default to all.
Of a push rule, pushes by digest (child manifests, referrers such as
signatures) always go.

--username with --password-stdin authenticates to the remote registry (a
robot account with push on the target, say); the password is read from
standard input, without one trailing newline, and never shown again.`,
		Example: "  echo \"$ROBOT_SECRET\" | berth replicate add dr --to https://dr.example.com --filter 'team/*' --username 'team+replica' --password-stdin\n" +
			"  berth replicate add releases --to http://10.0.0.5:5000 --tags 'v*'\n" +
			"  berth replicate add upstream --from https://registry.example.com --filter 'library/*' --tags 'v*' --every 10m",
		Args: exactArgs(1),
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		req, err := replicationRequest(args[0], to, from, filter, tags, every, cmd.Flags().Changed("every"))
		if err != nil {
			return err
		}
		switch {
		case username != "" && !passwordStdin:
			return fmt.Errorf("--username needs --password-stdin: the password is read from standard input only (echo \"$PASS\" | %s --username %s --password-stdin)", cmd.CommandPath(), username)
		case passwordStdin && username == "":
			return errors.New("--password-stdin needs --username: the remote user the password belongs to")
		case passwordStdin:
			if req.Password, err = readRemotePassword(cmd.InOrStdin()); err != nil {
				return err
			}
			req.Username = username
		}
		return nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, _ []string) error {
			r, raw, err := c.AddReplicationRule(cmd.Context(), req)
			if err != nil {
				return err
			}
			if *output == "json" {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			describeReplication(cmd.OutOrStdout(), r)
			return nil
		})(cmd, args)
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "push rule: copy what is pushed to berth to the registry at this URL")
	f.StringVar(&from, "from", "", "pull rule: copy the registry at this URL into berth on a schedule")
	f.StringVar(&filter, "filter", "", "repositories to replicate, a glob per path segment such as 'team/*' (default: all)")
	f.StringVar(&tags, "tags", "", "tags to replicate, a glob such as 'v*' (default: all)")
	f.DurationVar(&every, "every", 0, "pull rules: how often to run (default 1h)")
	f.StringVar(&username, "username", "", "the remote registry's user (with --password-stdin)")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the remote registry's password from standard input (with --username)")
	return cmd
}

// describeReplication says what a new rule does.
func describeReplication(w io.Writer, r adminclient.ReplicationRule) {
	what := fmt.Sprintf("repositories %s, tags %s", orAll(r.Filter), orAll(r.Tags))
	if r.Direction == "pull" {
		fmt.Fprintf(w, "replication rule %s: pulls %s from %s into berth every %s\n", r.Name, what, r.URL, shortTTL(r.Every))
		return
	}
	fmt.Fprintf(w, "replication rule %s: images pushed to berth (%s) are copied to %s\n", r.Name, what, r.URL)
}

func orAll(glob string) string {
	if glob == "" {
		return "all"
	}
	return glob
}

func replicateListCmd(o *adminOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List the replication rules with their queues and last runs", Args: cobra.NoArgs}
	output := outputFlag(cmd)
	cmd.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, _ []string) error {
		rs, raw, err := c.ReplicationRules(cmd.Context())
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		return replicationTable(cmd.OutOrStdout(), rs, time.Now())
	})
	return cmd
}

// replicationTable prints the rules: a push rule's queue (pending and
// dead events, the newest failure), a pull rule's last run.
func replicationTable(w io.Writer, rs []adminclient.ReplicationRule, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIRECTION\tREMOTE\tFILTER\tTAGS\tPENDING\tDEAD\tLAST-ERROR\tLAST-RUN")
	for _, r := range rs {
		pending, dead, lastErr, lastRun := fmt.Sprint(r.Pending), fmt.Sprint(r.Dead), r.LastError, "-"
		if r.Direction == "pull" {
			pending, dead, lastErr, lastRun = "-", "-", "", "never (every "+shortTTL(r.Every)+")"
			if lr := r.LastRun; lr != nil {
				lastErr = lr.Error
				lastRun = fmt.Sprintf("%s: %d copied, %d skipped, %d failed", ago(lr.StartedAt, now), lr.Copied, lr.Skipped, lr.Failed)
				if lr.FinishedAt == "" || lr.FinishedAt < lr.StartedAt {
					lastRun = ago(lr.StartedAt, now) + ": running"
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Direction, r.URL, orAll(r.Filter), orAll(r.Tags),
			pending, dead, dash(oneLine(lastErr, 60)), lastRun)
	}
	return tw.Flush()
}

// ago renders an RFC 3339 time as how long before now it was.
func ago(stamp string, now time.Time) string {
	t, err := time.Parse(time.RFC3339, stamp)
	if err != nil {
		return stamp
	}
	d := now.Sub(t).Round(time.Second)
	if d < time.Second {
		return "just now"
	}
	return shortTTL(d.String()) + " ago"
}

// oneLine cuts an error to one line of at most n characters.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func replicateRemoveCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a replication rule and its queue; what it copied stays",
		Args:  exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			return c.RemoveReplicationRule(cmd.Context(), args[0])
		}),
	}
}

func replicateRunCmd(o *adminOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run NAME",
		Short: "Run a pull rule now and print what it copied",
		Long: `Run pull rule NAME now (after a run of it going on on this server ends)
and print what the run did: tags copied, tags berth had already (skipped),
and tags that failed. A run that outlasts the request goes on on the server;
berth replicate list shows its outcome.`,
		Example: "  berth replicate run upstream",
		Args:    exactArgs(1),
	}
	output := outputFlag(cmd)
	cmd.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
		run, raw, err := c.RunReplicationRule(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%d copied, %d skipped (present), %d failed\n", run.Copied, run.Skipped, run.Failed)
		if run.Error != "" {
			return fmt.Errorf("the run failed: %s", run.Error)
		}
		return nil
	})
	return cmd
}

func replicateRedeliverCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "redeliver NAME",
		Short: "Queue a push rule's dead (given up) copies again",
		Args:  exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			n, err := c.RedeliverReplication(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d queued again\n", n)
			return nil
		}),
	}
}
