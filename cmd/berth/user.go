package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/adminclient"
)

func userCmd() *cobra.Command {
	o := &adminOpts{}
	return groupCmd("user", "Manage user accounts (admins only)",
		"Create, list, disable and delete user accounts and set their\npasswords. All of these need an admin account.",
		o, userAddCmd(o), userListCmd(o), userPasswdCmd(o), userDeleteCmd(o), userDisableCmd(o, true), userDisableCmd(o, false))
}

func userAddCmd(o *adminOpts) *cobra.Command {
	var admin, passwordStdin bool
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Create a user account",
		Long: `Create a user account. With --password-stdin the password is read from
standard input; otherwise the server generates one, which is printed once
and cannot be shown again. -o json prints the server's answer instead.`,
		Example: `  berth user add alice
  berth user add root2 --admin
  echo "$PASSWORD" | berth user add bob --password-stdin`,
		Args: exactArgs(1),
	}
	output := outputFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		nu := adminclient.NewUser{Name: args[0], Admin: admin}
		if passwordStdin {
			var err error
			if nu.Password, err = readPasswordStdin(cmd.InOrStdin()); err != nil {
				return err
			}
		}
		c, err := o.connect()
		if err != nil {
			return err
		}
		u, raw, err := c.CreateUser(cmd.Context(), nu)
		if err != nil {
			return err
		}
		if *output == "json" {
			return printJSON(cmd.OutOrStdout(), raw)
		}
		kind := "user"
		if u.Admin {
			kind = "admin user"
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "Created %s %s\n", kind, u.Name)
		printGenerated(w, u.Password)
		return nil
	}
	cmd.Flags().BoolVar(&admin, "admin", false, "make the user an administrator")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	return cmd
}

// printGenerated prints a password the server generated, if any.
func printGenerated(w io.Writer, password string) {
	if password == "" {
		return
	}
	fmt.Fprintf(w, "Password: %s\n", password)
	fmt.Fprintln(w, "This password is not shown again; store it now.")
}

func userListCmd(o *adminOpts) *cobra.Command {
	return listCmd(o, "List user accounts", "  berth user list\n  berth user list -o json", (*adminclient.Client).ListUsers,
		"NAME\tADMIN\tSOURCE\tDISABLED\tCREATED", func(u adminclient.User) string {
			return u.Name + "\t" + strconv.FormatBool(u.Admin) + "\t" + u.Source + "\t" + strconv.FormatBool(u.Disabled) + "\t" + when(&u.CreatedAt)
		})
}

func userPasswdCmd(o *adminOpts) *cobra.Command {
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "passwd NAME",
		Short: "Set a user's password",
		Long: `Set a user's password. With --password-stdin the new password is read
from standard input; otherwise the server generates one, which is printed
once and cannot be shown again.`,
		Example: `  berth user passwd alice
  echo "$NEW_PASSWORD" | berth user passwd alice --password-stdin`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			password := ""
			if passwordStdin {
				var err error
				if password, err = readPasswordStdin(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			c, err := o.connect()
			if err != nil {
				return err
			}
			generated, err := c.SetPassword(cmd.Context(), args[0], password)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Set the password of %s\n", args[0])
			printGenerated(w, generated)
			if args[0] == c.Username() {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: that is your own account; run berth login %s again\n", c.URL())
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the new password from standard input")
	return cmd
}

func userDeleteCmd(o *adminOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a user account",
		Example: `  berth user delete bob`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect()
			if err != nil {
				return err
			}
			if err := c.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Deleted user %s\n", args[0])
			return nil
		},
	}
}

// userDisableCmd is `user disable` (disable) or `user enable`.
func userDisableCmd(o *adminOpts, disable bool) *cobra.Command {
	verb, short := "enable", "Let a disabled user sign in again"
	if disable {
		verb, short = "disable", "Stop a user from signing in (its tokens stop working)"
	}
	return &cobra.Command{
		Use:     verb + " NAME",
		Short:   short,
		Example: "  berth user " + verb + " carol",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.connect()
			if err != nil {
				return err
			}
			if err := c.SetUserDisabled(cmd.Context(), args[0], disable); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%sd user %s\n", strings.ToUpper(verb[:1])+verb[1:], args[0])
			return nil
		},
	}
}
