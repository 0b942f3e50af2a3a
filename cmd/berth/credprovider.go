package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/kube"
	"github.com/berth-registry/berth/internal/tlscert"
)

const credentialProviderAPI = "credentialprovider.kubelet.k8s.io/v1"

type credProviderOpts struct {
	server    string
	robotFile string
	ttl       time.Duration
	caCert    string
}

// credentialProviderCmd implements the kubelet's exec credential provider
// plugin API: a CredentialProviderRequest on stdin, a
// CredentialProviderResponse on stdout.
func credentialProviderCmd() *cobra.Command {
	o := &credProviderOpts{}
	cmd := &cobra.Command{
		Use:   "credential-provider",
		Short: "Kubelet credential provider: trade a node's robot secret for a short-lived pull credential",
		Long: `Run by the kubelet (see docs/kubernetes.md for its CredentialProviderConfig),
not by people. Reads a CredentialProviderRequest (` + credentialProviderAPI + `) on
standard input, logs in to berth with the node's robot credentials from
--robot-file (a line "team+node:SECRET", or JSON {"username","password"}),
asks for a pull credential that expires after --ttl, and prints a
CredentialProviderResponse for the image's registry with cacheKeyType
Registry and a cacheDuration a little shorter than the credential's life.
Errors go to standard error with a non-zero exit status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", "", "berth URL, e.g. https://registry.example.com (required)")
	f.StringVar(&o.robotFile, "robot-file", "", "file with the node's robot credentials (required)")
	f.DurationVar(&o.ttl, "ttl", time.Hour, "lifetime of the pull credentials handed to the kubelet")
	f.StringVar(&o.caCert, "ca-cert", "", "CA certificate file for a self-signed berth")
	return cmd
}

func (o *credProviderOpts) run(stdin io.Reader, stdout io.Writer) error {
	if o.server == "" || o.robotFile == "" {
		return errors.New("--server and --robot-file are required (see the kubelet CredentialProviderConfig in docs/kubernetes.md)")
	}
	var req struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Image      string `json:"image"`
	}
	if err := json.NewDecoder(io.LimitReader(stdin, 1<<20)).Decode(&req); err != nil {
		return fmt.Errorf("reading CredentialProviderRequest from stdin: %w", err)
	}
	if req.Kind != "CredentialProviderRequest" || req.APIVersion != credentialProviderAPI {
		return fmt.Errorf("want a CredentialProviderRequest of %s, got kind %q apiVersion %q", credentialProviderAPI, req.Kind, req.APIVersion)
	}
	user, pass, err := readRobotFile(o.robotFile)
	if err != nil {
		return err
	}
	u, err := url.Parse(strings.TrimSuffix(o.server, "/"))
	if err != nil || u.Host == "" {
		return fmt.Errorf("--server %q is not a URL", o.server)
	}
	host, _, _ := kube.SplitImage(req.Image)
	if host != u.Host {
		return fmt.Errorf("image %s is not on %s; narrow matchImages in the kubelet's CredentialProviderConfig", req.Image, u.Host)
	}
	cred, err := o.exchange(user, pass)
	if err != nil {
		return err
	}
	life := time.Until(cred.Expires)
	cache := life - life/10
	if cache < 0 {
		cache = 0
	}
	resp := map[string]any{
		"apiVersion":    credentialProviderAPI,
		"kind":          "CredentialProviderResponse",
		"cacheKeyType":  "Registry",
		"cacheDuration": cache.Round(time.Second).String(),
		"auth":          map[string]any{u.Host: map[string]string{"username": cred.Username, "password": cred.Password}},
	}
	return json.NewEncoder(stdout).Encode(resp)
}

type pullCredential struct {
	Username string    `json:"username"`
	Password string    `json:"password"`
	Expires  time.Time `json:"expires_at"`
}

// exchange asks berth for a short-lived pull credential of the robot.
func (o *credProviderOpts) exchange(user, pass string) (*pullCredential, error) {
	client := &http.Client{Timeout: 20 * time.Second}
	if o.caCert != "" {
		t, err := tlsTransport(o.caCert)
		if err != nil {
			return nil, err
		}
		client.Transport = t
	}
	body, _ := json.Marshal(map[string]string{"ttl": o.ttl.String()})
	req, err := http.NewRequest("POST", strings.TrimSuffix(o.server, "/")+"/api/v1/pull-credentials", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach berth at %s: %w", o.server, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusCreated {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		switch res.StatusCode {
		case http.StatusUnauthorized:
			return nil, fmt.Errorf("berth refused the node credentials of %s (revoked, expired or wrong secret in %s): %s", user, o.robotFile, e.Error)
		case http.StatusTooManyRequests:
			return nil, fmt.Errorf("berth rate-limits %s after failed logins; retry after %s s", user, res.Header.Get("Retry-After"))
		}
		return nil, fmt.Errorf("berth answered %s: %s", res.Status, e.Error)
	}
	var c pullCredential
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("berth's pull credential: %w", err)
	}
	return &c, nil
}

// readRobotFile reads "user:secret" or {"username","password"}.
func readRobotFile(path string) (string, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("node credentials: %w", err)
	}
	text := strings.TrimSpace(string(b))
	if strings.HasPrefix(text, "{") {
		var c struct{ Username, Password string }
		if err := json.Unmarshal(b, &c); err != nil || c.Username == "" || c.Password == "" {
			return "", "", fmt.Errorf("%s: want {\"username\":...,\"password\":...}", path)
		}
		return c.Username, c.Password, nil
	}
	user, pass, ok := strings.Cut(text, ":")
	if !ok || user == "" || pass == "" {
		return "", "", fmt.Errorf("%s: want one line user:secret", path)
	}
	return user, pass, nil
}

// tlsTransport trusts the CA certificates in caFile.
func tlsTransport(caFile string) (*http.Transport, error) {
	pool, err := tlscert.CAPool(caFile, nil)
	if err != nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t, nil
}
