package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

func tokenCmd() *cobra.Command {
	o := &adminOpts{}
	return groupCmd("token", "Manage your personal access tokens",
		"A personal access token is a password of yours for docker login and\n"+
			"CI, which cannot sign in through your directory: limited to\n"+
			"repository patterns and actions, never more than you may do\n"+
			"yourself, expiring, revocable. berth keeps only its hash.",
		o, tokenCreateCmd(o), tokenListCmd(o), tokenRevokeCmd(o))
}

func tokenCreateCmd(o *adminOpts) *cobra.Command {
	var scopes, actions []string
	var expires string
	cmd := &cobra.Command{
		Use:   "create --name NAME [--scope PATTERN] [--actions ACTIONS] [--expires 30d]",
		Short: "Make a personal access token",
		Long: `Make a personal access token for docker login, CI or a pull Secret:
the password to give with your user name. --scope limits it to repository
patterns (team/*, team/app; repeatable; default every repository you may
reach), --actions to pull, push, delete (default pull,push). It expires
after --expires (default 30d, at most 366d). The token is printed once.`,
		Example: `  berth token create --name ci --scope 'team/*' --actions pull,push --expires 30d
  berth token create --name laptop`,
		Args: exactArgs(0),
	}
	var name string
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if name == "" {
			return fmt.Errorf("--name is required (it tells your tokens apart: berth token list)")
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
		t, raw, err := c.CreatePersonalToken(cmd.Context(), adminclient.NewPersonalToken{Name: name, Scopes: scopes, Actions: actions, ExpiresIn: expires})
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "Created token %s (id %d, expires %s)\n", t.Name, t.ID, when(&t.ExpiresAt))
		fmt.Fprintf(w, "Token: %s\n", t.Secret)
		fmt.Fprintln(w, "It is not shown again; store it now. To use it:")
		host := strings.TrimPrefix(strings.TrimPrefix(c.URL(), "https://"), "http://")
		fmt.Fprintf(w, "  docker login %s -u '%s' --password-stdin\n", host, c.Username())
		return nil
	}
	cmd.Flags().StringVar(&name, "name", "", "the token's name")
	cmd.Flags().StringArrayVar(&scopes, "scope", nil, "repository pattern the token may use, e.g. 'team/*' (repeatable)")
	cmd.Flags().StringSliceVar(&actions, "actions", nil, "comma-separated actions: pull, push, delete")
	cmd.Flags().StringVar(&expires, "expires", "", "lifetime: a Go duration (720h) or days (30d); default 30d")
	return cmd
}

func tokenListCmd(o *adminOpts) *cobra.Command {
	return listCmd(o, "List your personal access tokens", "  berth token list", (*adminclient.Client).PersonalTokens,
		"ID\tNAME\tSCOPES\tACTIONS\tEXPIRES\tLAST USED\tREVOKED", func(t adminclient.PersonalToken) string {
			scopes := strings.Join(t.Scopes, " ")
			if scopes == "" {
				scopes = "(all yours)"
			}
			return strconv.FormatInt(t.ID, 10) + "\t" + t.Name + "\t" + scopes + "\t" + strings.Join(t.Actions, ",") + "\t" +
				when(&t.ExpiresAt) + "\t" + when(&t.LastUsed) + "\t" + strconv.FormatBool(t.Revoked)
		})
}

func tokenRevokeCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke one of your personal access tokens",
		Example: `  berth token revoke 3`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("ID %q: want the number berth token list shows", args[0])
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			if err := c.RevokePersonalToken(cmd.Context(), id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked token %d\n", id)
			return nil
		},
	}
}
