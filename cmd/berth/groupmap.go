package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

func groupMapCmd() *cobra.Command {
	o := &adminOpts{}
	return groupCmd("group-map", "Map directory groups to namespace roles (admins only)",
		"With single sign-on (docs/sso.md), people's roles can come from their\n"+
			"directory groups: a mapping gives a group's members a role in a\n"+
			"namespace. berth reads a person's groups at each sign-in, so that\n"+
			"leaving a group removes the role within a token's lifetime.",
		o, groupMapAddCmd(o), groupMapListCmd(o), groupMapRemoveCmd(o))
}

func groupMapAddCmd(o *adminOpts) *cobra.Command {
	var ns, role string
	cmd := &cobra.Command{
		Use:   "add GROUP --namespace NS --role ROLE",
		Short: "Give a directory group's members a role in a namespace",
		Long: `Give a directory group's members a role in a namespace (reader, writer,
maintainer or owner). Adding the mapping of a group and namespace again
changes its role. GROUP is the group's name as the directory gives it
(ldap_group_attr, cn by default).`,
		Example: `  berth group-map add team-dev --namespace team --role writer`,
		Args:    exactArgs(1),
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if ns == "" || role == "" {
			return fmt.Errorf("--namespace and --role are required (roles: %s)", strings.Join(adminclient.Roles, ", "))
		}
		c, err := o.connect()
		if err != nil {
			return err
		}
		m, raw, err := c.AddGroupMapping(cmd.Context(), adminclient.GroupMapping{Group: args[0], Namespace: ns, Role: role})
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Group %s: %s in %s (mapping %d)\n", m.Group, m.Role, m.Namespace, m.ID)
		return nil
	}
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "the namespace")
	cmd.Flags().StringVar(&role, "role", "", "the role: "+strings.Join(adminclient.Roles, ", "))
	return cmd
}

func groupMapListCmd(o *adminOpts) *cobra.Command {
	return listCmd(o, "List the group mappings", "  berth group-map list", (*adminclient.Client).GroupMappings,
		"ID\tGROUP\tNAMESPACE\tROLE", func(m adminclient.GroupMapping) string {
			return strconv.FormatInt(m.ID, 10) + "\t" + m.Group + "\t" + m.Namespace + "\t" + m.Role
		})
}

func groupMapRemoveCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "remove ID",
		Aliases: []string{"rm"},
		Short:   "Delete a group mapping (its members lose the role at once)",
		Example: `  berth group-map remove 3`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("ID %q: want the number berth group-map list shows", args[0])
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			if err := c.DeleteGroupMapping(cmd.Context(), id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted group mapping %d\n", id)
			return nil
		},
	}
}
