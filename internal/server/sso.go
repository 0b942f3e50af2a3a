package server

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/auth"
	"github.com/berth-registry/berth/internal/config"
	"github.com/berth-registry/berth/internal/oidcauth"
	"github.com/berth-registry/berth/internal/tlscert"
)

// oidcProvider returns the configured OpenID Connect provider, or nil.
func oidcProvider(cfg *config.Config, acc auth.Store) (*oidcauth.Provider, error) {
	o := cfg.OIDC
	if o.Issuer == "" {
		return nil, nil
	}
	client := &http.Client{Timeout: 30 * time.Second}
	if o.CACertFile != "" {
		pool, err := tlscert.CAPool(o.CACertFile, nil)
		if err != nil {
			return nil, fmt.Errorf("oidc_ca_cert: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		client.Transport = tr
	}
	p, err := oidcauth.New(oidcauth.Config{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret,
		Scopes: strings.Fields(o.Scopes), UsernameClaim: o.UsernameClaim, GroupsClaim: o.GroupsClaim, HTTPClient: client,
		Recheck: cfg.SSORecheck}, acc)
	if err != nil {
		return nil, err
	}
	return p, nil
}
