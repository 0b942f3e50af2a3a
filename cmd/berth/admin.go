package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-registry/berth/internal/adminclient"
)

// This file holds what the admin API commands (login, user, namespace,
// robot, keys) share, and the keys command group.

// adminOpts are the connection flags every admin command takes.
type adminOpts struct {
	registry string
	caCert   string
	insecure bool
}

func (o *adminOpts) register(fs *pflag.FlagSet) {
	fs.StringVar(&o.registry, "registry", "", "server URL (default: $BERTH_REGISTRY, else the current server of berth login)")
	fs.StringVar(&o.caCert, "ca-cert", "", "PEM file of CA certificates to trust (default: $BERTH_CA_CERT)")
	fs.BoolVar(&o.insecure, "insecure-skip-tls-verify", false, "do not verify the server's TLS certificate (unsafe)")
}

// targetOf is the target with the server named by args (a URL), when
// given, and that server's resolved base URL.
func (o *adminOpts) targetOf(args []string) (adminclient.Target, string, error) {
	t := o.target()
	if len(args) == 1 {
		t.Registry = args[0]
	}
	base, err := t.ResolveURL()
	return t, base, err
}

func (o *adminOpts) target() adminclient.Target {
	return adminclient.Target{
		Registry:              o.registry,
		CACertFile:            o.caCert,
		InsecureSkipTLSVerify: o.insecure,
		Getenv:                os.Getenv,
		UserAgent:             "berth-cli/" + strings.Fields(versionString())[1],
	}
}

func (o *adminOpts) connect() (*adminclient.Client, error) {
	return adminclient.Connect(o.target())
}

// adminHelp is appended to the long help of every admin command group.
const adminHelp = `

The server is --registry, else $BERTH_REGISTRY, else the current server of
berth login. Credentials are $BERTH_USERNAME and $BERTH_PASSWORD when both
are set, else those stored by berth login for that server.`

// groupCmd returns a command group whose subcommands share the connection
// flags in o.
func groupCmd(use, short, long string, o *adminOpts, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: long + adminHelp, Args: cobra.NoArgs}
	o.register(cmd.PersistentFlags())
	cmd.AddCommand(subs...)
	return cmd
}

// exactArgs is cobra.ExactArgs with an error that shows the usage line.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("usage: %s (see --help)", cmd.UseLine())
		}
		return nil
	}
}

// outputFlag adds -o/--output to a list command: table or json.
func outputFlag(cmd *cobra.Command) *string {
	return formatFlag(cmd, "json is the server's JSON", "table", "json")
}

// printJSON prints a server response indented.
func printJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}

// listCmd is a `list` command (alias ls, -o table|json) that fetches
// items and prints one row per item under header.
func listCmd[T any](o *adminOpts, short, example string, fetch func(*adminclient.Client, context.Context) ([]T, json.RawMessage, error), header string, row func(T) string) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   short,
		Example: example,
		Args:    exactArgs(0),
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := o.connect()
		if err != nil {
			return err
		}
		items, raw, err := fetch(c, cmd.Context())
		if err != nil {
			return err
		}
		return printList(cmd.OutOrStdout(), *output, raw, items, header, row)
	}
	return cmd
}

// printList prints a list command's answer: the server's JSON when format
// is json, else a table of one row (tab-separated cells) per item.
func printList[T any](w io.Writer, format string, raw json.RawMessage, items []T, header string, row func(T) string) error {
	if format == "json" {
		return printJSON(w, raw)
	}
	rows := make([]string, 0, len(items))
	for _, it := range items {
		rows = append(rows, row(it))
	}
	return printTable(w, header, rows)
}

// printTable prints rows of tab-separated cells under header, aligned.
func printTable(w io.Writer, header string, rows []string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	return tw.Flush()
}

// when formats a time for a table; the zero time and nil print as never.
func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

// dash prints an empty cell as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func keysCmd() *cobra.Command {
	o := &adminOpts{}
	rotate := &cobra.Command{
		Use:     "rotate",
		Short:   "Start signing tokens with a new key (admins only)",
		Long:    "Generate a new token signing key; the server signs new tokens with it.",
		Example: `  berth keys rotate`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.connect()
			if err != nil {
				return err
			}
			kid, err := c.RotateKeys(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Rotated the token signing key; new key id: %s\n", kid)
			return nil
		},
	}
	return groupCmd("keys", "Manage the token signing keys", "Manage the keys the server signs its tokens with.", o, rotate)
}
