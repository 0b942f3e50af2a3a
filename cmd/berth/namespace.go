package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

func namespaceCmd() *cobra.Command {
	o := &adminOpts{}
	cmd := groupCmd("namespace", "Manage namespaces and their members",
		`Create, list and delete namespaces, make them public or private, and
manage who may do what in them. Member roles, weakest first: reader,
writer, maintainer, owner.`,
		o, nsCreateCmd(o), nsListCmd(o), nsSetPublicCmd(o), nsDeleteCmd(o),
		nsMembersCmd(o), nsAddMemberCmd(o), nsRemoveMemberCmd(o))
	cmd.Aliases = []string{"ns"}
	return cmd
}

// nsRun builds a RunE that connects and calls f.
func nsRun(o *adminOpts, f func(cmd *cobra.Command, c *adminclient.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := o.connect()
		if err != nil {
			return err
		}
		return f(cmd, c, args)
	}
}

func visibility(public bool) string {
	if public {
		return "public"
	}
	return "private"
}

func nsCreateCmd(o *adminOpts) *cobra.Command {
	var public bool
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a namespace",
		Long:  "Create a namespace. A public namespace can be pulled from without logging in.",
		Example: `  berth namespace create team
  berth namespace create opensource --public`,
		Args: exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			ns, err := c.CreateNamespace(cmd.Context(), args[0], public)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created %s namespace %s\n", visibility(ns.Public), ns.Name)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&public, "public", false, "allow anonymous pulls")
	return cmd
}

func nsListCmd(o *adminOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the namespaces you can see",
		Long:    "List the namespaces you can see, with your role in each (- when you are not a member).",
		Example: `  berth namespace list
  berth namespace list -o json`,
		Args: exactArgs(0),
	}
	output := outputFlag(cmd)
	cmd.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, _ []string) error {
		list, raw, err := c.ListNamespaces(cmd.Context())
		if err != nil {
			return err
		}
		return printList(cmd.OutOrStdout(), *output, raw, list, "NAME\tVISIBILITY\tROLE\tCREATED", func(n adminclient.Namespace) string {
			return strings.Join([]string{n.Name, visibility(n.Public), dash(n.Role), when(&n.CreatedAt)}, "\t")
		})
	})
	return cmd
}

func nsSetPublicCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "set-public NAME true|false",
		Short: "Make a namespace public or private",
		Long:  "Make a namespace public (anyone may pull without logging in) or private.",
		Example: `  berth namespace set-public opensource true
  berth namespace set-public team false`,
		Args: exactArgs(2),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			public, err := strconv.ParseBool(args[1])
			if err != nil {
				return fmt.Errorf("%q is not true or false", args[1])
			}
			ns, err := c.SetNamespacePublic(cmd.Context(), args[0], public)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Namespace %s is now %s\n", ns.Name, visibility(ns.Public))
			return nil
		}),
	}
}

func nsDeleteCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a namespace",
		Example: `  berth namespace delete team`,
		Args:    exactArgs(1),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			if err := c.DeleteNamespace(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted namespace %s\n", args[0])
			return nil
		}),
	}
}

func nsMembersCmd(o *adminOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members NAME",
		Short: "List a namespace's members and their roles",
		Example: `  berth namespace members team
  berth namespace members team -o json`,
		Args: exactArgs(1),
	}
	output := outputFlag(cmd)
	cmd.RunE = nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
		list, raw, err := c.ListMembers(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		rows := make([]string, 0, len(list))
		for _, m := range list {
			rows = append(rows, m.User+"\t"+m.Role)
		}
		return printTable(cmd.OutOrStdout(), "USER\tROLE", rows)
	})
	return cmd
}

func nsAddMemberCmd(o *adminOpts) *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "add-member NAME USER --role ROLE",
		Short: "Add a user to a namespace or change their role",
		Long: `Add a user to a namespace with a role, or change the role of a member.
Roles, weakest first: reader, writer, maintainer, owner.`,
		Example: `  berth namespace add-member team alice --role writer
  berth namespace add-member team bob --role owner`,
		Args: exactArgs(2),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			if !slices.Contains(adminclient.Roles, role) {
				return fmt.Errorf("unknown role %q (use one of %s)", role, strings.Join(adminclient.Roles, ", "))
			}
			m, err := c.SetMember(cmd.Context(), args[0], args[1], role)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is now %s of namespace %s\n", m.User, withArticle(m.Role), args[0])
			return nil
		}),
	}
	cmd.Flags().StringVar(&role, "role", "", "the member's role: "+strings.Join(adminclient.Roles, ", "))
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func withArticle(role string) string {
	if role == "owner" {
		return "an owner"
	}
	return "a " + role
}

func nsRemoveMemberCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "remove-member NAME USER",
		Short:   "Remove a user from a namespace",
		Example: `  berth namespace remove-member team bob`,
		Args:    exactArgs(2),
		RunE: nsRun(o, func(cmd *cobra.Command, c *adminclient.Client, args []string) error {
			if err := c.RemoveMember(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed %s from namespace %s\n", args[1], args[0])
			return nil
		}),
	}
}
