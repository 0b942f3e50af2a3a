package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-registry/berth/internal/tlscert"
)

// certCmd is `berth cert`: make a self-signed certificate for serving HTTPS.
func certCmd() *cobra.Command {
	var (
		hosts []string
		days  int
		out   string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "cert --host NAME [--host NAME...] [--days 365] [--out DIR]",
		Short: "Make a self-signed TLS certificate for the registry",
		Long: `Make a self-signed TLS certificate (ECDSA P-256) and its key for berth serve.

The certificate is its own CA: clients trust the registry by installing
berth.crt as its CA certificate (see docs/tls.md). Name every host name and IP
address clients use to reach the registry with --host (repeat it or separate
names with commas); without --host the certificate covers localhost,
127.0.0.1 and ::1 only.

Writes DIR/berth.crt (mode 0644) and DIR/berth.key (mode 0600); existing
files are kept unless --force is given.`,
		Example: `  berth cert --host registry.example.com --host 10.0.0.5 --out /etc/berth/tls
  berth cert --host localhost,127.0.0.1 --days 30`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected argument %q; name hosts with --host, e.g. berth cert --host %s", args[0], args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCert(cmd.OutOrStdout(), hosts, days, out, force)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&hosts, "host", nil, "DNS name or IP address clients use to reach the registry; repeat it or separate names with commas (default localhost,127.0.0.1,::1)")
	f.IntVar(&days, "days", 365, "days the certificate stays valid")
	f.StringVar(&out, "out", ".", "directory to write berth.crt and berth.key to (created if missing)")
	f.BoolVar(&force, "force", false, "replace existing berth.crt and berth.key")
	return cmd
}

// maxCertDays caps --days; a longer-lived self-signed certificate is more
// likely a typo than a plan.
const maxCertDays = 100 * 365

// runCert generates the certificate, writes it and prints the next steps.
func runCert(w io.Writer, hosts []string, days int, out string, force bool) error {
	if days < 1 || days > maxCertDays {
		return fmt.Errorf("--days %d is out of range; use 1 to %d (e.g. --days 365)", days, maxCertDays)
	}
	if len(hosts) == 0 {
		hosts = tlscert.DefaultHosts
	}
	if fi, err := os.Stat(out); err == nil && !fi.IsDir() {
		return fmt.Errorf("--out %s is a file, not a directory; give the directory to write %s and %s to", out, tlscert.CertFile, tlscert.KeyFile)
	}
	certPath := filepath.Join(out, tlscert.CertFile)
	keyPath := filepath.Join(out, tlscert.KeyFile)
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s already exists; pass --force to replace it (clients trusting the old certificate must then get the new one), or --out DIR to write elsewhere", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	certPEM, keyPEM, err := tlscert.Generate(tlscert.Options{Hosts: hosts, ValidFor: time.Duration(days) * 24 * time.Hour})
	if err != nil {
		return fmt.Errorf("%w (see berth cert --help)", err)
	}
	if err := tlscert.WriteFiles(out, certPEM, keyPEM); err != nil {
		return fmt.Errorf("%w; check that --out %s is a writable directory", err, out)
	}
	printCertSummary(w, certPEM, certPath, keyPath)
	return nil
}

// printCertSummary tells the user what was written and what to do next.
func printCertSummary(w io.Writer, certPEM []byte, certPath, keyPath string) {
	if abs, err := filepath.Abs(certPath); err == nil {
		certPath = abs
	}
	if abs, err := filepath.Abs(keyPath); err == nil {
		keyPath = abs
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil { // cannot happen: Generate just made it
		fmt.Fprintf(w, "wrote %s and %s\n", certPath, keyPath)
		return
	}
	names := append([]string(nil), cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	sum := sha256.Sum256(cert.Raw)
	registry := net.JoinHostPort(names[0], "5000")

	fmt.Fprintf(w, `Wrote %s (certificate; also the CA clients trust)
  and %s (private key; keep it secret, readable only by berth).
Valid for %s until %s.
SHA-256 fingerprint %s

Serve HTTPS with it:
  berth serve --addr :5000 --tls-cert %s --tls-key %s
  (or BERTH_TLS_CERT / BERTH_TLS_KEY)

Make clients trust it, copying %s to each client machine; HOST:PORT is
how clients name the registry, e.g. %s:
  Docker:         /etc/docker/certs.d/HOST:PORT/ca.crt (no restart needed)
  containerd/k8s: /etc/containerd/certs.d/HOST:PORT/ca.crt plus a hosts.toml
                  naming it, with config_path set in containerd's config
  podman/skopeo:  /etc/containers/certs.d/HOST:PORT/ca.crt
  crane, Go:      SSL_CERT_FILE=%s
See docs/tls.md for details.
`, certPath, keyPath, strings.Join(names, ", "), cert.NotAfter.Format(time.DateOnly),
		colonHex(sum[:]), certPath, keyPath, tlscert.CertFile, registry, certPath)
}

// colonHex formats b as upper-case hex bytes separated by colons, the way
// browsers and openssl show fingerprints.
func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}
