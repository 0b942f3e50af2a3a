package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-registry/berth/internal/adminclient"
)

func loginCmd() *cobra.Command {
	o := &adminOpts{}
	var username string
	var passwordStdin, oidc, noBrowser bool
	cmd := &cobra.Command{
		Use:   "login [URL]",
		Short: "Log in to a berth server and make it the current one",
		Long: `Log in to a berth server's admin API and make it the current server.

The credentials are checked with the server, then stored like docker does
(base64 of user:password) in $BERTH_CONFIG_DIR/config.json, or else in
berth/config.json under the user's config directory, readable only by you.

A URL without a scheme means https://; write http:// explicitly for a
server without TLS. Without URL, --registry, $BERTH_REGISTRY or the
current server is used.

With --oidc the server's single sign-on provider signs you in instead: a
link is printed (and opened in your browser) and the browser comes back to
a port on 127.0.0.1 that berth listens on; a session (12 hours by default)
is stored instead of a password. People without a password in berth use
it to run berth token create.

The user name comes from --username, else $BERTH_USERNAME, else a prompt.
The password comes from standard input with --password-stdin, else
$BERTH_PASSWORD, else a prompt on the terminal that does not echo.`,
		Example: `  berth login registry.example.com
  berth login http://127.0.0.1:5000 --username admin
  echo "$PASSWORD" | berth login registry.example.com -u ci --password-stdin
  berth login registry.example.com --oidc`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, base, err := o.targetOf(args)
			if err != nil {
				return err
			}
			t.Registry = base
			path, err := t.ConfigFile()
			if err != nil {
				return err
			}
			cfg, err := adminclient.LoadConfig(path)
			if err != nil {
				return err
			}
			if oidc {
				s, err := loginOIDC(cmd, t, base, !noBrowser)
				if err != nil {
					return err
				}
				cfg.SetCredentials(base, s.User, s.Secret)
				cfg.Current = base
				if err := cfg.Save(path); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Logged in to %s as %s until %s; session saved in %s\n", base, s.User, s.ExpiresAt, path)
				return nil
			}
			if username == "" {
				username = os.Getenv("BERTH_USERNAME")
			}
			interactive := cmd.InOrStdin() == os.Stdin && term.IsTerminal(int(os.Stdin.Fd()))
			password := ""
			switch {
			case passwordStdin:
				if username == "" {
					return errors.New("--password-stdin needs --username (or BERTH_USERNAME)")
				}
				if password, err = readPasswordStdin(cmd.InOrStdin()); err != nil {
					return err
				}
			case os.Getenv("BERTH_PASSWORD") != "" && username != "":
				password = os.Getenv("BERTH_PASSWORD")
			case interactive:
				if username == "" {
					prev, _, _, _ := cfg.Credentials(base)
					if username, err = promptLine(cmd.ErrOrStderr(), prev); err != nil {
						return err
					}
				}
				if password, err = promptPassword(cmd.ErrOrStderr(), "Password: "); err != nil {
					return err
				}
			default:
				return errors.New("cannot prompt for credentials: standard input is not a terminal (use --username and --password-stdin)")
			}
			if password == "" {
				return errors.New("empty password")
			}
			t.Username, t.Password = username, password
			client, err := adminclient.Connect(t)
			if err != nil {
				return err
			}
			id, err := client.WhoAmI(cmd.Context())
			if err != nil {
				return fmt.Errorf("login to %s failed: %w", base, err)
			}
			cfg.SetCredentials(base, username, password)
			cfg.Current = base
			if err := cfg.Save(path); err != nil {
				return err
			}
			role := ""
			if id.Admin {
				role = " (admin)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged in to %s as %s%s; credentials saved in %s\n", base, id.Name, role, path)
			if strings.HasPrefix(base, "http://") {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s is plain HTTP; the password crosses the network unencrypted\n", base)
			}
			return nil
		},
	}
	o.register(cmd.Flags())
	cmd.Flags().StringVarP(&username, "username", "u", "", "user name (default: $BERTH_USERNAME, else prompt)")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from standard input")
	cmd.Flags().BoolVar(&oidc, "oidc", false, "sign in through the server's OpenID Connect provider in a browser (a session of oidc_session_ttl is stored instead of a password)")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "with --oidc: only print the sign-in link, do not open a browser")
	return cmd
}

func logoutCmd() *cobra.Command {
	o := &adminOpts{}
	cmd := &cobra.Command{
		Use:   "logout [URL]",
		Short: "Forget the stored credentials of a berth server",
		Long: `Remove the stored credentials of a server from the config file; a
session of berth login --oidc is ended on the server as well. Without
URL, --registry, $BERTH_REGISTRY or the current server is used. Logging out
of the current server leaves no current server.`,
		Example: `  berth logout
  berth logout registry.example.com`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, base, err := o.targetOf(args)
			if err != nil {
				return err
			}
			path, err := t.ConfigFile()
			if err != nil {
				return err
			}
			cfg, err := adminclient.LoadConfig(path)
			if err != nil {
				return err
			}
			if user, pass, ok, _ := cfg.Credentials(base); ok && strings.HasPrefix(pass, "berth-session-") {
				// A single sign-on session: end it on the server too, so
				// that the copy in this file is worth nothing.
				t.Username, t.Password = user, pass
				client, err := adminclient.Connect(t)
				if err == nil {
					err = client.EndSession(cmd.Context())
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: the session could not be ended on the server (%v); it expires by itself\n", err)
				}
			}
			if !cfg.Remove(base) {
				fmt.Fprintf(cmd.OutOrStdout(), "Not logged in to %s\n", base)
				return nil
			}
			if err := cfg.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged out of %s\n", base)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.registry, "registry", "", "server URL (default: $BERTH_REGISTRY, else the current server)")
	return cmd
}

// readPasswordStdin reads a password from r, without its final newline.
func readPasswordStdin(r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return "", fmt.Errorf("reading password from standard input: %w", err)
	}
	p := strings.TrimRight(string(data), "\r\n")
	if p == "" {
		return "", errors.New("no password on standard input")
	}
	return p, nil
}

// promptLine asks for a user name on the terminal, offering def.
func promptLine(w io.Writer, def string) (string, error) {
	if def != "" {
		fmt.Fprintf(w, "Username (%s): ", def)
	} else {
		fmt.Fprint(w, "Username: ")
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no user name given")
	}
	if line = strings.TrimSpace(line); line == "" {
		line = def
	}
	if line == "" {
		return "", errors.New("no user name given")
	}
	return line, nil
}

// promptPassword reads a password from the terminal without echo and
// restores the terminal if interrupted.
func promptPassword(w io.Writer, prompt string) (string, error) {
	fd := int(os.Stdin.Fd())
	fmt.Fprint(w, prompt)
	if state, err := term.GetState(fd); err == nil {
		sig := make(chan os.Signal, 1)
		done := make(chan struct{})
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer func() { signal.Stop(sig); close(done) }()
		go func() {
			select {
			case <-sig:
				_ = term.Restore(fd, state)
				fmt.Fprintln(w)
				os.Exit(130)
			case <-done:
			}
		}()
	}
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(w)
	if err != nil {
		return "", fmt.Errorf("reading password: %w", err)
	}
	return string(b), nil
}
