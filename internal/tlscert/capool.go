package tlscert

import (
	"crypto/x509"
	"fmt"
	"os"
)

// CAPool returns the certificates of the PEM file at path added to base
// (nil: a new, empty pool): the roots a client trusts for a server berth
// talks to (a directory, an identity provider, berth itself).
func CAPool(path string, base *x509.CertPool) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA certificates: %w", err)
	}
	pool := base
	if pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificates", path)
	}
	return pool, nil
}
