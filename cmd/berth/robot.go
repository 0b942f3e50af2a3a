package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

func robotCmd() *cobra.Command {
	o := &adminOpts{}
	return groupCmd("robot", "Manage robot accounts for CI and other machines",
		`Create, list and revoke robot accounts. A robot belongs to a namespace,
is named NAMESPACE+NAME (team+ci), may act only on the repositories its
scopes match, and only with its actions (pull, push, delete). Its secret
is shown once, when it is created.`,
		o, robotCreateCmd(o), robotListCmd(o), robotRevokeCmd(o))
}

// robotName returns the full name (ns+name) of a robot given by its full
// or short name.
func robotName(ns, name string) (full, short string, err error) {
	if rest, ok := strings.CutPrefix(name, ns+"+"); ok {
		name = rest
	}
	if name == "" || strings.Contains(name, "+") {
		return "", "", fmt.Errorf("robot %q is not in namespace %s", name, ns)
	}
	return ns + "+" + name, name, nil
}

func robotCreateCmd(o *adminOpts) *cobra.Command {
	var scopes, actions []string
	var expires string
	cmd := &cobra.Command{
		Use:   "create NAMESPACE NAME --scope PATTERN --actions ACTIONS",
		Short: "Create a robot account and print its secret once",
		Long: `Create a robot account in a namespace. It is named NAMESPACE+NAME and may
use only the repositories that match one of its --scope patterns (such as
team/* or team/app), with only its --actions: pull, push, delete. --expires
takes a Go duration (720h) or a number of days (90d); without it the robot
never expires.

The secret is printed once and cannot be shown again. -o json prints the
server's answer, secret included, instead.`,
		Example: `  berth robot create team ci --scope 'team/*' --actions pull,push --expires 90d
  berth robot create team deploy --scope team/app --scope team/db --actions pull`,
		Args: exactArgs(2),
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ns := args[0]
		full, short, err := robotName(ns, args[1])
		if err != nil {
			return err
		}
		for _, a := range actions {
			if !slices.Contains(adminclient.Actions, a) {
				return fmt.Errorf("unknown action %q (use %s)", a, strings.Join(adminclient.Actions, ", "))
			}
		}
		c, err := o.connect()
		if err != nil {
			return err
		}
		r, raw, err := c.CreateRobot(cmd.Context(), ns, adminclient.NewRobot{
			Name: short, Scopes: scopes, Actions: actions, ExpiresIn: expires,
		})
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		if r.Name == "" {
			r.Name = full
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "Created robot %s (expires: %s)\n", r.Name, when(r.ExpiresAt))
		fmt.Fprintf(w, "Name:   %s\n", r.Name)
		fmt.Fprintf(w, "Secret: %s\n", r.Secret)
		fmt.Fprintln(w, "The secret is not shown again; store it now. To use it:")
		host := strings.TrimPrefix(strings.TrimPrefix(c.URL(), "https://"), "http://")
		fmt.Fprintf(w, "  docker login %s -u '%s' --password-stdin\n", host, r.Name)
		return nil
	}
	cmd.Flags().StringArrayVar(&scopes, "scope", nil, "repository pattern the robot may use, e.g. 'team/*' (repeatable)")
	cmd.Flags().StringSliceVar(&actions, "actions", nil, "comma-separated actions: pull, push, delete")
	cmd.Flags().StringVar(&expires, "expires", "", "lifetime: a Go duration (720h) or days (90d); default never")
	_ = cmd.MarkFlagRequired("scope")
	_ = cmd.MarkFlagRequired("actions")
	return cmd
}

func robotStatus(r adminclient.Robot, now time.Time) string {
	switch {
	case r.Revoked:
		return "revoked"
	case r.ExpiresAt != nil && !r.ExpiresAt.After(now):
		return "expired"
	}
	return "active"
}

func robotListCmd(o *adminOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list NAMESPACE",
		Aliases: []string{"ls"},
		Short:   "List a namespace's robot accounts",
		Example: `  berth robot list team
  berth robot list team -o json`,
		Args: exactArgs(1),
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := o.connect()
		if err != nil {
			return err
		}
		list, raw, err := c.ListRobots(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		now := time.Now()
		rows := make([]string, 0, len(list))
		for _, r := range list {
			rows = append(rows, strings.Join([]string{
				r.Name, strings.Join(r.Scopes, ","), strings.Join(r.Actions, ","),
				robotStatus(r, now), when(r.ExpiresAt), when(r.LastUsedAt), when(&r.CreatedAt),
			}, "\t"))
		}
		return printTable(cmd.OutOrStdout(), "NAME\tSCOPES\tACTIONS\tSTATUS\tEXPIRES\tLAST USED\tCREATED", rows)
	}
	return cmd
}

func robotRevokeCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAMESPACE FULLNAME",
		Short: "Revoke a robot account",
		Long: `Revoke a robot account: its secret stops working. FULLNAME is the name
berth robot list shows (team+ci); the short name (ci) works too.`,
		Example: `  berth robot revoke team team+ci`,
		Args:    exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			full, _, err := robotName(args[0], args[1])
			if err != nil {
				return err
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			if err := c.RevokeRobot(cmd.Context(), args[0], full); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked robot %s\n", full)
			return nil
		},
	}
}
