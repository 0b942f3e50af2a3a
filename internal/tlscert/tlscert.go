// Package tlscert makes self-signed TLS certificates for berth.
//
// The certificate Generate returns is its own certificate authority: a
// client trusts the registry by adding the certificate file to its CA
// bundle (for Docker, /etc/docker/certs.d/HOST:PORT/ca.crt), and the server
// presents the same file with its key. This suits a registry on a private
// network without a public CA; docs/tls.md describes the client side.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// DefaultValidity is how long a certificate is valid when Options.ValidFor
// is zero.
const DefaultValidity = 365 * 24 * time.Hour

// backdate moves NotBefore into the past so that clients whose clocks run a
// little behind the server's accept a certificate made a moment ago.
const backdate = 5 * time.Minute

// DefaultHosts are the names a certificate covers when Options.Hosts is
// empty: the loopback name and addresses.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Options controls Generate. The zero value makes a certificate for
// DefaultHosts valid for DefaultValidity.
type Options struct {
	// Hosts are the DNS names (a leading "*." wildcard is allowed) and IP
	// addresses the certificate is valid for. The first one is also the
	// subject's common name. Empty means DefaultHosts.
	Hosts []string
	// ValidFor is the validity period counted from Now. Zero means
	// DefaultValidity; negative is an error.
	ValidFor time.Duration
	// Now is the time the certificate is made; zero means time.Now().
	Now time.Time
}

// Generate makes a self-signed ECDSA P-256 certificate for opts.Hosts and
// returns it and its private key, PEM encoded ("CERTIFICATE" and PKCS #8
// "PRIVATE KEY"). The certificate is a CA (it signs itself) usable for TLS
// server authentication, so the certificate file doubles as the CA file
// clients trust. NotBefore is set a few minutes before Now to tolerate
// clock skew.
func Generate(opts Options) (certPEM, keyPEM []byte, err error) {
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	dnsNames, ips, cn, err := parseHosts(hosts)
	if err != nil {
		return nil, nil, err
	}
	validFor := opts.ValidFor
	switch {
	case validFor == 0:
		validFor = DefaultValidity
	case validFor < 0:
		return nil, nil, fmt.Errorf("validity %s is negative", validFor)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	// 128 random bits, as CA/Browser Forum practice asks for at least 64.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generating serial number: %w", err)
	}
	serial.Add(serial, big.NewInt(1)) // never zero
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"berth self-signed"}},
		NotBefore:             now.Add(-backdate).UTC(),
		NotAfter:              now.Add(validFor).UTC(),
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		IsCA:                  true,
		BasicConstraintsValid: true,
		// It signs nothing but itself.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// parseHosts splits host names and IP addresses into the certificate's DNS
// and IP subject alternative names, dropping duplicates, and returns the
// first host normalized, for the common name.
func parseHosts(hosts []string) (dnsNames []string, ips []net.IP, first string, err error) {
	seen := map[string]bool{}
	for i, raw := range hosts {
		name, ip, err := normalizeHost(raw)
		if err != nil {
			return nil, nil, "", err
		}
		if i == 0 {
			first = name
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		if ip != nil {
			ips = append(ips, ip)
		} else {
			dnsNames = append(dnsNames, name)
		}
	}
	return dnsNames, ips, first, nil
}

// normalizeHost turns one host as the user wrote it into a lower-case DNS
// name without a trailing dot, or an IP address (IPv6 may be written in
// brackets); name is the canonical text of either. It rejects empty names,
// names with a scheme, port or path, and characters a DNS name cannot
// hold, with a hint in the error.
func normalizeHost(raw string) (name string, ip net.IP, err error) {
	h := strings.TrimSpace(raw)
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if ip := net.ParseIP(h); ip != nil {
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		}
		return ip.String(), ip, nil
	}
	name = strings.ToLower(strings.TrimSuffix(h, "."))
	if err := checkDNSName(raw, name); err != nil {
		return "", nil, err
	}
	return name, nil, nil
}

// checkDNSName reports why name (as the user wrote it: raw) cannot be a DNS
// subject alternative name.
func checkDNSName(raw, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty host name %q", raw)
	case strings.Contains(name, "://"):
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.Hostname() != "" {
			return fmt.Errorf("host %q is a URL; give just the host name %q", raw, u.Hostname())
		}
		return fmt.Errorf("host %q is a URL; give just the host name, e.g. registry.example.com", raw)
	case strings.Contains(name, "/"):
		return fmt.Errorf("host %q contains a path; give just the host name, e.g. registry.example.com", raw)
	case strings.Contains(name, ":"):
		if host, _, err := net.SplitHostPort(name); err == nil && host != "" {
			return fmt.Errorf("host %q includes a port; certificates do not name ports, give just %q", raw, host)
		}
		return fmt.Errorf("host %q is neither a DNS name nor an IP address", raw)
	case len(name) > 253:
		return fmt.Errorf("host name %q is longer than 253 characters", raw)
	}
	labels := strings.Split(name, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) > 2 {
			continue // *.example.com
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("host name %q is not a valid DNS name (empty, over-long or hyphen-edged label %q)", raw, l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				if c == '*' {
					return fmt.Errorf("host name %q: a wildcard may only be the whole first label of a name with at least three labels, e.g. *.example.com", raw)
				}
				return fmt.Errorf("host name %q contains %q; DNS names use letters, digits, hyphens and dots", raw, c)
			}
		}
	}
	return nil
}
