package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

func auditCmd() *cobra.Command {
	o := &adminOpts{}
	var q adminclient.AuditQuery
	cmd := &cobra.Command{
		Use:   "audit [--actor NAME] [--namespace NS] [--action ACTION] [--since T] [--until T] [--limit N] [--before CURSOR]",
		Short: "Show the audit log (admins only)",
		Long: `Show the audit log, newest first: logins, failed logins, denied access and
every administrative change, from every replica, with who did it, from
which address, to what, and the outcome. Filters:

  --actor NAME        the user or robot that acted (or tried to)
  --namespace NS      the namespace acted on
  --action ACTION     e.g. "login failed", "robot created", "user deleted"
  --since T, --until T
                      an RFC 3339 time (2026-01-02T15:04:05Z) or an age
                      (90m, 1h, 7d): entries at or after --since and before
                      --until

A full page ends with the cursor of the next one: pass it as --before.
Admins only.` + adminHelp,
		Example: "  berth audit --since 1h\n  berth audit --actor alice --action 'login failed' --since 7d\n  berth audit --namespace team -o json",
		Args:    cobra.NoArgs,
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := o.connect()
		if err != nil {
			return err
		}
		page, raw, err := c.Audit(cmd.Context(), q)
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		rows := make([]string, 0, len(page.Entries))
		for _, e := range page.Entries {
			detail := strings.TrimSpace(string(e.Detail))
			if detail == "{}" {
				detail = ""
			}
			rows = append(rows, strings.Join([]string{fmt.Sprint(e.ID), e.At.UTC().Format("2006-01-02 15:04:05Z"), dash(e.Actor), dash(e.Address),
				e.Action, dash(e.Namespace), dash(e.Target), e.Outcome, dash(detail)}, "\t"))
		}
		if err := printTable(cmd.OutOrStdout(), "ID\tTIME\tACTOR\tADDRESS\tACTION\tNAMESPACE\tTARGET\tOUTCOME\tDETAIL", rows); err != nil {
			return err
		}
		if page.Next != "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "more: add --before %s\n", page.Next)
		}
		return nil
	}
	f := cmd.Flags()
	f.StringVar(&q.Actor, "actor", "", "only entries of this user or robot")
	f.StringVar(&q.Namespace, "namespace", "", "only entries about this namespace")
	f.StringVar(&q.Action, "action", "", `only this action, e.g. "login failed"`)
	f.StringVar(&q.Since, "since", "", "only entries at or after this time or age (RFC 3339, or e.g. 1h, 7d)")
	f.StringVar(&q.Until, "until", "", "only entries before this time or age")
	f.IntVar(&q.Limit, "limit", 50, "entries per page (at most 1000)")
	f.StringVar(&q.Before, "before", "", "page cursor: only entries older than the one it names (printed after a full page)")
	o.register(f)
	return cmd
}
