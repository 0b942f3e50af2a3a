package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/berth-registry/berth/internal/adminclient"
	"github.com/berth-registry/berth/internal/oidcauth"
)

// oidcLoginTimeout bounds how long `berth login --oidc` waits for the
// browser.
const oidcLoginTimeout = 5 * time.Minute

// loginOIDC signs the CLI in through the server's OpenID Connect provider
// with a loopback redirect: the browser signs in at the provider, the
// server sends it back to 127.0.0.1:PORT with a one-time code bound to
// this process's PKCE challenge (after the person confirmed on a page that
// shows the code printed here), and the code and verifier buy a session,
// stored like a password.
func loginOIDC(cmd *cobra.Command, t adminclient.Target, base string, openBrowser bool) (adminclient.OIDCSession, error) {
	verifier, state := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	challenge := oauth2.S256ChallengeFromVerifier(verifier)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return adminclient.OIDCSession{}, fmt.Errorf("listen on loopback for the browser: %w", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	codes := make(chan string, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/callback" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 || q.Get("code") == "" {
			http.Error(w, "This is not the sign-in berth login is waiting for.", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "Signed in. You can close this tab and go back to the terminal.")
		select {
		case codes <- q.Get("code"):
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	link := base + "/oidc/login?" + url.Values{"cli_port": {strconv.Itoa(port)}, "cli_challenge": {challenge}, "cli_state": {state}}.Encode()
	fmt.Fprintf(cmd.ErrOrStderr(), "Sign in with your browser at:\n  %s\nConfirm there only if the page shows the code %s\n", link, oidcauth.ConfirmCode(challenge))
	if openBrowser {
		if err := startBrowser(link); err == nil {
			fmt.Fprintln(cmd.ErrOrStderr(), "(opened in your browser)")
		}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), oidcLoginTimeout)
	defer cancel()
	var code string
	select {
	case code = <-codes:
	case <-ctx.Done():
		return adminclient.OIDCSession{}, fmt.Errorf("no sign-in came back within %s: open the link above in a browser on this machine", oidcLoginTimeout)
	}
	client, err := adminclient.Connect(t)
	if err != nil {
		return adminclient.OIDCSession{}, err
	}
	s, err := client.OIDCSession(ctx, code, verifier)
	if err != nil {
		return adminclient.OIDCSession{}, fmt.Errorf("sign-in to %s failed: %w", base, err)
	}
	return s, nil
}

// startBrowser opens u in the desktop's browser, when there is one.
func startBrowser(u string) error {
	for _, b := range []string{"xdg-open", "open"} {
		if p, err := exec.LookPath(b); err == nil {
			c := exec.Command(p, u)
			if err := c.Start(); err != nil {
				return err
			}
			go func() { _ = c.Wait() }()
			return nil
		}
	}
	return errors.New("no browser opener")
}
