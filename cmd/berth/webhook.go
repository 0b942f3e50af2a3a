package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

func webhookCmd() *cobra.Command {
	o := &adminOpts{}
	var w adminclient.NewWebhook
	var evs string
	add := &cobra.Command{
		Use:   "add NAME --url URL [--namespace NS] [--events push,delete,...] [--format distribution|cloudevents]",
		Short: "Register a webhook endpoint (admins; owners of --namespace for its events)",
		Long: `Register an HTTP endpoint that receives berth's events. Without --namespace
the endpoint receives the events of the whole registry (admins only); with
it, that namespace's (its owners may add it).

Events: push, pull, delete, tag_delete, quota_exceeded, gc, account
(default: push,delete,tag_delete). Formats: distribution (CNCF
Distribution's notification envelope, default) or cloudevents (CloudEvents
1.0, structured JSON). Each delivery carries a Berth-Signature header, an
HMAC-SHA256 of the body keyed with the secret (generated and shown once
unless --secret gives one); docs/operations.md shows how to verify it.`,
		Example: "  berth webhook add ci --url https://ci.example.com/hooks/berth --namespace team --events push\n" +
			"  berth webhook add audit --url https://siem.example.com/in --format cloudevents --events push,delete,tag_delete,account",
		Args: exactArgs(1),
	}
	addOutput := outputFlag(add)
	add.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
		w.Name, w.Events = args[0], splitList(evs)
		if w.URL == "" {
			return fmt.Errorf("--url is required: where to POST the events")
		}
		created, raw, err := c.AddWebhook(cmd.Context(), w)
		if err != nil {
			return err
		}
		if *addOutput == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "webhook %s: %s events to %s (%s)\nsecret: %s\n(the secret is not shown again: give it to the receiver to verify signatures)\n",
			created.Name, strings.Join(created.Events, ","), created.URL, created.Format, created.Secret)
		return nil
	})
	add.Flags().StringVar(&w.URL, "url", "", "the endpoint's http:// or https:// URL")
	add.Flags().StringVar(&w.Namespace, "namespace", "", "only this namespace's events (default: the whole registry, admins only)")
	add.Flags().StringVar(&evs, "events", "", "comma-separated events (default push,delete,tag_delete)")
	add.Flags().StringVar(&w.Format, "format", "", "distribution (default) or cloudevents")
	add.Flags().StringVar(&w.Secret, "secret", "", "the signing secret, 16 to 256 characters (default: generated)")
	add.Flags().StringVar(&w.Timeout, "timeout", "", "how long to wait for the endpoint per attempt (default 10s, at most 1m)")

	list := &cobra.Command{Use: "list", Short: "List the webhook endpoints you manage", Args: cobra.NoArgs}
	listOutput := outputFlag(list)
	list.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, _ []string) error {
		ws, raw, err := c.Webhooks(cmd.Context())
		if err != nil {
			return err
		}
		if *listOutput == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tNAMESPACE\tEVENTS\tFORMAT\tURL")
		for _, w := range ws {
			ns := w.Namespace
			if ns == "" {
				ns = "(all)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", w.Name, ns, strings.Join(w.Events, ","), w.Format, w.URL)
		}
		return tw.Flush()
	})

	remove := &cobra.Command{
		Use: "remove NAME", Short: "Remove a webhook endpoint and its queued deliveries", Args: exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			return c.RemoveWebhook(cmd.Context(), args[0])
		}),
	}

	test := &cobra.Command{
		Use: "test NAME", Short: "Send a ping event to a webhook endpoint now and show its answer", Args: exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			r, err := c.TestWebhook(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if !r.OK {
				return fmt.Errorf("webhook %s failed the test: %s (check its URL, and that the receiver answers 2xx)", args[0], r.Error)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "webhook %s answered %d\n", args[0], r.Status)
			return nil
		}),
	}

	var state string
	var before int64
	var limit int
	deliveries := &cobra.Command{
		Use:     "deliveries NAME [--state pending|delivered|dead]",
		Short:   "List a webhook endpoint's deliveries, newest first",
		Example: "  berth webhook deliveries ci --state dead",
		Args:    exactArgs(1),
	}
	delOutput := outputFlag(deliveries)
	deliveries.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
		ds, raw, err := c.WebhookDeliveries(cmd.Context(), args[0], state, before, limit)
		if err != nil {
			return err
		}
		if *delOutput == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEVENT\tACTION\tREPOSITORY\tSTATE\tATTEMPTS\tLAST")
		for _, d := range ds {
			last := d.LastError
			if last == "" && d.LastStatus != 0 {
				last = strconv.Itoa(d.LastStatus)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.Event, d.Action, d.Repository, d.State, d.Attempts, last)
		}
		return tw.Flush()
	})
	deliveries.Flags().StringVar(&state, "state", "", "only deliveries in this state: pending, delivered or dead")
	deliveries.Flags().Int64Var(&before, "before", 0, "only deliveries with ids below this (paging)")
	deliveries.Flags().IntVar(&limit, "limit", 100, "at most this many (1-1000)")

	var ids []int64
	redeliver := &cobra.Command{
		Use:   "redeliver NAME [--id ID]...",
		Short: "Queue deliveries again: the given ones, or every dead one",
		Example: "  berth webhook redeliver ci            # every dead delivery\n" +
			"  berth webhook redeliver ci --id 42    # one delivery, whatever its state",
		Args: exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			n, err := c.RedeliverWebhook(cmd.Context(), args[0], ids)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d deliveries queued\n", n)
			return nil
		}),
	}
	redeliver.Flags().Int64SliceVar(&ids, "id", nil, "a delivery id (repeatable); none: every dead delivery")
	return groupCmd("webhook", "Webhooks: HTTP endpoints that receive push, delete and other events",
		`Webhooks receive berth's events (pushes, deletions, quota refusals, garbage
collection runs, account changes) at least once, in order per repository,
signed with the endpoint's secret. Events are stored with the change that
caused them, so a push that was acknowledged is always announced.`, o, add, list, remove, test, deliveries, redeliver)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
